//! The alerts a backup run's outcome raises: the run failed (classed by
//! what failed), a hook failed without stopping the run, the run was
//! slower than expected. Events carry hook names, snapshot names and
//! numbers, never paths or hook output.

use std::time::{Duration, SystemTime};

use super::record::HookOutcome;
use super::{Failure, Outcome};
use crate::alert::{Class, Event, Fields, Kind, Token};

/// The events for `o`, a run that started `elapsed` ago; `slow` is the
/// duration past which a run is reported as slow.
pub fn events(o: &Outcome, elapsed: Duration, slow: Duration) -> Vec<Event> {
    let now = SystemTime::now();
    let snapshot = o.snapshot.as_ref().and_then(|s| Token::new(&s.name).ok());
    let mut out = Vec::new();
    let failing = o.record.hooks.iter().filter(|h| !h.ok());
    if let Some(f) = &o.failure {
        // The hook that stopped the run is the last failed one.
        let culprit = match f {
            Failure::Copy(_) => Some(&o.record.copy),
            Failure::Hook(_) | Failure::Validation(_) => failing.clone().next_back(),
            Failure::Snapshot(_) => None,
        };
        let class = match (f, culprit) {
            (_, Some(h)) if h.timed_out => Class::Timeout,
            (Failure::Hook(_) | Failure::Copy(_), _) => Class::Hook,
            (Failure::Validation(_), _) => Class::Corruption,
            (Failure::Snapshot(_), _) => Class::TransientIo,
        };
        out.push(Event::new(Kind::RunFailed, class, now).with_fields(fields(
            culprit,
            snapshot.clone(),
            elapsed,
        )));
    } else {
        for h in failing {
            let class = if h.timed_out {
                Class::Timeout
            } else {
                Class::Hook
            };
            out.push(Event::new(Kind::HookFailed, class, now).with_fields(fields(
                Some(h),
                snapshot.clone(),
                elapsed,
            )));
        }
    }
    if elapsed > slow {
        out.push(
            Event::new(Kind::SnapshotSlow, Class::Timeout, now).with_fields(Fields {
                snapshot,
                elapsed_secs: Some(elapsed.as_secs()),
                limit_secs: Some(slow.as_secs()),
                ..Fields::default()
            }),
        );
    }
    out
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
