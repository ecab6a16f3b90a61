//! A mounted repository's side of strata: the control socket the CLI talks
//! to ([`control`]), the storage watch that raises alerts ([`watch`]), the
//! daemon's command line ([`mount_args`]) and the secrets handed to it
//! ([`secrets`]). The FUSE adapter itself lives in the `strata-mountd`
//! package.
//!
//! The top of the library: it may use every layer below.

pub mod control;
pub mod mount_args;
pub mod secrets;
pub mod watch;
