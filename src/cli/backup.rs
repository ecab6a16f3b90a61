//! `strata backup`: a backup run against the mounted repository.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::time::{Duration, Instant};
use strata::tree::record::{HookOutcome, Leftovers, RunRecord, RunStatus};

use strata::daemon::control::{self, Reply, Request};
use strata::exit::{self, Reported};
use strata::policy::alert::{self, Alerter};
use strata::policy::backup::{
    alerts, journal, Failure, Outcome, Run, Target, TargetError, ThrottleCounts,
};
use strata::policy::hostconfig::HostConfig;
use strata::store::id::RepoId;
use strata::sys::runlock;
use strata::tree::record::SnapshotInfo;

use super::args::{BackupArgs, Global};
use super::{locked, print};

/// The running daemon, reached over its control socket.
struct Daemon {
    socket: PathBuf,
    mountpoint: PathBuf,
}

impl Daemon {
    fn call(&self, req: &Request) -> Result<Reply> {
        match control::call(&self.socket, req)? {
            Some(reply) => Ok(reply),
            None => bail!("the daemon stopped during the run"),
        }
    }
}

impl Target for Daemon {
    fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    fn snapshot(&self, label: Option<&str>, run: &RunRecord) -> Result<SnapshotInfo, TargetError> {
        match self.call(&Request::SnapshotCreate {
            label: label.map(str::to_owned),
            run: Some(Box::new(run.clone())),
        })? {
            Reply::Snapshot(info) => Ok(*info),
            other => Err(anyhow::anyhow!("unexpected answer from the daemon: {other:?}").into()),
        }
    }

    fn update(&self, seq: u64, run: &RunRecord) -> Result<(), TargetError> {
        self.call(&Request::SnapshotRun {
            seq,
            run: Box::new(run.clone()),
        })?;
        Ok(())
    }

    fn throttle(&self) -> Option<ThrottleCounts> {
        let Ok(Reply::Throttle(t)) = self.call(&Request::ThrottleShow) else {
            return None;
        };
        Some(ThrottleCounts {
            bytes: t.bytes,
            delayed_requests: t.delayed_requests,
            delay: t.total_delay,
            limit_bytes_per_sec: t.effective.bytes.map(|b| b.0),
        })
    }
}

pub fn run(g: &Global, a: &BackupArgs) -> Result<()> {
    if let Some(l) = &a.label {
        strata::tree::namespace::check_label(l)
            .map_err(|e| Reported(exit::USAGE, format!("--label: {e}")))?;
    }
    let config = HostConfig::load_or_default(a.config.as_deref())?;
    // The copy runs as root too: a copy command that names a file (a
    // script) is checked as the configuration's programs are. A bare name
    // (rsync) is found through the caller's own PATH, theirs to keep safe.
    let copy = a.command[0].to_string_lossy();
    if copy.contains('/') {
        let cwd = std::env::current_dir()?;
        strata::policy::hostconfig::check_program("the copy command", &copy, None, &cwd)?;
    }
    let repo = locked(g)?;
    let socket = super::socket(&repo);
    let not_mounted = || {
        Reported(
            exit::MOUNTPOINT,
            format!(
                "the repository {} is not mounted; mount it with `strata mount` first (a backup copies into MOUNTPOINT/head/)",
                g.repo.display()
            ),
        )
    };
    let Some(Reply::Status(status)) = control::call(&socket, &Request::Status)? else {
        return Err(not_mounted().into());
    };
    let mountpoint = PathBuf::from(status.mountpoint.clone().ok_or_else(not_mounted)?);
    let id: RepoId = repo.config().id.parse()?;
    let alerter = Alerter::from_config(&config.alerts, alert::state_path(&id)).map_err(|e| {
        Reported(
            exit::HOST_CONFIG,
            format!("the [alerts] configuration cannot be used: {e}"),
        )
    })?;
    let daemon = Daemon { socket, mountpoint };
    let _lock = run_lock(g, a, &repo.config().instance())?;
    // Asked again under the lock: a run that failed while this one waited
    // for it has marked the head since.
    let status = match daemon.call(&Request::Status)? {
        Reply::Status(s) => s,
        other => bail!("unexpected answer from the daemon: {other:?}"),
    };
    if let (Some(l), false) = (&status.leftovers, g.quiet) {
        eprintln!("strata backup: warning: {}", taken_over(l, None));
    }
    let started = Instant::now();
    let before = Counters::read(&daemon, &g.repo);
    let failed = |o: &Outcome, elapsed| {
        alert::raise_all(
            &alerter,
            id,
            alerts::run_failed(o, elapsed).into_iter().collect(),
        );
    };
    let hook_failed = |h: &HookOutcome, snapshot: Option<&SnapshotInfo>, elapsed| {
        alert::raise_all(
            &alerter,
            id,
            vec![alerts::hook_failed(h, snapshot, elapsed)],
        );
    };
    // A stop signal (Ctrl-C, `timeout`, a stopped unit) stops the program
    // being waited for with its group, then on-failure hooks and alerts run.
    strata::sys::process::catch_interrupts();
    let outcome = Run::new(
        &config,
        &daemon,
        a.label.clone(),
        a.command.clone(),
        g.quiet || g.json,
    )
    .taking_over(status.leftovers.clone())
    .on_failed(&failed)
    .on_hook_failed(&hook_failed)
    .execute();
    let slow = alerts::slow(&outcome, started.elapsed(), config.alerts.slow_snapshot);
    alert::raise_all(&alerter, id, slow.into_iter().collect());
    // What the run proved fixed is cleared: the next such failure is news
    // again, not a repeat to de-duplicate.
    alerts::resolve(&alerter, id, &outcome);
    if let (Some(f), None) = (&outcome.failure, &outcome.snapshot) {
        // No snapshot to store the record with: kept here instead.
        if let Err(e) = journal::keep(&repo.config().id, &outcome.record, f) {
            tracing::warn!(error = %e, "the failed run's record could not be kept");
        }
    }
    let mut summary = Summary::new(
        &outcome,
        before,
        Counters::read(&daemon, &g.repo),
        started.elapsed(),
    );
    if let Some(l) = mark_leftovers(
        &daemon,
        &outcome,
        &summary,
        a.label.clone(),
        status.latest.clone(),
    ) {
        summary.left_in_head = Some(l);
    }
    // A copy that ran and succeeded yet changed nothing is most often one
    // aimed elsewhere (a mistyped destination), not a quiet night: say so.
    let copied = outcome.record.copy.attempts > 0 && outcome.record.copy.ok();
    if copied && summary.nothing_written {
        let head = daemon.mountpoint.join("head");
        tracing::warn!(run = %outcome.record.run, "nothing was written into head/ during the run");
        if !g.quiet {
            eprintln!(
                "strata backup: warning: nothing was written into {}/ during the run; if anything changed since the last run, check the copy's destination",
                head.display()
            );
        }
    }
    let retention_error = match apply_retention(&daemon, &config, &outcome) {
        Some((r, e)) => {
            summary.retention = Some(r);
            e
        }
        None => None,
    };
    print(
        g,
        &Report {
            outcome: &outcome,
            summary: &summary,
        },
        || summary.text(),
    );
    if let Some(e) = retention_error {
        return Err(e.context(format!(
            "backup run {} ended good, but applying [retention] after it failed",
            outcome.record.run
        )));
    }
    match (&outcome.failure, outcome.record.status, strata::sys::process::interrupted_by()) {
        (None, RunStatus::Inconsistent, _) => Err(Reported(
            exit::INCONSISTENT,
            "the snapshot was taken but is marked inconsistent: a hook failed (see `strata snapshot show`)".into(),
        )
        .into()),
        (None, _, _) => Ok(()),
        (Some(f), _, Some(signal)) => Err(Reported(
                (128 + signal) as u8,
                format!(
                    "backup run {} stopped: strata was told to stop ({}); {f}",
                    outcome.record.run,
                strata::sys::process::signal_name(signal)
            ),
        )
        .into()),
        (Some(f), _, None) => {
            let code = match f {
                Failure::Hook(_) => exit::HOOK_FAILED,
                Failure::Copy(_) => exit::COPY_FAILED,
                Failure::Validation(_) => exit::VALIDATION_FAILED,
                Failure::Snapshot(_) => exit::ERROR,
            };
            // A failure after the snapshot (validation, post_snapshot) leaves
            // it in place: say so, lest a retry make a second one.
            let taken = outcome.snapshot.as_ref().map_or(String::new(), |s| {
                format!(
                    "; snapshot {} ({}) was taken, status {}",
                    s.seq,
                    s.name,
                    outcome.record.status.as_str()
                )
            });
            Err(Reported(
                code,
                format!("backup run {} failed: {f}{taken}", outcome.record.run),
            )
            .into())
        }
    }
}

/// Takes the repository's run lock for this run, waiting for the run in
/// progress if told to; refuses with exit 24 naming that run otherwise.
fn run_lock(g: &Global, a: &BackupArgs, repo_id: &str) -> Result<runlock::RunLock> {
    let path = runlock::path(&strata::sys::mountpoint::runtime_dir(), repo_id);
    let wait = a.wait.map(|w| w.map_or(Duration::MAX, Duration::from));
    let quiet = g.quiet || g.json;
    let me = runlock::Holder::me(a.label.clone());
    let taken = runlock::acquire(&path, &me, wait, |h| {
        if !quiet {
            eprintln!("strata backup: waiting for the backup run in progress ({h}) to end");
        }
    })
    .with_context(|| format!("taking the run lock {}", path.display()))?;
    taken.map_err(|h| {
        let waited = match wait {
            Some(w) if w < Duration::MAX => format!(" after waiting {}", humantime::format_duration(w)),
            _ => String::new(),
        };
        Reported(
            exit::RUN_IN_PROGRESS,
            format!(
                "another backup run is in progress on {} ({h}){waited}; this run did not start. Let it end, or queue behind it with --wait[=DURATION]",
                g.repo.display()
            ),
        )
        .into()
    })
}

/// Marks the head when this run failed after its copy wrote into head/:
/// the next run and `strata status` name it. Returns the marker in force
/// (an earlier failed run's, if head/ held its leftovers already).
fn mark_leftovers(
    daemon: &Daemon,
    o: &Outcome,
    summary: &Summary,
    label: Option<String>,
    last_good: Option<String>,
) -> Option<Leftovers> {
    let f = o.failure.as_ref()?;
    if o.record.copy.attempts == 0 || summary.nothing_written {
        return None;
    }
    let why = match strata::sys::process::interrupted_by() {
        Some(signal) => format!(
            "stopped by {}; {f}",
            strata::sys::process::signal_name(signal)
        ),
        None => f.to_string(),
    };
    let mine = Leftovers {
        run: o.record.run.clone(),
        label,
        started: o.record.started,
        why,
        last_good,
    };
    match daemon.call(&Request::LeftoversRecord { leftovers: mine }) {
        Ok(Reply::Leftovers(l)) => Some(*l),
        Ok(other) => {
            tracing::warn!(answer = ?other, "unexpected answer to recording leftovers");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the failed run's leftovers could not be marked in the head");
            eprintln!("strata backup: warning: head/ keeps this run's partial copy, and marking that in the repository failed ({}); roll head/ back with `strata head reset --to SNAPSHOT` before the next run", strata::sys::chain::Chain(&*e));
            None
        }
    }
}

/// The warning about leftovers a run took over (`snapshot`: the snapshot
/// that now holds them, if taken).
fn taken_over(l: &Leftovers, snapshot: Option<&str>) -> String {
    let holds = match snapshot {
        Some(name) => format!("this run's snapshot {name} holds them too, where the copy did not replace them (its record says so)"),
        None => "this run's snapshot will hold them too, where the copy does not replace them".to_owned(),
    };
    format!(
        "head/ held the leftovers of {l}; {holds}. {}",
        reset_hint(l)
    )
}

/// How to roll head/ back before a failed run `l`.
fn reset_hint(l: &Leftovers) -> String {
    match &l.last_good {
        Some(good) => format!("To start from the last good snapshot instead, run `strata head reset --to {good}` before the copy"),
        None => "No good snapshot was taken before it to reset head/ to (`strata snapshot list`)".to_owned(),
    }
}

/// What `--json` prints: the outcome and its summary.
#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    outcome: &'a Outcome,
    summary: &'a Summary,
}

/// FUSE requests that change the head.
const CHANGES: &[&str] = &[
    "create",
    "mknod",
    "mkdir",
    "symlink",
    "link",
    "write",
    "setattr",
    "setxattr",
    "removexattr",
    "rename",
    "unlink",
    "rmdir",
];

/// What the daemon and the repository have counted so far; a run's
/// summary is the difference of two readings. A reading that fails
/// (daemon gone) counts zero, and the summary says nothing was written
/// only when both readings came from the daemon.
#[derive(Clone, Copy, Default)]
struct Counters {
    /// Whether the daemon answered.
    read: bool,
    /// Files created in the head (create, mknod).
    created: u64,
    /// Write requests into the head.
    writes: u64,
    /// Bytes they wrote (as the write throttle counts them).
    written: u64,
    /// Requests of any kind that change the head.
    changes: u64,
    /// Bytes of pack files in the repository.
    packed: u64,
}

impl Counters {
    fn read(daemon: &Daemon, repo: &Path) -> Counters {
        let mut c = Counters {
            packed: packed_bytes(repo),
            ..Counters::default()
        };
        if let Ok(Reply::Status(s)) = daemon.call(&Request::Status) {
            let n = |op: &str| s.fuse_requests.get(op).copied().unwrap_or(0);
            c.read = true;
            c.created = n("create") + n("mknod");
            c.writes = n("write");
            c.written = s.throttle.map_or(0, |t| t.bytes);
            c.changes = CHANGES.iter().map(|op| n(op)).sum();
        }
        c
    }
}

/// The size of the repository's packs, finished and open: what dedup
/// and compression left to store.
fn packed_bytes(repo: &Path) -> u64 {
    [
        strata::store::format::PACKS_DIR,
        strata::store::format::OPEN_DIR,
    ]
    .iter()
    .map(|d| tree_bytes(&repo.join(d)))
    .sum()
}

fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => tree_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// What a run did, for the terminal and `--json`.
#[derive(Serialize)]
struct Summary {
    run: String,
    /// The snapshot's name under snapshots/, if one was taken.
    snapshot: Option<String>,
    status: &'static str,
    /// Seconds the run took.
    duration: f64,
    /// Files created in head/ (rsync's temporary files included).
    files_created: u64,
    /// Write requests into head/.
    write_requests: u64,
    /// Bytes they wrote.
    bytes_written: u64,
    /// Bytes newly stored in the repository's packs, after dedup and compression.
    bytes_stored: u64,
    /// The head was not changed at all during the run.
    nothing_written: bool,
    /// The failed run whose leftovers head/ held when this run began
    /// (its snapshot holds them too).
    leftovers_taken_over: Option<Leftovers>,
    /// The failed run whose leftovers head/ holds after this run failed
    /// (this one, after its copy wrote into head/, or an earlier one).
    left_in_head: Option<Leftovers>,
    /// What [retention] forgot after the run, if it has rules and the run
    /// ended good.
    retention: Option<Retention>,
}

/// The configured policy, applied after a good run.
#[derive(Serialize)]
struct Retention {
    /// The rules.
    policy: Option<String>,
    /// The snapshots forgotten, by name.
    forgotten: Vec<String>,
    /// How many are kept.
    kept: u64,
    /// Why it failed, if it did (the run itself ended good).
    error: Option<String>,
}

impl Retention {
    fn text(&self) -> String {
        match &self.error {
            Some(e) => format!("\nretention FAILED: {e}"),
            None => format!(
                "\nretention ({}): forgot {} snapshot(s){}, kept {}",
                self.policy.as_deref().unwrap_or("-"),
                self.forgotten.len(),
                match self.forgotten.as_slice() {
                    [] => String::new(),
                    names => format!(" ({})", names.join(", ")),
                },
                self.kept
            ),
        }
    }
}

/// Applies [retention] through the daemon after a run that ended good;
/// `None` when it has no rules. A failure is reported with the summary,
/// and its error returned to decide the exit code.
fn apply_retention(
    daemon: &Daemon,
    config: &HostConfig,
    outcome: &Outcome,
) -> Option<(Retention, Option<anyhow::Error>)> {
    let good = outcome.failure.is_none()
        && matches!(
            outcome.record.status,
            RunStatus::Complete | RunStatus::Validated
        );
    if !good || !config.retention.has_rules() {
        return None;
    }
    let req = Request::Forget {
        snapshots: Vec::new(),
        retention: config.retention.clone(),
        dry_run: false,
    };
    Some(match daemon.call(&req) {
        Ok(Reply::Forget(r)) => (
            Retention {
                policy: r.policy,
                forgotten: r
                    .snapshots
                    .into_iter()
                    .filter(|l| !l.keep)
                    .map(|l| l.name)
                    .collect(),
                kept: r.kept,
                error: None,
            },
            None,
        ),
        Ok(other) => {
            let e = anyhow::anyhow!("unexpected answer from the daemon: {other:?}");
            (Retention::failed(&e), Some(e))
        }
        Err(e) => (Retention::failed(&e), Some(e)),
    })
}

impl Retention {
    fn failed(e: &anyhow::Error) -> Retention {
        Retention {
            policy: None,
            forgotten: Vec::new(),
            kept: 0,
            error: Some(format!("{e:#}")),
        }
    }
}

impl Summary {
    fn new(o: &Outcome, before: Counters, after: Counters, elapsed: Duration) -> Summary {
        Summary {
            run: o.record.run.clone(),
            snapshot: o.snapshot.as_ref().map(|s| s.name.clone()),
            status: o.record.status.as_str(),
            duration: elapsed.as_secs_f64(),
            files_created: after.created.saturating_sub(before.created),
            write_requests: after.writes.saturating_sub(before.writes),
            bytes_written: after.written.saturating_sub(before.written),
            bytes_stored: after.packed.saturating_sub(before.packed),
            nothing_written: before.read && after.read && after.changes == before.changes,
            // Taken over only into a snapshot; without one, head/ still
            // holds them (and the marker stays).
            leftovers_taken_over: o.record.leftovers.clone().filter(|_| o.snapshot.is_some()),
            left_in_head: o.record.leftovers.clone().filter(|_| o.snapshot.is_none()),
            retention: None,
        }
    }

    fn text(&self) -> String {
        let snapshot = match &self.snapshot {
            Some(name) => format!("snapshot {name} {}", self.status),
            None => "no snapshot taken".to_owned(),
        };
        let mut warnings = String::new();
        if let Some(l) = &self.leftovers_taken_over {
            warnings.push_str(&format!(
                "\nwarning: {}",
                taken_over(l, self.snapshot.as_deref())
            ));
        }
        if let Some(l) = &self.left_in_head {
            warnings.push_str(&format!(
                "\nwarning: head/ holds the leftovers of {l}. {}; the next run warns until then",
                reset_hint(l).replace("before the copy", "before the next run")
            ));
        }
        warnings.insert_str(0, &format!(
            "backup run {}: {snapshot}; {} files created and {} written into head/ ({} writes), {} newly stored, in {:.1} s",
            self.run,
            self.files_created,
            strata::policy::throttle::rate::format_bytes(self.bytes_written as f64),
            self.write_requests,
            strata::policy::throttle::rate::format_bytes(self.bytes_stored as f64),
            self.duration,
        ));
        if let Some(r) = &self.retention {
            warnings.push_str(&r.text());
        }
        warnings
    }
}
