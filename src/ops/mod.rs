//! Operations over a whole repository, run by the CLI or the daemon: verify
//! ([`check`]), rebuild what can be rebuilt ([`repair`]), apply retention
//! ([`forget`]), collect the garbage it leaves ([`prune`]), prove that
//! snapshots restore in time ([`drill`]), copy them off the machine
//! ([`replicate`]) and tell how it all goes
//! ([`metrics`]).
//!
//! May use the store, the trees and the policies; imports nothing from the
//! daemon.

pub mod audit;
pub mod check;
pub mod drill;
pub mod forget;
pub mod metrics;
pub mod prune;
pub mod repair;
pub mod replicate;
pub mod report;
