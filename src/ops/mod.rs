//! Operations over a whole repository, run by the CLI or the daemon: verify
//! ([`check`]) and rebuild what can be rebuilt ([`repair`]).
//!
//! May use the store and the trees; imports nothing from policy or the daemon.

pub mod check;
pub mod repair;
