//! The file trees, bottom up: the types every part shares ([`types`]),
//! the objects snapshots are stored as ([`objects`]) and the records of the
//! runs that took them ([`record`]); the read path ([`reader`]); the
//! mutable head that writers fill ([`head`]); the immutable snapshots taken
//! of it ([`snapshot`], a sibling that uses the head's API); and the
//! namespace a mount shows (`head/`, `snapshots/`: [`namespace`]); two
//! trees compared ([`diff`]) and the catalog of every path of every
//! snapshot built from those comparisons ([`catalog`]).
//!
//! Built on [`crate::store`]; imports nothing from policy, ops or the daemon.

pub mod audit;
pub mod catalog;
pub mod classify;
pub mod diff;
pub mod head;
pub mod namespace;
pub mod objects;
pub mod reader;
pub mod record;
pub mod snapshot;
pub mod types;
