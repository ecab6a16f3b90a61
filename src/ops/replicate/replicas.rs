//! Every replica of the host configuration: copied to at once where they
//! share a source, chains after their upstream, each with its own
//! bandwidth limit and retention.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ops::forget::{forget, ForgetError, Selection};
use crate::ops::replicate::{
    replicate, target, OpenError, ReplicateContext, ReplicateError, ReplicateProgress,
    ReplicateReport, Tell,
};
use crate::policy::replica::{depth, ReplicaConfig};
use crate::policy::throttle::Throttle;
use crate::tree::head::Head;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{Caller, FsError, Timestamp};

/// Why one replica was not brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaFailed {
    /// It could not be opened or made.
    #[error("replica {name} ({to})")]
    Open {
        /// The replica.
        name: String,
        /// Where.
        to: String,
        /// Why.
        source: Box<OpenError>,
    },
    /// The replica it copies from could not be opened.
    #[error("replica {name}: the replica it copies from, {from}, cannot be opened: {why}")]
    Upstream {
        /// The replica.
        name: String,
        /// The one it copies from.
        from: String,
        /// Why.
        why: String,
        /// Because it was never made (so this one is behind too).
        never_made: bool,
    },
    /// Copying stopped.
    #[error("replica {name}")]
    Copy {
        /// The replica.
        name: String,
        /// Why.
        source: Box<ReplicateError>,
    },
    /// Verifying it failed.
    #[error("replica {name}: verifying it")]
    Verify {
        /// The replica.
        name: String,
        /// Why.
        source: Box<FsError>,
    },
    /// Its retention could not be applied (everything was copied).
    #[error("replica {name}: everything was copied, but its retention could not be applied")]
    Forget {
        /// The replica.
        name: String,
        /// Why.
        source: Box<ForgetError>,
    },
}

/// What one replica got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    /// The replica.
    pub name: String,
    /// Where it is.
    pub to: String,
    /// Whether it was made by this run.
    pub created: bool,
    /// What was copied.
    pub report: ReplicateReport,
    /// Snapshots its retention forgot.
    pub forgotten: Vec<u64>,
}

/// Brings the replicas `chosen` (in the order [`crate::policy::replica::in_order`] gives) up to
/// date: those that copy from the repository from `source`, all at once,
/// each in its own thread; then those that copy from another replica (of
/// `all`) from it, opened with `source`'s keys. Each one's retention is
/// applied after its copy.
pub fn to_replicas(
    source: &Head,
    all: &[ReplicaConfig],
    chosen: &[&ReplicaConfig],
    caller: Caller,
    progress: Option<Tell<'_>>,
) -> Vec<Result<Done, ReplicaFailed>> {
    by_source(source, all, chosen, |from, group| {
        std::thread::scope(|s| {
            let threads: Vec<_> = group
                .iter()
                .map(|r| s.spawn(move || to_replica(from, r, caller, progress)))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("a replication thread panicked"))
                .collect()
        })
    })
}

/// Runs `each` on every group of `chosen` that copies from one source, in
/// order: `source` for the first, an opened replica for the others.
pub fn by_source<T>(
    source: &Head,
    all: &[ReplicaConfig],
    chosen: &[&ReplicaConfig],
    each: impl Fn(&Head, &[&ReplicaConfig]) -> Vec<Result<T, ReplicaFailed>>,
) -> Vec<Result<T, ReplicaFailed>> {
    let mut groups: Vec<(Option<&str>, Vec<&ReplicaConfig>)> = Vec::new();
    for r in chosen {
        let key = r.from.as_deref();
        match groups.iter_mut().find(|(from, _)| *from == key) {
            Some((_, g)) => g.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    groups.sort_by_key(|(_, g)| depth(all, g[0]));
    let mut out = Vec::new();
    for (from, group) in groups {
        let Some(from) = from else {
            out.extend(each(source, &group));
            continue;
        };
        let upstream = all.iter().find(|r| r.name == from).expect("checked");
        match target::open(&upstream.to, source.repo(), None) {
            Ok((head, _)) => out.extend(each(&head, &group)),
            Err(e) => {
                let why = e.to_string();
                let never_made = matches!(e, OpenError::Missing(_));
                for r in group {
                    out.push(Err(ReplicaFailed::Upstream {
                        name: r.name.clone(),
                        from: from.to_owned(),
                        why: why.clone(),
                        never_made,
                    }));
                }
            }
        }
    }
    out
}

fn to_replica(
    source: &Head,
    r: &ReplicaConfig,
    caller: Caller,
    progress: Option<Tell<'_>>,
) -> Result<Done, ReplicaFailed> {
    let (name, to) = (r.name.clone(), r.to.clone());
    let (replica, created) = target::open(
        &r.to,
        source.repo(),
        Some(target::Made {
            object_lock: r.object_lock,
        }),
    )
    .map_err(|e| ReplicaFailed::Open {
        name: name.clone(),
        to: to.clone(),
        source: Box::new(e),
    })?;
    let mut policy = r.bandwidth_policy();
    if r.bandwidth.burst.is_none() {
        // A copy runs for minutes or hours; the write path's second of
        // burst would let its first second run over the limit.
        policy.burst = Duration::from_millis(100);
    }
    let limited = !policy.limits.is_unlimited() || !policy.schedule.profiles.is_empty();
    let throttle = limited.then(|| Throttle::with_system_clock(policy));
    let tell = |p: &ReplicateProgress| {
        if let Some(f) = progress {
            f(&r.name, p)
        }
    };
    let cx = ReplicateContext {
        throttle: throttle.as_ref(),
        progress: Some(&tell),
    };
    let copy_err = |e| ReplicaFailed::Copy {
        name: name.clone(),
        source: Box::new(e),
    };
    let report = replicate(source, &replica, cx).map_err(copy_err)?;
    Snapshots::of(&replica)
        .mark_replicated(Timestamp::now().secs.max(0) as u64)
        .map_err(|e| copy_err(e.into()))?;
    let mut forgotten = Vec::new();
    if let Some(keep) = &r.retention {
        let now = Timestamp::now().secs;
        let done = forget(&replica, caller, &Selection::Policy(keep), now, false).map_err(|e| {
            ReplicaFailed::Forget {
                name: name.clone(),
                source: Box::new(e),
            }
        })?;
        forgotten = done
            .snapshots
            .iter()
            .filter(|l| !l.keep)
            .map(|l| l.seq)
            .collect();
    }
    Ok(Done {
        name,
        to,
        created,
        report,
        forgotten,
    })
}
