//! Which snapshots a retention policy keeps, and why.
//!
//! The vocabulary is restic's (`keep-last`, `keep-hourly` … `keep-yearly`,
//! `keep-within`, `keep-label`), with its meaning: each rule keeps some
//! snapshots, a snapshot is kept when any rule keeps it, and the reasons
//! are reported. Calendar buckets (hour, day, ISO week, month, year) are
//! taken in one named time zone, so a snapshot at 00:30 local time counts
//! for the day it was taken on where the administrator lives.
//!
//! Only good snapshots (taken outside a backup run, or by one that
//! completed or validated) count for a rule: a failed, inconsistent or
//! still pending one is never anybody's daily. Those are kept for
//! inspection for [`Policy::inspect`] and then removed. Whatever the
//! rules say, a snapshot under a legal hold or inside its retention lock
//! is kept, and so is the newest good snapshot (`latest`).

mod config;
mod decide;
mod policy;

pub use config::{RetentionConfig, RetentionConfigError};
pub use decide::{decide, Bucket, Candidate, Reason, Verdict};
pub use policy::{Policy, PolicyError};
