//! Failure classes and what may be retried.

use std::io;
use std::time::Duration;

use super::event::Class;

/// The class of an I/O error, from its errno when it has one, otherwise from
/// its kind.
///
/// EIO is classed as transient: on network and USB storage it often is, and
/// the reads that are retried re-verify what they get. A caller that knows
/// better (a checksum mismatch after the read succeeded, a pack that fails to
/// decode) overrides the class with [`super::Event::with_class`].
pub fn classify(err: &io::Error) -> Class {
    if let Some(errno) = err.raw_os_error() {
        return classify_errno(errno);
    }
    match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Class::Timeout,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge => {
            Class::Capacity
        }
        // Our decoders report undecodable bytes as InvalidData.
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => Class::Corruption,
        io::ErrorKind::PermissionDenied
        | io::ErrorKind::NotFound
        | io::ErrorKind::InvalidInput
        | io::ErrorKind::ReadOnlyFilesystem
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::AlreadyExists
        | io::ErrorKind::Unsupported => Class::Configuration,
        _ => Class::TransientIo,
    }
}

/// The class of an errno.
pub fn classify_errno(errno: i32) -> Class {
    match errno {
        libc::ENOSPC | libc::EDQUOT | libc::EFBIG => Class::Capacity,
        // The kernel's "structure needs cleaning" and "bad message" are what
        // file systems return for damage they have detected.
        libc::EUCLEAN | libc::EBADMSG => Class::Corruption,
        // A file system that turns read-only under a running writer has
        // almost always been remounted so by the kernel after errors
        // (errors=remount-ro): retrying cannot help and a human must look at
        // the disk, which is what the corruption class asks for. The errno
        // field of the event still says EROFS.
        libc::EROFS => Class::Corruption,
        libc::ETIMEDOUT | libc::ETIME => Class::Timeout,
        libc::EACCES
        | libc::EPERM
        | libc::ENOENT
        | libc::ENOTDIR
        | libc::EISDIR
        | libc::EINVAL
        | libc::EEXIST
        | libc::ENOTSUP
        | libc::EXDEV
        | libc::ELOOP
        | libc::ENAMETOOLONG => Class::Configuration,
        // EIO, EAGAIN, EINTR, ESTALE, connection and network errors, and any
        // errno not named above: a later attempt may succeed.
        _ => Class::TransientIo,
    }
}

/// The kinds of storage operation, as far as retrying goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Reading bytes that are already durable.
    Read,
    /// Uploading a complete object in one request (a pack to an object
    /// store), where the store either has all of it or none.
    WholeObjectUpload,
    /// Writing part of a file (appending to a pack, a staging file, the index).
    PartialWrite,
}

/// How many times a retryable operation is tried in all.
pub const MAX_ATTEMPTS: u32 = 4;

/// Whether an operation that failed with `class` may be tried again.
///
/// Only reads and whole-object uploads are retried, and only for transient
/// I/O and timeouts. A partial write is never retried: after a failed
/// write(2) or fsync(2) the kernel may already have written some of the bytes,
/// or dropped dirty pages it then reports clean, so writing again can
/// duplicate data at a shifted offset or leave a torn block that a later
/// fsync claims is durable. A failed partial write rolls back to the last
/// durable point instead (see the invariants in DESIGN.md). Capacity,
/// corruption and configuration failures do not go away by themselves.
pub fn may_retry(op: Operation, class: Class) -> bool {
    let op_ok = match op {
        Operation::Read | Operation::WholeObjectUpload => true,
        Operation::PartialWrite => false,
    };
    let class_ok = match class {
        Class::TransientIo | Class::Timeout => true,
        Class::Capacity | Class::Corruption | Class::Configuration | Class::Hook | Class::Copy => {
            false
        }
    };
    op_ok && class_ok
}

/// The pause before attempt `attempt` (1 = the first retry), or `None` when
/// the attempts are used up: 200 ms doubling, capped at 5 s, with up to 50 %
/// random jitter so that several clients do not retry in step.
pub fn retry_delay(attempt: u32) -> Option<Duration> {
    if attempt == 0 || attempt >= MAX_ATTEMPTS {
        return None;
    }
    let base = (200u64 << (attempt - 1).min(10)).min(5_000);
    let jitter = rand::random_range(0..=base / 2);
    Some(Duration::from_millis(base + jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_map_to_classes() {
        assert_eq!(classify_errno(libc::ENOSPC), Class::Capacity);
        assert_eq!(classify_errno(libc::EDQUOT), Class::Capacity);
        assert_eq!(classify_errno(libc::EIO), Class::TransientIo);
        assert_eq!(classify_errno(libc::EROFS), Class::Corruption);
        assert_eq!(classify_errno(libc::ETIMEDOUT), Class::Timeout);
        assert_eq!(classify_errno(libc::EACCES), Class::Configuration);
        assert_eq!(classify_errno(libc::EUCLEAN), Class::Corruption);
        let e = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(classify(&e), Class::Capacity);
        assert_eq!(
            classify(&io::Error::new(io::ErrorKind::TimedOut, "x")),
            Class::Timeout
        );
        assert_eq!(
            classify(&io::Error::new(io::ErrorKind::InvalidData, "x")),
            Class::Corruption
        );
    }

    #[test]
    fn only_reads_and_whole_uploads_of_transient_failures_retry() {
        assert!(may_retry(Operation::Read, Class::TransientIo));
        assert!(may_retry(Operation::WholeObjectUpload, Class::Timeout));
        assert!(!may_retry(Operation::PartialWrite, Class::TransientIo));
        assert!(!may_retry(Operation::PartialWrite, Class::Timeout));
        assert!(!may_retry(Operation::Read, Class::Capacity));
        assert!(!may_retry(Operation::Read, Class::Corruption));
    }

    #[test]
    fn retry_delays_grow_and_stop() {
        let d1 = retry_delay(1).unwrap();
        let d3 = retry_delay(3).unwrap();
        assert!(d1 >= Duration::from_millis(200) && d1 <= Duration::from_millis(300));
        assert!(d3 >= Duration::from_millis(800) && d3 <= Duration::from_millis(1200));
        assert_eq!(retry_delay(MAX_ATTEMPTS), None);
        assert_eq!(retry_delay(0), None);
    }
}
