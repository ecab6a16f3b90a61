//! Requests the CLI makes of a repository: served by the daemon over its
//! control socket while the repository is mounted, and by the CLI itself
//! when it is not. One JSON line each way; the daemon identifies the
//! caller with SO_PEERCRED and records it with the request.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::audit::Via;
use crate::exit::{ExitCode, Reported};
use crate::ops::audit;
use crate::ops::check::{check_all, CheckError, CheckReport, ReadData};
use crate::ops::drill::estimate::{estimate, Estimate};
use crate::ops::drill::plan::Plan;
use crate::ops::drill::source::{EngineSource, MountSource, Source};
use crate::ops::drill::{self, DrillContext, DrillError, DrillProgress, DrillSpec};
use crate::ops::forget::{self, ForgetError, ForgetReport, Selection};
use crate::ops::metrics::{gather, DaemonState, MetricsError};
use crate::ops::prune::{
    prune, PruneContext, PruneError, PruneOptions, PruneProgress, PruneReport,
};
use crate::policy::hostconfig::HostConfig;
use crate::policy::retention::RetentionConfig;
use crate::policy::throttle::{Limits, Throttle, ThrottleStatus};
use crate::store::io::writeback::WritebackStatus;
use crate::sys::chain::Chain;
use crate::sys::sync::Recover;
use crate::tree::catalog::query::{FindSpec, Found};
use crate::tree::catalog::{Catalog, Cost};
use crate::tree::namespace::{may_be_latest, Namespace};
use crate::tree::objects::SnapshotRow;
use crate::tree::record::{HoldChange, HoldInfo, Leftovers, RunRecord, SnapshotInfo};
use crate::tree::snapshot::drills::DrillRecord;
use crate::tree::snapshot::holds::HoldEvent;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{Caller, FsError};

/// What to do when a snapshot failed for a storage failure.
const AFTER_STORAGE_FAILURE: &str = "free space on, or repair, the disk the repository is on (`df`, `dmesg`), then `strata umount` and `strata mount` again: the head comes back at its last commit; copy again and take the snapshot then";

/// A control request that failed, on either side of the socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No snapshot answers to the number, name or label.
    #[error("no snapshot {0:?}: see `strata snapshot list`")]
    NoSnapshot(String),
    /// A hold on a snapshot that is held already.
    #[error("snapshot {seq} is already under a legal hold (placed {since} by uid {uid}: {reason:?}); nothing changed")]
    AlreadyHeld {
        /// The snapshot.
        seq: u64,
        /// When the hold was placed (RFC 3339).
        since: String,
        /// Who placed it.
        uid: u32,
        /// Why.
        reason: String,
    },
    /// A release of a snapshot that is not held.
    #[error("snapshot {0} is not under a legal hold; nothing changed (`strata snapshot list` shows which are)")]
    NotHeld(u64),
    /// A hold or release without a reason.
    #[error("a legal hold and its release each need a reason (--reason TEXT), which is recorded with who gave it; nothing changed")]
    NoReason,
    /// The head or the snapshots failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Forgetting refused or failed.
    #[error(transparent)]
    Forget(#[from] ForgetError),
    /// Garbage collection stopped.
    #[error(transparent)]
    Prune(#[from] PruneError),
    /// A drill did not run to its verdict.
    #[error(transparent)]
    Drill(#[from] DrillError),
    /// A check did not run to its report.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// Metrics could not be gathered.
    #[error("gathering metrics")]
    Metrics(#[from] MetricsError),
    /// The host configuration cannot be used.
    #[error(transparent)]
    HostConfig(#[from] Box<crate::policy::hostconfig::HostConfigError>),
    /// `strata replicate` without replicas.
    #[error("no [[replica]] in the host configuration: declare one (name and to, a directory or s3://BUCKET/PREFIX; see strata.toml(5))")]
    NoReplicas,
    /// `strata replicate NAME` naming none.
    #[error("no [[replica]] named {0:?} in the host configuration (see strata.toml(5))")]
    NoReplica(String),
    /// A replica could not be used.
    #[error(transparent)]
    Replica(#[from] Box<crate::ops::replicate::ReplicaFailed>),
    /// No drill has the number.
    #[error("no drill {0}: see `strata drill list`")]
    NoDrill(u64),
    /// A throttle request without a daemon.
    #[error(
        "the repository is not mounted: throttling governs the daemon's write path; mount it first"
    )]
    NotMounted,
    /// A `find` pattern that does not compile.
    #[error("{0}; nothing was searched")]
    BadPattern(String),
    /// A `tier show` path that is not written from the root of head/.
    #[error("{0:?} is not a path from the root of head/: write it as /DIR/NAME (as it appears below MOUNTPOINT/head/)")]
    NotFromHead(String),
    /// A `tier show` path that head/ does not hold.
    #[error("head/ holds nothing at {0:?}; `ls MOUNTPOINT/head/` shows what it holds")]
    NotInHead(String),
    /// `tier show` without tiers.
    #[error("nothing is classified: the host configuration in use (the daemon's, when mounted) has no [[tier]]; add tiers (see strata.toml(5)) and, if mounted, mount again")]
    NoTiers,
    /// A path that is not absolute.
    #[error("{0:?} is not a path from a snapshot's root: write it as /DIR/NAME (as it appears below MOUNTPOINT/snapshots/NAME/)")]
    NotAbsolute(String),
    /// `diff A B PATH` where neither snapshot holds PATH.
    #[error("neither snapshot {from} nor {to} holds {path}; `strata find --path '{path}'` shows where it was")]
    NoSuchPath {
        /// The path.
        path: String,
        /// The older snapshot's name.
        from: String,
        /// The newer snapshot's name.
        to: String,
    },
    /// `head reset` named no snapshot.
    #[error("head/ was not reset: no snapshot {0:?}: see `strata snapshot list`")]
    NoResetTarget(String),
    /// `head reset` while files in head/ are open.
    #[error("head/ was not reset: files in {mnt}/head/ are open; find the processes with `fuser -vm {mnt}`, let them end (or stop them), and run `strata head reset` again")]
    ResetBusy {
        /// The mountpoint, or "MOUNTPOINT" when unmounted.
        mnt: String,
    },
    /// Resetting head/ failed.
    #[error("resetting head/")]
    Reset(#[source] FsError),
    /// No snapshot: the store refuses writes since one failed.
    #[error("no snapshot taken: the head turned read-only after a storage failure ({reason}), so what was written into head/ since its last commit is not stored; {AFTER_STORAGE_FAILURE}")]
    StoreFailed {
        /// The store's account of the failure.
        reason: String,
    },
    /// No snapshot: writing it failed on the disk.
    #[error(
        "no snapshot taken: writing it to the repository failed ({0}); {AFTER_STORAGE_FAILURE}"
    )]
    SnapshotNotStored(#[source] FsError),
    /// The mountpoint is in use, so the daemon did not unmount.
    #[error("{mnt} is busy: a process has a file open or its working directory in it; find it with `fuser -vm {mnt}`, end it, and run `strata umount` again")]
    UnmountBusy {
        /// The mountpoint.
        mnt: String,
    },
    /// Unmounting failed otherwise.
    #[error("cannot unmount {mnt}")]
    Unmount {
        /// The mountpoint.
        mnt: String,
        /// Why.
        source: std::io::Error,
    },
    /// The request line does not parse.
    #[error("malformed request")]
    MalformedRequest(#[source] serde_json::Error),
    /// SO_PEERCRED failed.
    #[error("reading the caller's credentials")]
    Credentials(#[source] std::io::Error),
    /// The daemon's socket exists but does not take a connection.
    #[error("connecting to the daemon at {}", .socket.display())]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A quick question got no answer in time.
    #[error("the daemon at {} did not answer within {} s: it may be hung (see its log, or `journalctl -u strata-mountd`)", .socket.display(), QUICK_ANSWER.as_secs())]
    Hung {
        /// The socket.
        socket: PathBuf,
    },
    /// Reading the answer failed.
    #[error("reading the daemon's answer")]
    Answer(#[source] std::io::Error),
    /// The answer does not parse.
    #[error("the daemon's answer is malformed")]
    MalformedAnswer(#[source] serde_json::Error),
    /// The daemon failed the request, with no exit code of its own.
    #[error("{0}")]
    Daemon(String),
    /// The daemon failed the request with an exit code of its own.
    #[error(transparent)]
    DaemonReported(Reported),
    /// The socket path names no directory.
    #[error("socket path has no directory")]
    NoSocketDir,
    /// Creating the socket's directory failed.
    #[error("creating {}", .path.display())]
    SocketDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A live daemon holds the socket.
    #[error("another daemon already listens on {}", .0.display())]
    AlreadyListening(PathBuf),
    /// Binding the socket failed.
    #[error("binding {}", .path.display())]
    Bind {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Sending or receiving on the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A request or an answer does not serialize.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl ExitCode for ControlError {
    fn exit_code(&self) -> u8 {
        use crate::exit::{ERROR, MOUNTPOINT, NOT_COMMITTED, USAGE};
        match self {
            ControlError::NotMounted | ControlError::ResetBusy { .. } => MOUNTPOINT,
            ControlError::NoResetTarget(_)
            | ControlError::NoReason
            | ControlError::BadPattern(_)
            | ControlError::NotAbsolute(_)
            | ControlError::NotFromHead(_) => USAGE,
            ControlError::NotInHead(_) => crate::exit::NOT_FOUND,
            ControlError::NoTiers => crate::exit::HOST_CONFIG,
            ControlError::NoSuchPath { .. } => crate::exit::NOT_FOUND,
            ControlError::StoreFailed { .. } | ControlError::SnapshotNotStored(_) => NOT_COMMITTED,
            ControlError::DaemonReported(r) => r.exit_code(),
            ControlError::Forget(e) => e.exit_code(),
            ControlError::Prune(e) => e.exit_code(),
            ControlError::Drill(e) => e.exit_code(),
            ControlError::Check(e) => e.exit_code(),
            ControlError::Metrics(_) => ERROR,
            ControlError::NoDrill(_) | ControlError::NoReplicas | ControlError::NoReplica(_) => {
                USAGE
            }
            ControlError::HostConfig(e) => e.exit_code(),
            ControlError::Replica(e) => e.exit_code(),
            ControlError::NoSnapshot(_)
            | ControlError::AlreadyHeld { .. }
            | ControlError::NotHeld(_)
            | ControlError::Fs(_)
            | ControlError::Reset(_)
            | ControlError::UnmountBusy { .. }
            | ControlError::Unmount { .. }
            | ControlError::MalformedRequest(_)
            | ControlError::Credentials(_)
            | ControlError::Connect { .. }
            | ControlError::Hung { .. }
            | ControlError::Answer(_)
            | ControlError::MalformedAnswer(_)
            | ControlError::Daemon(_)
            | ControlError::NoSocketDir
            | ControlError::SocketDir { .. }
            | ControlError::AlreadyListening(_)
            | ControlError::Bind { .. }
            | ControlError::Io(_)
            | ControlError::Json(_) => ERROR,
        }
    }
}

/// What the CLI asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Take a snapshot now.
    SnapshotCreate {
        /// Optional label.
        label: Option<String>,
        /// The backup run taking it, stored with it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<Box<RunRecord>>,
    },
    /// Replace a snapshot's run record with a newer revision.
    SnapshotRun {
        /// Snapshot number.
        seq: u64,
        /// The run.
        run: Box<RunRecord>,
    },
    /// All snapshots, oldest first.
    SnapshotList,
    /// One snapshot by number, name, label or "latest".
    SnapshotShow {
        /// Which.
        snapshot: String,
    },
    /// Place a legal hold on a snapshot (by number, name, label or "latest").
    SnapshotHold {
        /// Which.
        snapshot: String,
        /// Why (recorded with the caller).
        reason: String,
    },
    /// Release a snapshot's legal hold.
    SnapshotRelease {
        /// Which.
        snapshot: String,
        /// Why (recorded with the caller).
        reason: String,
    },
    /// Forget the snapshots named (by number, name, label or "latest"),
    /// or with none named, those the retention rules do not keep; the lock
    /// in `retention` lengthens the repository's first.
    Forget {
        /// Which, by name; empty to apply the rules.
        #[serde(default)]
        snapshots: Vec<String>,
        /// The rules, time zone and lock (strata.toml's `[retention]`
        /// with the command line's flags applied).
        retention: RetentionConfig,
        /// Report only; change nothing.
        dry_run: bool,
    },
    /// Collect the garbage: delete packs nothing uses, repack partly
    /// used ones; writes into head/ go on meanwhile.
    Prune {
        /// How much to repack; whether to change anything.
        options: PruneOptions,
    },
    /// Restore (or read and discard) a snapshot path, timed and checked
    /// against the snapshot, and record the drill.
    Drill {
        /// What to drill.
        spec: DrillSpec,
    },
    /// Copy the repository to its replicas, or compare them with it.
    Replicate(super::replicate::ReplicateRequest),
    /// Repair missing or damaged packs from a replica.
    RepairPacks {
        /// The host configuration that declares the replica.
        config: Option<PathBuf>,
        /// The replica's name.
        from: String,
    },
    /// Check the repository: its structure, every snapshot's trees and
    /// the chain, the head's references, and with `read` its data.
    Check {
        /// Which packs' data to read.
        read: ReadData,
    },
    /// Predict a drill's time from a sample (nothing recorded).
    DrillEstimate {
        /// The drill to predict.
        spec: DrillSpec,
    },
    /// Store a deferred drill's record (after its service check).
    DrillRecord {
        /// The record; its number is given when it is stored.
        record: Box<DrillRecord>,
    },
    /// Every drill recorded, oldest first.
    DrillList,
    /// One drill by number.
    DrillShow {
        /// Its number.
        number: u64,
    },
    /// The repository's metrics, in the Prometheus text format.
    Metrics,
    /// How the backups have gone over time.
    Report,
    /// The daemon's state.
    Status,
    /// Make head/ snapshot `snapshot`'s tree (by number, name, label or
    /// "latest"), discarding what changed in it since.
    HeadReset {
        /// Which.
        snapshot: String,
    },
    /// A failed run left a partial copy in head/: mark the head.
    LeftoversRecord {
        /// The failed run.
        leftovers: Leftovers,
    },
    /// The write throttle's state.
    ThrottleShow,
    /// Override the write throttle's limits, for `seconds` or until cleared.
    ThrottleSet {
        /// The new limits (`None` fields are unlimited).
        limits: Limits,
        /// How long the override lasts; until cleared if absent.
        seconds: Option<u64>,
    },
    /// End an override: profiles and the default limit apply again.
    ThrottleClear,
    /// The audit log's records, oldest first.
    AuditList {
        /// Only those written at or after this time (seconds since the epoch).
        since: Option<i64>,
    },
    /// Check the audit log against itself and the snapshots' anchors,
    /// here and on the replicas the host configuration declares.
    AuditVerify {
        /// The host configuration (the default path when `None`).
        config: Option<PathBuf>,
    },
    /// The audit log as JSON lines, each with its chain hash.
    AuditExport {
        /// Only those written at or after this time (seconds since the epoch).
        since: Option<i64>,
    },
    /// The CLI changed the key slots (files of their own, changed only
    /// while unmounted): recorded in the audit log, as requests are.
    KeyChanged {
        /// What changed.
        change: KeyChange,
    },
    /// Paths of the kept snapshots that match a pattern and filters.
    Find {
        /// The pattern and filters.
        spec: FindSpec,
    },
    /// Where files of head/ go now (`strata tier show`).
    TierShow {
        /// Paths from the root of head/ ("/a/b").
        paths: Vec<String>,
    },
    /// The distinct versions of one path across the kept snapshots.
    Versions {
        /// The path, from the snapshot's root ("/a/b").
        path: String,
    },
    /// What differs between two snapshots (by number, name, label or
    /// "latest"), below `path` when given.
    Diff {
        /// The older.
        from: String,
        /// The newer.
        to: String,
        /// Only this path and what is below it.
        path: Option<String>,
    },
    /// Drop the catalog and build it again from the snapshot trees.
    RepairCatalog,
    /// Unmount and exit (after committing everything).
    Shutdown,
}

/// A change of the key slots, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    /// "key_add", "key_remove" or "key_passwd".
    pub op: String,
    /// The slot's id.
    pub slot: String,
    /// The slot's kind (passphrase, key file, escrow), when added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Request {
    /// The request's name, for the log: a request can carry hook output
    /// and paths (a run record), which never go to the log.
    pub fn name(&self) -> &'static str {
        match self {
            Request::SnapshotCreate { .. } => "snapshot_create",
            Request::SnapshotRun { .. } => "snapshot_run",
            Request::SnapshotList => "snapshot_list",
            Request::SnapshotShow { .. } => "snapshot_show",
            Request::SnapshotHold { .. } => "snapshot_hold",
            Request::SnapshotRelease { .. } => "snapshot_release",
            Request::Forget { .. } => "forget",
            Request::Prune { .. } => "prune",
            Request::Drill { .. } => "drill",
            Request::DrillRecord { .. } => "drill_record",
            Request::DrillEstimate { .. } => "drill_estimate",
            Request::Check { .. } => "check",
            Request::Replicate(_) => "replicate",
            Request::RepairPacks { .. } => "repair_packs",
            Request::DrillList => "drill_list",
            Request::DrillShow { .. } => "drill_show",
            Request::Status => "status",
            Request::Metrics => "metrics",
            Request::Report => "report",
            Request::HeadReset { .. } => "head_reset",
            Request::LeftoversRecord { .. } => "leftovers_record",
            Request::ThrottleShow => "throttle_show",
            Request::ThrottleSet { .. } => "throttle_set",
            Request::ThrottleClear => "throttle_clear",
            Request::AuditList { .. } => "audit_list",
            Request::AuditVerify { .. } => "audit_verify",
            Request::AuditExport { .. } => "audit_export",
            Request::KeyChanged { .. } => "key_changed",
            Request::Find { .. } => "find",
            Request::Versions { .. } => "versions",
            Request::TierShow { .. } => "tier_show",
            Request::Diff { .. } => "diff",
            Request::RepairCatalog => "repair_catalog",
            Request::Shutdown => "shutdown",
        }
    }

    /// Whether a live daemon answers it at once: a question of the Free
    /// lane, but for the metrics and the report, which read every tree.
    pub fn quick(&self) -> bool {
        self.lane() == Lane::Free
            && !matches!(
                self,
                Request::Metrics
                    | Request::Report
                    | Request::Find { .. }
                    | Request::Versions { .. }
                    | Request::Diff { .. }
            )
    }

    /// Which requests it may run beside; see [`Lane`].
    pub fn lane(&self) -> Lane {
        match self {
            Request::Status
            | Request::Metrics
            | Request::Report
            | Request::SnapshotList
            | Request::SnapshotShow { .. }
            | Request::DrillList
            | Request::DrillShow { .. }
            | Request::ThrottleShow
            | Request::ThrottleSet { .. }
            | Request::ThrottleClear
            | Request::AuditList { .. }
            | Request::AuditVerify { .. }
            | Request::AuditExport { .. }
            | Request::KeyChanged { .. }
            | Request::TierShow { .. } => Lane::Free,
            // The catalog's catch-up before a query is its own write
            // transaction, which redb serializes; taking a snapshot in
            // twice is refused by its tip.
            Request::Find { .. } | Request::Versions { .. } | Request::Diff { .. } => Lane::Free,
            // A check reads the packs prune moves objects out of.
            Request::Prune { .. }
            | Request::Check { .. }
            | Request::Replicate(_)
            | Request::RepairPacks { .. } => Lane::Prune,
            Request::Drill { .. } | Request::DrillRecord { .. } | Request::DrillEstimate { .. } => {
                Lane::Drill
            }
            Request::SnapshotCreate { .. }
            | Request::SnapshotRun { .. }
            | Request::SnapshotHold { .. }
            | Request::SnapshotRelease { .. }
            | Request::Forget { .. }
            | Request::HeadReset { .. }
            | Request::LeftoversRecord { .. }
            | Request::RepairCatalog
            | Request::Shutdown => Lane::Catalog,
        }
    }
}

/// The daemon serves each control connection on its own thread, so a long
/// prune neither delays a status question nor the snapshot of a backup
/// run. Requests in one lane run one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Questions and throttle settings: they change no repository state
    /// and run beside anything.
    Free,
    /// Prune: one at a time (the garbage it dooms is one set), beside
    /// everything else, which its design lets go on (see
    /// [`crate::ops::prune`]).
    Prune,
    /// Everything that changes the snapshots or the head's root: one at a
    /// time (a snapshot chains to the newest, a forget decides over the
    /// list it read).
    Catalog,
    /// Drills: one at a time, so that two never share the disk and skew
    /// each other's times; beside everything else, since a drill only
    /// reads, but a forget (which could remove the snapshot a drill reads)
    /// waits for this lane first.
    Drill,
}

/// One lock per lane that has one, and how far the running prune is.
#[derive(Default)]
struct Lanes {
    prune: std::sync::Mutex<()>,
    catalog: std::sync::Mutex<()>,
    drill: std::sync::Mutex<()>,
    pruning: std::sync::Mutex<Option<PruneProgress>>,
    drilling: std::sync::Mutex<Option<DrillProgress>>,
    checking: std::sync::Mutex<Option<(u64, u64)>>,
}

impl Lanes {
    /// Waits for `lane`'s turn; the guard holds it.
    fn enter(&self, lane: Lane) -> Option<std::sync::MutexGuard<'_, ()>> {
        match lane {
            Lane::Free => None,
            Lane::Prune => Some(self.prune.locked()),
            Lane::Catalog => Some(self.catalog.locked()),
            Lane::Drill => Some(self.drill.locked()),
        }
    }
}

/// The answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// One snapshot.
    Snapshot(Box<SnapshotInfo>),
    /// Several.
    Snapshots(Vec<SnapshotInfo>),
    /// State.
    Status(Box<Status>),
    /// The write throttle.
    Throttle(Box<ThrottleStatus>),
    /// What a head reset did.
    Reset(Box<ResetInfo>),
    /// The leftovers marker in force.
    Leftovers(Box<Leftovers>),
    /// What forget did.
    Forget(Box<ForgetReport>),
    /// What prune did.
    Prune(Box<PruneReport>),
    /// One drill.
    Drill(Box<DrillRecord>),
    /// Several.
    Drills(Vec<DrillRecord>),
    /// A predicted drill.
    Estimate(Box<Estimate>),
    /// What a check found.
    Check(Box<CheckReport>),
    /// What a pack repair did.
    RepairPacks(Box<crate::ops::replicate::repair::PackRepairReport>),
    /// What replication did or found.
    Replicate(Box<super::replicate::ReplicateReply>),
    /// Metrics, in the Prometheus text format.
    Metrics(String),
    /// Audit records.
    Audit(Vec<crate::tree::audit::AuditRecord>),
    /// What a check of the audit log found.
    AuditVerdict(Box<crate::tree::audit::verify::Verdict>),
    /// The audit log as JSON lines.
    AuditExport(Vec<String>),
    /// The report's data.
    Report(Box<crate::ops::report::Report>),
    /// Paths `find` matched.
    Found(Vec<Found>),
    /// The versions of a path.
    Versions(Box<super::catalog::VersionsReply>),
    /// Where files of head/ go.
    Tiers(Vec<super::tier::Shown>),
    /// What differs between two snapshots.
    Diff(Box<super::catalog::DiffReply>),
    /// What a catalog rebuild took in.
    CatalogRebuilt(Cost),
    /// Done.
    Done,
}

/// What `strata head reset` did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResetInfo {
    /// The snapshot head/ now holds.
    pub snapshot: SnapshotInfo,
    /// Inodes head/ held before.
    pub discarded_inodes: u64,
    /// The failed run whose leftovers the reset discarded, if head/ was
    /// marked.
    pub leftovers: Option<Leftovers>,
}

/// What `strata status` shows. Fields a daemon of another version does
/// not send take their defaults.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// Whether a daemon serves the repository.
    pub mounted: bool,
    /// Where.
    pub mountpoint: Option<String>,
    /// The daemon's process id.
    pub pid: Option<u32>,
    /// Whether the head takes writes; if not, why.
    pub read_only_reason: Option<String>,
    /// Snapshots.
    pub snapshots: u64,
    /// The newest snapshot's name.
    pub latest: Option<String>,
    /// Inodes in the head.
    pub inodes: u64,
    /// Bytes of overwrites held for re-chunking.
    pub staging_bytes: u64,
    /// Durable commits since the daemon started.
    pub durable_commits: u64,
    /// How FUSE requests reach the daemon: "io_uring (N queues)", or
    /// "dev-fuse (why the ring is not used)".
    #[serde(default)]
    pub transport: Option<String>,
    /// FUSE requests served, per opcode.
    pub fuse_requests: BTreeMap<String, u64>,
    /// Microseconds spent serving them, per opcode.
    pub fuse_micros: BTreeMap<String, u64>,
    /// The write throttle: limit, why, achieved rate.
    pub throttle: Option<ThrottleStatus>,
    /// The pack writeback thread: its I/O priority and what it wrote.
    #[serde(default)]
    pub writeback: Option<WritebackStatus>,
    /// Not mounted, but a mount of it is left whose daemon died: where.
    pub dead_mount: Option<String>,
    /// The repository's directory.
    pub repository: Option<String>,
    /// The repository's id.
    pub repository_id: Option<String>,
    /// head/ holds what this failed run left there.
    pub leftovers: Option<Leftovers>,
    /// A prune the daemon is running: how far it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneProgress>,
    /// A drill the daemon is running: how far it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillProgress>,
    /// A check the daemon is running: chunks read of those to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<(u64, u64)>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Wire {
    Ok(Reply),
    Err(String),
    /// An error with its own exit code, which the CLI exits with.
    Failed(u8, String),
}

/// Finds a snapshot by number, time name, label or "latest" (a label and
/// "latest" resolve as their symlinks in snapshots/ do).
pub fn find(
    rows: &[SnapshotRow],
    runs: &BTreeMap<u64, RunRecord>,
    what: &str,
) -> Result<SnapshotRow, ControlError> {
    let linkable = |r: &&SnapshotRow| may_be_latest(runs.get(&r.record.seq));
    let found = match what {
        crate::tree::namespace::LATEST => rows.iter().rev().find(linkable),
        _ => match what.parse::<u64>() {
            Ok(seq) => rows.iter().find(|r| r.record.seq == seq),
            Err(_) => rows
                .iter()
                .rev()
                .find(|r| r.record.name() == what)
                .or_else(|| {
                    rows.iter()
                        .rev()
                        .filter(linkable)
                        .find(|r| r.record.label.as_deref() == Some(what))
                }),
        },
    };
    match found {
        Some(r) => Ok(r.clone()),
        None => Err(ControlError::NoSnapshot(what.to_owned())),
    }
}

/// Serves one request against `ns` on behalf of `caller`. Shutdown is
/// the server's business and answers Done here.
pub fn handle(ns: &Namespace, caller: Caller, req: &Request) -> Result<Reply, ControlError> {
    let _op = caller.span("control");
    Ok(match req {
        Request::SnapshotCreate { label, run } => {
            if let Some(reason) = ns.head().repo().store().failed() {
                return Err(ControlError::StoreFailed { reason });
            }
            let rec = ns
                .snapshot_run(caller, label.as_deref(), run.as_deref())
                .map_err(|e| no_snapshot(ns, e))?;
            if let Some(l) = run.as_ref().and_then(|r| r.leftovers.as_ref()) {
                // The run's record says its snapshot holds them: the head
                // is no longer marked. (A crash before this leaves the
                // marker, and the next run says so again: never silent.)
                ns.head().clear_leftovers()?;
                tracing::info!(seq = rec.seq, failed_run = %l.run, "snapshot took over a failed run's leftovers");
            }
            let row = Snapshots::of(ns.head()).by_seq(rec.seq)?;
            tracing::info!(
                seq = rec.seq,
                uid = caller.uid,
                pid = caller.pid,
                run = run.as_ref().map(|r| r.run.as_str()),
                "snapshot taken"
            );
            Reply::Snapshot(Box::new(info(ns, &row)?))
        }
        Request::SnapshotRun { seq, run } => {
            ns.set_run(caller, *seq, run)?;
            tracing::info!(
                seq,
                run = %run.run,
                status = run.status.as_str(),
                "snapshot run recorded"
            );
            Reply::Done
        }
        Request::SnapshotList => {
            let holds = Snapshots::of(ns.head()).holds()?;
            Reply::Snapshots(
                ns.snapshots()
                    .iter()
                    .map(|r| with_hold(SnapshotInfo::of(r, ns.run(r.record.seq)), &holds))
                    .collect(),
            )
        }
        Request::SnapshotShow { snapshot } => {
            let runs = Snapshots::of(ns.head()).runs()?;
            let row = find(&ns.snapshots(), &runs, snapshot)?;
            Reply::Snapshot(Box::new(info(ns, &row)?))
        }
        Request::SnapshotHold { snapshot, reason } => {
            Reply::Snapshot(Box::new(hold(ns, caller, snapshot, reason, true)?))
        }
        Request::SnapshotRelease { snapshot, reason } => {
            Reply::Snapshot(Box::new(hold(ns, caller, snapshot, reason, false)?))
        }
        Request::HeadReset { snapshot } => reset(ns, caller, snapshot, None)?,
        Request::Forget {
            snapshots,
            retention,
            dry_run,
        } => Reply::Forget(Box::new(forget_snapshots(
            ns, caller, snapshots, retention, *dry_run,
        )?)),
        Request::Replicate(req) => Reply::Replicate(Box::new(super::replicate::serve(
            ns.head(),
            caller,
            req,
            None,
        )?)),
        Request::RepairPacks { config, from } => Reply::RepairPacks(Box::new(
            super::replicate::repair(ns.head(), config.as_deref(), from)?,
        )),
        Request::Prune { options } => Reply::Prune(Box::new(prune(
            ns.head(),
            caller,
            *options,
            PruneContext::default(),
        )?)),
        Request::Drill { spec } => Reply::Drill(Box::new(run_drill(
            ns,
            caller,
            spec,
            None,
            DrillContext::default(),
        )?)),
        Request::DrillEstimate { spec } => {
            Reply::Estimate(Box::new(run_estimate(ns, caller, spec, None)?))
        }
        Request::Metrics => Reply::Metrics(metrics(ns, &DaemonState::default())?),
        Request::Report => Reply::Report(Box::new(crate::ops::report::report(ns.head())?)),
        Request::Check { read } => Reply::Check(Box::new(check_all(
            ns.head(),
            caller,
            *read,
            false,
            |_, _| {},
        )?)),
        Request::DrillRecord { record } => Reply::Drill(Box::new(drill::store(
            ns.head(),
            caller,
            (**record).clone(),
        )?)),
        Request::DrillList => Reply::Drills(Snapshots::of(ns.head()).drills()?),
        Request::DrillShow { number } => Reply::Drill(Box::new(
            Snapshots::of(ns.head())
                .drills()?
                .into_iter()
                .find(|d| d.number == *number)
                .ok_or(ControlError::NoDrill(*number))?,
        )),
        Request::LeftoversRecord { leftovers } => {
            let kept = ns.head().record_leftovers(leftovers)?;
            tracing::warn!(
                failed_run = %leftovers.run,
                marked = %kept.run,
                "head/ holds a failed run's leftovers"
            );
            Reply::Leftovers(Box::new(kept))
        }
        Request::Find { spec } => Reply::Found(super::catalog::find(ns, spec)?),
        Request::Versions { path } => {
            Reply::Versions(Box::new(super::catalog::versions(ns, path)?))
        }
        Request::TierShow { paths } => Reply::Tiers(super::tier::show(ns, caller, paths)?),
        Request::Diff { from, to, path } => Reply::Diff(Box::new(super::catalog::diff(
            ns,
            from,
            to,
            path.as_deref(),
        )?)),
        Request::RepairCatalog => Reply::CatalogRebuilt(Catalog::of(ns.head()).rebuild(caller)?),
        Request::ThrottleShow | Request::ThrottleSet { .. } | Request::ThrottleClear => {
            return Err(ControlError::NotMounted)
        }
        Request::AuditList { since } => Reply::Audit(audit::list(ns.head(), *since)?),
        Request::AuditVerify { config } => {
            let host = HostConfig::load_or_default(config.as_deref()).map_err(Box::new)?;
            Reply::AuditVerdict(Box::new(audit::verify(ns.head(), &host.replicas)?))
        }
        Request::AuditExport { since } => Reply::AuditExport(audit::export(ns.head(), *since)?),
        // Recorded by the caller of `handle`, as every request is.
        Request::KeyChanged { .. } => Reply::Done,
        Request::Status => {
            let head = ns.head();
            let stats = head.stats()?;
            let rows = ns.snapshots();
            Reply::Status(Box::new(Status {
                read_only_reason: head.repo().store().failed(),
                snapshots: rows.len() as u64,
                latest: rows
                    .iter()
                    .rev()
                    .find(|r| may_be_latest(ns.run(r.record.seq).as_ref()))
                    .map(|r| r.record.name()),
                inodes: stats.inodes,
                staging_bytes: stats.staging_bytes,
                leftovers: head.leftovers()?,
                writeback: head.repo().store().writeback_status(),
                durable_commits: head
                    .counters
                    .durable_commits
                    .load(std::sync::atomic::Ordering::Relaxed),
                ..Status::default()
            }))
        }
        Request::Shutdown => Reply::Done,
    })
}

/// What `snapshot show` reports of `row`: its run, its hold and every
/// hold and release it had.
fn info(ns: &Namespace, row: &SnapshotRow) -> Result<SnapshotInfo, ControlError> {
    let snapshots = Snapshots::of(ns.head());
    let mut info = with_hold(
        SnapshotInfo::of(row, ns.run(row.record.seq)),
        &snapshots.holds()?,
    );
    info.hold_history = snapshots
        .hold_history(row.record.seq)?
        .into_iter()
        .map(|e| HoldChange {
            held: e.held,
            time: e.time.secs,
            uid: e.caller.0,
            gid: e.caller.1,
            pid: e.caller.2,
            reason: e.reason,
        })
        .collect();
    Ok(info)
}

fn with_hold(mut info: SnapshotInfo, holds: &BTreeMap<u64, HoldEvent>) -> SnapshotInfo {
    info.hold = holds.get(&info.seq).map(|h| HoldInfo {
        since: h.time.secs,
        uid: h.caller.0,
        reason: h.reason.clone(),
    });
    info
}

/// Places (`held`) or releases the legal hold of `snapshot`. The engine
/// refuses a double hold or a release of nothing by itself; the checks
/// here only name the state in the refusal.
fn hold(
    ns: &Namespace,
    caller: Caller,
    snapshot: &str,
    reason: &str,
    held: bool,
) -> Result<SnapshotInfo, ControlError> {
    if reason.trim().is_empty() {
        return Err(ControlError::NoReason);
    }
    let snapshots = Snapshots::of(ns.head());
    let row = find(&ns.snapshots(), &snapshots.runs()?, snapshot)?;
    let seq = row.record.seq;
    let current = snapshots.holds()?.remove(&seq);
    match (held, current) {
        (true, Some(h)) => {
            return Err(ControlError::AlreadyHeld {
                seq,
                since: rfc3339(h.time.secs),
                uid: h.caller.0,
                reason: h.reason,
            })
        }
        (false, None) => return Err(ControlError::NotHeld(seq)),
        _ => {}
    }
    if held {
        snapshots.hold(caller, seq, reason)?;
    } else {
        snapshots.release(caller, seq, reason)?;
    }
    info(ns, &row)
}

/// Forgets `names` (resolved as `snapshot show` resolves them), or what
/// `retention`'s rules do not keep when none are named; then shows the
/// new list.
fn forget_snapshots(
    ns: &Namespace,
    caller: Caller,
    names: &[String],
    retention: &RetentionConfig,
    dry_run: bool,
) -> Result<ForgetReport, ControlError> {
    let head = ns.head();
    let now = crate::tree::types::Timestamp::now().secs;
    let report = if names.is_empty() {
        forget::forget(head, caller, &Selection::Policy(retention), now, dry_run)?
    } else {
        let rows = ns.snapshots();
        let runs = Snapshots::of(head).runs()?;
        let mut seqs = Vec::new();
        for name in names {
            let seq = find(&rows, &runs, name)?.record.seq;
            if !seqs.contains(&seq) {
                seqs.push(seq);
            }
        }
        let selection = Selection::These(&seqs, retention);
        forget::forget(head, caller, &selection, now, dry_run)?
    };
    if !dry_run && report.forgotten > 0 {
        ns.reload()?;
    }
    Ok(report)
}

/// Runs drill `spec` in `ns`: read through the mount at `mountpoint`, or
/// through the namespace itself when `None`.
pub fn run_drill(
    ns: &Namespace,
    caller: Caller,
    spec: &DrillSpec,
    mountpoint: Option<&Path>,
    cx: DrillContext<'_>,
) -> Result<DrillRecord, ControlError> {
    with_source(ns, caller, spec, mountpoint, |row, plan, source| {
        Ok(drill::drill(
            ns.head(),
            caller,
            row,
            spec,
            plan,
            source,
            cx,
        )?)
    })
}

/// Predicts drill `spec` in `ns`, read as [`run_drill`] reads.
pub fn run_estimate(
    ns: &Namespace,
    caller: Caller,
    spec: &DrillSpec,
    mountpoint: Option<&Path>,
) -> Result<Estimate, ControlError> {
    with_source(ns, caller, spec, mountpoint, |row, plan, source| {
        Ok(estimate(ns.head(), &row.record.name(), spec, plan, source)?)
    })
}

/// Finds `spec`'s snapshot, plans it, and hands both to `f` with the
/// source to read it through: the mount at `mountpoint`, or the namespace.
fn with_source<T>(
    ns: &Namespace,
    caller: Caller,
    spec: &DrillSpec,
    mountpoint: Option<&Path>,
    f: impl FnOnce(&SnapshotRow, &Plan, &dyn Source) -> Result<T, ControlError>,
) -> Result<T, ControlError> {
    let snapshots = Snapshots::of(ns.head());
    let row = find(&ns.snapshots(), &snapshots.runs()?, &spec.snapshot)?;
    let plan = Plan::of(ns.head().repo().store(), &row, &spec.path).map_err(DrillError::from)?;
    let source: Box<dyn Source + '_> =
        match mountpoint {
            Some(mnt) => Box::new(MountSource {
                root: mnt
                    .join(std::ffi::OsStr::from_bytes(
                        crate::tree::namespace::SNAPSHOTS_DIR,
                    ))
                    .join(row.record.name())
                    .join(plan.path.trim_start_matches('/')),
            }),
            None => Box::new(EngineSource::new(ns, caller, &plan).map_err(|source| {
                DrillError::Source {
                    through: "repository",
                    source,
                }
            })?),
        };
    f(&row, &plan, source.as_ref())
}

/// The metrics text of `ns`'s repository, with `daemon`'s parts.
fn metrics(ns: &Namespace, daemon: &DaemonState) -> Result<String, ControlError> {
    Ok(gather(ns.head(), daemon)?.render())
}

/// The metrics text a running daemon serves: with its throttle and FUSE
/// request counts (also for the `/metrics` listener).
pub fn daemon_metrics(ns: &Namespace, daemon: &dyn Daemon) -> Result<String, ControlError> {
    metrics(
        ns,
        &DaemonState {
            throttle: Some(daemon.throttle().status()),
            requests: daemon.requests(),
        },
    )
}

/// `secs` since the epoch as an RFC 3339 UTC time.
fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Resets head/ to `snapshot`'s tree. `mountpoint` is where head/ is
/// mounted (open files there refuse the reset), `None` when unmounted.
fn reset(
    ns: &Namespace,
    caller: Caller,
    snapshot: &str,
    mountpoint: Option<&str>,
) -> Result<Reply, ControlError> {
    let head = ns.head();
    let snapshots = Snapshots::of(head);
    let row = find(&ns.snapshots(), &snapshots.runs()?, snapshot).map_err(|e| match e {
        ControlError::NoSnapshot(what) => ControlError::NoResetTarget(what),
        e => e,
    })?;
    let leftovers = head.leftovers()?;
    let outcome = snapshots
        .reset_head(caller, row.record.seq)
        .map_err(|e| match e {
            FsError::Busy(_) => ControlError::ResetBusy {
                mnt: mountpoint.unwrap_or("MOUNTPOINT").to_owned(),
            },
            e => ControlError::Reset(e),
        })?;
    tracing::info!(
        seq = row.record.seq,
        uid = caller.uid,
        pid = caller.pid,
        discarded_inodes = outcome.discarded_inodes,
        failed_run = leftovers.as_ref().map(|l| l.run.as_str()),
        "head reset to a snapshot; later changes discarded"
    );
    let info = ResetInfo {
        snapshot: info(ns, &row)?,
        discarded_inodes: outcome.discarded_inodes,
        leftovers,
    };
    Ok(Reply::Reset(Box::new(info)))
}

/// Why a snapshot failed, and what to do when the storage is to blame:
/// the store refuses writes since one failed, or `err` (the snapshot's own
/// failure) is one of the disk's. The storage layer's message (redb's, the
/// OS's) is quoted, never alone.
fn no_snapshot(ns: &Namespace, err: FsError) -> ControlError {
    match (ns.head().repo().store().failed(), err) {
        (Some(reason), _) => ControlError::StoreFailed { reason },
        (None, e @ (FsError::Io(_) | FsError::NoSpace | FsError::ReadOnly)) => {
            ControlError::SnapshotNotStored(e)
        }
        (None, e) => ControlError::Fs(e),
    }
}

/// The daemon's side: what it adds to the shared handling.
pub trait Daemon: Send + Sync {
    /// The mountpoint, for status.
    fn mountpoint(&self) -> String;
    /// A snapshot was taken: the kernel's view of snapshots/ must change.
    fn snapshot_taken(&self, label: Option<&str>);
    /// Snapshots were forgotten: the kernel must drop their directories
    /// and the symlinks (`latest`, `labels`) that may have moved.
    fn snapshots_forgotten(&self, names: &[String], labels: &[String]);
    /// head/ was reset: the kernel must forget what it cached of it.
    fn head_reset(&self);
    /// Unmounts; the daemon then commits and exits. An error (EBUSY) leaves
    /// it mounted and serving, and a later request may try again.
    fn shutdown(&self) -> std::io::Result<()>;
    /// FUSE requests served: count and microseconds per opcode.
    fn requests(&self) -> BTreeMap<String, (u64, u64)>;
    /// The FUSE transport in use, and why when it is not the ring.
    fn transport(&self) -> String;
    /// The write throttle.
    fn throttle(&self) -> &Throttle;
}

/// The control requests being served, so that the daemon's exit waits for
/// them: the request that unmounts (shutdown) is recorded in the audit log
/// after the unmount, and must be before the exit's own record and commit.
#[derive(Default)]
pub struct InFlight {
    count: std::sync::Mutex<usize>,
    idle: std::sync::Condvar,
}

impl InFlight {
    fn enter(self: &Arc<Self>) -> Serving {
        *self.count.locked() += 1;
        Serving(self.clone())
    }

    /// Waits until no request is being served, at most `limit`; whether none is.
    pub fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let count = self.count.locked();
        let (count, _) = self
            .idle
            .wait_timeout_while(count, limit, |n| *n > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *count == 0
    }
}

/// One request being served, until dropped.
struct Serving(Arc<InFlight>);

impl Drop for Serving {
    fn drop(&mut self) {
        let mut n = self.0.count.locked();
        *n -= 1;
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// Accepts requests on `listener` until the process ends, each on its own
/// thread (see [`Lane`]), counted in `in_flight`.
pub fn serve(
    listener: UnixListener,
    ns: Arc<Namespace>,
    daemon: Arc<dyn Daemon>,
    in_flight: Arc<InFlight>,
) {
    let lanes = Arc::new(Lanes::default());
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let (ns, daemon, lanes) = (ns.clone(), daemon.clone(), lanes.clone());
        let serving = in_flight.enter();
        let spawned = std::thread::Builder::new()
            .name("control-request".into())
            .spawn(move || {
                let _serving = serving;
                if let Err(e) = serve_one(stream, &ns, daemon.as_ref(), &lanes) {
                    tracing::warn!(error = %Chain(&e), "control request failed");
                }
            });
        if let Err(e) = spawned {
            // The connection closes unanswered: the caller reports it.
            tracing::warn!(error = %e, "no thread for a control request");
        }
    }
}

fn serve_one(
    stream: UnixStream,
    ns: &Namespace,
    daemon: &dyn Daemon,
    lanes: &Lanes,
) -> Result<(), ControlError> {
    let caller = peer(&stream)?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let reply = serde_json::from_str::<Request>(&line)
        .map_err(ControlError::MalformedRequest)
        .and_then(|req| {
            let reply = serve_request(&req, caller, ns, daemon, lanes);
            let outcome = reply.as_ref().map_err(|e| e.exit_code());
            super::audit::record(ns, caller, Via::Socket, &req, outcome);
            reply
        });
    let wire = match reply {
        Ok(r) => Wire::Ok(r),
        Err(e) => {
            let message = Chain(&e).to_string();
            match e.exit_code() {
                crate::exit::ERROR => Wire::Err(message),
                code => Wire::Failed(code, message),
            }
        }
    };
    let mut out = serde_json::to_vec(&wire)?;
    out.push(b'\n');
    (&stream).write_all(&out)?;
    Ok(())
}

/// Serves one request that came over the socket: the requests that need
/// the daemon (progress, the throttle, the mountpoint) here, the rest by
/// [`handle`].
fn serve_request(
    req: &Request,
    caller: Caller,
    ns: &Namespace,
    daemon: &dyn Daemon,
    lanes: &Lanes,
) -> Result<Reply, ControlError> {
    tracing::info!(
        uid = caller.uid,
        gid = caller.gid,
        pid = caller.pid,
        request = req.name(),
        "control request"
    );
    // A forget waits for a drill under way (before its own turn, so
    // snapshots go on meanwhile): it could remove what is read.
    let _drills_done =
        matches!(req, Request::Forget { dry_run: false, .. }).then(|| lanes.enter(Lane::Drill));
    let _turn = lanes.enter(req.lane());
    let throttle = daemon.throttle();
    let mut reply = match req {
        Request::Prune { options } => {
            let tell = |p: &PruneProgress| *lanes.pruning.locked() = Some(p.clone());
            let cx = PruneContext {
                throttle: Some(throttle),
                progress: Some(&tell),
            };
            let done = prune(ns.head(), caller, *options, cx);
            *lanes.pruning.locked() = None;
            Reply::Prune(Box::new(done?))
        }
        Request::Drill { spec } => {
            let tell = |p: &DrillProgress| *lanes.drilling.locked() = Some(p.clone());
            let cx = DrillContext {
                progress: Some(&tell),
            };
            let mnt = PathBuf::from(daemon.mountpoint());
            let done = run_drill(ns, caller, spec, Some(&mnt), cx);
            *lanes.drilling.locked() = None;
            Reply::Drill(Box::new(done?))
        }
        Request::Check { read } => {
            if let Some(class) = throttle.policy().io.and_then(|io| io.class) {
                if let Err(e) = class.apply_to_current_thread() {
                    tracing::warn!(error = %e, %class, "[throttle.io] class cannot be applied; check runs at the daemon's priority");
                }
            }
            *lanes.checking.locked() = Some((0, 0));
            let tell = |done, total| *lanes.checking.locked() = Some((done, total));
            let done = check_all(ns.head(), caller, *read, true, tell);
            *lanes.checking.locked() = None;
            let report = done?;
            tracing::info!(
                uid = caller.uid,
                errors = report.errors.len(),
                damaged = ?report.damaged.iter().map(|c| c.short()).collect::<Vec<_>>(),
                "check done"
            );
            Reply::Check(Box::new(report))
        }
        Request::DrillEstimate { spec } => {
            let mnt = PathBuf::from(daemon.mountpoint());
            Reply::Estimate(Box::new(run_estimate(ns, caller, spec, Some(&mnt))?))
        }
        Request::Metrics => Reply::Metrics(daemon_metrics(ns, daemon)?),
        Request::ThrottleShow => Reply::Throttle(Box::new(throttle.status())),
        Request::ThrottleSet { limits, seconds } => {
            throttle.set(*limits, seconds.map(std::time::Duration::from_secs));
            tracing::info!(uid = caller.uid, ?limits, ?seconds, "throttle override set");
            Reply::Throttle(Box::new(throttle.status()))
        }
        Request::ThrottleClear => {
            throttle.clear();
            tracing::info!(uid = caller.uid, "throttle override cleared");
            Reply::Throttle(Box::new(throttle.status()))
        }
        Request::Shutdown => {
            daemon.shutdown().map_err(|e| {
                tracing::warn!(error = %e, "unmount refused; still serving");
                let mnt = daemon.mountpoint();
                if e.raw_os_error() == Some(libc::EBUSY) {
                    ControlError::UnmountBusy { mnt }
                } else {
                    ControlError::Unmount { mnt, source: e }
                }
            })?;
            Reply::Done
        }
        Request::HeadReset { snapshot } => {
            let reply = reset(ns, caller, snapshot, Some(&daemon.mountpoint()))?;
            daemon.head_reset();
            reply
        }
        _ => handle(ns, caller, req)?,
    };
    match (req, &mut reply) {
        (Request::SnapshotCreate { label, .. }, _) => daemon.snapshot_taken(label.as_deref()),
        (Request::SnapshotRun { seq, .. }, _) => {
            let label = ns.snapshots().into_iter().find(|r| r.record.seq == *seq);
            daemon.snapshot_taken(label.and_then(|r| r.record.label).as_deref())
        }
        (Request::Forget { dry_run: false, .. }, Reply::Forget(report)) => {
            let gone = report.snapshots.iter().filter(|l| !l.keep);
            let names: Vec<String> = gone.clone().map(|l| l.name.clone()).collect();
            let labels: Vec<String> = gone.filter_map(|l| l.label.clone()).collect();
            if !names.is_empty() {
                daemon.snapshots_forgotten(&names, &labels);
            }
        }
        (Request::Status, Reply::Status(s)) => {
            s.mounted = true;
            s.mountpoint = Some(daemon.mountpoint());
            s.pid = Some(std::process::id());
            s.transport = Some(daemon.transport());
            s.throttle = Some(throttle.status());
            s.prune = lanes.pruning.locked().clone();
            s.drill = lanes.drilling.locked().clone();
            s.check = *lanes.checking.locked();
            for (op, (n, us)) in daemon.requests() {
                s.fuse_requests.insert(op.clone(), n);
                s.fuse_micros.insert(op, us);
            }
        }
        _ => {}
    }
    Ok(reply)
}

/// The peer's credentials (SO_PEERCRED).
fn peer(stream: &UnixStream) -> Result<Caller, ControlError> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(ControlError::Credentials(std::io::Error::last_os_error()));
    }
    Ok(Caller {
        uid: cred.uid,
        gid: cred.gid,
        pid: cred.pid as u32,
    })
}

/// How long a status, list or show question waits for the daemon.
pub const QUICK_ANSWER: std::time::Duration = std::time::Duration::from_secs(60);

/// The CLI's side: sends `req` to the daemon at `socket`. `None` if no
/// daemon listens there.
pub fn call(socket: &Path, req: &Request) -> Result<Option<Reply>, ControlError> {
    let stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(source) => {
            return Err(ControlError::Connect {
                socket: socket.to_owned(),
                source,
            })
        }
    };
    // Questions a live daemon answers at once get a deadline, so that a
    // hung daemon fails a status or freshness check instead of hanging it.
    // Snapshots and shutdown commit first, for as long as that takes.
    if req.quick() {
        stream.set_read_timeout(Some(QUICK_ANSWER))?;
    }
    let mut out = serde_json::to_vec(req)?;
    out.push(b'\n');
    (&stream).write_all(&out)?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ControlError::Hung {
                socket: socket.to_owned(),
            },
            _ => ControlError::Answer(e),
        })?;
    match serde_json::from_str::<Wire>(&line).map_err(ControlError::MalformedAnswer)? {
        Wire::Ok(r) => Ok(Some(r)),
        Wire::Err(e) => Err(ControlError::Daemon(e)),
        Wire::Failed(code, e) => Err(ControlError::DaemonReported(Reported(code, e))),
    }
}

/// Binds the control socket: owner-only, replacing a stale one.
pub fn bind(socket: &Path) -> Result<UnixListener, ControlError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = socket.parent().ok_or(ControlError::NoSocketDir)?;
    std::fs::create_dir_all(dir).map_err(|source| ControlError::SocketDir {
        path: dir.to_owned(),
        source,
    })?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if UnixStream::connect(socket).is_ok() {
        return Err(ControlError::AlreadyListening(socket.to_owned()));
    }
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).map_err(|source| ControlError::Bind {
        path: socket.to_owned(),
        source,
    })?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        let cases = [
            (
                Request::SnapshotCreate {
                    label: Some("nightly".into()),
                    run: None,
                },
                r#"{"request":"snapshot_create","label":"nightly"}"#,
            ),
            (Request::SnapshotList, r#"{"request":"snapshot_list"}"#),
            (
                Request::SnapshotShow {
                    snapshot: "latest".into(),
                },
                r#"{"request":"snapshot_show","snapshot":"latest"}"#,
            ),
            (Request::Status, r#"{"request":"status"}"#),
            (Request::Shutdown, r#"{"request":"shutdown"}"#),
        ];
        for (req, json) in cases {
            assert!(json.contains(&format!("\"request\":\"{}\"", req.name())));
            assert_eq!(serde_json::to_string(&req).unwrap(), json);
            assert_eq!(serde_json::from_str::<Request>(json).unwrap(), req);
        }
        assert!(serde_json::from_str::<Request>(r#"{"request":"format_disk"}"#).is_err());
    }

    #[test]
    fn an_older_daemons_status_still_reads() {
        let s: Status = serde_json::from_str(r#"{"mounted":true,"pid":7}"#).unwrap();
        assert!(s.mounted);
        assert_eq!(s.pid, Some(7));
        assert!(s.fuse_requests.is_empty());
    }
}
