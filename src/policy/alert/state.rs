//! The alerter's memory between invocations: one small JSON file per
//! repository (e.g. `/var/lib/strata/alerts-<repo id>.json`), replaced
//! atomically (temporary file, fsync, rename, fsync of the directory) under
//! an flock(2) on a sibling `.lock` file.
//!
//! Losing the file is harmless: the next alert is sent as if it were the
//! first. So an unreadable or damaged file is logged and started over, never
//! allowed to stop an alert.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::event::{Class, Event, EventId, Kind};
use crate::store::id::RepoId;

/// Version of the state file's layout.
pub const STATE_VERSION: u32 = 2;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    pub version: u32,
    pub alerts: Vec<Record>,
    /// Alerts that ended, oldest first, at most [`HISTORY_LIMIT`]: what
    /// `strata report` shows as the alert history.
    #[serde(default)]
    pub history: Vec<Span>,
}

/// How many ended alerts the state file remembers.
pub const HISTORY_LIMIT: usize = 1000;

/// One alert from its first occurrence to its end (or to now while it is
/// outstanding). Times are seconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Its kind.
    pub kind: Kind,
    /// Its class.
    pub class: Class,
    /// Its first occurrence.
    pub first_seen: u64,
    /// Its latest occurrence.
    pub last_seen: u64,
    /// Occurrences in all.
    pub count: u64,
    /// When it ended; `None` while outstanding.
    pub ended: Option<u64>,
    /// How it ended: `resolved` (what failed worked again) or `forgotten`
    /// (not seen again for the configured time).
    pub how: Option<String>,
}

impl State {
    /// Remembers that `rec` ended at `t`, `how`.
    pub fn ended(&mut self, rec: &Record, t: u64, how: &str) {
        self.history.push(Span {
            ended: Some(t),
            how: Some(how.to_owned()),
            ..rec.span()
        });
        let over = self.history.len().saturating_sub(HISTORY_LIMIT);
        self.history.drain(..over);
    }
}

/// One outstanding alert. Times are seconds since the epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub kind: Kind,
    pub class: Class,
    #[serde(default, with = "super::event::opt_repo")]
    pub repository: Option<RepoId>,
    pub first_seen: u64,
    pub last_seen: u64,
    /// Occurrences in all.
    pub count: u64,
    /// Index of the channel the alert has escalated to.
    pub level: usize,
    /// When it reached that channel.
    pub level_since: u64,
    /// Occurrences since it reached that channel.
    pub level_count: u64,
    /// When it was last delivered, if ever.
    pub last_sent: Option<u64>,
    /// The id of the last event delivered.
    #[serde(default)]
    pub sent_id: Option<EventId>,
    /// The channels that got it ([`Channel::identity`]), told when it
    /// resolves.
    ///
    /// [`Channel::identity`]: super::channel::Channel::identity
    #[serde(default)]
    pub sent_to: Vec<String>,
    /// The latest occurrence, for re-sending on a timed escalation.
    pub event: Event,
}

impl Record {
    /// Notes that the channel with `identity` got [`Record::event`] at `t`.
    pub fn sent(&mut self, identity: &str, t: u64) {
        self.last_sent = Some(t);
        self.sent_id = Some(self.event.id());
        if !self.sent_to.iter().any(|c| c == identity) {
            self.sent_to.push(identity.to_string());
        }
    }

    /// It as an outstanding span.
    pub fn span(&self) -> Span {
        Span {
            kind: self.kind,
            class: self.class,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            count: self.count,
            ended: None,
            how: None,
        }
    }

    pub fn matches(&self, kind: Kind, class: Class, repository: Option<RepoId>) -> bool {
        self.kind == kind && self.class == class && self.repository == repository
    }
}

/// The alert state file could not be locked, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The lock file does not open.
    #[error("cannot open alert lock {path:?}: {source}")]
    OpenLock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another strata held the lock too long.
    #[error("alert state {path:?} stayed locked for {}", humantime::format_duration(*.wait))]
    Locked {
        /// The state file.
        path: PathBuf,
        /// How long it was waited for.
        wait: Duration,
    },
    /// The state file does not read.
    #[error("cannot read alert state {path:?}: {source}")]
    Read {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state file does not parse.
    #[error("alert state {path:?} is damaged ({source}); starting over")]
    Damaged {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The state file is of another version.
    #[error("alert state {path:?} has version {version}, not {STATE_VERSION}; starting over")]
    Version {
        /// The state file.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
    /// Writing it failed.
    #[error("cannot {what} alert state {path:?}: {source}")]
    Write {
        /// What failed: "write", "sync", "replace", "sync the directory of".
        what: &'static str,
        /// The state file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Holds the flock until dropped.
pub(crate) struct Lock(#[allow(dead_code)] Option<File>);

/// Takes the lock beside `path`, waiting at most `wait`. Without it (the
/// lock file cannot be made, or another strata holds it too long) the caller
/// goes on unlocked: a lost count is better than a late alert.
pub(crate) fn lock(path: &Path, wait: Duration) -> Result<Lock, StateError> {
    if let Some(dir) = path.parent() {
        // The state directory (/var/lib/strata) is made on first use, root only.
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
    }
    let lock_path = sibling(path, ".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|source| StateError::OpenLock {
            path: lock_path.clone(),
            source,
        })?;
    let deadline = Instant::now() + wait;
    loop {
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Lock(Some(file)));
        }
        if Instant::now() >= deadline {
            return Err(StateError::Locked {
                path: path.to_owned(),
                wait,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The kinds of the alerts outstanding in the state file at `path` (raised
/// and not resolved), one per alert; none when the file is missing or
/// unreadable (the alerter starts over then, too).
pub fn outstanding(path: &Path) -> Vec<Kind> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<State>(&text).ok())
        .map(|s| s.alerts.into_iter().map(|r| r.kind).collect())
        .unwrap_or_default()
}

/// Every alert the state file at `path` knows: those that ended, oldest
/// first, then those outstanding. Empty when the file is missing or
/// unreadable.
pub fn history(path: &Path) -> Vec<Span> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<State>(&text).ok())
        .map(|s| {
            let mut out = s.history;
            out.extend(s.alerts.iter().map(Record::span));
            out
        })
        .unwrap_or_default()
}

pub(crate) fn load(path: &Path) -> Result<State, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let state: State = serde_json::from_str(&text).map_err(|source| StateError::Damaged {
        path: path.to_owned(),
        source,
    })?;
    if state.version != STATE_VERSION {
        return Err(StateError::Version {
            path: path.to_owned(),
            version: state.version,
        });
    }
    Ok(state)
}

pub(crate) fn save(path: &Path, state: &State) -> Result<(), StateError> {
    let err = |what, source| StateError::Write {
        what,
        path: path.to_owned(),
        source,
    };
    let tmp = sibling(path, ".tmp");
    let text = serde_json::to_vec_pretty(state).expect("alert state serializes");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err("write", e))?;
    f.write_all(&text).map_err(|e| err("write", e))?;
    f.sync_all().map_err(|e| err("sync", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| err("replace", e))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err("sync the directory of", e))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
