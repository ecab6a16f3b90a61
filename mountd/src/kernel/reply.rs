//! Replies, built once for both transports: an out header and the reply's
//! parts, sent where the request came from. A reply dropped unsent answers
//! EIO, so no request is ever left waiting.

use std::io::IoSlice;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use zerocopy::IntoBytes;

use super::abi::{self, OutHeader};
use super::ring::Slot;

/// Where the answer to a request goes.
pub enum To {
    /// Written to this /dev/fuse descriptor.
    Dev(Arc<OwnedFd>),
    /// Committed to this io_uring entry, which then fetches the next request.
    Ring(Slot),
}

/// The answer to one request; consumed by sending it.
pub struct Reply {
    unique: u64,
    to: Option<To>,
}

impl Reply {
    pub fn new(unique: u64, to: To) -> Reply {
        Reply {
            unique,
            to: Some(to),
        }
    }

    /// Fails the request with `errno`.
    pub fn error(mut self, errno: i32) {
        self.send(-errno, &[]);
    }

    /// Succeeds with no data.
    pub fn ok(mut self) {
        self.send(0, &[]);
    }

    pub fn entry(mut self, e: &abi::EntryOut) {
        self.send(0, &[e.as_bytes()]);
    }

    pub fn attr(mut self, a: &abi::AttrOut) {
        self.send(0, &[a.as_bytes()]);
    }

    pub fn data(mut self, d: &[u8]) {
        self.send(0, &[d]);
    }

    pub fn opened(mut self, o: &abi::OpenOut) {
        self.send(0, &[o.as_bytes()]);
    }

    pub fn created(mut self, e: &abi::EntryOut, o: &abi::OpenOut) {
        self.send(0, &[e.as_bytes(), o.as_bytes()]);
    }

    pub fn written(mut self, n: u32) {
        self.send(
            0,
            &[abi::WriteOut {
                size: n,
                padding: 0,
            }
            .as_bytes()],
        );
    }

    pub fn statfs(mut self, s: &abi::StatfsOut) {
        self.send(0, &[s.as_bytes()]);
    }

    /// The size an xattr value or name list needs (the caller asked with size 0).
    pub fn xattr_size(mut self, n: u32) {
        self.send(
            0,
            &[abi::GetxattrOut {
                size: n,
                padding: 0,
            }
            .as_bytes()],
        );
    }

    /// A request the kernel expects no answer to (forget, interrupt).
    pub fn none(mut self) {
        self.to = None;
    }

    fn send(&mut self, error: i32, parts: &[&[u8]]) {
        let Some(to) = self.to.take() else { return };
        let len = size_of::<OutHeader>() + parts.iter().map(|p| p.len()).sum::<usize>();
        let header = OutHeader {
            len: len as u32,
            error,
            unique: self.unique,
        };
        match to {
            To::Dev(fd) => write_dev(&fd, &header, parts),
            To::Ring(slot) => slot.commit(&header, parts),
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if self.to.is_some() {
            tracing::warn!(
                unique = self.unique,
                "a request was left unanswered; failing it with EIO"
            );
            self.send(-libc::EIO, &[]);
        }
    }
}

/// One write of the header and parts. ENOENT means the kernel gave up on
/// the request (interrupted): nobody waits for the answer any more.
fn write_dev(fd: &OwnedFd, header: &OutHeader, parts: &[&[u8]]) {
    // No allocation per reply: an answer has at most two parts (create).
    assert!(parts.len() <= 2, "a FUSE answer of more than two parts");
    let mut iov = [IoSlice::new(&[]); 3];
    iov[0] = IoSlice::new(header.as_bytes());
    for (slot, p) in iov[1..].iter_mut().zip(parts) {
        *slot = IoSlice::new(p);
    }
    let iov = &iov[..1 + parts.len()];
    loop {
        // SAFETY: IoSlice is ABI-compatible with iovec; the slices outlive the call.
        let n = unsafe {
            libc::writev(
                fd.as_raw_fd(),
                iov.as_ptr().cast::<libc::iovec>(),
                iov.len() as libc::c_int,
            )
        };
        if n >= 0 {
            return;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ENOENT) | Some(libc::ENODEV) => return,
            _ => {
                tracing::error!(error = %e, unique = header.unique, "writing a FUSE reply failed");
                return;
            }
        }
    }
}

/// A readdir or readdirplus answer as it fills, up to the size the kernel asked for.
pub struct Listing {
    buf: Vec<u8>,
    max: usize,
}

impl Listing {
    pub fn new(max: u32) -> Listing {
        Listing {
            buf: Vec::with_capacity((max as usize).min(64 * 1024)),
            max: max as usize,
        }
    }

    /// Adds an entry (with its lookup's answer, for readdirplus); false when
    /// it does not fit, and then nothing was added.
    pub fn push(
        &mut self,
        entry: Option<&abi::EntryOut>,
        ino: u64,
        off: u64,
        typ: u32,
        name: &[u8],
    ) -> bool {
        let fixed = entry.map_or(0, |_| size_of::<abi::EntryOut>()) + size_of::<abi::Dirent>();
        let len = (fixed + name.len()).next_multiple_of(8);
        if self.buf.len() + len > self.max {
            return false;
        }
        let start = self.buf.len();
        if let Some(e) = entry {
            self.buf.extend_from_slice(e.as_bytes());
        }
        let d = abi::Dirent {
            ino,
            off,
            namelen: name.len() as u32,
            typ,
        };
        self.buf.extend_from_slice(d.as_bytes());
        self.buf.extend_from_slice(name);
        self.buf.resize(start + len, 0);
        true
    }

    pub fn send(self, reply: Reply) {
        reply.data(&self.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_padded_to_eight_bytes_and_stop_at_the_size_asked() {
        let mut l = Listing::new(64);
        assert!(l.push(None, 5, 1, 8, b"abc"));
        assert_eq!(l.buf.len(), 32);
        // 24 + 13 bytes, padded to 40: over the 64 asked for, so left out whole.
        assert!(!l.push(None, 6, 2, 8, b"a-longer-name"));
        assert_eq!(l.buf.len(), 32);
        assert!(l.push(None, 6, 2, 8, b"b"));
        assert_eq!(l.buf.len(), 64);
        assert_eq!(&l.buf[24..27], b"abc");
    }
}
