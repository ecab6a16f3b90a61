//! The classic transport: threads reading requests from /dev/fuse, each on
//! a descriptor of its own (FUSE_DEV_IOC_CLONE), so the kernel can wake
//! the thread that is waiting instead of all of them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use super::reply::{Reply, To};
use super::request::split_joined;
use super::{dispatch, Serve};

/// `_IOR(229, 0, uint32_t)`: attach a new /dev/fuse descriptor to a connection.
const FUSE_DEV_IOC_CLONE: libc::c_ulong = 0x8004_e500;

/// A new descriptor on the connection of `dev`; a plain duplicate if the
/// kernel cannot clone.
pub fn clone_dev(dev: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: a constant NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return dev.try_clone_to_owned();
    }
    // SAFETY: just opened, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut id = dev.as_raw_fd() as u32;
    // SAFETY: the ioctl reads one u32 from a live variable.
    if unsafe { libc::ioctl(fd.as_raw_fd(), FUSE_DEV_IOC_CLONE, &mut id) } != 0 {
        return dev.try_clone_to_owned();
    }
    Ok(fd)
}

/// Reads and serves requests until the connection ends (unmount: ENODEV).
pub fn run(fd: Arc<OwnedFd>, fs: &dyn Serve, bufsize: usize) -> io::Result<()> {
    let mut buf = vec![0u8; bufsize];
    loop {
        // SAFETY: reads into a live buffer of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // Interrupted, or the request was withdrawn before we read it.
                Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOENT) => continue,
                Some(libc::ENODEV) => return Ok(()),
                _ => return Err(e),
            }
        }
        let Some((h, body)) = split_joined(&buf[..n as usize]) else {
            tracing::error!(
                bytes = n,
                "a FUSE request is shorter than its header says; dropped"
            );
            continue;
        };
        dispatch(fs, &h, body, Reply::new(h.unique, To::Dev(fd.clone())));
    }
}
