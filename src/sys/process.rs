//! What both programs do first: keep key material out of core dumps and
//! away from ptrace, and log to standard error (STRATA_LOG sets the filter);
//! and how they start the programs an administrator configured (hooks, alert
//! commands, probes: [`Program`]) and the copy: each the leader of its own
//! process group, killed with that group at its deadline.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Makes this process not dumpable and starts logging at `default_filter`.
pub fn start(default_filter: &str) {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Starts `cmd`, trying again for a moment while the program is "text file
/// busy" (ETXTBSY): a script that was just written can still be open for
/// writing in a child another thread forked before its exec, which closes
/// it. Hooks, alert commands and probes are often freshly written scripts.
pub fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// How long a program given a grace (hooks, the copy) has to exit after
/// SIGTERM before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// The longest nap between two looks at a running program.
const POLL: Duration = Duration::from_millis(10);

/// The stop signal (SIGINT, SIGTERM, SIGHUP) not yet acted on, once
/// [`catch_interrupts`] is in force; 0 for none.
static INTERRUPT: AtomicI32 = AtomicI32::new(0);
/// The first stop signal received, for the exit status.
static FIRST_INTERRUPT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_interrupt(signal: libc::c_int) {
    // Only atomic stores: async-signal-safe.
    INTERRUPT.store(signal, Ordering::SeqCst);
    let _ = FIRST_INTERRUPT.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
}

/// From now on SIGINT, SIGTERM and SIGHUP do not end this process at once
/// (leaving the programs it started, each in its own process group,
/// running on): the program being waited for is stopped with its group as
/// at a deadline ([`Ended::Interrupted`]), and the caller cleans up.
pub fn catch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs a handler that only does atomic stores.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}

/// Takes the stop signal not yet acted on, so that cleanup (on-failure
/// hooks, alerts) can run; another signal stops that too.
pub fn take_interrupt() -> Option<i32> {
    Some(INTERRUPT.swap(0, Ordering::SeqCst)).filter(|&s| s != 0)
}

/// Whether a stop signal is waiting to be acted on.
pub fn interrupt_pending() -> Option<i32> {
    Some(INTERRUPT.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// The first stop signal this process received, if any.
pub fn interrupted_by() -> Option<i32> {
    Some(FIRST_INTERRUPT.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// "SIGTERM", or the number of another signal.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        other => format!("signal {other}"),
    }
}

/// How a wait for a program ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited.
    Exited(ExitStatus),
    /// It ran past its deadline and was killed (with its status, if reaped).
    TimedOut(Option<ExitStatus>),
    /// Waiting failed (its group was killed).
    Lost(std::io::Error),
    /// This process was told to stop (the signal), and the program was
    /// stopped with its group (with its status, if reaped).
    Interrupted(i32, Option<ExitStatus>),
}

/// Waits for `child`, the leader of its own process group, until
/// `deadline`; then sends the group SIGTERM, and SIGKILL after `grace`
/// (at once when `grace` is zero).
pub fn wait_or_kill(child: &mut Child, deadline: Instant, grace: Duration) -> Ended {
    match wait_until(child, deadline, true) {
        Ok(Some(status)) => return Ended::Exited(status),
        Ok(None) => {}
        Err(e) => {
            signal_group(child, libc::SIGKILL);
            return Ended::Lost(e);
        }
    }
    let ended = |status| match interrupt_pending() {
        Some(signal) => Ended::Interrupted(signal, status),
        None => Ended::TimedOut(status),
    };
    if !grace.is_zero() {
        signal_group(child, libc::SIGTERM);
        if let Ok(Some(status)) = wait_until(child, Instant::now() + grace, false) {
            return ended(Some(status));
        }
    }
    signal_group(child, libc::SIGKILL);
    ended(child.wait().ok())
}

/// Waits for `child` to exit until `until`, or with `interruptible` until
/// this process is told to stop; `None` when it has not exited. The naps
/// grow from a millisecond, so a short program is seen to exit at once and
/// a long one costs little.
fn wait_until(
    child: &mut Child,
    until: Instant,
    interruptible: bool,
) -> std::io::Result<Option<ExitStatus>> {
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if interruptible && interrupt_pending().is_some() {
            return Ok(None);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(nap.min(left));
        nap = (nap * 2).min(POLL);
    }
}

/// Sends `signal` to the process group `child` leads.
fn signal_group(child: &Child, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals the group the child
    // leads; it touches no memory.
    unsafe { libc::kill(-(child.id() as i32), signal) };
}

/// A program an administrator configured (a hook, an alert command, a
/// probe), to be started with a cleared environment, in its own process
/// group, with standard input and output as asked (by default
/// /dev/null), and killed with its group when it runs past its deadline.
pub struct Program {
    cmd: Command,
    input: Input,
    stdout: Option<Capture>,
    stderr: Option<Capture>,
    grace: Duration,
    kill_leftovers: bool,
    linger: Duration,
}

enum Input {
    Null,
    /// Written by a thread, then closed, so a program that never reads
    /// cannot hold the caller past the deadline.
    Bytes(Vec<u8>),
    /// Left open for the caller.
    Open,
}

/// What is kept of an output stream: its last `keep` bytes.
#[derive(Clone, Copy)]
pub enum Capture {
    /// As it comes.
    Bytes {
        /// How many bytes.
        keep: usize,
    },
    /// Line by line; every line ends in a newline, and each is also passed
    /// to [`Running::take_lines`] as it comes (one stream at the most; the
    /// lines are held until taken, so take them, or drop them).
    Lines {
        /// How many bytes.
        keep: usize,
    },
}

impl Program {
    /// `program` with `args`, an empty environment, /dev/null for standard
    /// input and output, and SIGKILL for its group at the deadline.
    pub fn new<S: AsRef<OsStr>>(
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> Program {
        let mut cmd = Command::new(program);
        cmd.args(args).env_clear().process_group(0);
        Program {
            cmd,
            input: Input::Null,
            stdout: None,
            stderr: None,
            grace: Duration::ZERO,
            kill_leftovers: false,
            linger: Duration::from_millis(100),
        }
    }

    /// Adds `vars` to the environment.
    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Program {
        self.cmd.envs(vars);
        self
    }

    /// Runs it in `dir`.
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Program {
        self.cmd.current_dir(dir);
        self
    }

    /// Gives it `bytes` on standard input, then end of input.
    pub fn input(mut self, bytes: Vec<u8>) -> Program {
        self.input = Input::Bytes(bytes);
        self
    }

    /// Keeps its standard input open for [`Running::take_stdin`].
    pub fn open_stdin(mut self) -> Program {
        self.input = Input::Open;
        self
    }

    /// Keeps the end of its standard output.
    pub fn stdout(mut self, capture: Capture) -> Program {
        self.stdout = Some(capture);
        self
    }

    /// Keeps the end of its standard error.
    pub fn stderr(mut self, capture: Capture) -> Program {
        self.stderr = Some(capture);
        self
    }

    /// At the deadline its group gets SIGTERM, and SIGKILL `grace` later.
    pub fn kill_grace(mut self, grace: Duration) -> Program {
        self.grace = grace;
        self
    }

    /// When it has ended, whatever it left running in its group is killed,
    /// and its output is waited for at most `linger` (a process that left
    /// the group may hold the pipes open). Without this, nothing is killed
    /// after a timely exit and the output is waited for 100 ms.
    pub fn kill_leftovers(mut self, linger: Duration) -> Program {
        self.kill_leftovers = true;
        self.linger = linger;
        self
    }

    /// Runs `f` in the child between fork and exec.
    ///
    /// # Safety
    /// As [`CommandExt::pre_exec`]: `f` may only make async-signal-safe calls.
    pub unsafe fn pre_exec(
        mut self,
        f: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Program {
        // SAFETY: passed on to the caller.
        unsafe { self.cmd.pre_exec(f) };
        self
    }

    /// Starts it, with threads collecting its output and feeding its input.
    pub fn start(mut self) -> std::io::Result<Running> {
        let stdin = match self.input {
            Input::Null => Stdio::null(),
            Input::Bytes(_) | Input::Open => Stdio::piped(),
        };
        let pipe = |c: Option<Capture>| {
            if c.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        self.cmd
            .stdin(stdin)
            .stdout(pipe(self.stdout))
            .stderr(pipe(self.stderr));
        let mut child = spawn(&mut self.cmd)?;
        let (mut lines, mut readers) = (None, Vec::new());
        let stdout = collect(child.stdout.take(), self.stdout, &mut readers, &mut lines);
        let stderr = collect(child.stderr.take(), self.stderr, &mut readers, &mut lines);
        let mut stdin = child.stdin.take();
        let writer = match self.input {
            Input::Bytes(bytes) => stdin
                .take()
                .map(|mut stdin| std::thread::spawn(move || stdin.write_all(&bytes))),
            Input::Null | Input::Open => None,
        };
        Ok(Running {
            child,
            stdin,
            lines,
            stdout,
            stderr,
            readers,
            writer,
            grace: self.grace,
            kill_leftovers: self.kill_leftovers,
            linger: self.linger,
        })
    }
}

/// A started [`Program`].
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Option<Receiver<String>>,
    stdout: Option<Arc<Mutex<Tail>>>,
    stderr: Option<Arc<Mutex<Tail>>>,
    readers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<std::io::Result<()>>>,
    grace: Duration,
    kill_leftovers: bool,
    linger: Duration,
}

/// What a [`Program`] left behind.
pub struct Finished {
    /// How it ended.
    pub ended: Ended,
    /// The end of its standard output (empty when not captured).
    pub stdout: String,
    /// The end of its standard error (empty when not captured).
    pub stderr: String,
    /// How writing its input went, when that is over; a writer still held
    /// up by a background process that keeps the pipe without reading is
    /// left to finish on its own.
    pub input: std::io::Result<()>,
}

impl Running {
    /// Its standard input, when kept open ([`Program::open_stdin`]).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Its standard output line by line, when captured as [`Capture::Lines`].
    pub fn take_lines(&mut self) -> Option<Receiver<String>> {
        self.lines.take()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits for it until `deadline`, then kills its group.
    pub fn wait(&mut self, deadline: Instant) -> Ended {
        wait_or_kill(&mut self.child, deadline, self.grace)
    }

    /// Collects its output once it has `ended`.
    pub fn finish(mut self, ended: Ended) -> Finished {
        if self.kill_leftovers {
            signal_group(&self.child, libc::SIGKILL);
        }
        let until = Instant::now() + self.linger;
        for r in &self.readers {
            while !r.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let text = |t: &Option<Arc<Mutex<Tail>>>| {
            t.as_ref()
                .map_or_else(String::new, |t| t.lock().expect("tail").text())
        };
        let input = match self.writer.take() {
            Some(w) if w.is_finished() => w.join().unwrap_or(Ok(())),
            _ => Ok(()),
        };
        Finished {
            ended,
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
            input,
        }
    }
}

/// Starts a thread reading `pipe` (when captured) into a [`Tail`], and
/// passing its lines to `lines` for [`Capture::Lines`].
fn collect(
    pipe: Option<impl Read + Send + 'static>,
    capture: Option<Capture>,
    readers: &mut Vec<JoinHandle<()>>,
    lines: &mut Option<Receiver<String>>,
) -> Option<Arc<Mutex<Tail>>> {
    let (mut pipe, capture) = (pipe?, capture?);
    let keep = match capture {
        Capture::Bytes { keep } | Capture::Lines { keep } => keep,
    };
    let tail = Arc::new(Mutex::new(Tail::new(keep)));
    let kept = tail.clone();
    readers.push(match capture {
        Capture::Lines { .. } => {
            let (tx, rx) = mpsc::channel();
            *lines = Some(rx);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).split(b'\n') {
                    let Ok(line) = line else { break };
                    let line = String::from_utf8_lossy(&line).into_owned();
                    kept.lock().expect("tail").push_line(&line);
                    let _ = tx.send(line);
                }
            })
        }
        Capture::Bytes { .. } => std::thread::spawn(move || {
            let mut buf = [0; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                kept.lock().expect("tail").push(&buf[..n]);
            }
        }),
    });
    Some(tail)
}

/// The last `keep` bytes of a stream.
struct Tail {
    keep: usize,
    bytes: Vec<u8>,
    dropped: bool,
}

impl Tail {
    fn new(keep: usize) -> Tail {
        Tail {
            keep,
            bytes: Vec::new(),
            dropped: false,
        }
    }

    fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        if self.bytes.len() > self.keep {
            let cut = self.bytes.len() - self.keep;
            self.bytes.drain(..cut);
            self.dropped = true;
        }
    }

    fn push_line(&mut self, line: &str) {
        self.push(line.as_bytes());
        self.push(b"\n");
    }

    /// The bytes kept, as text; `[…]` in front when some were dropped.
    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        if self.dropped {
            format!("[…]{text}")
        } else {
            text.into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn sh(script: &str) -> Program {
        Program::new("/bin/sh", ["-c", script])
    }

    #[test]
    fn input_reaches_the_program_and_the_ends_of_its_output_are_kept() {
        let mut p = sh("cat; head -c 100000 /dev/zero | tr '\\0' x; printf 'e1\\ne2' >&2")
            .input(b"hello".to_vec())
            .stdout(Capture::Bytes { keep: 10 })
            .stderr(Capture::Lines { keep: 100 })
            .start()
            .unwrap();
        let lines = p.take_lines().unwrap();
        let ended = p.wait(Instant::now() + Duration::from_secs(20));
        let done = p.finish(ended);
        assert!(matches!(done.ended, Ended::Exited(s) if s.success()));
        assert_eq!(done.stdout, "[…]xxxxxxxxxx");
        assert_eq!(done.stderr, "e1\ne2\n");
        assert_eq!(lines.iter().collect::<Vec<_>>(), ["e1", "e2"]);
        assert!(done.input.is_ok());
    }

    #[test]
    fn past_the_deadline_the_group_gets_sigterm_then_sigkill() {
        let started = Instant::now();
        let mut p = sh("trap '' TERM; sleep 30 & wait")
            .kill_grace(Duration::from_millis(300))
            .start()
            .unwrap();
        let ended = p.wait(Instant::now() + Duration::from_millis(100));
        assert!(
            matches!(ended, Ended::TimedOut(Some(s)) if s.signal() == Some(libc::SIGKILL)),
            "{ended:?}"
        );
        // SIGKILL came only after the grace: TERM was trapped, so nothing
        // ends the group sooner. (A lower bound that the behaviour implies;
        // a slow machine only makes it longer.)
        assert!(started.elapsed() >= Duration::from_millis(400));
        let mut p = sh("sleep 30").start().unwrap();
        let ended = p.wait(Instant::now());
        assert!(
            matches!(ended, Ended::TimedOut(Some(s)) if s.signal() == Some(libc::SIGKILL)),
            "without a grace, SIGKILL at once: {ended:?}"
        );
    }
}
