//! strata: a versioned, deduplicated, encrypted backup filesystem.
//!
//! This library is the engine. The `strata` CLI and the `strata-mountd` FUSE
//! daemon only translate their inputs into calls of this API.
//!
//! One folder per layer, bottom up; a layer imports only from the layers
//! listed before it (`tests/layers.rs` fails on an import that points up):
//!
//! | layer | owns |
//! |---|---|
//! | [`sys`] | the operating system: child programs and signals, locks that survive a panic, mount points |
//! | [`store`] | the repository on disk: format, ids, keys and sealing, chunker, packs, index, the I/O seam, the chunk store |
//! | [`tree`] | the file trees: the mutable head, snapshots and runs, the namespace the mount shows |
//! | [`policy`] | what runs around writes: backup runs and hooks, throttling, alerts, the host configuration |
//! | [`ops`] | operations over a whole repository: check, repair |
//! | [`exit`] | exit codes, and the code of each top-level error of the layers below, by an exhaustive match |
//! | [`daemon`] | the mounted repository's control socket, storage watch, the daemon's arguments, secrets |

#![warn(missing_docs)]

pub mod daemon;
pub mod exit;
pub mod ops;
pub mod policy;
pub mod store;
pub mod sys;
pub mod tree;

/// What a unit test needs beyond the engine (root, for one): the test tiers
/// shared with the integration tests.
#[cfg(test)]
#[path = "../tests/common/tier.rs"]
mod tier;
