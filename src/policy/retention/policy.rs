//! A retention policy: the rules, as strata.toml's `[retention]` and the
//! `forget` flags give them.

use std::time::Duration;

/// What a policy keeps. Counts are of buckets (or, for `last`, of
/// snapshots); `None` means the rule is not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The newest N good snapshots.
    pub last: Option<u32>,
    /// The newest good snapshot of each of the newest N hours that have one.
    pub hourly: Option<u32>,
    /// … of each of N days.
    pub daily: Option<u32>,
    /// … of each of N ISO weeks (Monday to Sunday).
    pub weekly: Option<u32>,
    /// … of each of N months.
    pub monthly: Option<u32>,
    /// … of each of N years.
    pub yearly: Option<u32>,
    /// Every good snapshot taken within this long before the newest good
    /// one (restic's meaning: measured from the newest snapshot, not from
    /// now, so a host whose backups stopped does not lose them by waiting).
    pub within: Option<Duration>,
    /// Every snapshot carrying one of these labels.
    pub labels: Vec<String>,
    /// How long a snapshot whose run did not end good (failed,
    /// inconsistent, pending) is kept for inspection, from when it was taken.
    pub inspect: Duration,
}

/// Two weeks: time for a person to look at a failed night.
pub const DEFAULT_INSPECT: Duration = Duration::from_secs(14 * 24 * 3600);

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            last: None,
            hourly: None,
            daily: None,
            weekly: None,
            monthly: None,
            yearly: None,
            within: None,
            labels: Vec::new(),
            inspect: DEFAULT_INSPECT,
        }
    }
}

/// A policy that cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// No rule keeps anything: applied, it would remove every snapshot
    /// but the newest.
    #[error("the retention policy has no rule (keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly, keep-within, keep-label), so it would remove every snapshot but the newest; give at least one rule")]
    Empty,
    /// A count of zero keeps nothing and is almost certainly a mistake.
    #[error("keep-{0} is 0, which keeps nothing by that rule; leave the rule out instead, or give a count of 1 or more")]
    Zero(&'static str),
}

impl Policy {
    /// The calendar rules with their counts, finest first.
    pub(super) fn buckets(&self) -> [(super::decide::Bucket, Option<u32>); 5] {
        use super::decide::Bucket;
        [
            (Bucket::Hour, self.hourly),
            (Bucket::Day, self.daily),
            (Bucket::Week, self.weekly),
            (Bucket::Month, self.monthly),
            (Bucket::Year, self.yearly),
        ]
    }

    /// Refuses a policy with no rule, or a rule with a count of zero.
    pub fn check(&self) -> Result<(), PolicyError> {
        let counts = [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == Some(0)) {
            return Err(PolicyError::Zero(name));
        }
        let any = counts.iter().any(|(_, n)| n.is_some())
            || self.within.is_some()
            || !self.labels.is_empty();
        if any {
            Ok(())
        } else {
            Err(PolicyError::Empty)
        }
    }
}
