//! The head's attribute operations: setattr (chmod, chown, utimes,
//! truncate), the setid bits a write or chown takes off, and extended
//! attributes, with POSIX ACLs kept in step with the mode.

use super::acl::{self, Acl};
use super::records::XattrRecord;
use super::txn::Reader;
use super::{Head, XATTR_MAX};
use crate::tree::types::*;

impl Head {
    /// Changes attributes; a size change truncates or extends with a hole.
    pub fn setattr(&self, caller: Caller, ino: InodeNo, set: &SetAttr) -> Result<Attr, FsError> {
        let _op = caller.span("setattr");
        if let Some(size) = set.size {
            if self.rtx()?.get(ino)?.meta.kind != FileKind::File {
                return Err(FsError::Invalid("only regular files have a size to set"));
            }
            self.truncate(ino, size)?;
        }
        let rec = self.transact(|w| {
            let mut rec = w.get(ino)?;
            let now = Timestamp::now();
            if let Some(perm) = set.perm {
                rec.meta.perm = perm & 0o7777;
                // Keep the access ACL in step: its mask (or group) follows the group bits.
                if let Some(x) = w.xattr(ino, acl::ACCESS)? {
                    let mut access = Acl::parse(&x.value)?;
                    access.chmod(rec.meta.perm);
                    w.set_xattr(
                        ino,
                        &XattrRecord {
                            name: x.name,
                            value: access.encode(),
                        },
                    )?;
                }
            }
            if let Some(uid) = set.uid {
                rec.meta.uid = uid;
            }
            if let Some(gid) = set.gid {
                rec.meta.gid = gid;
            }
            // As Linux does: a new owner (of any non-directory), or a
            // truncate by someone other than root, takes setuid (and
            // executable setgid) off, unless the same call sets the mode.
            let owner = set.uid.is_some() || set.gid.is_some();
            let truncate = set.size.is_some() && caller.uid != 0;
            let kills = (owner && rec.meta.kind != FileKind::Dir)
                || (truncate && rec.meta.kind == FileKind::File);
            if kills && set.perm.is_none() {
                rec.meta.perm = without_setid(rec.meta.perm);
            }
            if let Some(t) = set.atime {
                rec.meta.atime = t;
            }
            if let Some(t) = set.mtime {
                rec.meta.mtime = t;
            }
            rec.meta.ctime = now;
            w.put(ino, &rec)?;
            w.dirty_parents(ino)?;
            Ok(rec)
        })?;
        // An explicit mtime (utimensat after a copy) wins over the pending write's.
        self.content.attrs_set(self, ino, set)?;
        Ok(self.attr_of(ino, &rec))
    }

    /// Takes setuid and executable setgid off a file before a write by
    /// someone other than its owner's privileges allow (the kernel asks,
    /// with FUSE's kill-suid write flag).
    pub fn kill_setid(&self, caller: Caller, ino: InodeNo) -> Result<(), FsError> {
        let attr = self.getattr(caller, ino)?;
        if attr.kind != FileKind::File || without_setid(attr.perm) == attr.perm {
            return Ok(());
        }
        let set = SetAttr {
            perm: Some(without_setid(attr.perm)),
            ..SetAttr::default()
        };
        self.setattr(caller, ino, &set).map(|_| ())
    }

    /// Sets extended attribute `name`. With `create` it must not exist, with
    /// `replace` it must.
    pub fn setxattr(
        &self,
        caller: Caller,
        ino: InodeNo,
        name: &[u8],
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> Result<(), FsError> {
        let _op = caller.span("setxattr");
        if name.is_empty() || name.len() > 255 {
            return Err(FsError::Invalid("xattr name must be 1..255 bytes"));
        }
        if value.len() > XATTR_MAX {
            return Err(FsError::TooLarge);
        }
        self.transact(|w| {
            let mut rec = w.get(ino)?;
            let exists = w.xattr(ino, name)?.is_some();
            if create && exists {
                return Err(FsError::Exists);
            }
            if replace && !exists {
                return Err(FsError::NoAttr);
            }
            let stored = if name == acl::ACCESS {
                // The mode follows the access ACL; one that says no more
                // than the mode is not kept.
                let access = Acl::parse(value)?;
                rec.meta.perm = (rec.meta.perm & 0o7000) | access.mode_bits();
                !access.is_minimal()
            } else if name == acl::DEFAULT {
                if rec.meta.kind != FileKind::Dir {
                    return Err(FsError::PermissionDenied);
                }
                Acl::parse(value)?;
                true
            } else {
                true
            };
            if stored {
                w.set_xattr(
                    ino,
                    &XattrRecord {
                        name: name.to_vec(),
                        value: value.to_vec(),
                    },
                )?;
            } else {
                w.remove_xattr(ino, name)?;
            }
            rec.meta.ctime = Timestamp::now();
            w.put(ino, &rec)?;
            w.dirty_parents(ino)
        })
    }

    /// An extended attribute's value.
    pub fn getxattr(&self, caller: Caller, ino: InodeNo, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let _op = caller.span("getxattr");
        // The kernel only asks about inodes it holds, which exist.
        if !self.xattr_owners.may_have(ino) {
            return Err(FsError::NoAttr);
        }
        let r = self.rtx()?;
        r.get(ino)?;
        Ok(r.xattr(ino, name)?.ok_or(FsError::NoAttr)?.value)
    }

    /// Names of all extended attributes, sorted.
    pub fn listxattr(&self, caller: Caller, ino: InodeNo) -> Result<Vec<Vec<u8>>, FsError> {
        let _op = caller.span("listxattr");
        if !self.xattr_owners.may_have(ino) {
            return Ok(Vec::new());
        }
        let r = self.rtx()?;
        r.get(ino)?;
        Ok(r.xattrs(ino)?.into_iter().map(|x| x.name).collect())
    }

    /// Removes an extended attribute.
    pub fn removexattr(&self, caller: Caller, ino: InodeNo, name: &[u8]) -> Result<(), FsError> {
        let _op = caller.span("removexattr");
        self.transact(|w| {
            let mut rec = w.get(ino)?;
            if !w.remove_xattr(ino, name)? {
                return Err(FsError::NoAttr);
            }
            rec.meta.ctime = Timestamp::now();
            w.put(ino, &rec)?;
            w.dirty_parents(ino)
        })
    }
}

/// `perm` without setuid, and without setgid when group-executable (a
/// setgid bit without group execute marks mandatory locking, not privilege).
fn without_setid(perm: u32) -> u32 {
    let mut p = perm & !libc::S_ISUID;
    if p & libc::S_IXGRP != 0 {
        p &= !libc::S_ISGID;
    }
    p
}
