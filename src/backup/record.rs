//! What a backup run leaves with its snapshot: the status that decides
//! whether `latest` may point at it, and every hook's outcome.
//!
//! The record is stored in the index beside the snapshot and as an object
//! in the packs (so an index rebuilt from packs keeps it); a later revision
//! of the same run (after validation) replaces an earlier one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How far a snapshot can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Taken; validation hooks have not finished yet.
    Pending,
    /// Every hook succeeded and there was nothing to validate.
    Complete,
    /// Validation hooks passed.
    Validated,
    /// A hook whose policy is `mark-inconsistent` failed: the snapshot is
    /// kept but its application data may not be consistent.
    Inconsistent,
    /// Validation failed: kept for inspection, never `latest`.
    Failed,
}

impl RunStatus {
    /// The name `strata snapshot list` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Complete => "complete",
            RunStatus::Validated => "validated",
            RunStatus::Inconsistent => "inconsistent",
            RunStatus::Failed => "failed",
        }
    }

    /// Whether a snapshot with this status is trusted as a restore point.
    pub fn is_good(self) -> bool {
        matches!(self, RunStatus::Complete | RunStatus::Validated)
    }
}

/// The phase a hook runs in, in the order of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the copy (session hooks start here and end before the snapshot).
    PreBackup,
    /// After the copy, before the snapshot.
    PostBackup,
    /// Against the finished snapshot.
    Validate,
    /// After the snapshot's status is final.
    PostSnapshot,
    /// After any failure.
    OnFailure,
}

impl Phase {
    /// The name used in strata.toml and in `STRATA_PHASE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PreBackup => "pre_backup",
            Phase::PostBackup => "post_backup",
            Phase::Validate => "validate",
            Phase::PostSnapshot => "post_snapshot",
            Phase::OnFailure => "on_failure",
        }
    }
}

/// One hook's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookOutcome {
    /// Its name in strata.toml.
    pub name: String,
    /// Its phase (`None` for the copy command itself).
    pub phase: Option<Phase>,
    /// Whether it was a session hook.
    pub session: bool,
    /// Exit status of the last attempt, if it exited.
    pub exit: Option<i32>,
    /// Signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Whether it was killed for running past its timeout.
    pub timed_out: bool,
    /// Attempts made (more than one only for idempotent hooks with retries).
    pub attempts: u32,
    /// Wall time of all attempts, in milliseconds.
    pub millis: u64,
    /// The end of its standard output.
    pub stdout: String,
    /// The end of its standard error.
    pub stderr: String,
    /// `key=value` lines it printed: its consistency point.
    pub points: BTreeMap<String, String>,
    /// Why it counts as failed; `None` if it succeeded.
    pub error: Option<String>,
}

impl HookOutcome {
    /// Whether it succeeded.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// A backup run, as stored with its snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id (also in logs, alerts and hook environments).
    pub run: String,
    /// Revision: each update of the same run counts up; the highest wins.
    pub revision: u32,
    /// Status.
    pub status: RunStatus,
    /// Whether `latest` and the label may point at this snapshot (status
    /// good, or the host policy moves them regardless).
    pub latest: bool,
    /// When the run started, seconds since the epoch.
    pub started: i64,
    /// The copy command's outcome.
    pub copy: HookOutcome,
    /// Every hook run so far, in order.
    pub hooks: Vec<HookOutcome>,
}

impl RunRecord {
    /// All consistency points, as `hook.key`.
    pub fn points(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for h in &self.hooks {
            for (k, v) in &h.points {
                out.insert(format!("{}.{k}", h.name), v.clone());
            }
        }
        out
    }
}
