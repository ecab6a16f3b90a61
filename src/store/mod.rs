//! The repository on disk: the format's constants ([`format`]), ids,
//! keys and sealing ([`crypto`]), the content-defined chunker, packs, the
//! redb index, all durable I/O behind one seam ([`io`]), the chunk store that
//! ties them together ([`chunks`]), the repository that a key opens
//! ([`repo`]) and the retention lock its configuration carries.
//!
//! Knows nothing of files or directories: it stores and returns sealed
//! objects by id. Imports only from [`crate::sys`].

pub mod chunker;
pub mod chunks;
pub mod config;
pub mod crypto;
pub mod format;
pub mod id;
pub mod index;
pub mod io;
pub mod pack;
pub mod pipeline;
pub mod repo;
pub mod retention_lock;
pub mod stats;
pub mod uploads;
