//! The alerts a backup run's outcome raises: the run failed (classed by
//! what failed), a hook failed without stopping the run, the run was
//! slower than expected. Events carry hook names, snapshot names and
//! numbers, never paths or hook output.

use std::time::{Duration, SystemTime};

use super::record::HookOutcome;
use super::{Failure, Outcome};
use crate::alert::{Class, Event, Fields, Kind, Token};

/// The run_failed event of `o`, a run that has just failed `elapsed` after
/// it started; raised at once, before the on-failure hooks run.
pub fn run_failed(o: &Outcome, elapsed: Duration) -> Option<Event> {
    let f = o.failure.as_ref()?;
    // The hook that stopped the run is the last failed one.
    let culprit = match f {
        Failure::Copy(_) => Some(&o.record.copy),
        Failure::Hook(_) | Failure::Validation(_) => o.record.hooks.iter().rfind(|h| !h.ok()),
        Failure::Snapshot(_) => None,
    };
    let class = match (f, culprit) {
        (_, Some(h)) if h.timed_out => Class::Timeout,
        (Failure::Hook(_) | Failure::Copy(_), _) => Class::Hook,
        (Failure::Validation(_), _) => Class::Corruption,
        (Failure::Snapshot(_), _) => Class::TransientIo,
    };
    Some(
        Event::new(Kind::RunFailed, class, SystemTime::now()).with_fields(fields(
            culprit,
            snapshot(o),
            elapsed,
        )),
    )
}

/// The events at the end of `o`, a run that took `elapsed`: each failed
/// hook of a run that went on (under mark-inconsistent), and a run slower
/// than `slow`.
pub fn after_run(o: &Outcome, elapsed: Duration, slow: Duration) -> Vec<Event> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    if o.failure.is_none() {
        for h in o.record.hooks.iter().filter(|h| !h.ok()) {
            let class = if h.timed_out {
                Class::Timeout
            } else {
                Class::Hook
            };
            out.push(Event::new(Kind::HookFailed, class, now).with_fields(fields(
                Some(h),
                snapshot(o),
                elapsed,
            )));
        }
    }
    if elapsed > slow {
        out.push(
            Event::new(Kind::SnapshotSlow, Class::Timeout, now).with_fields(Fields {
                snapshot: snapshot(o),
                elapsed_secs: Some(elapsed.as_secs()),
                limit_secs: Some(slow.as_secs()),
                ..Fields::default()
            }),
        );
    }
    out
}

fn snapshot(o: &Outcome) -> Option<Token> {
    o.snapshot.as_ref().and_then(|s| Token::new(&s.name).ok())
}

fn fields(h: Option<&HookOutcome>, snapshot: Option<Token>, elapsed: Duration) -> Fields {
    Fields {
        hook: h.and_then(|h| Token::new(&h.name).ok()),
        snapshot,
        exit_status: h.and_then(|h| h.exit),
        signal: h.and_then(|h| h.signal),
        attempts: h.map(|h| h.attempts),
        elapsed_secs: Some(elapsed.as_secs()),
        ..Fields::default()
    }
}
