//! One backup run at a time per repository: a run holds an flock on
//! `<repository id>.run` in the runtime directory (beside the control
//! socket), which says who holds it (pid, label, start time) as JSON.
//!
//! The kernel drops the lock when the run's process dies, however it dies,
//! so a file left behind never blocks the next run. The lock is keyed by
//! the repository, not by the daemon or the mountpoint: a daemon restarted
//! (or the repository mounted elsewhere) during a run does not let a second
//! run in. The descriptor is close-on-exec, so hooks and the copy (and
//! anything they leave running) never hold it.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Who holds the run lock.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Holder {
    /// Process id of the `strata backup` (or other command) running.
    pub pid: u32,
    /// The run's label, if any.
    pub label: Option<String>,
    /// When it started, in seconds since the epoch.
    pub started: u64,
}

impl Holder {
    /// This process, starting now.
    pub fn me(label: Option<String>) -> Holder {
        Holder {
            pid: std::process::id(),
            label,
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let started = UNIX_EPOCH + Duration::from_secs(self.started);
        write!(
            f,
            "pid {}, label {}, started {}",
            self.pid,
            self.label.as_deref().unwrap_or("(none)"),
            humantime::format_rfc3339_seconds(started)
        )
    }
}

/// The run lock of one repository, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Say nobody holds it before the kernel lets the next one in.
        let _ = self.file.set_len(0);
    }
}

/// The run lock file of repository `repo_id` in `runtime_dir`.
pub fn path(runtime_dir: &Path, repo_id: &str) -> PathBuf {
    runtime_dir.join(format!("{repo_id}.run"))
}

fn flock(file: &File, how: libc::c_int) -> std::io::Result<bool> {
    // SAFETY: flock on a descriptor this file owns.
    if unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(e),
    }
}

/// Who holds the lock in `file`; a holder that has just locked may not
/// have written yet, so an empty or partial file is read again briefly.
fn read_holder(file: &mut File) -> Holder {
    for _ in 0..20 {
        let mut text = String::new();
        let read = file.rewind().and_then(|()| file.read_to_string(&mut text));
        if let Ok(h) = read
            .map_err(drop)
            .and_then(|_| serde_json::from_str(&text).map_err(drop))
        {
            return h;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Holder::default()
}

/// Takes the run lock at `path` for `me`. If another run holds it: with
/// `wait`, waits up to that long for it (`on_wait` is told once who it
/// waits for); otherwise, or after the wait, returns who holds it.
pub fn acquire(
    path: &Path,
    me: &Holder,
    wait: Option<Duration>,
    on_wait: impl FnOnce(&Holder),
) -> std::io::Result<Result<RunLock, Holder>> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let deadline = wait.map(|w| Instant::now().checked_add(w).unwrap_or_else(far_future));
    let mut on_wait = Some(on_wait);
    loop {
        if flock(&file, libc::LOCK_EX)? {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(&serde_json::to_vec(me).expect("serializable"))?;
            return Ok(Ok(RunLock { file }));
        }
        let holder = read_holder(&mut file);
        match deadline {
            Some(d) if Instant::now() < d => {
                if let Some(f) = on_wait.take() {
                    f(&holder);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => return Ok(Err(holder)),
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86400)
}

/// Who holds the run lock at `path`, if a run is in progress.
pub fn running(path: &Path) -> std::io::Result<Option<Holder>> {
    let mut file = match File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other?,
    };
    // A shared probe: it never keeps a run from starting for longer than
    // this call, and it fails only while a run holds the lock.
    if flock(&file, libc::LOCK_SH)? {
        return Ok(None);
    }
    Ok(Some(read_holder(&mut file)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_who_holds_it_and_a_released_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "r");
        assert!(running(&p).unwrap().is_none());
        let me = Holder::me(Some("nightly".into()));
        let held = acquire(&p, &me, None, |_| {}).unwrap().unwrap();
        // flock locks belong to the open file description: a second open
        // in this process is refused like another process would be.
        let other = acquire(&p, &Holder::me(None), None, |_| {}).unwrap();
        let holder = other.unwrap_err();
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.label.as_deref(), Some("nightly"));
        assert_eq!(running(&p).unwrap().unwrap().started, me.started);
        let t = Instant::now();
        let mut told = false;
        let waited = acquire(&p, &me, Some(Duration::from_millis(300)), |_| told = true).unwrap();
        // Refused only after waiting the whole 300 ms it was given (a lower
        // bound the behaviour implies; a slow machine only makes it longer).
        assert!(waited.is_err() && told && t.elapsed() >= Duration::from_millis(300));
        drop(held);
        assert!(running(&p).unwrap().is_none());
        acquire(&p, &me, None, |_| {}).unwrap().unwrap();
    }
}
