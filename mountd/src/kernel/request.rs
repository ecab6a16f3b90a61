//! Requests as the kernel sends them, parsed once for both transports.
//!
//! A request is its header, a fixed argument (the opcode's structure, if
//! it has one) and a variable part (names, values, data). On /dev/fuse the
//! three arrive joined in one buffer; on the io_uring they arrive in three
//! places (header, op_in, payload). [`Body`] hides which.

use std::mem::size_of;

use zerocopy::FromBytes;

use super::abi::{self, op, InHeader};

/// The arguments after the header.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    /// /dev/fuse: the fixed argument, then the variable part, in one buffer.
    Joined(&'a [u8]),
    /// io_uring: the fixed argument in the header area, the rest in the payload.
    Split { op_in: &'a [u8], payload: &'a [u8] },
}

impl<'a> Body<'a> {
    /// The fixed argument `T` and the variable part after it.
    fn fixed<T: FromBytes>(self) -> Option<(T, &'a [u8])> {
        match self {
            Body::Joined(b) => T::read_from_prefix(b).ok(),
            Body::Split { op_in, payload } => {
                T::read_from_prefix(op_in).ok().map(|(t, _)| (t, payload))
            }
        }
    }

    /// The variable part of a request with no fixed argument.
    fn rest(self) -> &'a [u8] {
        match self {
            Body::Joined(b) => b,
            Body::Split { payload, .. } => payload,
        }
    }
}

/// One request's operation and arguments.
#[derive(Debug)]
pub enum Op<'a> {
    Lookup {
        name: &'a [u8],
    },
    Forget {
        nlookup: u64,
    },
    BatchForget(Vec<(u64, u64)>),
    Getattr,
    Setattr(abi::SetattrIn),
    Readlink,
    Symlink {
        name: &'a [u8],
        target: &'a [u8],
    },
    Mknod {
        name: &'a [u8],
        mode: u32,
        umask: u32,
        rdev: u32,
    },
    Mkdir {
        name: &'a [u8],
        mode: u32,
        umask: u32,
    },
    Unlink {
        name: &'a [u8],
    },
    Rmdir {
        name: &'a [u8],
    },
    Rename {
        name: &'a [u8],
        newdir: u64,
        newname: &'a [u8],
        flags: u32,
    },
    Link {
        oldnodeid: u64,
        newname: &'a [u8],
    },
    Open {
        flags: u32,
    },
    Read {
        offset: u64,
        size: u32,
    },
    Write {
        offset: u64,
        data: &'a [u8],
        write_flags: u32,
    },
    Statfs,
    Release,
    Fsync,
    Flush,
    Opendir,
    Readdir {
        offset: u64,
        size: u32,
        plus: bool,
    },
    Releasedir,
    Fsyncdir,
    Setxattr {
        name: &'a [u8],
        value: &'a [u8],
        flags: u32,
    },
    Getxattr {
        name: &'a [u8],
        size: u32,
    },
    Listxattr {
        size: u32,
    },
    Removexattr {
        name: &'a [u8],
    },
    Create {
        name: &'a [u8],
        mode: u32,
        umask: u32,
    },
    Ioctl,
    Interrupt,
    Destroy,
    /// An opcode this daemon does not serve (answered ENOSYS), or INIT
    /// after the handshake.
    Other(u32),
}

/// A request that does not parse: the kernel and this daemon disagree on
/// the protocol. Answered EIO.
#[derive(Debug)]
pub struct Malformed(pub u32);

/// Splits a NUL-terminated name off the front.
fn name(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

impl<'a> Op<'a> {
    /// Parses the arguments of `opcode`.
    pub fn parse(opcode: u32, body: Body<'a>) -> Result<Op<'a>, Malformed> {
        Self::parse_known(opcode, body).ok_or(Malformed(opcode))
    }

    fn parse_known(opcode: u32, body: Body<'a>) -> Option<Op<'a>> {
        Some(match opcode {
            op::LOOKUP => Op::Lookup {
                name: name(body.rest())?.0,
            },
            op::FORGET => Op::Forget {
                nlookup: body.fixed::<abi::ForgetIn>()?.0.nlookup,
            },
            op::BATCH_FORGET => {
                let (n, mut rest) = body.fixed::<abi::BatchForgetIn>()?;
                let mut all = Vec::with_capacity(n.count as usize);
                for _ in 0..n.count {
                    let (one, r) = abi::ForgetOne::read_from_prefix(rest).ok()?;
                    all.push((one.nodeid, one.nlookup));
                    rest = r;
                }
                Op::BatchForget(all)
            }
            op::GETATTR => Op::Getattr,
            op::SETATTR => Op::Setattr(body.fixed::<abi::SetattrIn>()?.0),
            op::READLINK => Op::Readlink,
            op::SYMLINK => {
                let (name, rest) = name(body.rest())?;
                let (target, _) = self::name(rest)?;
                Op::Symlink { name, target }
            }
            op::MKNOD => {
                let (a, rest) = body.fixed::<abi::MknodIn>()?;
                Op::Mknod {
                    name: name(rest)?.0,
                    mode: a.mode,
                    umask: a.umask,
                    rdev: a.rdev,
                }
            }
            op::MKDIR => {
                let (a, rest) = body.fixed::<abi::MkdirIn>()?;
                Op::Mkdir {
                    name: name(rest)?.0,
                    mode: a.mode,
                    umask: a.umask,
                }
            }
            op::UNLINK => Op::Unlink {
                name: name(body.rest())?.0,
            },
            op::RMDIR => Op::Rmdir {
                name: name(body.rest())?.0,
            },
            op::RENAME | op::RENAME2 => {
                let (newdir, flags, rest) = if opcode == op::RENAME {
                    let (a, rest) = body.fixed::<abi::RenameIn>()?;
                    (a.newdir, 0, rest)
                } else {
                    let (a, rest) = body.fixed::<abi::Rename2In>()?;
                    (a.newdir, a.flags, rest)
                };
                let (name, rest) = name(rest)?;
                let (newname, _) = self::name(rest)?;
                Op::Rename {
                    name,
                    newdir,
                    newname,
                    flags,
                }
            }
            op::LINK => {
                let (a, rest) = body.fixed::<abi::LinkIn>()?;
                Op::Link {
                    oldnodeid: a.oldnodeid,
                    newname: name(rest)?.0,
                }
            }
            op::OPEN => Op::Open {
                flags: body.fixed::<abi::OpenIn>()?.0.flags,
            },
            op::READ => {
                let a = body.fixed::<abi::ReadIn>()?.0;
                Op::Read {
                    offset: a.offset,
                    size: a.size,
                }
            }
            op::WRITE => {
                let (a, data) = body.fixed::<abi::WriteIn>()?;
                Op::Write {
                    offset: a.offset,
                    data: data.get(..a.size as usize)?,
                    write_flags: a.write_flags,
                }
            }
            op::STATFS => Op::Statfs,
            op::RELEASE => Op::Release,
            op::FSYNC => Op::Fsync,
            op::FLUSH => Op::Flush,
            op::OPENDIR => Op::Opendir,
            op::READDIR | op::READDIRPLUS => {
                let a = body.fixed::<abi::ReadIn>()?.0;
                Op::Readdir {
                    offset: a.offset,
                    size: a.size,
                    plus: opcode == op::READDIRPLUS,
                }
            }
            op::RELEASEDIR => Op::Releasedir,
            op::FSYNCDIR => Op::Fsyncdir,
            op::SETXATTR => {
                let (a, rest) = body.fixed::<abi::SetxattrIn>()?;
                let (name, rest) = name(rest)?;
                Op::Setxattr {
                    name,
                    value: rest.get(..a.size as usize)?,
                    flags: a.flags,
                }
            }
            op::GETXATTR => {
                let (a, rest) = body.fixed::<abi::GetxattrIn>()?;
                Op::Getxattr {
                    name: name(rest)?.0,
                    size: a.size,
                }
            }
            op::LISTXATTR => Op::Listxattr {
                size: body.fixed::<abi::GetxattrIn>()?.0.size,
            },
            op::REMOVEXATTR => Op::Removexattr {
                name: name(body.rest())?.0,
            },
            op::CREATE => {
                let (a, rest) = body.fixed::<abi::CreateIn>()?;
                Op::Create {
                    name: name(rest)?.0,
                    mode: a.mode,
                    umask: a.umask,
                }
            }
            op::IOCTL => Op::Ioctl,
            op::INTERRUPT => Op::Interrupt,
            op::DESTROY => Op::Destroy,
            other => Op::Other(other),
        })
    }
}

/// The header of a request read from /dev/fuse, and its arguments.
pub fn split_joined(buf: &[u8]) -> Option<(InHeader, Body<'_>)> {
    let (h, rest) = InHeader::read_from_prefix(buf).ok()?;
    let len = (h.len as usize).checked_sub(size_of::<InHeader>())?;
    Some((h, Body::Joined(rest.get(..len)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    fn joined(opcode: u32, fixed: &[u8], rest: &[u8]) -> Vec<u8> {
        let h = InHeader {
            len: (size_of::<InHeader>() + fixed.len() + rest.len()) as u32,
            opcode,
            unique: 7,
            nodeid: 1,
            uid: 0,
            gid: 0,
            pid: 1,
            total_extlen: 0,
            padding: 0,
        };
        [h.as_bytes(), fixed, rest].concat()
    }

    /// Both transports' layouts of one request parse to the same operation.
    #[test]
    fn joined_and_split_bodies_parse_alike() {
        let a = abi::MkdirIn {
            mode: 0o755,
            umask: 0o22,
        };
        let buf = joined(op::MKDIR, a.as_bytes(), b"dir\0");
        let (h, body) = split_joined(&buf).unwrap();
        let one = format!("{:?}", Op::parse(h.opcode, body).unwrap());
        let two = format!(
            "{:?}",
            Op::parse(
                op::MKDIR,
                Body::Split {
                    op_in: a.as_bytes(),
                    payload: b"dir\0"
                }
            )
            .unwrap()
        );
        assert_eq!(one, two);
        assert!(one.contains("Mkdir"), "{one}");
    }

    #[test]
    fn a_write_shorter_than_it_says_is_malformed() {
        let a = abi::WriteIn {
            fh: 0,
            offset: 0,
            size: 10,
            write_flags: 0,
            lock_owner: 0,
            flags: 0,
            padding: 0,
        };
        let buf = joined(op::WRITE, a.as_bytes(), b"short");
        let (h, body) = split_joined(&buf).unwrap();
        assert!(Op::parse(h.opcode, body).is_err());
    }

    #[test]
    fn names_must_end_in_nul() {
        let buf = joined(op::LOOKUP, &[], b"no-nul");
        let (h, body) = split_joined(&buf).unwrap();
        assert!(Op::parse(h.opcode, body).is_err());
        let buf = joined(op::SYMLINK, &[], b"link\0target\0");
        let (h, body) = split_joined(&buf).unwrap();
        match Op::parse(h.opcode, body).unwrap() {
            Op::Symlink { name, target } => {
                assert_eq!((name, target), (&b"link"[..], &b"target"[..]))
            }
            o => panic!("{o:?}"),
        }
    }
}
