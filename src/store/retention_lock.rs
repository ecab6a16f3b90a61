//! The retention lock: a minimum age before a snapshot may be forgotten,
//! kept in the repository's authenticated configuration (compliance mode,
//! like S3 Object Lock's): it can be lengthened, never shortened or removed.
//!
//! Durations are whole seconds, so the lock means the same in every time
//! zone and the MAC covers one exact number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The lock of a repository: for every snapshot, and per label.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionLock {
    /// Seconds every snapshot is kept after it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<u64>,
    /// Seconds the snapshots with a label are kept, by label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, u64>,
}

/// A part of a wanted lock that is shorter than the repository's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shorter {
    /// The label, or `None` for the lock of every snapshot.
    pub label: Option<String>,
    /// Seconds asked for.
    pub wanted: u64,
    /// Seconds the repository holds.
    pub current: u64,
}

impl std::fmt::Display for Shorter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.label {
            None => write!(f, "lock {}", human(self.wanted))?,
            Some(l) => write!(f, "lock of label {l:?} {}", human(self.wanted))?,
        }
        write!(
            f,
            " is shorter than the repository's {}",
            human(self.current)
        )
    }
}

impl RetentionLock {
    /// Whether there is no lock at all.
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.labels.is_empty()
    }

    /// Seconds a snapshot with `label` is locked after it was taken.
    pub fn seconds_for(&self, label: Option<&str>) -> Option<u64> {
        let by_label = label.and_then(|l| self.labels.get(l)).copied();
        self.all.into_iter().chain(by_label).max()
    }

    /// The time (seconds since the epoch) before which a snapshot taken at
    /// `taken` with `label` may not be forgotten, if it is locked.
    pub fn until(&self, taken: i64, label: Option<&str>) -> Option<i64> {
        self.seconds_for(label)
            .map(|s| taken.saturating_add(i64::try_from(s).unwrap_or(i64::MAX)))
    }

    /// The parts of `wanted` that would shorten this lock. A part `wanted`
    /// does not name is not asked for: it keeps this lock's value.
    pub fn shorter(&self, wanted: &RetentionLock) -> Vec<Shorter> {
        let mut out = Vec::new();
        if let (Some(current), Some(w)) = (self.all, wanted.all) {
            if w < current {
                out.push(Shorter {
                    label: None,
                    wanted: w,
                    current,
                });
            }
        }
        for (label, &current) in &self.labels {
            if let Some(&w) = wanted.labels.get(label) {
                if w < current {
                    out.push(Shorter {
                        label: Some(label.clone()),
                        wanted: w,
                        current,
                    });
                }
            }
        }
        out
    }

    /// This lock lengthened by `wanted`, part by part.
    pub fn raised_to(&self, wanted: &RetentionLock) -> RetentionLock {
        let mut out = self.clone();
        out.all = self.all.max(wanted.all);
        for (label, &w) in &wanted.labels {
            let e = out.labels.entry(label.clone()).or_insert(w);
            *e = (*e).max(w);
        }
        out
    }

    /// The fixed rendering the config's MAC covers: empty without a lock,
    /// so configs written before locks existed keep their MAC.
    pub fn canonical(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(l, s)| format!("{l:?}:{s}"))
            .collect();
        format!(
            "retention_lock={}/{}\n",
            self.all.map_or("-".into(), |s| s.to_string()),
            labels.join(",")
        )
    }

    /// One line for people: "7y for every snapshot, 10y for label yearly".
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "none".into();
        }
        let mut parts = Vec::new();
        if let Some(s) = self.all {
            parts.push(format!("{} for every snapshot", human(s)));
        }
        for (l, s) in &self.labels {
            parts.push(format!("{} for label {l}", human(*s)));
        }
        parts.join(", ")
    }
}

/// A lock's length for people, in the largest whole unit of the ones
/// `[retention] lock` accepts (1y = 365.25 days, as humantime counts it).
pub fn human(secs: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (31_557_600, "y"),
        (86_400, "d"),
        (3_600, "h"),
        (60, "m"),
        (1, "s"),
    ];
    for (n, unit) in UNITS {
        if secs >= n && secs.is_multiple_of(n) {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: u64 = 31_557_600;

    fn lock(all: Option<u64>, labels: &[(&str, u64)]) -> RetentionLock {
        RetentionLock {
            all,
            labels: labels.iter().map(|(l, s)| (l.to_string(), *s)).collect(),
        }
    }

    #[test]
    fn a_snapshot_is_locked_for_the_longest_lock_that_applies() {
        let l = lock(Some(7 * YEAR), &[("yearly", 10 * YEAR)]);
        assert_eq!(l.seconds_for(None), Some(7 * YEAR));
        assert_eq!(l.seconds_for(Some("daily")), Some(7 * YEAR));
        assert_eq!(l.seconds_for(Some("yearly")), Some(10 * YEAR));
        assert_eq!(l.until(100, Some("yearly")), Some(100 + 10 * YEAR as i64));
        assert_eq!(RetentionLock::default().until(100, None), None);
        let only_label = lock(None, &[("yearly", YEAR)]);
        assert_eq!(only_label.until(0, Some("daily")), None);
    }

    #[test]
    fn a_lock_only_grows() {
        let current = lock(Some(7 * YEAR), &[("yearly", 10 * YEAR)]);
        assert!(current.shorter(&lock(Some(8 * YEAR), &[])).is_empty());
        assert!(
            current.shorter(&RetentionLock::default()).is_empty(),
            "an absent part asks for nothing"
        );
        let s = current.shorter(&lock(Some(YEAR), &[("yearly", 2 * YEAR)]));
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].to_string(),
            "lock 1y is shorter than the repository's 7y"
        );
        assert_eq!(
            s[1].to_string(),
            "lock of label \"yearly\" 2y is shorter than the repository's 10y"
        );
        let raised = current.raised_to(&lock(Some(YEAR), &[("monthly", 2 * YEAR)]));
        assert_eq!(
            raised,
            lock(
                Some(7 * YEAR),
                &[("yearly", 10 * YEAR), ("monthly", 2 * YEAR)]
            )
        );
    }

    #[test]
    fn the_canonical_form_is_empty_without_a_lock_and_names_every_part() {
        assert_eq!(RetentionLock::default().canonical(), "");
        assert_eq!(
            lock(Some(86_400), &[("a", 1), ("b", 2)]).canonical(),
            "retention_lock=86400/\"a\":1,\"b\":2\n"
        );
        assert_ne!(
            lock(Some(1), &[]).canonical(),
            lock(None, &[("", 1)]).canonical()
        );
    }

    #[test]
    fn lengths_read_in_the_largest_whole_unit() {
        assert_eq!(human(7 * YEAR), "7y");
        assert_eq!(human(30 * 86_400), "30d");
        assert_eq!(human(90), "90s");
        assert_eq!(human(0), "0s");
    }
}
