//! `strata mount` and `strata umount`: start strata-mountd with the key on
//! an inherited descriptor and wait until the mount answers; stop it and
//! wait until it has committed everything.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use strata::daemon::control::{self, Reply, Request};
use strata::exit::{self, Reported};
use strata::sys::chain::Chain;
use strata::sys::mountpoint::{self, MountpointError};

use super::args::{Global, InitArgs, MountArgs, DEFAULT_REPO};
use super::{locked, print, secret_for};
use strata::daemon::mount_args::DEFAULT_MOUNTPOINT;

/// The descriptor numbers the daemon finds the key and the readiness pipe on.
const KEY_FD: i32 = 3;
const READY_FD: i32 = 4;

#[derive(Serialize)]
struct Mounted {
    repository: String,
    mountpoint: String,
    log: Option<String>,
    note: Option<String>,
}

/// The strata-mountd binary: $STRATA_MOUNTD, beside this program, or on
/// PATH. Found before anything starts: a program that is not there would
/// otherwise fail only in the forked child, with nothing said but a
/// mount that never became ready.
fn mountd_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_MOUNTD") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "strata-mountd, the daemon that serves mounts, is not at {} where STRATA_MOUNTD says it is: correct or unset STRATA_MOUNTD",
                p.display()
            );
        }
        return Ok(p);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("strata-mountd")));
    let on_path = std::env::var_os("PATH").unwrap_or_default();
    let found = beside
        .iter()
        .cloned()
        .chain(std::env::split_paths(&on_path).map(|d| d.join("strata-mountd")))
        .find(|p| p.is_file());
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "strata-mountd, the daemon that serves mounts, was not found: not beside this program ({}) nor on PATH ({}). Install it with strata (both come in the same package), or set STRATA_MOUNTD to its path",
            beside.map_or_else(|| "unknown".into(), |p| p.display().to_string()),
            on_path.to_string_lossy()
        )
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating a pipe");
    }
    // SAFETY: both descriptors are new and owned only here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Between fork and exec: puts each descriptor at its fixed number, open
/// across exec, and closes every other inherited one above them. Copies go
/// above the targets first, so a source that sits on another's target
/// number is not overwritten.
fn place_fds(moves: &[(i32, i32)]) -> std::io::Result<()> {
    let mut high = [0; 2];
    for (i, &(from, _)) in moves.iter().enumerate() {
        // SAFETY: async-signal-safe descriptor calls only.
        high[i] = unsafe { libc::fcntl(from, libc::F_DUPFD_CLOEXEC, 10) };
        if high[i] < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for (i, &(_, to)) in moves.iter().enumerate() {
        // SAFETY: as above; dup2 leaves the new descriptor open across exec.
        if unsafe { libc::dup2(high[i], to) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // Nothing else this process inherited reaches the daemon.
    let first_stray = moves.iter().map(|&(_, to)| to).max().unwrap_or(2) + 1;
    // SAFETY: close_range only closes descriptors.
    unsafe { libc::syscall(libc::SYS_close_range, first_stray, u32::MAX, 0) };
    Ok(())
}

/// The embedded default: on a genuine first run the default repository is
/// created (as `strata init` would, with a generated key file) and the
/// default mountpoint made, so that `strata mount` alone gives a target
/// for rsync. A default repository that is missing after this machine has
/// used one (its disk did not mount) is never replaced by a new, empty one:
/// backups would go on "succeeding" into it while the real ones are gone.
/// Whether it created the mountpoint.
fn embedded_default(g: &Global, a: &MountArgs) -> Result<bool> {
    if g.repo == default_repo() && !g.repo.exists() {
        if let Some(trace) = earlier_use(&g.repo) {
            let repo = g.repo.display();
            return Err(Reported(
                exit::NO_REPOSITORY,
                format!(
                    "no repository at {repo}, but this machine has used one before ({} exists), so no new, empty one is made in its place. \
                     Is the disk or filesystem that holds it mounted (see `findmnt`, /etc/fstab)? Mount it and run `strata mount` again. \
                     To start a new, empty repository on purpose: strata init --repo {repo}",
                    trace.display()
                ),
            )
            .into());
        }
        eprintln!(
            "strata: first run: no repository at {}; creating it",
            g.repo.display()
        );
        super::cmd_init(g, &InitArgs::defaults())?;
    }
    let mnt = &a.mount.mountpoint;
    if mnt == Path::new(DEFAULT_MOUNTPOINT) && !mnt.exists() {
        std::fs::create_dir_all(mnt).with_context(|| format!("creating {}", mnt.display()))?;
        return Ok(true);
    }
    Ok(false)
}

/// The default repository: `repo` in the state directory, where the alert
/// state is kept too ($STRATA_STATE_DIR, else /var/lib/strata, which gives
/// the --repo default).
fn default_repo() -> PathBuf {
    match std::env::var_os("STRATA_STATE_DIR") {
        Some(dir) => PathBuf::from(dir).join("repo"),
        None => PathBuf::from(DEFAULT_REPO),
    }
}

/// The daemon logs' directory: $STRATA_LOG_DIR, else /var/log/strata.
fn log_dir() -> PathBuf {
    std::env::var_os("STRATA_LOG_DIR")
        .map_or_else(|| PathBuf::from("/var/log/strata"), PathBuf::from)
}

/// A file left by an earlier repository on this machine, if any: a key
/// file `strata init` generated, alert state, or a daemon log.
fn earlier_use(repo: &Path) -> Option<PathBuf> {
    let state_dir = strata::policy::alert::state_path_of(repo)
        .parent()
        .map(Path::to_path_buf)?;
    let places = [
        (strata::daemon::secrets::key_dir(), "", ".key"),
        (state_dir, "alerts-", ".json"),
        (log_dir(), "mountd-", ".log"),
    ];
    places.into_iter().find_map(|(dir, prefix, suffix)| {
        std::fs::read_dir(&dir).ok()?.flatten().find_map(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            (name.starts_with(prefix) && name.ends_with(suffix)).then(|| e.path())
        })
    })
}

pub fn mount(g: &Global, a: &MountArgs) -> Result<()> {
    // Checked here as well as by the daemon, so that a refusal shows in
    // full (a TOML error spans lines) before anything starts.
    strata::policy::hostconfig::HostConfig::load_or_default(a.mount.config.as_deref())?;
    let mountd = mountd_path()?;
    let created = embedded_default(g, a)?;
    let repo = locked(g)?;
    let id = repo.config().instance();
    let mut notes = Vec::new();
    notes.extend(mountpoint::prepare(&a.mount.mountpoint, a.mount.nonempty)?);
    for n in &notes {
        eprintln!("strata: {n}");
    }
    let secret = secret_for(g, &repo)?;
    drop(repo);

    let (key_r, key_w) = pipe()?;
    if let Some(s) = &secret {
        std::fs::File::from(key_w).write_all(&strata::daemon::secrets::encode_handoff(s))?;
    } else {
        drop(key_w);
    }
    let mut cmd = Command::new(&mountd);
    cmd.arg("--repo")
        .arg(&g.repo)
        .arg("--key-fd")
        .arg(KEY_FD.to_string());
    cmd.arg("--threads").arg(a.mount.threads.to_string());
    cmd.arg("--transport").arg(a.mount.transport.as_str());
    if a.mount.allow_other {
        cmd.arg("--allow-other");
    }
    if a.mount.nonempty {
        cmd.arg("--nonempty");
    }
    if let Some(group) = &a.mount.reader_group {
        cmd.arg("--reader-group").arg(group);
    }
    if let Some(config) = &a.mount.config {
        cmd.arg("--config").arg(config);
    }
    // The key reaches the daemon only through the descriptor.
    cmd.env_remove("STRATA_PASSWORD").stdin(Stdio::null());
    let key_raw = key_r.as_raw_fd();

    if a.foreground {
        cmd.arg("--").arg(&a.mount.mountpoint);
        // SAFETY: only async-signal-safe dup2 between fork and exec.
        unsafe {
            cmd.pre_exec(move || place_fds(&[(key_raw, KEY_FD)]));
        }
        let e = cmd.exec();
        bail!("starting {}: {e}", mountd.display());
    }

    let (ready_r, ready_w) = pipe()?;
    let ready_raw = ready_w.as_raw_fd();
    let log = a
        .log_file
        .clone()
        .unwrap_or_else(|| log_dir().join(format!("mountd-{id}.log")));
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .with_context(|| format!("opening the daemon log {}", log.display()))?;
    cmd.arg("--ready-fd").arg(READY_FD.to_string());
    cmd.arg("--").arg(&a.mount.mountpoint);
    cmd.stdout(Stdio::null()).stderr(log_file);
    // Made immutable here rather than by the daemon (which only logs it),
    // so that the user hears of it when the directory is theirs; undone
    // if the mount fails. An error is the daemon's to log when it tries.
    let mnt = mountpoint::canonical(&a.mount.mountpoint);
    let made_immutable = mountpoint::set_immutable(&mnt, true).unwrap_or(false);
    let undo_immutable = || {
        if made_immutable {
            let _ = mountpoint::set_immutable(&mnt, false);
        }
    };
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            place_fds(&[(key_raw, KEY_FD), (ready_raw, READY_FD)])?;
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| {
        undo_immutable();
        format!("starting {}", mountd.display())
    })?;
    drop((key_r, ready_w));
    let mut line = String::new();
    BufReader::new(std::fs::File::from(ready_r)).read_line(&mut line)?;
    let line = line.trim_end();
    if line != "ready" {
        undo_immutable();
    } else {
        if made_immutable && !created {
            let n = mountpoint::immutable_note(&mnt);
            eprintln!("strata: {n}");
            notes.push(n);
        }
        let note = (!notes.is_empty()).then(|| notes.join("\n"));
        let m = Mounted {
            repository: g.repo.display().to_string(),
            mountpoint: mountpoint::canonical(&a.mount.mountpoint)
                .display()
                .to_string(),
            log: Some(log.display().to_string()),
            note,
        };
        print(g, &m, || {
            format!(
                "mounted {} on {} (daemon pid {}, log {})\n  back up into  {}/head/\n  snapshots in  {}/snapshots/",
                m.repository,
                m.mountpoint,
                child.id(),
                log.display(),
                m.mountpoint,
                m.mountpoint
            )
        });
        return Ok(());
    }
    if let Some(rest) = line.strip_prefix("error ") {
        let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
        return Err(Reported(code.parse().unwrap_or(1), msg.to_owned()).into());
    }
    bail!(
        "strata-mountd stopped before the mount was ready; see {}",
        log.display()
    )
}

#[derive(Serialize)]
struct Unmounted {
    mountpoint: String,
    was_dead: bool,
    /// Why not everything written was committed, if it was not.
    not_committed: Option<String>,
}

/// What a mount whose daemon died lost, and what to do.
const DEAD_DAEMON: &str = "its daemon had stopped without unmounting (killed or crashed), so what was written since its last commit is lost; the next `strata mount` opens the repository at that commit (its log says what recovery did); copy again before taking a snapshot";

pub fn umount(g: &Global, dir: &Path) -> Result<()> {
    let dir = mountpoint::canonical(dir);
    let m = match mountpoint::mounted_on(&dir) {
        Some(m) if m.is_strata() => m,
        _ => return Err(MountpointError::NotMounted(dir).into()),
    };
    let socket = mountpoint::socket_path(m.repo_id().unwrap_or_default());
    let status = if mountpoint::is_dead(&dir) {
        None
    } else {
        // A daemon killed a moment ago still answers statfs until its
        // last thread is gone, and its socket then refuses or resets the
        // connection: a status that does not come back is checked again.
        match control::call(&socket, &Request::Status) {
            Ok(Some(Reply::Status(s))) => Some(s),
            _ if dies_soon(&dir) => None,
            Ok(_) => return unmount_without_daemon(g, &dir),
            Err(e) => return Err(e.into()),
        }
    };
    let Some(status) = status else {
        return detach_dead(g, &dir);
    };
    match control::call(&socket, &Request::Shutdown) {
        Ok(Some(_)) => {}
        Ok(None) if dies_soon(&dir) => return detach_dead(g, &dir),
        Ok(None) => return unmount_without_daemon(g, &dir),
        // The daemon may exit before its answer is out; gone is done.
        Err(_) if mountpoint::mounted_on(&dir).is_none() => {}
        Err(_) if mountpoint::is_dead(&dir) => return detach_dead(g, &dir),
        Err(e) => {
            return Err(Reported(exit::MOUNTPOINT, Chain(&e).to_string()).into());
        }
    }
    if let Some(pid) = status.pid {
        wait_exit(pid, &dir)?;
    }
    let outcome = mountpoint::outcome_path(m.repo_id().unwrap_or_default());
    let final_commit = std::fs::read_to_string(&outcome);
    let _ = std::fs::remove_file(&outcome);
    let not_committed = match (status.read_only_reason, final_commit) {
        (Some(reason), _) => Some(format!(
            "the head had turned read-only after a storage failure ({reason}), so what was written into head/ since its last commit was refused or lost; {AFTER_STORAGE_FAILURE}"
        )),
        (None, Ok(text)) if text.trim_end() == "committed" => None,
        (None, Ok(error)) => Some(format!(
            "the daemon's final commit failed ({}), so what was written into head/ since its last commit is lost; {AFTER_STORAGE_FAILURE}",
            error.trim_end()
        )),
        (None, Err(_)) => Some(
            "the daemon exited without saying whether its final commit succeeded (was it killed while committing?); its log says more. Mount again (the head comes back at its last commit) and check what head/ holds before taking a snapshot".to_owned(),
        ),
    };
    let out = Unmounted {
        mountpoint: dir.display().to_string(),
        was_dead: false,
        not_committed,
    };
    finish(g, out)
}

/// What to do when a storage failure kept writes from being committed.
const AFTER_STORAGE_FAILURE: &str = "free space on, or repair, the disk the repository is on (`df`, `dmesg`), mount again (the head comes back at its last commit) and copy again";

/// The mount's daemon is gone: detach what it left, and say what that lost.
fn detach_dead(g: &Global, dir: &Path) -> Result<()> {
    mountpoint::detach(dir).with_context(|| format!("detaching {}", dir.display()))?;
    finish(
        g,
        Unmounted {
            mountpoint: dir.display().to_string(),
            was_dead: true,
            not_committed: Some(DEAD_DAEMON.to_owned()),
        },
    )
}

/// Whether a mount whose daemon's socket does not answer turns out dead
/// within a moment. A daemon killed just now keeps its mount alive while
/// the kernel tears down its io_uring queues and closes its /dev/fuse
/// descriptors, after its socket is already gone; taking that mount for a
/// live one without a socket would report a clean unmount.
fn dies_soon(dir: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if mountpoint::is_dead(dir) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A live mount whose daemon has no control socket: unmount it directly;
/// the daemon commits as it exits, which only its log can confirm.
fn unmount_without_daemon(g: &Global, dir: &Path) -> Result<()> {
    mountpoint::detach(dir).with_context(|| format!("unmounting {}", dir.display()))?;
    if !g.quiet {
        eprintln!(
            "strata: unmounted {}; its daemon has no control socket, so it commits as it exits: its log says whether that succeeded",
            dir.display()
        );
    }
    Ok(())
}

/// Prints the outcome; not everything committed is an error (exit 25).
fn finish(g: &Global, out: Unmounted) -> Result<()> {
    if let Some(why) = &out.not_committed {
        if g.json {
            print(g, &out, String::new);
        }
        return Err(Reported(
            exit::NOT_COMMITTED,
            format!(
                "{} {}, but not everything written was committed: {why}",
                if out.was_dead {
                    "detached the dead mount on"
                } else {
                    "unmounted"
                },
                out.mountpoint
            ),
        )
        .into());
    }
    print(g, &out, || {
        format!(
            "unmounted {}; everything written was committed",
            out.mountpoint
        )
    });
    Ok(())
}

/// Whether every thread of `pid` has ended (it may be a zombie nobody has
/// reaped yet). A zombie leader is not enough: until its last thread ends,
/// the process keeps its files open, and with them the repository lock.
fn exited(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| matches!(r.trim_start().chars().next(), Some('Z' | 'X')))
        })
    })
}

/// Waits for the daemon to finish its last commit and exit.
fn wait_exit(pid: u32, dir: &Path) -> Result<()> {
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        if exited(pid) {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!(
                "the daemon (pid {pid}) of {} has not exited after 10 minutes",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
