//! `strata forget`: applies a retention policy (or forgets snapshots by
//! name), after lengthening the repository's retention lock to what the
//! administrator configured.
//!
//! The order is the safety argument: a lock that would shorten the
//! repository's is refused before anything else; a longer one is made
//! durable before any snapshot is judged by it; the verdicts and the
//! refusals of held and locked snapshots are computed here for the report,
//! and the engine checks holds and the lock again in the transaction that
//! forgets ([`Snapshots::forget`]), so nothing between the two can slip a
//! protected snapshot through.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::retention::{decide, Candidate, Policy, PolicyError, Reason, RetentionConfig};
use crate::store::repo::RepoError;
use crate::store::retention_lock::RetentionLock;
use crate::tree::head::Head;
use crate::tree::objects::SnapshotRow;
use crate::tree::record::RunRecord;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{Caller, FsError};

/// What to forget.
pub enum Selection<'a> {
    /// What the policy does not keep.
    Policy(&'a RetentionConfig),
    /// These snapshots (by number), whatever a policy says; the lock
    /// configured in the `RetentionConfig` still raises the repository's.
    These(&'a [u64], &'a RetentionConfig),
}

impl Selection<'_> {
    fn config(&self) -> &RetentionConfig {
        match self {
            Selection::Policy(c) | Selection::These(_, c) => c,
        }
    }
}

/// One reason a snapshot is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptBy {
    /// The rule: last, hourly, daily, weekly, monthly, yearly, within,
    /// label, newest, inspect, hold, lock.
    pub rule: String,
    /// For people: "daily 2026-12-01", "legal hold".
    pub text: String,
}

/// The verdict on one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetLine {
    /// Snapshot number.
    pub seq: u64,
    /// Its directory name.
    pub name: String,
    /// Its label.
    pub label: Option<String>,
    /// Its backup run's status ("complete" outside a run).
    pub status: String,
    /// Kept, or forgotten (or, in a dry run, to be forgotten).
    pub keep: bool,
    /// Every reason that keeps it.
    pub reasons: Vec<KeptBy>,
}

/// What `strata forget` did, or in a dry run would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// The rules applied, or `None` when snapshots were named.
    pub policy: Option<String>,
    /// The time zone of the calendar rules.
    pub timezone: String,
    /// The retention lock in force (after any lengthening).
    pub lock: String,
    /// Every snapshot considered, oldest first.
    pub snapshots: Vec<ForgetLine>,
    /// How many were (or would be) forgotten.
    pub forgotten: u64,
    /// How many are kept.
    pub kept: u64,
}

/// Why nothing was forgotten.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// Neither rules nor snapshots.
    #[error("no retention policy to apply: give rules (e.g. --keep-daily 7 --keep-weekly 4), set them in [retention] of strata.toml, or name the snapshots to forget; nothing changed")]
    NoPolicy,
    /// Rules and named snapshots at once.
    #[error("name snapshots to forget or give keep rules, not both; nothing changed")]
    RulesAndNames,
    /// The rules do not make a policy.
    #[error("{0}; nothing changed")]
    Policy(#[from] PolicyError),
    /// A duration, lock or time zone does not parse.
    #[error("{0}; nothing changed")]
    Config(#[from] crate::policy::retention::RetentionConfigError),
    /// A named snapshot is under a legal hold.
    #[error("snapshot {seq} ({name}) is under a legal hold ({reason:?}) and cannot be forgotten; release it first with `strata snapshot release {seq} --reason TEXT` if the hold has ended; nothing changed")]
    Held {
        /// The snapshot.
        seq: u64,
        /// Its name.
        name: String,
        /// Why it is held.
        reason: String,
    },
    /// A named snapshot is inside its retention lock.
    #[error("snapshot {seq} ({name}) is inside the repository's retention lock until {until} and cannot be forgotten by anyone; nothing changed")]
    Locked {
        /// The snapshot.
        seq: u64,
        /// Its name.
        name: String,
        /// When the lock ends (RFC 3339).
        until: String,
    },
    /// The lock could not be lengthened, or would be shortened.
    #[error(transparent)]
    Lock(#[from] RepoError),
    /// Reading or forgetting failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// The rules of `policy` in `strata forget`'s words.
pub fn describe(policy: &Policy) -> String {
    let mut parts = Vec::new();
    let counts = [
        ("last", policy.last),
        ("hourly", policy.hourly),
        ("daily", policy.daily),
        ("weekly", policy.weekly),
        ("monthly", policy.monthly),
        ("yearly", policy.yearly),
    ];
    for (name, n) in counts {
        if let Some(n) = n {
            parts.push(format!("keep-{name} {n}"));
        }
    }
    if let Some(w) = policy.within {
        parts.push(format!(
            "keep-within {}",
            crate::store::retention_lock::human(w.as_secs())
        ));
    }
    for l in &policy.labels {
        parts.push(format!("keep-label {l}"));
    }
    parts.join(", ")
}

/// `secs` since the epoch as an RFC 3339 UTC time.
fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn status(run: Option<&RunRecord>) -> String {
    run.map_or("complete", |r| r.status.as_str()).to_owned()
}

/// Applies `selection` to the snapshots of `head` on behalf of `caller` at
/// `now` (seconds since the epoch). In a dry run nothing changes, the lock
/// included; the report shows what would.
pub fn forget(
    head: &Head,
    caller: Caller,
    selection: &Selection<'_>,
    now: i64,
    dry_run: bool,
) -> Result<ForgetReport, ForgetError> {
    let config = selection.config();
    let tz = config.time_zone()?;
    let wanted = config.lock()?;
    let lock = settle_lock(head, &wanted, dry_run)?;
    let snapshots = Snapshots::of(head);
    let rows = snapshots.list()?;
    let runs = snapshots.runs()?;
    let holds = snapshots.holds()?;
    let candidates: Vec<Candidate> = rows
        .iter()
        .map(|r| Candidate {
            seq: r.record.seq,
            time: r.record.time.secs,
            label: r.record.label.clone(),
            status: runs.get(&r.record.seq).map(|run| run.status),
            held: holds.contains_key(&r.record.seq),
            locked_until: lock.until(r.record.time.secs, r.record.label.as_deref()),
        })
        .collect();
    let (policy, verdicts): (Option<String>, BTreeMap<u64, Vec<Reason>>) = match selection {
        Selection::Policy(_) => {
            if !config.has_rules() {
                return Err(ForgetError::NoPolicy);
            }
            let policy = config.policy()?.ok_or(ForgetError::NoPolicy)?;
            let verdicts = decide(&candidates, &policy, now, &tz)?;
            (
                Some(describe(&policy)),
                verdicts.into_iter().map(|v| (v.seq, v.reasons)).collect(),
            )
        }
        Selection::These(seqs, _) => {
            if config.has_rules() {
                return Err(ForgetError::RulesAndNames);
            }
            for c in candidates.iter().filter(|c| seqs.contains(&c.seq)) {
                refuse_protected(c, &rows, &holds, now)?;
            }
            let verdicts = candidates
                .iter()
                .filter(|c| seqs.contains(&c.seq))
                .map(|c| (c.seq, Vec::new()))
                .collect();
            (None, verdicts)
        }
    };
    let lines: Vec<ForgetLine> = rows
        .iter()
        .filter_map(|r| {
            let reasons = verdicts.get(&r.record.seq)?;
            Some(ForgetLine {
                seq: r.record.seq,
                name: r.record.name(),
                label: r.record.label.clone(),
                status: status(runs.get(&r.record.seq)),
                keep: !reasons.is_empty(),
                reasons: reasons
                    .iter()
                    .map(|why| KeptBy {
                        rule: why.rule().to_owned(),
                        text: why.to_string(),
                    })
                    .collect(),
            })
        })
        .collect();
    let doomed: Vec<u64> = lines.iter().filter(|l| !l.keep).map(|l| l.seq).collect();
    let reason = match &policy {
        Some(p) => format!("policy: {p}"),
        None => "named".to_owned(),
    };
    if !dry_run {
        snapshots.forget(caller, &doomed, &reason)?;
    }
    Ok(ForgetReport {
        dry_run,
        policy,
        timezone: tz.iana_name().unwrap_or("system").to_owned(),
        lock: lock.describe(),
        forgotten: doomed.len() as u64,
        kept: (lines.len() - doomed.len()) as u64,
        snapshots: lines,
    })
}

/// The lock that applies: the repository's, lengthened to `wanted` (made
/// durable unless this is a dry run). A shorter `wanted` is refused.
fn settle_lock(
    head: &Head,
    wanted: &RetentionLock,
    dry_run: bool,
) -> Result<RetentionLock, ForgetError> {
    let repo = head.repo();
    if dry_run {
        let current = repo.retention_lock();
        let shorter = current.shorter(wanted);
        if !shorter.is_empty() {
            return Err(RepoError::LockShortened(shorter).into());
        }
        return Ok(current.raised_to(wanted));
    }
    Ok(repo.raise_retention_lock(wanted)?)
}

/// Refuses to forget a named snapshot that is held or locked, naming it.
fn refuse_protected(
    c: &Candidate,
    rows: &[SnapshotRow],
    holds: &BTreeMap<u64, crate::tree::snapshot::holds::HoldEvent>,
    now: i64,
) -> Result<(), ForgetError> {
    let name = rows
        .iter()
        .find(|r| r.record.seq == c.seq)
        .map(|r| r.record.name())
        .unwrap_or_default();
    if let Some(h) = holds.get(&c.seq) {
        return Err(ForgetError::Held {
            seq: c.seq,
            name,
            reason: h.reason.clone(),
        });
    }
    if let Some(until) = c.locked_until.filter(|&u| u > now) {
        return Err(ForgetError::Locked {
            seq: c.seq,
            name,
            until: rfc3339(until),
        });
    }
    Ok(())
}
