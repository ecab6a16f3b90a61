//! Running one hook: a program from the host configuration, started with
//! a cleared environment, no inherited descriptors and its own process
//! group, killed with its group when it runs past its timeout, retried
//! with exponential backoff and jitter only when declared idempotent.
//!
//! A session hook stays alive during the copy: it prints `ready` once its
//! consistent state holds, and ends when told `finish` on its standard
//! input. A hook's `key=value` lines on standard output are its
//! consistency point.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ChildStdin, ExitStatus};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::policy::hostconfig::HookConfig;
use crate::sys::process::{self, Capture, Ended, Program};
use crate::tree::record::HookOutcome;

/// How much of each output stream is kept with the snapshot.
pub const OUTPUT_TAIL: usize = 16 << 10;

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The environment a hook gets: nothing but these variables.
pub type Env = BTreeMap<String, String>;

/// Runs `hook` to completion, with its retries.
pub fn run(hook: &HookConfig, env: &Env) -> HookOutcome {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut out = run_once(hook, env);
        out.attempts = attempt;
        out.millis = started.elapsed().as_millis() as u64;
        if out.ok() || !hook.idempotent || attempt > hook.retries {
            return out;
        }
        let delay = backoff(hook.retry_delay, attempt, rand::random::<f64>());
        tracing::warn!(
            hook = %hook.name,
            attempt,
            delay_ms = delay.as_millis() as u64,
            error = out.error.as_deref().unwrap_or(""),
            "hook failed; retrying"
        );
        std::thread::sleep(delay);
    }
}

/// The wait after failed attempt `attempt` (from 1): `base` doubled per
/// attempt, capped, then drawn from its upper half ("equal jitter"), so
/// hooks failing together do not retry in lockstep. `unit` is in [0, 1).
pub fn backoff(base: Duration, attempt: u32, unit: f64) -> Duration {
    let full = base
        .saturating_mul(1 << (attempt - 1).min(20))
        .min(MAX_BACKOFF);
    full / 2 + full.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
}

fn run_once(hook: &HookConfig, env: &Env) -> HookOutcome {
    let mut running = match Running::start(hook, env, false) {
        Ok(r) => r,
        Err(out) => return *out,
    };
    let status = running.process.wait(Instant::now() + hook.timeout);
    running.finish(status)
}

/// A session hook between `ready` and `finish`.
pub struct Session {
    /// A `source=PATH` it printed before `ready`: the copy reads from there.
    pub source: Option<String>,
    running: Running,
    stdin: Option<ChildStdin>,
    timeout: Duration,
    started: Instant,
}

impl Session {
    /// Starts `hook` and waits until it prints `ready`. Its outcome if it
    /// fails, exits or times out first.
    pub fn start(hook: &HookConfig, env: &Env) -> Result<Session, Box<HookOutcome>> {
        let started = Instant::now();
        let mut running = Running::start(hook, env, true)?;
        let stdin = running.process.take_stdin();
        let deadline = started + hook.timeout;
        let lines = running.lines.take().expect("session lines");
        let mut source = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) if line.trim() == "ready" => {
                    return Ok(Session {
                        source,
                        running,
                        stdin,
                        timeout: hook.timeout,
                        started,
                    })
                }
                Ok(line) => {
                    if let Some(path) = line.trim().strip_prefix("source=") {
                        source = Some(path.to_owned());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Output closed: it exited, or will.
                    let status = running.process.wait(deadline);
                    let mut out = running.finish(status);
                    if out.ok() {
                        out.error = Some("it exited without printing \"ready\"".into());
                    }
                    return Err(Box::new(out));
                }
            }
            if Instant::now() >= deadline || process::interrupt_pending().is_some() {
                let status = running.process.wait(Instant::now());
                return Err(Box::new(running.finish(status)));
            }
        }
    }

    /// Tells the session to finish (`finish` on its standard input) and
    /// waits for it. A session that ended before being told has failed:
    /// whatever it held (a backup mode, a lock) was released too early.
    pub fn finish(mut self) -> HookOutcome {
        let early = self.running.process.try_wait().ok().flatten();
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"finish\n");
        }
        let status = self.running.process.wait(Instant::now() + self.timeout);
        let mut out = self.running.finish(status);
        out.attempts = 1;
        out.millis = self.started.elapsed().as_millis() as u64;
        if let Some(early) = early {
            out.error = Some(format!(
                "the session ended before it was told to finish ({}); the copy may not be consistent",
                describe(early)
            ));
        }
        out
    }

    /// Ends the session without `finish` (the run failed): its standard
    /// input closes, and it must undo what it started and exit.
    pub fn abandon(mut self) -> HookOutcome {
        drop(self.stdin.take());
        let status = self.running.process.wait(Instant::now() + self.timeout);
        let mut out = self.running.finish(status);
        out.attempts = 1;
        out.millis = self.started.elapsed().as_millis() as u64;
        out
    }
}

/// A started hook process and the threads collecting its output.
struct Running {
    name: String,
    session: bool,
    process: process::Running,
    /// Standard output line by line, for a session (a hook's is dropped,
    /// so its lines are not held).
    lines: Option<Receiver<String>>,
}

impl Running {
    fn start(hook: &HookConfig, env: &Env, session: bool) -> Result<Running, Box<HookOutcome>> {
        let failed = |error: String| {
            Box::new(HookOutcome {
                name: hook.name.clone(),
                session,
                error: Some(error),
                attempts: 1,
                ..HookOutcome::default()
            })
        };
        let mut program = Program::new(
            &hook.command[0],
            hook.command[1..].iter().map(|a| expand(a, env)),
        )
        .envs(env)
        .envs(&hook.env)
        .dir(hook.dir.as_deref().unwrap_or(Path::new("/")))
        .stdout(Capture::Lines { keep: OUTPUT_TAIL })
        .stderr(Capture::Bytes { keep: OUTPUT_TAIL })
        .kill_grace(process::KILL_GRACE)
        // A process that escaped the group may hold the pipes open: wait
        // for the output only briefly.
        .kill_leftovers(Duration::from_secs(1));
        if session {
            program = program.open_stdin();
        }
        if let Some(user) = &hook.user {
            // The outcome is a record: it keeps the error's text.
            let id = Identity::of(user).map_err(|e| failed(e.to_string()))?;
            program = program.envs([
                ("HOME", id.home.as_str()),
                ("USER", user),
                ("LOGNAME", user),
            ]);
            // SAFETY: only async-signal-safe system calls between fork and exec.
            program = unsafe { program.pre_exec(move || id.assume()) };
        }
        // SAFETY: close_range only marks descriptors close-on-exec.
        program = unsafe {
            program.pre_exec(|| {
                libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                Ok(())
            })
        };
        let mut process = program.start().map_err(|e| {
            // exec reports a missing working directory as the program's ENOENT.
            match &hook.dir {
                Some(dir) if !dir.is_dir() => failed(format!(
                    "cannot start {}: its working directory {} is not a directory (set dir = to an existing one)",
                    Path::new(&hook.command[0]).display(),
                    dir.display()
                )),
                _ => failed(format!(
                    "cannot start {}: {e}",
                    Path::new(&hook.command[0]).display()
                )),
            }
        })?;
        let lines = process.take_lines().filter(|_| session);
        Ok(Running {
            name: hook.name.clone(),
            session,
            process,
            lines,
        })
    }

    /// Collects the outcome after the process ended. Processes it left in
    /// its group are killed: a hook may not leave work running.
    fn finish(self, ended: Ended) -> HookOutcome {
        let done = self.process.finish(ended);
        let mut out = HookOutcome {
            name: self.name,
            session: self.session,
            attempts: 1,
            points: points(&done.stdout),
            stdout: done.stdout,
            stderr: done.stderr,
            ..HookOutcome::default()
        };
        settle(&mut out, done.ended, &[0]);
        out
    }
}

/// Fills in `out` from how its process ended; exit statuses in `ok`
/// count as success.
pub fn settle(out: &mut HookOutcome, ended: Ended, ok: &[i32]) {
    let status = match ended {
        Ended::Exited(s) => Some(s),
        Ended::TimedOut(s) => {
            out.timed_out = true;
            s
        }
        Ended::Lost(e) => {
            out.error = Some(format!("lost track of the process: {e}"));
            None
        }
        Ended::Interrupted(signal, s) => {
            out.error = Some(format!(
                "stopped with its process group: strata was told to stop ({})",
                process::signal_name(signal)
            ));
            s
        }
    };
    if let Some(s) = status {
        out.exit = s.code();
        out.signal = s.signal();
    }
    if out.error.is_none() {
        if out.timed_out {
            out.error = Some("it ran past its timeout and was killed".into());
        } else if let Some(s) = status.filter(|s| !s.code().is_some_and(|c| ok.contains(&c))) {
            out.error = Some(format!("it failed ({})", describe(s)));
        }
    }
}

/// "exit status 3", "killed by signal 9".
pub fn describe(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".into(),
    }
}

/// Placeholders in hook arguments and the variables they stand for, so a
/// hook needs no shell to name the snapshot it validates.
const PLACEHOLDERS: [(&str, &str); 4] = [
    ("{mountpoint}", "STRATA_MOUNTPOINT"),
    ("{head}", "STRATA_HEAD"),
    ("{snapshot}", "STRATA_SNAPSHOT"),
    ("{source}", "STRATA_SOURCE"),
];

/// `arg` with the placeholders whose variable is set replaced.
pub fn expand(arg: &str, env: &Env) -> String {
    let mut out = arg.to_owned();
    for (placeholder, var) in PLACEHOLDERS {
        if let Some(value) = env.get(var) {
            out = out.replace(placeholder, value);
        }
    }
    out
}

/// The `key=value` lines of a hook's output.
pub fn points(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| {
            k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        })
        .map(|(k, v)| (k.to_owned(), v.trim_end().to_owned()))
        .collect()
}

/// A user a hook runs as, resolved before fork.
struct Identity {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    home: String,
}

/// A hook's `user` that cannot be resolved.
#[derive(Debug, thiserror::Error)]
enum UnknownUser {
    /// The name holds a NUL byte.
    #[error("user {user:?} is not a name")]
    NotAName {
        user: String,
        source: std::ffi::NulError,
    },
    /// No passwd entry.
    #[error("user {0:?} does not exist on this host; create it or change `user` in strata.toml")]
    Missing(String),
    /// More groups than getgrouplist is given room for.
    #[error("user {0:?} is in too many groups")]
    TooManyGroups(String),
}

/// The id of user `user` on this host, if there is one.
pub fn uid_of(user: &str) -> Option<u32> {
    Identity::of(user).ok().map(|i| i.uid)
}

impl Identity {
    fn of(user: &str) -> Result<Identity, UnknownUser> {
        let name = CString::new(user).map_err(|source| UnknownUser::NotAName {
            user: user.to_owned(),
            source,
        })?;
        // SAFETY: getpwnam returns a pointer into static storage or null;
        // it is read at once, before any other passwd call.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if pw.is_null() {
            return Err(UnknownUser::Missing(user.to_owned()));
        }
        // SAFETY: pw is non-null and points at a valid passwd entry.
        let (uid, gid, home) = unsafe {
            (
                (*pw).pw_uid,
                (*pw).pw_gid,
                std::ffi::CStr::from_ptr((*pw).pw_dir)
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        let mut groups = vec![0 as libc::gid_t; 256];
        let mut n = groups.len() as libc::c_int;
        // SAFETY: groups has room for n entries; n is updated to the count.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc < 0 {
            return Err(UnknownUser::TooManyGroups(user.to_owned()));
        }
        groups.truncate(n as usize);
        Ok(Identity {
            uid,
            gid,
            groups,
            home,
        })
    }

    /// Becomes this user: groups, then group, then user (after fork).
    fn assume(&self) -> std::io::Result<()> {
        // SAFETY: plain system calls on owned data.
        let ok = unsafe {
            libc::setgroups(self.groups.len(), self.groups.as_ptr()) == 0
                && libc::setgid(self.gid) == 0
                && libc::setuid(self.uid) == 0
        };
        if ok {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::hostconfig::FailurePolicy;
    use crate::tree::record::Phase;

    fn hook(script: &str) -> HookConfig {
        HookConfig {
            name: "t".into(),
            phase: Phase::PreBackup,
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            session: false,
            dir: None,
            user: None,
            timeout: Duration::from_secs(20),
            retries: 0,
            retry_delay: Duration::from_millis(10),
            idempotent: false,
            on_failure: FailurePolicy::Abort,
            env: BTreeMap::new(),
        }
    }

    fn env() -> Env {
        [("PATH".to_owned(), "/usr/bin:/bin".to_owned())].into()
    }

    #[test]
    fn placeholders_name_the_run_s_paths() {
        let mut env = env();
        env.insert("STRATA_SNAPSHOT".into(), "/mnt/s/snapshots/x".into());
        let mut h = hook("");
        h.command = ["/bin/echo", "{snapshot}/pg", "{source}"]
            .map(String::from)
            .to_vec();
        let out = run(&h, &env);
        assert_eq!(out.stdout, "/mnt/s/snapshots/x/pg {source}\n");
    }

    #[test]
    fn output_and_points_are_kept() {
        let out = run(
            &hook("echo start_lsn=0/3000028; echo 'not a point'; echo oops >&2"),
            &env(),
        );
        assert!(out.ok(), "{out:?}");
        assert_eq!(out.exit, Some(0));
        assert_eq!(out.points["start_lsn"], "0/3000028");
        assert_eq!(out.points.len(), 1);
        assert!(out.stdout.contains("not a point"));
        assert_eq!(out.stderr, "oops\n");
    }

    #[test]
    fn the_environment_is_cleared_and_descriptors_are_not_inherited() {
        std::env::set_var("STRATA_TEST_SECRET", "leak");
        let f = std::fs::File::open("/dev/null").unwrap();
        // Rust opens files close-on-exec; an inheritable copy stands for a
        // descriptor strata's own caller left open.
        let fd = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_DUPFD, 100) };
        assert!(fd >= 100);
        let mut h = hook("env; ls /proc/self/fd");
        h.env.insert("EXTRA".into(), "1".into());
        let out = run(&h, &env());
        assert!(out.ok(), "{out:?}");
        assert!(!out.stdout.contains("STRATA_TEST_SECRET"), "{}", out.stdout);
        assert!(out.stdout.contains("EXTRA=1"));
        assert!(out.stdout.contains("PATH=/usr/bin:/bin"));
        let fds: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.parse::<u32>().is_ok())
            .collect();
        // 0, 1, 2 and the descriptor ls opened to list the directory.
        assert_eq!(fds, ["0", "1", "2", "3"], "{}", out.stdout);
        unsafe { libc::close(fd) };
    }

    #[test]
    fn a_failure_and_a_missing_program_are_reported() {
        let out = run(&hook("exit 3"), &env());
        assert_eq!(out.exit, Some(3));
        assert!(out.error.unwrap().contains("exit status 3"));
        let mut h = hook("");
        h.command = vec!["/nonexistent/hook".into()];
        let out = run(&h, &env());
        assert!(out
            .error
            .unwrap()
            .contains("cannot start /nonexistent/hook"));
        let mut h = hook("true");
        h.dir = Some("/nonexistent/dir".into());
        let err = run(&h, &env()).error.unwrap();
        assert!(
            err.contains("its working directory /nonexistent/dir is not a directory"),
            "{err}"
        );
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed_with_its_children() {
        let mut h = hook("sleep 300 & echo $! > pid; wait");
        let dir = tempfile::tempdir().unwrap();
        h.dir = Some(dir.path().to_owned());
        h.timeout = Duration::from_millis(300);
        let out = run(&h, &env());
        assert!(out.timed_out);
        assert!(out.error.unwrap().contains("timeout"));
        let pid: i32 = std::fs::read_to_string(dir.path().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background child died with the group (reaped by init).
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z"))
                .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "child {pid} survived");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn only_idempotent_hooks_are_retried() {
        let dir = tempfile::tempdir().unwrap();
        let script = "echo x >> tries; [ $(wc -l < tries) -ge 3 ]";
        let mut h = hook(script);
        h.dir = Some(dir.path().to_owned());
        h.retries = 5;
        h.idempotent = true;
        let out = run(&h, &env());
        assert!(out.ok(), "{out:?}");
        assert_eq!(out.attempts, 3);
        let dir2 = tempfile::tempdir().unwrap();
        let mut h = hook(script);
        h.dir = Some(dir2.path().to_owned());
        h.retries = 5;
        let out = run(&h, &env());
        assert!(!out.ok());
        assert_eq!(out.attempts, 1);
    }

    #[test]
    fn backoff_doubles_with_jitter_in_its_upper_half() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff(base, 1, 0.0), Duration::from_millis(500));
        assert_eq!(
            backoff(base, 1, 0.999_999),
            Duration::from_millis(999) + Duration::from_nanos(999_500)
        );
        assert_eq!(backoff(base, 3, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(base, 40, 1.0), MAX_BACKOFF);
    }

    #[test]
    fn a_session_is_ready_then_finishes_on_request() {
        let s = Session::start(
            &hook("echo start=1; echo ready; read cmd; echo got=$cmd; echo stop=2"),
            &env(),
        )
        .unwrap();
        let out = s.finish();
        assert!(out.ok(), "{out:?}");
        assert_eq!(out.points["got"], "finish");
        assert_eq!(out.points["start"], "1");
        assert_eq!(out.points["stop"], "2");
    }

    #[test]
    fn a_session_that_never_gets_ready_or_ends_early_fails() {
        let out = Session::start(&hook("echo starting; exit 0"), &env())
            .err()
            .unwrap();
        assert!(out.error.unwrap().contains("without printing"));
        let mut h = hook("sleep 30");
        h.timeout = Duration::from_millis(200);
        let out = Session::start(&h, &env()).err().unwrap();
        assert!(out.timed_out);
        let mut s = Session::start(&hook("echo ready; exit 0"), &env()).unwrap();
        // Wait for the exit itself, so finish meets a session that ended.
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.running.process.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the session never exited");
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = s.finish();
        assert!(out.error.unwrap().contains("ended before"), "");
    }

    #[test]
    fn an_abandoned_session_sees_end_of_input() {
        let s = Session::start(
            &hook("echo ready; if read cmd; then exit 0; else echo eof >&2; exit 4; fi"),
            &env(),
        )
        .unwrap();
        let out = s.abandon();
        assert_eq!(out.exit, Some(4));
        assert_eq!(out.stderr, "eof\n");
    }

    #[test]
    fn an_unknown_user_is_named_and_a_nul_byte_kept_as_the_source() {
        use std::error::Error;
        let e = Identity::of("a\0b").err().unwrap();
        assert_eq!(e.to_string(), "user \"a\\0b\" is not a name");
        assert!(e.source().unwrap().is::<std::ffi::NulError>());
        let e = Identity::of("no-such-user-here").err().unwrap();
        assert_eq!(
            e.to_string(),
            "user \"no-such-user-here\" does not exist on this host; create it or change `user` in strata.toml"
        );
        let mut h = hook("true");
        h.user = Some("a\0b".into());
        assert_eq!(
            run(&h, &env()).error.as_deref(),
            Some("user \"a\\0b\" is not a name")
        );
    }

    #[test]
    fn a_hook_runs_as_its_user() {
        if crate::tier::missing(&[crate::tier::Tier::Root]) {
            return;
        }
        let mut h = hook("id -u; id -g; echo home=$HOME");
        h.user = Some("nobody".into());
        let out = run(&h, &env());
        assert!(out.ok(), "{out:?}");
        let nobody = Identity::of("nobody").unwrap();
        let mut lines = out.stdout.lines();
        assert_eq!(lines.next().unwrap(), nobody.uid.to_string());
        assert_eq!(lines.next().unwrap(), nobody.gid.to_string());
        h.user = Some("no-such-user-here".into());
        assert!(run(&h, &env()).error.unwrap().contains("does not exist"));
    }
}
