//! Operations over a whole repository, run by the CLI or the daemon: verify
//! ([`check`]), rebuild what can be rebuilt ([`repair`]), and apply
//! retention ([`forget`]).
//!
//! May use the store, the trees and the policies; imports nothing from the
//! daemon.

pub mod check;
pub mod forget;
pub mod repair;
