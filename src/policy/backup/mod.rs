//! A backup run: pre-backup hooks (sessions start), the copy, sessions
//! told to finish, post-backup hooks, the snapshot, validation hooks
//! against the finished snapshot, post-snapshot hooks; on-failure hooks
//! after any failure. One outcome, one exit code for cron and systemd.
//!
//! A snapshot that validation hooks will check is stored as pending, and
//! `latest` (and its label) move to it only once its status is final and
//! good, unless the host policy says `latest = "always"`.

pub mod alerts;
pub mod hook;
pub mod journal;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::policy::hostconfig::{FailurePolicy, HookConfig, HostConfig, LatestPolicy};
use crate::sys::chain::Chain;
use crate::tree::record::SnapshotInfo;
use crate::tree::record::{HookOutcome, Phase, RunRecord, RunStatus};
use hook::{Env, Session};

/// Lines of a failed hook's standard error shown with the failure.
const STDERR_LINES: usize = 10;

/// Placeholder in the copy command replaced by a redirected source.
pub const SOURCE_PLACEHOLDER: &str = "{source}";

/// Why a [`Target`] failed. The target is the binary's (the daemon reached
/// over its socket); the run only shows the error, with its causes, in the
/// run's failure.
pub type TargetError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where a run takes its snapshot: the running daemon.
pub trait Target {
    /// The mountpoint (hooks get `head/` and the snapshot's directory under it).
    fn mountpoint(&self) -> &Path;
    /// Takes a snapshot stored with `run`.
    fn snapshot(&self, label: Option<&str>, run: &RunRecord) -> Result<SnapshotInfo, TargetError>;
    /// Replaces the snapshot's run record with a newer revision.
    fn update(&self, seq: u64, run: &RunRecord) -> Result<(), TargetError>;
    /// The write throttle's counts since the target started, if it has a
    /// throttle: the run records the difference over itself.
    fn throttle(&self) -> Option<ThrottleCounts> {
        None
    }
}

/// A write throttle's running totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThrottleCounts {
    /// Bytes admitted.
    pub bytes: u64,
    /// Requests told to wait.
    pub delayed_requests: u64,
    /// Delay handed out.
    pub delay: std::time::Duration,
    /// The byte limit in force.
    pub limit_bytes_per_sec: Option<u64>,
}

impl ThrottleCounts {
    /// What happened between `start` and `self`, as a run records it.
    pub fn since(&self, start: &ThrottleCounts) -> crate::tree::record::RunIo {
        crate::tree::record::RunIo {
            written_bytes: self.bytes.saturating_sub(start.bytes),
            delayed_requests: self.delayed_requests.saturating_sub(start.delayed_requests),
            delay_ms: self.delay.saturating_sub(start.delay).as_millis() as u64,
            limit_bytes_per_sec: self.limit_bytes_per_sec,
        }
    }
}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "class", content = "message", rename_all = "snake_case")]
pub enum Failure {
    /// A hook failed or timed out and its policy aborts the run.
    Hook(String),
    /// The copy command failed.
    Copy(String),
    /// The snapshot could not be taken or recorded.
    Snapshot(String),
    /// Validation of the snapshot failed.
    Validation(String),
}

impl Failure {
    /// The run's failure for a hook that stopped it; the record keeps the
    /// error's text.
    fn hook(e: HookFailed) -> Failure {
        Failure::Hook(e.to_string())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Hook(m) | Failure::Copy(m) | Failure::Snapshot(m) | Failure::Validation(m) => {
                f.write_str(m)
            }
        }
    }
}

/// A hook whose failure stops the phase it ran in, under its
/// `on_failure = "abort"`.
#[derive(Debug, thiserror::Error)]
#[error("{} hook {name}: {why}", .phase.as_str())]
struct HookFailed {
    /// The phase it ran in.
    phase: Phase,
    /// The hook.
    name: String,
    /// What went wrong, as its outcome records it (text: the outcome is
    /// a record).
    why: String,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The run record (also stored with the snapshot, if one was taken).
    pub record: RunRecord,
    /// The snapshot, if one was taken.
    pub snapshot: Option<SnapshotInfo>,
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
}

/// Told of a failed run's outcome so far and how long it has run.
pub type FailureHandler<'a> = dyn Fn(&Outcome, Duration) + 'a;

/// Told of a hook that failed without stopping the run (under
/// mark-inconsistent): the hook, the snapshot if one is taken yet, and how
/// long the run has run.
pub type HookFailureHandler<'a> = dyn Fn(&HookOutcome, Option<&SnapshotInfo>, Duration) + 'a;

/// One backup run.
pub struct Run<'a> {
    config: &'a HostConfig,
    target: &'a dyn Target,
    label: Option<String>,
    command: Vec<OsString>,
    record: RunRecord,
    /// Variables every hook gets (before the per-phase ones).
    base_env: Env,
    /// The copy's source, once a hook redirected it.
    source: Option<String>,
    inconsistent: bool,
    sessions: Vec<(&'a HookConfig, Session)>,
    /// Progress lines go to standard error unless quiet.
    quiet: bool,
    /// Told of a failure at once, before the on-failure hooks run.
    on_failed: Option<&'a FailureHandler<'a>>,
    /// Told of a hook failure the run goes on from, at once.
    on_hook_failed: Option<&'a HookFailureHandler<'a>>,
    /// The snapshot, once taken.
    taken: Option<SnapshotInfo>,
    started: Instant,
    /// The throttle's totals when the run started.
    throttle_start: Option<ThrottleCounts>,
}

impl<'a> Run<'a> {
    /// A run of `command` (the copy) under `config`, snapshotting into `target`.
    pub fn new(
        config: &'a HostConfig,
        target: &'a dyn Target,
        label: Option<String>,
        command: Vec<OsString>,
        quiet: bool,
    ) -> Run<'a> {
        let started = crate::tree::types::Timestamp::now().secs;
        let run = format!("{started:x}-{:08x}", rand::random::<u32>());
        let mut base_env: Env = config
            .backup
            .env_allow
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
            .collect();
        let mnt = target.mountpoint();
        base_env.insert("STRATA_RUN".into(), run.clone());
        base_env.insert("STRATA_MOUNTPOINT".into(), mnt.display().to_string());
        base_env.insert("STRATA_HEAD".into(), mnt.join("head").display().to_string());
        base_env.insert("STRATA_LABEL".into(), label.clone().unwrap_or_default());
        Run {
            config,
            target,
            label,
            command,
            record: RunRecord {
                run,
                revision: 1,
                status: RunStatus::Pending,
                latest: false,
                started,
                copy: HookOutcome::default(),
                hooks: Vec::new(),
                leftovers: None,
                io: None,
            },
            base_env,
            source: None,
            inconsistent: false,
            sessions: Vec::new(),
            quiet,
            on_failed: None,
            on_hook_failed: None,
            taken: None,
            started: Instant::now(),
            throttle_start: target.throttle(),
        }
    }

    /// Records in the run (and its snapshot) that head/ holds what failed
    /// run `l` left there: the snapshot takes them over.
    pub fn taking_over(mut self, l: Option<crate::tree::record::Leftovers>) -> Run<'a> {
        self.record.leftovers = l;
        self
    }

    /// Calls `f` with the outcome so far as soon as the run fails (to raise
    /// the alert without waiting for the on-failure hooks).
    pub fn on_failed(mut self, f: &'a FailureHandler<'a>) -> Run<'a> {
        self.on_failed = Some(f);
        self
    }

    /// Calls `f` as soon as a hook fails without stopping the run (so its
    /// alert does not wait for the copy to end).
    pub fn on_hook_failed(mut self, f: &'a HookFailureHandler<'a>) -> Run<'a> {
        self.on_hook_failed = Some(f);
        self
    }

    /// Runs it to the end.
    pub fn execute(mut self) -> Outcome {
        let config = self.config;
        tracing::info!(run = %self.record.run, "backup run started");
        if let Err(f) = self.until_snapshot() {
            // Told to stop: what follows is the cleanup, which must run.
            crate::sys::process::take_interrupt();
            for (_, s) in std::mem::take(&mut self.sessions).into_iter().rev() {
                let out = s.abandon();
                self.note(Phase::PreBackup, out);
            }
            self.on_failure(None, &f);
            return self.outcome(None, Some(f));
        }
        let validating = self.config.hooks(Phase::Validate).next().is_some();
        self.record.status = match (validating, self.inconsistent) {
            (true, _) => RunStatus::Pending,
            (false, true) => RunStatus::Inconsistent,
            (false, false) => RunStatus::Complete,
        };
        self.record.latest = self.latest_allowed();
        if let (Some(start), Some(now)) = (&self.throttle_start, self.target.throttle()) {
            self.record.io = Some(now.since(start));
        }
        let snap = match self.target.snapshot(self.label.as_deref(), &self.record) {
            Ok(s) => s,
            Err(e) => {
                let f = Failure::Snapshot(format!("the snapshot failed: {}", Chain(&*e)));
                self.on_failure(None, &f);
                return self.outcome(None, Some(f));
            }
        };
        self.say(&format!("snapshot {} ({}) taken", snap.seq, snap.name));
        self.taken = Some(snap.clone());
        let dir = self.target.mountpoint().join("snapshots").join(&snap.name);
        self.base_env
            .insert("STRATA_SNAPSHOT".into(), dir.display().to_string());
        self.base_env
            .insert("STRATA_SNAPSHOT_NAME".into(), snap.name.clone());
        let mut failure = None;
        if validating {
            let mut failed = None;
            for h in config.hooks(Phase::Validate) {
                if let Err(why) = self.run_hook(h) {
                    failed.get_or_insert(why);
                }
            }
            self.record.status = match (&failed, self.inconsistent) {
                (Some(_), _) => RunStatus::Failed,
                (None, true) => RunStatus::Inconsistent,
                (None, false) => RunStatus::Validated,
            };
            // The run's failure is a record: it keeps the error's text.
            failure = failed.map(|f| Failure::Validation(f.to_string()));
            self.record.latest = self.latest_allowed();
            if let Err(f) = self.update(snap.seq) {
                failure.get_or_insert(f);
            }
        }
        if failure.is_none() {
            let mut any = false;
            for h in config.hooks(Phase::PostSnapshot) {
                any = true;
                if let Err(why) = self.run_hook(h) {
                    failure.get_or_insert(Failure::hook(why));
                }
            }
            if any {
                if let Err(f) = self.update(snap.seq) {
                    failure.get_or_insert(f);
                }
            }
        }
        if let Some(f) = &failure {
            let hooks = self.config.hooks(Phase::OnFailure).next().is_some();
            self.on_failure(Some(&snap), f);
            if hooks {
                if let Err(e) = self.update(snap.seq) {
                    tracing::warn!(error = %e, "recording the on-failure hooks failed");
                }
            }
        }
        self.outcome(Some(snap), failure)
    }

    /// Everything before the snapshot.
    fn until_snapshot(&mut self) -> Result<(), Failure> {
        let config = self.config;
        self.check_placeholder()?;
        for h in config.hooks(Phase::PreBackup) {
            if h.session {
                self.start_session(h)?;
            } else {
                self.run_hook(h).map_err(Failure::hook)?;
            }
        }
        self.copy()?;
        // Sessions end in the reverse order they started, before the
        // snapshot, so what they write (backup_label, the WAL) is in it.
        while let Some((h, s)) = self.sessions.pop() {
            let out = s.finish();
            self.settle_hook(h, Phase::PreBackup, out)
                .map_err(Failure::hook)?;
        }
        for h in config.hooks(Phase::PostBackup) {
            self.run_hook(h).map_err(Failure::hook)?;
        }
        Ok(())
    }

    fn uses_placeholder(&self) -> bool {
        self.command
            .iter()
            .any(|a| a.to_string_lossy().contains(SOURCE_PLACEHOLDER))
    }

    fn check_placeholder(&self) -> Result<(), Failure> {
        let redirects = self.config.hooks(Phase::PreBackup).next().is_some();
        if self.uses_placeholder() && !redirects {
            return Err(Failure::Copy(format!(
                "the copy command uses {SOURCE_PLACEHOLDER} but no pre_backup hook is configured to print source=PATH"
            )));
        }
        Ok(())
    }

    fn start_session(&mut self, h: &'a HookConfig) -> Result<(), Failure> {
        self.say(&format!("session hook {}: starting", h.name));
        match Session::start(h, &self.env(Phase::PreBackup)) {
            Ok(s) => {
                if let Some(src) = &s.source {
                    self.source = Some(src.clone());
                }
                self.sessions.push((h, s));
                self.say(&format!("session hook {}: ready", h.name));
                Ok(())
            }
            Err(out) => self
                .settle_hook(h, Phase::PreBackup, *out)
                .map_err(Failure::hook),
        }
    }

    /// Runs `h` and records it; `Err` if its failure stops the phase.
    fn run_hook(&mut self, h: &HookConfig) -> Result<(), HookFailed> {
        let env = self.env(h.phase);
        let out = hook::run(h, &env);
        self.settle_hook(h, h.phase, out)
    }

    fn settle_hook(
        &mut self,
        h: &HookConfig,
        phase: Phase,
        out: HookOutcome,
    ) -> Result<(), HookFailed> {
        let error = out.error.clone();
        if h.phase == Phase::PreBackup {
            if let Some(src) = out.points.get("source") {
                self.source = Some(src.clone());
            }
        }
        self.note(phase, out);
        let Some(why) = error else {
            return Ok(());
        };
        let why = HookFailed {
            phase,
            name: h.name.clone(),
            why,
        };
        match h.on_failure {
            FailurePolicy::Abort => Err(why),
            FailurePolicy::MarkInconsistent => {
                self.say(&format!("{why}; the snapshot will be marked inconsistent"));
                self.inconsistent = true;
                if let (Some(tell), Some(h)) = (self.on_hook_failed, self.record.hooks.last()) {
                    tell(h, self.taken.as_ref(), self.started.elapsed());
                }
                Ok(())
            }
        }
    }

    fn note(&mut self, phase: Phase, mut out: HookOutcome) {
        out.phase = Some(phase);
        let how = match &out.error {
            None => "ok".to_owned(),
            Some(e) => format!("FAILED: {e}"),
        };
        self.say(&format!(
            "{} hook {}: {how} ({:.1} s)",
            phase.as_str(),
            out.name,
            out.millis as f64 / 1000.0
        ));
        tracing::info!(
            run = %self.record.run,
            hook = %out.name,
            phase = phase.as_str(),
            exit = ?out.exit,
            timed_out = out.timed_out,
            millis = out.millis,
            ok = out.ok(),
            "hook finished"
        );
        if !out.ok() {
            self.stderr_tail(&out);
        }
        self.record.hooks.push(out);
    }

    /// The copy command: the caller's own program, with the caller's
    /// environment and terminal, plus the run's variables.
    fn copy(&mut self) -> Result<(), Failure> {
        if self.source.is_none() && self.uses_placeholder() {
            return Err(Failure::Copy(format!(
                "the copy command uses {SOURCE_PLACEHOLDER} but no pre_backup hook printed source=PATH; nothing was copied (check the hook that should redirect the source)"
            )));
        }
        let args: Vec<OsString> = self
            .command
            .iter()
            .map(|a| match &self.source {
                Some(src) => a.to_string_lossy().replace(SOURCE_PLACEHOLDER, src).into(),
                None => a.clone(),
            })
            .collect();
        let program = PathBuf::from(&args[0]);
        self.say(&format!("copy: {}", program.display()));
        let started = Instant::now();
        let mut out = HookOutcome {
            name: "copy".into(),
            attempts: 1,
            ..HookOutcome::default()
        };
        let mut cmd = Command::new(&args[0]);
        cmd.args(&args[1..]).process_group(0);
        for (k, v) in &self.base_env {
            if k.starts_with("STRATA_") {
                cmd.env(k, v);
            }
        }
        if let Some(src) = &self.source {
            cmd.env("STRATA_SOURCE", src);
        }
        use std::os::unix::process::CommandExt;
        match crate::sys::process::spawn(&mut cmd) {
            Ok(mut child) => {
                let deadline = self
                    .config
                    .backup
                    .copy_timeout
                    .map(|t| started + t)
                    .unwrap_or(started + std::time::Duration::from_secs(100 * 365 * 86400));
                let ended = crate::sys::process::wait_or_kill(
                    &mut child,
                    deadline,
                    crate::sys::process::KILL_GRACE,
                );
                hook::settle(&mut out, ended, &self.config.backup.ok_exit);
            }
            Err(e) => out.error = Some(format!("cannot start {}: {e}", program.display())),
        }
        out.millis = started.elapsed().as_millis() as u64;
        let error = out.error.clone();
        self.say(&format!(
            "copy: {} ({:.1} s)",
            error
                .as_deref()
                .map_or("ok".into(), |e| format!("FAILED: {e}")),
            out.millis as f64 / 1000.0
        ));
        self.record.copy = out;
        match error {
            Some(e) => Err(Failure::Copy(format!(
                "the copy command {}: {e}",
                program.display()
            ))),
            None => Ok(()),
        }
    }

    fn on_failure(&mut self, snapshot: Option<&SnapshotInfo>, f: &Failure) {
        crate::sys::process::take_interrupt();
        if let Some(tell) = self.on_failed {
            let so_far = Outcome {
                record: self.record.clone(),
                snapshot: snapshot.cloned(),
                failure: Some(f.clone()),
            };
            tell(&so_far, self.started.elapsed());
        }
        for h in self.config.hooks(Phase::OnFailure) {
            let mut env = self.env(Phase::OnFailure);
            env.insert("STRATA_FAILURE".into(), f.to_string());
            let out = hook::run(h, &env);
            self.note(Phase::OnFailure, out);
        }
    }

    fn update(&mut self, seq: u64) -> Result<(), Failure> {
        self.record.revision += 1;
        self.target.update(seq, &self.record).map_err(|e| {
            Failure::Snapshot(format!(
                "recording the run with snapshot {seq} failed: {}",
                Chain(&*e)
            ))
        })
    }

    fn latest_allowed(&self) -> bool {
        self.config.backup.latest == LatestPolicy::Always || self.record.status.is_good()
    }

    fn env(&self, phase: Phase) -> Env {
        let mut env = self.base_env.clone();
        env.insert("STRATA_PHASE".into(), phase.as_str().into());
        if let Some(src) = &self.source {
            env.insert("STRATA_SOURCE".into(), src.clone());
        }
        env
    }

    /// The end of a failed hook's standard error, on ours even when quiet
    /// (an error, not progress): the terminal, or the journal under systemd.
    fn stderr_tail(&self, out: &HookOutcome) {
        let lines: Vec<&str> = out.stderr.lines().collect();
        if lines.is_empty() {
            return;
        }
        let tail = &lines[lines.len().saturating_sub(STDERR_LINES)..];
        let mut text = format!(
            "strata backup: hook {} failed; the end of its standard error:\n",
            out.name
        );
        for line in tail {
            text.push_str(&format!("  | {line}\n"));
        }
        eprint!("{text}");
        tracing::info!(run = %self.record.run, hook = %out.name, stderr = tail.join("\n"), "failed hook's standard error");
    }

    fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("strata backup: {line}");
        }
    }

    fn outcome(mut self, snapshot: Option<SnapshotInfo>, failure: Option<Failure>) -> Outcome {
        if failure.is_some() && snapshot.is_none() {
            // Stopped before its snapshot: nothing is left pending.
            self.record.status = RunStatus::Failed;
        }
        match &failure {
            None => {
                tracing::info!(run = %self.record.run, status = self.record.status.as_str(), "backup run finished")
            }
            Some(f) => tracing::error!(run = %self.record.run, error = %f, "backup run failed"),
        }
        Outcome {
            record: self.record,
            snapshot,
            failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopping_hook_is_recorded_with_its_phase_and_name() {
        let e = HookFailed {
            phase: Phase::Validate,
            name: "fsck".into(),
            why: "it failed (exit status 1)".into(),
        };
        assert_eq!(
            Failure::hook(e),
            Failure::Hook("validate hook fsck: it failed (exit status 1)".into())
        );
    }
}
