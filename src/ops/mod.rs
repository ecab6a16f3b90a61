//! Operations over a whole repository, run by the CLI or the daemon: verify
//! ([`check`]), rebuild what can be rebuilt ([`repair`]), apply retention
//! ([`forget`]) and collect the garbage it leaves ([`prune`]).
//!
//! May use the store, the trees and the policies; imports nothing from the
//! daemon.

pub mod check;
pub mod forget;
pub mod prune;
pub mod repair;
