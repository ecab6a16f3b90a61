//! When the head commits durably: every [`COMMIT_INTERVAL`] or
//! [`COMMIT_BYTES`] written, whichever comes first.
//!
//! Without a committer thread, the operation that crosses the cadence pays
//! for the commit itself: it syncs every pack written since the last one,
//! and waits for writeback running at a low I/O priority. The daemon runs
//! [`Head::run_committer`], so no FUSE request waits for a cadence commit.
//! fsync, snapshots and unmount still commit on their own thread, as they
//! must, and a writer that outruns the committer by a second window of
//! bytes commits itself, so the loss window of a crash stays bounded.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Head, COMMIT_BYTES, COMMIT_INTERVAL};
use crate::sys::sync::Recover;

/// The cadence's state, shared by operations and the committer thread.
pub(super) struct Cadence {
    /// Longest time and most bytes between durable commits.
    limits: (Duration, u64),
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    /// When the last commit started.
    since: Instant,
    /// Bytes written since.
    bytes: u64,
    /// Whether anything changed since.
    changed: bool,
    /// A committer thread is running.
    background: bool,
    stopped: bool,
}

/// What an operation must do about the cadence.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// Nothing yet.
    No,
    /// Commit now, on this thread.
    Here,
}

impl Default for Cadence {
    fn default() -> Cadence {
        Cadence {
            limits: (COMMIT_INTERVAL, COMMIT_BYTES),
            state: Mutex::new(State {
                since: Instant::now(),
                bytes: 0,
                changed: false,
                background: false,
                stopped: false,
            }),
            wake: Condvar::new(),
        }
    }
}

impl Cadence {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    pub(super) fn set_limits(&mut self, interval: Duration, bytes: u64) {
        self.limits = (interval, bytes);
    }

    /// Records an operation that wrote `written` bytes.
    pub(super) fn note(&self, written: u64) -> Due {
        let mut st = self.lock();
        st.bytes = st.bytes.saturating_add(written);
        st.changed = true;
        if !self.is_due(&st) {
            return Due::No;
        }
        if st.background && st.bytes < self.limits.1.saturating_mul(2) {
            self.wake.notify_one();
            return Due::No;
        }
        Due::Here
    }

    /// A commit starts: what happens from now on belongs to the next one.
    pub(super) fn committing(&self) {
        let mut st = self.lock();
        st.since = Instant::now();
        st.bytes = 0;
        st.changed = false;
    }

    fn is_due(&self, st: &State) -> bool {
        st.changed && (st.since.elapsed() >= self.limits.0 || st.bytes >= self.limits.1)
    }
}

impl Head {
    /// Commits on the cadence until [`Head::stop_committer`]; the daemon
    /// runs this on a thread of its own. A failed commit is logged (the
    /// store refuses writes after it, and the storage watch alerts).
    pub fn run_committer(&self) {
        let c = &self.cadence;
        let mut st = c.lock();
        st.background = true;
        loop {
            if st.stopped {
                st.background = false;
                return;
            }
            if c.is_due(&st) {
                drop(st);
                match self.commit() {
                    Ok(()) => {
                        self.counters
                            .background_commits
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // Not due again before new changes and an interval.
                    Err(e) => tracing::error!(error = %e, "cadence commit failed"),
                }
                st = c.lock();
                continue;
            }
            let wait = c.limits.0.saturating_sub(st.since.elapsed());
            // An interval of Duration::MAX (tests) must not overflow.
            let wait = wait.clamp(Duration::from_millis(1), Duration::from_secs(3600));
            st = c
                .wake
                .wait_timeout(st, wait)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Whether a committer thread takes the cadence commits.
    pub fn has_committer(&self) -> bool {
        self.cadence.lock().background
    }

    /// Ends [`Head::run_committer`]; later cadence commits happen inline.
    pub fn stop_committer(&self) {
        self.cadence.lock().stopped = true;
        self.cadence.wake.notify_all();
    }
}
