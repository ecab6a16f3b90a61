//! What a backup run leaves with its snapshot: the status that decides
//! whether `latest` may point at it, and every hook's outcome; and a
//! snapshot as the CLI, the daemon and backup runs exchange it
//! ([`SnapshotInfo`]).
//!
//! The record is stored in the index beside the snapshot and as an object
//! in the packs (so an index rebuilt from packs keeps it); a later revision
//! of the same run (after validation) replaces an earlier one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tree::objects::{SnapshotRecord, SnapshotRow};

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
    /// What an earlier failed run had left in head/ when this run began:
    /// its snapshot holds that too. Last, and absent from records written
    /// before it existed (see [`trailing`]).
    #[serde(default, deserialize_with = "trailing")]
    pub leftovers: Option<Leftovers>,
    /// What the write throttle saw from the run's start to its snapshot.
    /// Last, and absent from records written before it existed.
    #[serde(default, deserialize_with = "trailing")]
    pub io: Option<RunIo>,
}

/// The write throttle over a backup run: what the copy wrote into head/
/// and how long it was held back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIo {
    /// Bytes written into head/.
    pub written_bytes: u64,
    /// Requests told to wait.
    pub delayed_requests: u64,
    /// Milliseconds of delay handed out, summed over the writers.
    pub delay_ms: u64,
    /// The byte limit in force when the snapshot was taken, if any.
    pub limit_bytes_per_sec: Option<u64>,
}

/// A failed run's partial copy still in head/: the head keeps this
/// marker until `strata head reset` or the next run's snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftovers {
    /// The failed run's id.
    pub run: String,
    /// Its label.
    pub label: Option<String>,
    /// When it started, seconds since the epoch.
    pub started: i64,
    /// Why it failed.
    pub why: String,
    /// The newest good snapshot when it started: what head/ can be reset to.
    pub last_good: Option<String>,
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let started =
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.started.max(0) as u64);
        write!(
            f,
            "failed run {} (label {}, started {}): {}",
            self.run,
            self.label.as_deref().unwrap_or("(none)"),
            humantime::format_rfc3339_seconds(started),
            self.why
        )
    }
}

/// Reads an optional last field that older records lack. JSON reports a
/// missing field (and `default` applies); postcard, which stores run
/// records in the index and the packs, has no field names and simply runs
/// out of bytes there, which means absent (the records are sealed, so
/// running out is never damage).
fn trailing<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    if d.is_human_readable() {
        return Option::<T>::deserialize(d);
    }
    Ok(Option::<T>::deserialize(d).unwrap_or(None))
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

/// A snapshot as `strata snapshot list|show` print it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Sequence number.
    pub seq: u64,
    /// Directory name under snapshots/ (UTC time).
    pub name: String,
    /// Seconds since the epoch.
    pub time: i64,
    /// Label.
    pub label: Option<String>,
    /// Record id.
    pub id: String,
    /// Previous record id (the hash chain).
    pub prev: Option<String>,
    /// Root tree id.
    pub root_tree: Option<String>,
    /// Directories serialized.
    pub dirs_serialized: u64,
    /// Directories reused unchanged.
    pub dirs_reused: u64,
    /// Who took it.
    pub caller_uid: u32,
    /// complete, pending, validated, inconsistent or failed.
    #[serde(default = "complete")]
    pub status: String,
    /// The backup run that took it: hook outcomes, consistency points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunRecord>,
    /// The legal hold it is under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldInfo>,
    /// Every hold and release, oldest first (`snapshot show` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hold_history: Vec<HoldChange>,
}

/// A legal hold on a snapshot, as `strata snapshot show` and `list` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldInfo {
    /// When it was placed, in seconds since the epoch.
    pub since: i64,
    /// Who placed it.
    pub uid: u32,
    /// Why, as given.
    pub reason: String,
}

/// One hold placed or released: who, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldChange {
    /// Placed (true) or released (false).
    pub held: bool,
    /// When, in seconds since the epoch.
    pub time: i64,
    /// Who: user, group and process.
    pub uid: u32,
    /// The caller's group.
    pub gid: u32,
    /// The caller's process.
    pub pid: u32,
    /// Why, as given.
    pub reason: String,
}

fn complete() -> String {
    RunStatus::Complete.as_str().to_owned()
}

impl SnapshotInfo {
    /// The info of a stored snapshot.
    pub fn of(row: &SnapshotRow, run: Option<RunRecord>) -> SnapshotInfo {
        let r: &SnapshotRecord = &row.record;
        SnapshotInfo {
            seq: r.seq,
            name: r.name(),
            time: r.time.secs,
            label: r.label.clone(),
            id: hex::encode(row.id),
            prev: r.prev.map(hex::encode),
            root_tree: r.root.subtree.map(hex::encode),
            dirs_serialized: r.stats.dirs_serialized,
            dirs_reused: r.stats.dirs_reused,
            caller_uid: r.caller.0,
            status: run
                .as_ref()
                .map_or(RunStatus::Complete, |r| r.status)
                .as_str()
                .to_owned(),
            run,
            hold: None,
            hold_history: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(leftovers: Option<Leftovers>) -> RunRecord {
        RunRecord {
            run: "r1".into(),
            revision: 2,
            status: RunStatus::Validated,
            latest: true,
            started: 1_700_000_000,
            copy: HookOutcome::default(),
            hooks: Vec::new(),
            leftovers,
            io: None,
        }
    }

    /// The fields of a run record before `leftovers` existed, in order.
    #[derive(Serialize)]
    struct Before {
        run: String,
        revision: u32,
        status: RunStatus,
        latest: bool,
        started: i64,
        copy: HookOutcome,
        hooks: Vec<HookOutcome>,
    }

    #[test]
    fn records_written_before_leftovers_existed_still_read() {
        let old = Before {
            run: "r1".into(),
            revision: 2,
            status: RunStatus::Validated,
            latest: true,
            started: 1_700_000_000,
            copy: HookOutcome::default(),
            hooks: Vec::new(),
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        assert_eq!(
            postcard::from_bytes::<RunRecord>(&bytes).unwrap(),
            record(None)
        );
        let json = serde_json::to_string(&old).unwrap();
        assert_eq!(
            serde_json::from_str::<RunRecord>(&json).unwrap(),
            record(None)
        );
    }

    #[test]
    fn records_written_before_io_existed_still_read_and_io_round_trips() {
        #[derive(Serialize)]
        struct BeforeIo {
            run: String,
            revision: u32,
            status: RunStatus,
            latest: bool,
            started: i64,
            copy: HookOutcome,
            hooks: Vec<HookOutcome>,
            leftovers: Option<Leftovers>,
        }
        let old = BeforeIo {
            run: "r1".into(),
            revision: 2,
            status: RunStatus::Validated,
            latest: true,
            started: 1_700_000_000,
            copy: HookOutcome::default(),
            hooks: Vec::new(),
            leftovers: None,
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        assert_eq!(
            postcard::from_bytes::<RunRecord>(&bytes).unwrap(),
            record(None)
        );
        let mut rec = record(None);
        rec.io = Some(RunIo {
            written_bytes: 5 << 30,
            delayed_requests: 17,
            delay_ms: 91_000,
            limit_bytes_per_sec: Some(50 << 20),
        });
        let bytes = postcard::to_allocvec(&rec).unwrap();
        assert_eq!(postcard::from_bytes::<RunRecord>(&bytes).unwrap(), rec);
    }

    #[test]
    fn leftovers_round_trip_and_bad_json_is_an_error() {
        let l = Leftovers {
            run: "r0".into(),
            label: Some("nightly".into()),
            started: 1_699_999_000,
            why: "the copy command rsync: exit 23".into(),
            last_good: Some("2026-11-22T02:00:00Z".into()),
        };
        let rec = record(Some(l));
        let bytes = postcard::to_allocvec(&rec).unwrap();
        assert_eq!(postcard::from_bytes::<RunRecord>(&bytes).unwrap(), rec);
        let json = serde_json::to_string(&rec).unwrap();
        assert_eq!(serde_json::from_str::<RunRecord>(&json).unwrap(), rec);
        let bad = json.replace("\"why\"", "\"whence\"");
        assert!(serde_json::from_str::<RunRecord>(&bad).is_err());
    }
}
