//! Write-path throttling: how long to hold each write so a backup does not
//! starve the machine it runs on.
//!
//! The daemon asks [`Throttle::admit`] once per write request, with the
//! request's size; the answer is how long to defer the reply (zero while
//! under the limit, never more than `max_delay`). The throttle never sleeps
//! itself: the daemon defers the reply, so no FUSE thread is blocked and no
//! other request waits behind a delayed one.
//!
//! The limit in force is decided in this order:
//! 1. a live override ([`Throttle::set`], `strata throttle set`), until it
//!    is cleared or expires; else
//! 2. the first `[[throttle.profile]]` whose window holds the local time;
//!    else
//! 3. the default `rate`/`ops`, or unlimited.
//!
//! Adaptive mode ([`adaptive`]) then lowers the byte rate further while the
//! system is under pressure; it never raises it above the limit from 1-3.
//! I/O priority is separate: [`crate::sys::ioprio`] gives the daemon's pack writeback
//! thread its own I/O scheduling class, and [`cgroup`] puts the daemon in a
//! cgroup whose io.weight/io.max the kernel applies to its disk I/O.
//!
//! Locking: all mutable state is behind one mutex, held for O(1) work per
//! call (no I/O, no allocation on the write path; the local time is read
//! under it only when a profile edge may have passed, at most once a minute
//! otherwise). The sampler of adaptive mode reads files and runs its probe
//! outside the lock.

pub mod adaptive;
pub mod bucket;
pub mod cgroup;
pub mod clock;
pub mod config;
pub mod profile;
pub mod rate;
pub mod secs;
pub mod window;

use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use adaptive::{AdaptivePolicy, PressureSample, Sampler, Verdict};
pub use bucket::TokenBucket;
pub use cgroup::{IoPlacement, IoPolicy, IoPriorityError};
pub use clock::{Clock, LocalTime, SimClock, SystemClock, Weekday};
pub use config::{ThrottleConfig, ThrottleConfigError, ThrottlePolicy};
pub use rate::{ByteRate, Limits, OpsRate};
use window::RateWindow;

/// Longest the resolved limit is trusted without looking at the wall clock
/// again, so that a changed time zone, a clock step or a suspend is followed
/// within this long.
const RECHECK: Duration = Duration::from_secs(60);

/// The limiter. Shared between FUSE threads as `Arc<Throttle>`; every
/// method takes `&self`.
pub struct Throttle {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// A live override of the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Override {
    limits: Limits,
    /// Monotonic expiry; `None` until cleared.
    until: Option<Duration>,
}

/// The limit in force before adaptation, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Unlimited,
    Default,
    Profile(String),
    Override(Option<Duration>),
}

struct State {
    policy: Arc<ThrottlePolicy>,
    overridden: Option<Override>,
    /// The adaptive byte rate; `None` when adaptation is not limiting.
    adaptive_rate: Option<u64>,
    last_verdict: Option<Verdict>,
    /// Limit from override/profile/default.
    base: Limits,
    source: Source,
    /// The resolution above stays valid until this monotonic time.
    valid_until: Duration,
    bytes: Option<TokenBucket>,
    ops: Option<TokenBucket>,
    window: RateWindow,
    requests: u64,
    admitted_bytes: u64,
    delayed_requests: u64,
    total_delay: Duration,
}

/// What the throttle is doing, for `strata throttle show` and `strata status`
/// (durations in seconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThrottleStatus {
    /// The default limit from the configuration.
    pub configured: Limits,
    /// The limit in force now, adaptation included.
    pub effective: Limits,
    /// Why: "unlimited", "default limit", "profile business-hours",
    /// "override until cleared", "adaptive: io pressure 23.5% > 10%", ...
    pub reason: String,
    /// The active profile, if one decides the limit.
    pub profile: Option<String>,
    /// The override, if one is active.
    pub override_limits: Option<Limits>,
    /// Time left on the override; `None` when it lasts until cleared.
    #[serde(with = "secs::opt")]
    pub override_remaining: Option<Duration>,
    /// The adaptive byte rate when adaptation is limiting.
    pub adaptive_rate: Option<ByteRate>,
    /// What adaptive mode last concluded.
    pub adaptive_verdict: Option<Verdict>,
    /// Bytes per second admitted over the last `window`.
    pub achieved_bytes_per_sec: f64,
    /// Requests per second admitted over the last `window`.
    pub achieved_ops_per_sec: f64,
    /// The length of the averaging window.
    #[serde(with = "secs")]
    pub window: Duration,
    /// Requests admitted since start.
    pub requests: u64,
    /// Bytes admitted since start.
    pub bytes: u64,
    /// Requests that were told to wait.
    pub delayed_requests: u64,
    /// Sum of all delays handed out.
    #[serde(with = "secs")]
    pub total_delay: Duration,
    /// The cap on one delay.
    #[serde(with = "secs")]
    pub max_delay: Duration,
}

impl Throttle {
    /// A throttle applying `policy`, reading time from `clock`.
    pub fn new(policy: ThrottlePolicy, clock: Arc<dyn Clock>) -> Throttle {
        let now = clock.now();
        Throttle {
            state: Mutex::new(State {
                policy: Arc::new(policy),
                overridden: None,
                adaptive_rate: None,
                last_verdict: None,
                base: Limits::UNLIMITED,
                source: Source::Unlimited,
                valid_until: Duration::ZERO,
                bytes: None,
                ops: None,
                window: RateWindow::new(now),
                requests: 0,
                admitted_bytes: 0,
                delayed_requests: 0,
                total_delay: Duration::ZERO,
            }),
            clock,
        }
    }

    /// A throttle on the real clock.
    pub fn with_system_clock(policy: ThrottlePolicy) -> Throttle {
        Throttle::new(policy, Arc::new(SystemClock::new()))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic in another thread (every
        // update is a plain assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves one write request of `bytes` and returns how long its reply
    /// must be deferred: zero under the limit, at most `max_delay`.
    pub fn admit(&self, bytes: u64) -> Duration {
        let now = self.clock.now();
        let mut st = self.lock();
        if now >= st.valid_until {
            self.resolve(&mut st, now);
        }
        let mut delay = Duration::ZERO;
        if let Some(b) = &mut st.bytes {
            delay = b.reserve(bytes, now);
        }
        if let Some(o) = &mut st.ops {
            delay = delay.max(o.reserve(1, now));
        }
        st.window.record(now, bytes);
        st.requests += 1;
        st.admitted_bytes += bytes;
        if !delay.is_zero() {
            st.delayed_requests += 1;
            st.total_delay += delay;
        }
        delay
    }

    /// Blocks until `bytes` fit the rate: for a copy that has nothing to
    /// reply to (replication, uploads). The throttle answers one request
    /// with at most its `max_delay`, so `bytes` are admitted in pieces that
    /// each fit.
    pub fn wait(&self, bytes: u64) {
        const PIECE: u64 = 64 << 10;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(PIECE);
            let delay = self.admit(n);
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            left -= n;
        }
    }

    /// Replaces the limit from profiles and default with `limits`, for `dur`
    /// or until [`Throttle::clear`]. Adaptive mode still applies beneath it.
    pub fn set(&self, limits: Limits, dur: Option<Duration>) {
        let now = self.clock.now();
        let mut st = self.lock();
        st.overridden = Some(Override {
            limits,
            until: dur.map(|d| now + d),
        });
        self.resolve(&mut st, now);
    }

    /// Ends an override; returns whether one was active.
    pub fn clear(&self) -> bool {
        let now = self.clock.now();
        let mut st = self.lock();
        let was = st
            .overridden
            .take()
            .is_some_and(|o| o.until.is_none_or(|u| u > now));
        self.resolve(&mut st, now);
        was
    }

    /// Replaces the policy (a reloaded configuration), keeping an override.
    /// Adaptation starts afresh.
    pub fn reconfigure(&self, policy: ThrottlePolicy) {
        let now = self.clock.now();
        let mut st = self.lock();
        st.policy = Arc::new(policy);
        st.adaptive_rate = None;
        st.last_verdict = None;
        self.resolve(&mut st, now);
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<ThrottlePolicy> {
        self.lock().policy.clone()
    }

    /// Feeds one adaptive sample: judges it against the thresholds and steps
    /// the adaptive rate. Returns the verdict, or `None` when the policy has
    /// no adaptive mode.
    pub fn adapt(&self, sample: &PressureSample) -> Option<Verdict> {
        let now = self.clock.now();
        let mut st = self.lock();
        let policy = st.policy.clone();
        let ad = policy.adaptive.as_ref()?;
        self.resolve(&mut st, now);
        let verdict = ad.judge(sample);
        let achieved = st.window.rate(now).0 as u64;
        let ceiling = st.base.bytes.map(ByteRate::get);
        st.adaptive_rate = ad.aimd.step(st.adaptive_rate, ceiling, achieved, &verdict);
        st.last_verdict = Some(verdict.clone());
        self.apply(&mut st, now);
        Some(verdict)
    }

    /// What the throttle is doing now.
    pub fn status(&self) -> ThrottleStatus {
        let now = self.clock.now();
        let mut st = self.lock();
        self.resolve(&mut st, now);
        let effective = effective(&st);
        let (bps, ops) = st.window.rate(now);
        let adaptive_binds = adaptive_binds(&st);
        let base_reason = match &st.source {
            Source::Unlimited => "unlimited".to_string(),
            Source::Default => "default limit".to_string(),
            Source::Profile(name) => format!("profile {name}"),
            Source::Override(None) => "override until cleared".to_string(),
            Source::Override(Some(until)) => format!(
                "override for {} more",
                humantime::format_duration(secs_ceil(until.saturating_sub(now)))
            ),
        };
        let reason = match (&st.last_verdict, adaptive_binds) {
            (Some(v), true) => {
                let how = match v {
                    Verdict::Over(d) => d.clone(),
                    Verdict::Under(d) => format!("recovering, {d}"),
                    Verdict::Unknown(d) => format!("holding, {d}"),
                };
                format!("adaptive: {how} (otherwise {base_reason})")
            }
            _ => base_reason,
        };
        ThrottleStatus {
            configured: st.policy.limits,
            effective,
            reason,
            profile: match &st.source {
                Source::Profile(n) => Some(n.clone()),
                _ => None,
            },
            override_limits: st.overridden.map(|o| o.limits),
            override_remaining: st
                .overridden
                .and_then(|o| o.until)
                .map(|u| u.saturating_sub(now)),
            adaptive_rate: st.adaptive_rate.map(ByteRate),
            adaptive_verdict: st.last_verdict.clone(),
            achieved_bytes_per_sec: bps,
            achieved_ops_per_sec: ops,
            window: RateWindow::length(),
            requests: st.requests,
            bytes: st.admitted_bytes,
            delayed_requests: st.delayed_requests,
            total_delay: st.total_delay,
            max_delay: st.policy.max_delay,
        }
    }

    /// Decides the limit before adaptation at `now`, and how long that holds.
    fn resolve(&self, st: &mut State, now: Duration) {
        if st
            .overridden
            .is_some_and(|o| o.until.is_some_and(|u| u <= now))
        {
            st.overridden = None;
        }
        let (base, source, valid_for) = if let Some(o) = st.overridden {
            let left = o.until.map_or(RECHECK, |u| u - now);
            (o.limits, Source::Override(o.until), left.min(RECHECK))
        } else {
            let local = self.clock.local();
            let schedule = &st.policy.schedule;
            // Sub-second part of the monotonic clock is not known to line up
            // with the wall clock's seconds; an edge is seen within 1 s.
            let edge = Duration::from_secs(schedule.secs_to_next_edge(local).into());
            let valid = edge.min(RECHECK);
            match schedule.active(local) {
                Some(p) => (p.limits, Source::Profile(p.name.clone()), valid),
                None if st.policy.limits.is_unlimited() => {
                    (Limits::UNLIMITED, Source::Unlimited, valid)
                }
                None => (st.policy.limits, Source::Default, valid),
            }
        };
        st.base = base;
        st.source = source;
        st.valid_until = now + valid_for;
        self.apply(st, now);
    }

    /// Brings the buckets in line with the effective limit. A bucket that
    /// starts (the limit was off) starts full.
    fn apply(&self, st: &mut State, now: Duration) {
        let eff = effective(st);
        let (burst, max_delay) = (st.policy.burst, st.policy.max_delay);
        let fit = |b: &mut Option<TokenBucket>, rate: Option<u64>| match (b.as_mut(), rate) {
            (_, None) => *b = None,
            (Some(bucket), Some(r)) => {
                if bucket.rate() != r {
                    bucket.set_rate(r, now)
                }
            }
            (None, Some(r)) => *b = Some(TokenBucket::new(r, burst, max_delay, now)),
        };
        fit(&mut st.bytes, eff.bytes.map(ByteRate::get));
        fit(&mut st.ops, eff.ops.map(OpsRate::get));
    }
}

fn adaptive_binds(st: &State) -> bool {
    match (st.adaptive_rate, st.base.bytes) {
        (Some(a), Some(b)) => a < b.get(),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn effective(st: &State) -> Limits {
    let bytes = match (st.base.bytes, st.adaptive_rate) {
        (b, None) => b,
        (None, Some(a)) => Some(ByteRate(a)),
        (Some(b), Some(a)) => Some(ByteRate(b.get().min(a))),
    };
    Limits {
        bytes,
        ops: st.base.ops,
    }
}

fn secs_ceil(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// The adaptive sampler running on its own thread; stops when dropped.
pub struct AdaptiveTask {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl AdaptiveTask {
    /// Starts sampling every `interval` of `throttle`'s adaptive policy and
    /// feeding [`Throttle::adapt`]; `None` when the policy has no adaptive
    /// mode at start. Each change of verdict is logged.
    pub fn spawn(throttle: Arc<Throttle>) -> Option<AdaptiveTask> {
        let interval = throttle.policy().adaptive.as_ref()?.interval;
        let (tx, rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("strata-throttle".into())
            .spawn(move || {
                let mut last_kind = None;
                let mut wait = interval;
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(wait) {
                    // Read the policy each time: a reload may have changed it.
                    let Some(policy) = throttle.policy().adaptive.clone() else {
                        continue;
                    };
                    wait = policy.interval;
                    let sample = Sampler::new(policy).sample();
                    if let Some(v) = throttle.adapt(&sample) {
                        let kind = std::mem::discriminant(&v);
                        if last_kind != Some(kind) {
                            tracing::info!(verdict = v.detail(), "throttle: adaptive");
                            last_kind = Some(kind);
                        }
                    }
                }
            })
            .ok()?;
        Some(AdaptiveTask {
            stop: Some(tx),
            handle: Some(handle),
        })
    }
}

impl Drop for AdaptiveTask {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            // The sampler may be inside a probe; it ends within the probe's timeout.
            let _ = h.join();
        }
    }
}
