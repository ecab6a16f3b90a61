//! What kind of failure an I/O error is, and which failed storage operations
//! are tried again, and when.
//!
//! The alerts name the same failures in their own vocabulary
//! (`policy::alert::Class` converts from [`Failure`]), so a storage alert and
//! the store's retry decision never disagree about an errno.

use std::io;
use std::time::Duration;

/// The kind of an I/O failure, as far as trying again and telling an
/// operator go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// May succeed when tried again (EIO on a network disk, a reset connection).
    TransientIo,
    /// Out of space or quota.
    Capacity,
    /// The storage says its structure is damaged, or bytes failed to decode.
    Corruption,
    /// Set up wrong: permissions, a missing directory, a bad name.
    Configuration,
    /// Did not finish in time.
    Timeout,
}

/// The failure an I/O error is, from its errno when it has one, otherwise
/// from its kind.
///
/// EIO is transient: on network and USB storage it often is, and the reads
/// that are retried re-verify what they get. A caller that knows better (a
/// checksum mismatch after the read succeeded) says so itself.
pub fn failure_of(err: &io::Error) -> Failure {
    if let Some(errno) = err.raw_os_error() {
        return failure_of_errno(errno);
    }
    match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Failure::Timeout,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge => {
            Failure::Capacity
        }
        // Our decoders report undecodable bytes as InvalidData.
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => Failure::Corruption,
        io::ErrorKind::PermissionDenied
        | io::ErrorKind::NotFound
        | io::ErrorKind::InvalidInput
        | io::ErrorKind::ReadOnlyFilesystem
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::AlreadyExists
        | io::ErrorKind::Unsupported => Failure::Configuration,
        _ => Failure::TransientIo,
    }
}

/// The failure an errno is.
pub fn failure_of_errno(errno: i32) -> Failure {
    match errno {
        libc::ENOSPC | libc::EDQUOT | libc::EFBIG => Failure::Capacity,
        // The kernel's "structure needs cleaning" and "bad message" are what
        // file systems return for damage they have detected.
        libc::EUCLEAN | libc::EBADMSG => Failure::Corruption,
        // A file system that turns read-only under a running writer has
        // almost always been remounted so by the kernel after errors
        // (errors=remount-ro): retrying cannot help and a human must look at
        // the disk, which is what the corruption class asks for. The errno
        // field of an alert still says EROFS.
        libc::EROFS => Failure::Corruption,
        libc::ETIMEDOUT | libc::ETIME => Failure::Timeout,
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
        | libc::ENAMETOOLONG => Failure::Configuration,
        // EIO, EAGAIN, EINTR, ESTALE, connection and network errors, and any
        // errno not named above: a later attempt may succeed.
        _ => Failure::TransientIo,
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

/// Whether an operation that failed this way may be tried again.
///
/// Only reads and whole-object uploads are retried, and only for transient
/// I/O and timeouts. A partial write is never retried: after a failed
/// write(2) or fsync(2) the kernel may already have written some of the bytes,
/// or dropped dirty pages it then reports clean, so writing again can
/// duplicate data at a shifted offset or leave a torn block that a later
/// fsync claims is durable. A failed partial write rolls back to the last
/// durable point instead (see the invariants in DESIGN.md). Capacity,
/// corruption and configuration failures do not go away by themselves.
pub fn may_retry(op: Operation, failure: Failure) -> bool {
    let op_ok = match op {
        Operation::Read | Operation::WholeObjectUpload => true,
        Operation::PartialWrite => false,
    };
    let failure_ok = match failure {
        Failure::TransientIo | Failure::Timeout => true,
        Failure::Capacity | Failure::Corruption | Failure::Configuration => false,
    };
    op_ok && failure_ok
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

/// Runs `attempt_once` until it succeeds, fails in a way `op` may not
/// retry, or the attempts are used up; each retry is logged with `what`.
pub fn retrying<T>(
    op: Operation,
    what: &str,
    mut attempt_once: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let mut attempt = 0;
    loop {
        let err = match attempt_once() {
            Err(e) if may_retry(op, failure_of(&e)) => e,
            other => return other,
        };
        attempt += 1;
        match retry_delay(attempt) {
            Some(pause) => {
                tracing::warn!(what, attempt, error = %err, "storage operation failed; retrying");
                std::thread::sleep(pause);
            }
            None => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_map_to_failures() {
        assert_eq!(failure_of_errno(libc::ENOSPC), Failure::Capacity);
        assert_eq!(failure_of_errno(libc::EDQUOT), Failure::Capacity);
        assert_eq!(failure_of_errno(libc::EIO), Failure::TransientIo);
        assert_eq!(failure_of_errno(libc::EROFS), Failure::Corruption);
        assert_eq!(failure_of_errno(libc::ETIMEDOUT), Failure::Timeout);
        assert_eq!(failure_of_errno(libc::EACCES), Failure::Configuration);
        assert_eq!(failure_of_errno(libc::EUCLEAN), Failure::Corruption);
        let e = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(failure_of(&e), Failure::Capacity);
        assert_eq!(
            failure_of(&io::Error::new(io::ErrorKind::TimedOut, "x")),
            Failure::Timeout
        );
        assert_eq!(
            failure_of(&io::Error::new(io::ErrorKind::InvalidData, "x")),
            Failure::Corruption
        );
    }

    #[test]
    fn only_reads_and_whole_uploads_of_transient_failures_retry() {
        assert!(may_retry(Operation::Read, Failure::TransientIo));
        assert!(may_retry(Operation::WholeObjectUpload, Failure::Timeout));
        assert!(!may_retry(Operation::PartialWrite, Failure::TransientIo));
        assert!(!may_retry(Operation::PartialWrite, Failure::Timeout));
        assert!(!may_retry(Operation::Read, Failure::Capacity));
        assert!(!may_retry(Operation::Read, Failure::Corruption));
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
