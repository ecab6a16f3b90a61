//! Alerts: failures that are never silent.
//!
//! A caller builds an [`Event`] (from a kind, a class and typed fields, never
//! from free text, so no path reaches an alert) and hands it to an
//! [`Alerter`], which
//!
//! - de-duplicates: the same kind, class and repository raised again within
//!   `dedup_window` of the last send is counted, not sent; the count goes
//!   with the next send;
//! - escalates: channels form an ordered list (e.g. syslog, webhook, email);
//!   a channel's `escalate_after` (a repeat count, a time outstanding, or
//!   both) moves the alert on to the next channel, and that move is sent at
//!   once, window or not;
//! - falls through: a channel that fails is reported (in the [`Report`] and
//!   as a tracing warning) and the next one is tried, then the earlier ones,
//!   so an alert goes out somewhere if any channel works;
//! - resolves: [`Alerter::resolve`] forgets an alert whose condition
//!   cleared and sends the channels that got it one event with the same id
//!   and the state `resolved`;
//! - remembers: counts, levels and send times live in a small JSON state
//!   file, so all of this holds across separate `strata` invocations.
//!
//! Raising never panics and never waits longer than the channels' timeouts
//! (plus the wait for another strata process sending through the same state
//! file, bounded the same way). Escalation by time is checked whenever an
//! alert is raised and by [`Alerter::tick`], which the freshness timer calls.
//!
//! The webhook speaks HTTP and HTTPS (rustls), trusting the system's root
//! certificates and the channel's `ca_file` (an internal CA). The
//! state file belongs in a root-only directory, one per repository, e.g.
//! `/var/lib/strata/alerts-<repository id>.json`.
//!
//! [`freshness`] and [`fill_check`] produce the missed-backup and fill alerts;
//! [`classify`] turns an I/O error into a [`Class`], as the store's retry
//! policy classes it ([`crate::store::io::retry`]).

mod channel;
mod classify;
mod config;
mod event;
pub mod state;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use channel::{
    mail_text, syslog_line, CaFileError, Channel, ChannelError, SetupError, CHILD_PATH,
};
pub use classify::{classify, classify_errno};
pub use config::{
    AlertConfig, AlertConfigError, ChannelConfig, ChannelKind, Escalation, Facility, InvalidAlerts,
    DEFAULT_CHANNEL_TIMEOUT, DEFAULT_DEDUP_WINDOW, DEFAULT_FILL_THRESHOLD, DEFAULT_FORGET_AFTER,
    DEFAULT_MAX_SNAPSHOT_AGE, DEFAULT_SENDMAIL, DEFAULT_SLOW_SNAPSHOT, DEFAULT_SYSLOG_SOCKET,
};
pub use event::{
    fill_check, freshness, host_name, AlertState, BadToken, Class, Event, EventId, Fields, Kind,
    Severity, Token,
};
pub use state::{StateError, STATE_VERSION};

use crate::store::id::RepoId;
use event::unix_secs;
use state::{Record, State};

/// What became of one raised alert.
#[derive(Debug)]
pub struct Report {
    /// The event's id.
    pub event: EventId,
    /// Occurrences so far, this one included.
    pub count: u64,
    /// Sent, counted or lost.
    pub outcome: Outcome,
    /// Channels that failed on the way, in the order tried.
    pub failures: Vec<ChannelError>,
    /// The state file could not be read, locked or written (the alert was
    /// still handled; de-duplication may be off by one).
    pub state_error: Option<StateError>,
}

/// The fate of one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered through the named channel.
    Sent {
        /// The channel's name (e.g. `webhook#1`).
        channel: String,
        /// Whether this send moved the alert to a later channel.
        escalated: bool,
    },
    /// A repeat within the window: counted, not sent.
    Suppressed,
    /// Every channel failed (or there are none); see the failures.
    Undelivered,
}

impl Report {
    /// Ok when the alert was sent or rightly suppressed; otherwise the first
    /// failure, for a caller that must exit non-zero.
    pub fn result(&self) -> Result<(), &ChannelError> {
        match self.outcome {
            Outcome::Sent { .. } | Outcome::Suppressed => Ok(()),
            Outcome::Undelivered => self.failures.first().map_or(Ok(()), Err),
        }
    }
}

/// Raises alerts through channels, with de-duplication and escalation kept
/// in a state file.
#[derive(Debug)]
pub struct Alerter {
    channels: Vec<Channel>,
    dedup_window: Duration,
    forget_after: Duration,
    state_path: PathBuf,
}

impl Alerter {
    /// An alerter over `channels` (in escalation order), remembering in `state_path`.
    pub fn new(
        channels: Vec<Channel>,
        dedup_window: Duration,
        forget_after: Duration,
        state_path: impl Into<PathBuf>,
    ) -> Alerter {
        Alerter {
            channels,
            dedup_window,
            forget_after,
            state_path: state_path.into(),
        }
    }

    /// An alerter for the `[alerts]` configuration; fails when a channel
    /// cannot be set up (an unsafe or malformed webhook header file).
    pub fn from_config(
        config: &AlertConfig,
        state_path: impl Into<PathBuf>,
    ) -> Result<Alerter, ChannelError> {
        let channels = config
            .channels
            .iter()
            .enumerate()
            .map(|(i, c)| Channel::from_config(i, c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Alerter::new(
            channels,
            config.dedup_window,
            config.forget_after,
            state_path,
        ))
    }

    /// The state file.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// Raises `event` now.
    pub fn raise(&self, event: Event) -> Report {
        self.raise_at(event, SystemTime::now())
    }

    /// Raises `event` as of `now` (the clock is the caller's, so tests can move it).
    pub fn raise_at(&self, mut event: Event, now: SystemTime) -> Report {
        let t = unix_secs(now);
        let mut state_error = None;
        let _lock = self.lock(&mut state_error);
        let mut st = self.load(&mut state_error);
        self.forget_stale(&mut st, t);

        let key = (event.kind(), event.class(), event.repository());
        let pos = match st
            .alerts
            .iter()
            .position(|r| r.matches(key.0, key.1, key.2))
        {
            Some(p) => p,
            None => {
                st.alerts.push(Record {
                    kind: key.0,
                    class: key.1,
                    repository: key.2,
                    first_seen: t,
                    last_seen: t,
                    count: 0,
                    level: 0,
                    level_since: t,
                    level_count: 0,
                    last_sent: None,
                    sent_id: None,
                    sent_to: Vec::new(),
                    event: event.clone(),
                });
                st.alerts.len() - 1
            }
        };
        let rec = &mut st.alerts[pos];
        rec.count += 1;
        rec.level_count += 1;
        rec.last_seen = t;
        let escalated = self.escalate(rec, t);
        event.set_repeat(rec.count, UNIX_EPOCH + Duration::from_secs(rec.first_seen));
        rec.event = event.clone();

        let due = escalated
            || rec
                .last_sent
                .is_none_or(|s| t.saturating_sub(s) >= self.dedup_window.as_secs());
        let mut failures = Vec::new();
        let outcome = if due {
            match self.deliver(&event, rec.level, &mut failures) {
                Some(i) => {
                    rec.sent(self.channels[i].identity(), t);
                    Outcome::Sent {
                        channel: self.channels[i].name().to_string(),
                        escalated,
                    }
                }
                None => Outcome::Undelivered,
            }
        } else {
            tracing::debug!(event = %event.id(), kind = %event.kind(), count = event.count(), "alert repeated within the window; counted");
            Outcome::Suppressed
        };
        let count = rec.count;
        self.save(&st, &mut state_error);
        Report {
            event: event.id(),
            count,
            outcome,
            failures,
            state_error,
        }
    }

    /// Re-sends outstanding alerts whose time at their channel has run past
    /// its `escalate_after.elapsed`, to the next channel. Call it
    /// periodically (the freshness timer does), since a failing process may
    /// never raise its alert again.
    pub fn tick(&self, now: SystemTime) -> Vec<Report> {
        let t = unix_secs(now);
        let mut state_error = None;
        let _lock = self.lock(&mut state_error);
        let mut st = self.load(&mut state_error);
        self.forget_stale(&mut st, t);
        let mut reports = Vec::new();
        for rec in &mut st.alerts {
            let Some(elapsed) = self
                .channels
                .get(rec.level)
                .and_then(|c| c.escalate_after())
                .and_then(|e| e.elapsed)
            else {
                continue;
            };
            if rec.level + 1 >= self.channels.len()
                || t.saturating_sub(rec.level_since) < elapsed.as_secs()
            {
                continue;
            }
            rec.level += 1;
            rec.level_since = t;
            rec.level_count = 0;
            let mut failures = Vec::new();
            let outcome = match self.deliver(&rec.event, rec.level, &mut failures) {
                Some(i) => {
                    rec.sent(self.channels[i].identity(), t);
                    Outcome::Sent {
                        channel: self.channels[i].name().to_string(),
                        escalated: true,
                    }
                }
                None => Outcome::Undelivered,
            };
            reports.push(Report {
                event: rec.event.id(),
                count: rec.count,
                outcome,
                failures,
                state_error: None,
            });
        }
        self.save(&st, &mut state_error);
        if let (Some(e), Some(r)) = (state_error, reports.first_mut()) {
            r.state_error = Some(e);
        }
        reports
    }

    /// Forgets the alerts of `kind` for `repository` (any class), e.g. after
    /// the freshness check finds a fresh snapshot; the next failure is then
    /// news again. Each channel that got one of them is sent a resolved
    /// event with the id of the last one sent (a failure to send is logged,
    /// not retried). Returns how many were outstanding.
    pub fn resolve(&self, kind: Kind, repository: Option<RepoId>) -> Result<usize, StateError> {
        self.resolve_classes(kind, repository, |_| true)
    }

    /// As [`Alerter::resolve`], for the classes `fixed` accepts only: what
    /// clears one class of failure (a copy that ran) need not clear another
    /// (data that failed validation).
    pub fn resolve_classes(
        &self,
        kind: Kind,
        repository: Option<RepoId>,
        fixed: impl Fn(Class) -> bool,
    ) -> Result<usize, StateError> {
        let mut state_error = None;
        let _lock = self.lock(&mut state_error);
        let mut st = state::load(&self.state_path)?;
        let (cleared, kept) = std::mem::take(&mut st.alerts)
            .into_iter()
            .partition::<Vec<_>, _>(|r| {
                r.kind == kind && r.repository == repository && fixed(r.class)
            });
        st.alerts = kept;
        if !cleared.is_empty() {
            let t = unix_secs(SystemTime::now());
            for rec in &cleared {
                st.ended(rec, t, "resolved");
            }
            st.version = STATE_VERSION;
            state::save(&self.state_path, &st)?;
        }
        let now = SystemTime::now();
        for rec in &cleared {
            let Some(id) = rec.sent_id else { continue };
            let event = rec.event.resolved(id, now);
            let told = |ch: &&Channel| rec.sent_to.iter().any(|c| c == ch.identity());
            for ch in self.channels.iter().filter(told) {
                match ch.send(&event) {
                    Ok(()) => {
                        tracing::info!(event = %id, kind = %event.kind(), channel = ch.name(), "alert resolved")
                    }
                    Err(e) => {
                        tracing::warn!(event = %id, kind = %event.kind(), channel = ch.name(), error = %e, "the resolved alert could not be sent")
                    }
                }
            }
        }
        Ok(cleared.len())
    }

    /// Applies the current channel's escalation rule; true when the alert moved on.
    fn escalate(&self, rec: &mut Record, t: u64) -> bool {
        if rec.level + 1 >= self.channels.len() {
            return false;
        }
        let Some(rule) = self.channels[rec.level].escalate_after() else {
            return false;
        };
        let by_count = rule.count.is_some_and(|n| rec.level_count >= n);
        let by_time = rule
            .elapsed
            .is_some_and(|d| t.saturating_sub(rec.level_since) >= d.as_secs());
        if by_count || by_time {
            rec.level += 1;
            rec.level_since = t;
            // This occurrence is the first at the new channel.
            rec.level_count = 1;
            true
        } else {
            false
        }
    }

    /// Sends through the channel at `level`, then the later ones, then the
    /// earlier ones, until one works; returns its position.
    fn deliver(
        &self,
        event: &Event,
        level: usize,
        failures: &mut Vec<ChannelError>,
    ) -> Option<usize> {
        let n = self.channels.len();
        let level = level.min(n.saturating_sub(1));
        let order = (level..n).chain((0..level).rev());
        for i in order {
            let ch = &self.channels[i];
            match ch.send(event) {
                Ok(()) => {
                    tracing::info!(event = %event.id(), kind = %event.kind(), class = %event.class(), count = event.count(), channel = ch.name(), "alert sent");
                    return Some(i);
                }
                Err(e) => {
                    tracing::warn!(event = %event.id(), kind = %event.kind(), channel = ch.name(), error = %e, "alert channel failed; trying the next");
                    failures.push(e);
                }
            }
        }
        tracing::error!(event = %event.id(), kind = %event.kind(), class = %event.class(), message = %event.message(), "alert could not be delivered through any channel");
        None
    }

    fn lock(&self, state_error: &mut Option<StateError>) -> Option<state::Lock> {
        let wait: Duration = self
            .channels
            .iter()
            .map(|c| c.timeout())
            .sum::<Duration>()
            .max(Duration::from_secs(1));
        match state::lock(&self.state_path, wait) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!("{e}; going on without the lock");
                *state_error = Some(e);
                None
            }
        }
    }

    fn load(&self, state_error: &mut Option<StateError>) -> State {
        match state::load(&self.state_path) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{e}");
                *state_error = Some(e);
                State::default()
            }
        }
    }

    fn save(&self, st: &State, state_error: &mut Option<StateError>) {
        let st = State {
            version: STATE_VERSION,
            alerts: st.alerts.clone(),
            history: st.history.clone(),
        };
        if let Err(e) = state::save(&self.state_path, &st) {
            tracing::warn!("{e}");
            state_error.get_or_insert(e);
        }
    }

    fn forget_stale(&self, st: &mut State, t: u64) {
        let limit = self.forget_after.as_secs();
        let (stale, kept) = std::mem::take(&mut st.alerts)
            .into_iter()
            .partition::<Vec<_>, _>(|r| t.saturating_sub(r.last_seen) > limit);
        st.alerts = kept;
        for rec in &stale {
            st.ended(rec, t, "forgotten");
        }
    }
}

/// Where the alert state of `repository` is kept between invocations:
/// `$STRATA_STATE_DIR` or /var/lib/strata.
pub fn state_path(repository: &RepoId) -> PathBuf {
    state_dir().join(format!("alerts-{repository}.json"))
}

/// The state file for a repository that cannot be opened (its id is
/// unknown): named by a hash of its path, which stays out of the name.
pub fn state_path_of(repository_path: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let hash = blake3::hash(repository_path.as_os_str().as_bytes());
    state_dir().join(format!("alerts-path-{}.json", &hash.to_hex()[..16]))
}

fn state_dir() -> PathBuf {
    std::env::var_os("STRATA_STATE_DIR")
        .unwrap_or_else(|| "/var/lib/strata".into())
        .into()
}

/// Raises `events` for `repository`, logging what could not be delivered;
/// an alert never fails the operation that raised it.
pub fn raise_all(alerter: &Alerter, repository: RepoId, events: Vec<Event>) {
    for e in events {
        let kind = e.kind();
        let report = alerter.raise(e.with_repository(repository));
        if let Err(err) = report.result() {
            tracing::error!(kind = kind.name(), error = %err, "an alert could not be delivered");
            eprintln!(
                "strata: an alert ({}) could not be delivered: {err}",
                kind.name()
            );
        }
    }
}
