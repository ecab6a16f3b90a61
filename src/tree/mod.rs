//! The file trees: the mutable head that writers fill ([`head`]), the
//! immutable snapshots taken of it and the records of the runs that took
//! them ([`record`]), and the namespace a mount shows (`head/`,
//! `snapshots/`: [`namespace`]).
//!
//! Built on [`crate::store`]; imports nothing from policy, ops or the daemon.

pub mod head;
pub mod namespace;
pub mod record;
