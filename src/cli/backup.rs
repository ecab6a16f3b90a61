//! `strata backup`: a backup run against the mounted repository.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use strata::backup::record::{HookOutcome, RunRecord, RunStatus};

use strata::alert::{self, Alerter};
use strata::backup::{alerts, runlock, Failure, Outcome, Run, Target};
use strata::control::{self, Reply, Request, SnapshotInfo};
use strata::exit::{self, Reported};
use strata::hostconfig::HostConfig;
use strata::id::RepoId;

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

    fn snapshot(&self, label: Option<&str>, run: &RunRecord) -> Result<SnapshotInfo> {
        match self.call(&Request::SnapshotCreate {
            label: label.map(str::to_owned),
            run: Some(Box::new(run.clone())),
        })? {
            Reply::Snapshot(info) => Ok(*info),
            other => bail!("unexpected answer from the daemon: {other:?}"),
        }
    }

    fn update(&self, seq: u64, run: &RunRecord) -> Result<()> {
        self.call(&Request::SnapshotRun {
            seq,
            run: Box::new(run.clone()),
        })?;
        Ok(())
    }
}

pub fn run(g: &Global, a: &BackupArgs) -> Result<()> {
    if let Some(l) = &a.label {
        strata::namespace::check_label(l)
            .map_err(|e| Reported(exit::USAGE, format!("--label: {e}")))?;
    }
    let config = HostConfig::load_or_default(a.config.as_deref())?;
    // The copy runs as root too: a copy command that names a file (a
    // script) is checked as the configuration's programs are. A bare name
    // (rsync) is found through the caller's own PATH, theirs to keep safe.
    let copy = a.command[0].to_string_lossy();
    if copy.contains('/') {
        let cwd = std::env::current_dir()?;
        strata::hostconfig::check_program("the copy command", &copy, None, &cwd)?;
    }
    let repo = locked(g)?;
    let socket = strata::mountpoint::socket_path(&repo.config().id);
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
    let mountpoint = PathBuf::from(status.mountpoint.ok_or_else(not_mounted)?);
    let id: RepoId = repo.config().id.parse()?;
    let alerter = Alerter::from_config(&config.alerts, alert::state_path(&id)).map_err(|e| {
        Reported(
            exit::HOST_CONFIG,
            format!("the [alerts] configuration cannot be used: {e}"),
        )
    })?;
    let daemon = Daemon { socket, mountpoint };
    let _lock = run_lock(g, a, &repo.config().id)?;
    let started = Instant::now();
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
    strata::process::catch_interrupts();
    let outcome = Run::new(
        &config,
        &daemon,
        a.label.clone(),
        a.command.clone(),
        g.quiet || g.json,
    )
    .on_failed(&failed)
    .on_hook_failed(&hook_failed)
    .execute();
    let slow = alerts::slow(&outcome, started.elapsed(), config.alerts.slow_snapshot);
    alert::raise_all(&alerter, id, slow.into_iter().collect());
    if outcome.failure.is_none() {
        // The next failure is news again, not a repeat to de-duplicate.
        let _ = alerter.resolve(alert::Kind::RunFailed, Some(id));
    }
    print(g, &outcome, || summary(&outcome));
    match (&outcome.failure, outcome.record.status, strata::process::interrupted_by()) {
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
                strata::process::signal_name(signal)
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
    let path = runlock::path(&strata::mountpoint::runtime_dir(), repo_id);
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

fn summary(o: &Outcome) -> String {
    match &o.snapshot {
        Some(s) => format!(
            "backup run {}: snapshot {} ({}) {}",
            o.record.run,
            s.seq,
            s.name,
            o.record.status.as_str()
        ),
        None => format!("backup run {}: no snapshot taken", o.record.run),
    }
}
