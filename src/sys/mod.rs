//! What strata needs from the operating system, used by every layer above:
//! starting and stopping programs and catching signals ([`process`]), locks
//! that outlive a panic in one request ([`sync`]), a thread's I/O priority
//! ([`ioprio`]), the directories repositories are mounted on
//! ([`mountpoint`]), and the lock that lets one backup run at a time
//! ([`runlock`]), an error shown with its causes ([`chain`]), and the
//! CPUs the process may use ([`cpus`]).
//!
//! Imports nothing from the rest of the crate.

pub mod chain;
pub mod cpus;
pub mod ioprio;
pub mod mountpoint;
pub mod process;
pub mod runlock;
pub mod sync;
