//! `[retention]` in strata.toml: the policy `strata forget` applies when
//! given no rule on its command line, the time zone of its calendar, and
//! the retention lock to write into the repository.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::policy::retention::{Policy, PolicyError};
use crate::store::retention_lock::RetentionLock;

/// `[retention]` as written (also how `strata forget` sends its rules to
/// the daemon).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// `keep_last = N`.
    pub keep_last: Option<u32>,
    /// `keep_hourly = N`.
    pub keep_hourly: Option<u32>,
    /// `keep_daily = N`.
    pub keep_daily: Option<u32>,
    /// `keep_weekly = N`.
    pub keep_weekly: Option<u32>,
    /// `keep_monthly = N`.
    pub keep_monthly: Option<u32>,
    /// `keep_yearly = N`.
    pub keep_yearly: Option<u32>,
    /// `keep_within = "30d"`.
    pub keep_within: Option<String>,
    /// `keep_label = ["before-upgrade"]`.
    #[serde(default)]
    pub keep_label: Vec<String>,
    /// `inspect = "14d"`: how long a snapshot of a run that did not end
    /// good is kept.
    pub inspect: Option<String>,
    /// `timezone = "Europe/Berlin"`: the zone of hours, days, weeks,
    /// months and years; the system's by default.
    pub timezone: Option<String>,
    /// `lock = "7y"`: the retention lock of every snapshot, written into
    /// the repository, which only ever lengthens it.
    pub lock: Option<String>,
    /// `lock_label = { yearly = "10y" }`: the retention lock of the
    /// snapshots with a label.
    #[serde(default)]
    pub lock_label: BTreeMap<String, String>,
}

/// A `[retention]` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RetentionConfigError {
    /// A duration that does not parse.
    #[error("[retention] {key} = {value:?} is not a duration ({source}); write e.g. \"36h\", \"30d\", \"1y\"")]
    Duration {
        /// The key.
        key: &'static str,
        /// What was written.
        value: String,
        /// Why it does not parse.
        source: humantime::DurationError,
    },
    /// A lock's length that does not parse.
    #[error(
        "[retention] {key} = {value:?} is not a duration ({source}); write e.g. \"7y\", \"90d\""
    )]
    LockDuration {
        /// The key (`lock`, or `lock_label.LABEL`).
        key: String,
        /// What was written.
        value: String,
        /// Why it does not parse.
        source: humantime::DurationError,
    },
    /// A time zone the system does not know.
    #[error("[retention] timezone = {name:?} is not a time zone this system knows ({source}); use an IANA name such as \"Europe/Berlin\" or \"UTC\" (see /usr/share/zoneinfo), or leave it out for the system's")]
    TimeZone {
        /// What was written.
        name: String,
        /// Why it was not found.
        source: jiff::Error,
    },
    /// The rules do not make a policy.
    #[error("[retention]: {0}")]
    Policy(#[from] PolicyError),
}

impl RetentionConfig {
    /// The policy, or `None` when no rule is configured (then nothing is
    /// forgotten unless `strata forget` is given rules).
    pub fn policy(&self) -> Result<Option<Policy>, RetentionConfigError> {
        let duration = |key: &'static str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| {
                    humantime::parse_duration(v.trim()).map_err(|source| {
                        RetentionConfigError::Duration {
                            key,
                            value: v.to_owned(),
                            source,
                        }
                    })
                })
                .transpose()
        };
        let inspect = duration("inspect", &self.inspect)?;
        let policy = Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: duration("keep_within", &self.keep_within)?,
            labels: self.keep_label.clone(),
            inspect: inspect.unwrap_or(Policy::default().inspect),
        };
        match policy.check() {
            Err(PolicyError::Empty) => Ok(None),
            Err(e) => Err(e.into()),
            Ok(()) => Ok(Some(policy)),
        }
    }

    /// The time zone of the calendar rules.
    pub fn time_zone(&self) -> Result<TimeZone, RetentionConfigError> {
        match &self.timezone {
            None => Ok(TimeZone::system()),
            Some(name) => TimeZone::get(name).map_err(|source| RetentionConfigError::TimeZone {
                name: name.clone(),
                source,
            }),
        }
    }

    /// The retention lock asked for (empty when none is configured; the
    /// repository's own lock applies then).
    pub fn lock(&self) -> Result<RetentionLock, RetentionConfigError> {
        let secs = |key: String, value: &str| {
            humantime::parse_duration(value.trim())
                .map(|d| d.as_secs())
                .map_err(|source| RetentionConfigError::LockDuration {
                    key,
                    value: value.to_owned(),
                    source,
                })
        };
        let mut lock = RetentionLock {
            all: self
                .lock
                .as_deref()
                .map(|v| secs("lock".into(), v))
                .transpose()?,
            labels: BTreeMap::new(),
        };
        for (label, value) in &self.lock_label {
            let s = secs(format!("lock_label.{label}"), value)?;
            lock.labels.insert(label.clone(), s);
        }
        Ok(lock)
    }

    /// Whether any keep rule is written (the lock and zone are not rules).
    pub fn has_rules(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
            || self.keep_within.is_some()
            || !self.keep_label.is_empty()
    }

    /// Checks everything [`RetentionConfig::policy`],
    /// [`RetentionConfig::time_zone`] and [`RetentionConfig::lock`] will
    /// check, when the file is loaded.
    pub fn check(&self) -> Result<(), RetentionConfigError> {
        self.policy()?;
        self.time_zone()?;
        self.lock()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(text: &str) -> RetentionConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_configured_policy_is_read_with_its_defaults() {
        let c = parse(
            "keep_daily = 7\nkeep_weekly = 4\nkeep_within = \"2d\"\nkeep_label = [\"before-upgrade\"]\ntimezone = \"UTC\"\n",
        );
        let p = c.policy().unwrap().unwrap();
        assert_eq!((p.daily, p.weekly, p.last), (Some(7), Some(4), None));
        assert_eq!(p.within, Some(Duration::from_secs(2 * 86400)));
        assert_eq!(p.labels, ["before-upgrade"]);
        assert_eq!(p.inspect, Duration::from_secs(14 * 86400));
        assert_eq!(c.time_zone().unwrap(), TimeZone::UTC);
        assert!(c.check().is_ok());
    }

    #[test]
    fn no_rule_means_no_policy_and_bad_values_are_named() {
        assert_eq!(parse("").policy().unwrap(), None);
        assert_eq!(parse("inspect = \"3d\"").policy().unwrap(), None);
        let e = parse("keep_within = \"a fortnight\"").check().unwrap_err();
        assert!(
            e.to_string()
                .contains("keep_within = \"a fortnight\" is not a duration"),
            "{e}"
        );
        let e = parse("keep_daily = 0").check().unwrap_err();
        assert!(e.to_string().contains("keep-daily is 0"), "{e}");
        let e = parse("keep_daily = 1\ntimezone = \"Mars/Olympus\"")
            .check()
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("\"Mars/Olympus\" is not a time zone"),
            "{e}"
        );
        assert!(toml::from_str::<RetentionConfig>("keep_dayly = 3").is_err());
    }

    #[test]
    fn a_lock_is_read_in_seconds_and_a_bad_one_is_named() {
        let c = parse("lock = \"7y\"\nlock_label = { yearly = \"10y\" }\n");
        let lock = c.lock().unwrap();
        assert_eq!(lock.all, Some(7 * 31_557_600));
        assert_eq!(lock.labels["yearly"], 10 * 31_557_600);
        assert!(!c.has_rules(), "a lock alone is no keep rule");
        assert!(parse("").lock().unwrap().is_empty());
        let e = parse("lock_label = { yearly = \"forever\" }")
            .check()
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("lock_label.yearly = \"forever\" is not a duration"),
            "{e}"
        );
    }
}
