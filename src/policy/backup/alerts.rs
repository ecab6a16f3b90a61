//! The alerts a backup run raises: the run failed (classed by what
//! failed), a hook failed without stopping the run (both at once), the run
//! was slower than expected (at its end); and the earlier run failures a
//! run clears, by class, as far as it proved them fixed. Events carry hook
//! names, snapshot names and numbers, never paths or hook output.

use std::time::{Duration, SystemTime};

use super::{Failure, Outcome};
use crate::policy::alert::{Alerter, Class, Event, Fields, Kind, Token};
use crate::store::id::RepoId;
use crate::tree::record::SnapshotInfo;
use crate::tree::record::{HookOutcome, RunStatus};

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
        // Refused before it started (a misused placeholder): set up wrong.
        (Failure::Copy(_), Some(h)) if h.attempts == 0 => Class::Configuration,
        (Failure::Hook(_), _) => Class::Hook,
        (Failure::Copy(_), _) => Class::Copy,
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

/// The hook_failed event of `h`, a hook that failed `elapsed` into a run
/// that goes on (under mark-inconsistent); raised at once.
pub fn hook_failed(h: &HookOutcome, snapshot: Option<&SnapshotInfo>, elapsed: Duration) -> Event {
    let class = if h.timed_out {
        Class::Timeout
    } else {
        Class::Hook
    };
    Event::new(Kind::HookFailed, class, SystemTime::now()).with_fields(fields(
        Some(h),
        snapshot.and_then(token),
        elapsed,
    ))
}

/// The snapshot_slow event of `o`, a run that took `elapsed`, if that is
/// more than `slow`.
pub fn slow(o: &Outcome, elapsed: Duration, slow: Duration) -> Option<Event> {
    (elapsed > slow).then(|| {
        Event::new(Kind::SnapshotSlow, Class::Timeout, SystemTime::now()).with_fields(Fields {
            snapshot: snapshot(o),
            elapsed_secs: Some(elapsed.as_secs()),
            limit_secs: Some(slow.as_secs()),
            ..Fields::default()
        })
    })
}

/// Resolves the run_failed alerts of `repository` that `o`, a finished
/// run, proved fixed (see [`proves_fixed`]); a failure to do so is logged.
pub fn resolve(alerter: &Alerter, repository: RepoId, o: &Outcome) {
    if let Err(e) =
        alerter.resolve_classes(Kind::RunFailed, Some(repository), |c| proves_fixed(o, c))
    {
        tracing::warn!(error = %e, "resolving earlier run failures failed");
    }
}

/// Whether `o` shows the cause of a run failure of `class` gone. A run
/// that did not fail clears every class but corruption: data that failed
/// validation is trusted again only when a snapshot passes validation, so
/// neither an inconsistent run (exit 23) nor one without validation hooks
/// clears it. A copy that succeeded clears a failed copy even when the run
/// failed later.
pub fn proves_fixed(o: &Outcome, class: Class) -> bool {
    let succeeded = o.failure.is_none();
    match class {
        Class::Corruption => succeeded && o.record.status == RunStatus::Validated,
        Class::Copy => succeeded || (o.record.copy.attempts > 0 && o.record.copy.ok()),
        Class::TransientIo
        | Class::Capacity
        | Class::Configuration
        | Class::Hook
        | Class::Timeout => succeeded,
    }
}

fn snapshot(o: &Outcome) -> Option<Token> {
    o.snapshot.as_ref().and_then(token)
}

fn token(s: &SnapshotInfo) -> Option<Token> {
    Token::new(&s.name).ok()
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
