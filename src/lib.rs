//! strata: a versioned, deduplicated, encrypted backup filesystem.
//!
//! This library is the engine. The `strata` CLI and the `strata-mountd` FUSE
//! daemon only translate their inputs into calls of this API.

#![warn(missing_docs)]

pub mod alert;
pub mod backend;
pub mod backup;
pub mod check;
pub mod chunker;
pub mod codec;
pub mod config;
pub mod control;
pub mod crypto;
pub mod exit;
pub mod format;
pub mod head;
pub mod hostconfig;
pub mod id;
pub mod index;
pub mod mount_args;
pub mod mountpoint;
pub mod namespace;
pub mod pack;
pub mod process;
pub mod repair;
pub mod repo;
pub mod secrets;
pub mod stats;
pub mod storage;
pub mod store;
pub mod sync;
pub mod throttle;
pub mod watch;
