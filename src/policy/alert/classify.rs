//! The alert class of an I/O failure: the store decides what kind of
//! failure an errno is ([`crate::store::io::retry`]); an alert names it.

use std::io;

use super::event::Class;
use crate::store::io::retry::{failure_of, failure_of_errno, Failure};

impl From<Failure> for Class {
    fn from(failure: Failure) -> Class {
        match failure {
            Failure::TransientIo => Class::TransientIo,
            Failure::Capacity => Class::Capacity,
            Failure::Corruption => Class::Corruption,
            Failure::Configuration => Class::Configuration,
            Failure::Timeout => Class::Timeout,
        }
    }
}

/// The class of an I/O error. A caller that knows better (a checksum
/// mismatch after the read succeeded, a pack that fails to decode)
/// overrides it with [`super::Event::with_class`].
pub fn classify(err: &io::Error) -> Class {
    failure_of(err).into()
}

/// The class of an errno.
pub fn classify_errno(errno: i32) -> Class {
    failure_of_errno(errno).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_and_retries_class_an_errno_alike() {
        assert_eq!(classify_errno(libc::ENOSPC), Class::Capacity);
        assert_eq!(classify_errno(libc::EROFS), Class::Corruption);
        assert_eq!(classify_errno(libc::EIO), Class::TransientIo);
        let e = io::Error::new(io::ErrorKind::TimedOut, "x");
        assert_eq!(classify(&e), Class::Timeout);
    }
}
