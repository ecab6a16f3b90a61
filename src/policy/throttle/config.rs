//! The `[throttle]` table of the host configuration, strata.toml(5).
//!
//! [`ThrottleConfig`] is the table as written (deserialized with unknown keys
//! refused); [`ThrottleConfig::validate`] turns it into a [`ThrottlePolicy`]
//! or an error that names the key, shows the value and says what is accepted.
//! Scalars are kept as raw TOML values until validation so that `rate = 20`
//! and `rate = "20MiB/s"` are both understood and a wrong type gets the same
//! helpful message as a wrong spelling.
//!
//! ```toml
//! [throttle]
//! rate = "50MiB/s"          # default limit; absent = unlimited
//! ops = "2000/s"            # write requests per second; absent = unlimited
//! max_delay = "1s"          # longest a single write is held (default 1s)
//! burst = "1s"              # how much of the rate may pass at once (default 1s)
//!
//! [[throttle.profile]]      # first matching window wins
//! name = "business-hours"
//! days = ["mon-fri"]        # or ["mon","tue",...]; absent = every day
//! from = "07:00"            # absent = 00:00
//! to = "19:00"              # absent = 24:00; at or before from = next day
//! rate = "20MiB/s"          # absent = unlimited in this window
//!
//! [throttle.adaptive]
//! psi = "io"                # io | cpu | both; absent = no PSI
//! threshold = "10%"         # some avg10 above this is pressure (default 10%)
//! probe = ["/usr/local/bin/db-latency"]
//! probe_threshold = "50ms"  # required with probe
//! probe_timeout = "5s"      # default: interval
//! interval = "5s"           # default 5s
//! min_rate = "1MiB/s"       # floor (default 1MiB/s)
//! decrease = 0.5            # factor on pressure (default 0.5)
//! increase = "1MiB/s"       # added per calm interval (default 1MiB/s)
//!
//! [throttle.io]
//! weight = 50               # cgroup v2 io.weight, 1..10000
//! max_write = "100MiB/s"    # cgroup v2 io.max wbps on the repository's device
//! max_read = "200MiB/s"     # cgroup v2 io.max rbps
//! class = "idle"            # I/O class of pack writeback: idle | best-effort
//! level = 7                 # with best-effort: 0 (highest) .. 7 (default 7)
//! ```

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Value;

use super::adaptive::{AdaptivePolicy, Aimd, ProbeSpec, PsiSource};
use super::cgroup::IoPolicy;
use super::clock::{TimeOfDay, Weekday};
use super::profile::{Profile, Schedule};
use super::rate::{
    parse_byte_limit, parse_ops_limit, parse_percent, ByteRate, Limits, OpsRate, BYTE_RATE_FORMS,
    OPS_RATE_FORMS,
};
use crate::sys::ioprio::{IoClass, LOWEST_LEVEL};

/// Default for `max_delay`.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(1);
/// Default for `burst`.
pub const DEFAULT_BURST: Duration = Duration::from_secs(1);
/// Longest `max_delay` accepted: a write held longer risks the timeouts of
/// the kernel's and the writer's own.
pub const MAX_MAX_DELAY: Duration = Duration::from_secs(30);

const DURATION_FORMS: &str = "a duration like \"500ms\", \"5s\" or \"2m\"";

/// The `[throttle]` table as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Default byte rate.
    pub rate: Option<Value>,
    /// Default request rate.
    pub ops: Option<Value>,
    /// Longest delay of one request.
    pub max_delay: Option<Value>,
    /// Burst, as a duration of the rate.
    pub burst: Option<Value>,
    /// `[[throttle.profile]]` entries in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<ProfileConfig>,
    /// `[throttle.adaptive]`.
    pub adaptive: Option<AdaptiveConfig>,
    /// `[throttle.io]`.
    pub io: Option<IoConfig>,
}

/// One `[[throttle.profile]]` as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Name.
    pub name: Option<Value>,
    /// Days.
    pub days: Option<Value>,
    /// Start.
    pub from: Option<Value>,
    /// End.
    pub to: Option<Value>,
    /// Byte rate in the window.
    pub rate: Option<Value>,
    /// Request rate in the window.
    pub ops: Option<Value>,
}

/// `[throttle.adaptive]` as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// io | cpu | both.
    pub psi: Option<Value>,
    /// PSI threshold.
    pub threshold: Option<Value>,
    /// Probe argv.
    pub probe: Option<Value>,
    /// Probe latency threshold.
    pub probe_threshold: Option<Value>,
    /// Probe timeout.
    pub probe_timeout: Option<Value>,
    /// Sampling interval.
    pub interval: Option<Value>,
    /// Floor.
    pub min_rate: Option<Value>,
    /// Multiplicative factor.
    pub decrease: Option<Value>,
    /// Additive step.
    pub increase: Option<Value>,
}

/// `[throttle.io]` as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoConfig {
    /// io.weight.
    pub weight: Option<Value>,
    /// io.max wbps.
    pub max_write: Option<Value>,
    /// io.max rbps.
    pub max_read: Option<Value>,
    /// Pack writeback I/O class.
    pub class: Option<Value>,
    /// Its level, with best-effort.
    pub level: Option<Value>,
}

/// A `[throttle]` table that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThrottleConfigError {
    /// A key has a value that is not accepted.
    #[error("strata.toml: {key} = {value}: {problem}")]
    Invalid {
        /// Full key, e.g. `throttle.profile[1].rate`.
        key: String,
        /// The value as written (TOML).
        value: String,
        /// What is wrong and what is accepted.
        problem: String,
    },
    /// A required key is absent.
    #[error("strata.toml: {key} is required {why}")]
    Missing {
        /// Full key.
        key: String,
        /// When and why.
        why: String,
    },
    /// Not TOML, or a key not known (the TOML library's error, whose text
    /// names line and column).
    #[error("strata.toml: {0}")]
    Syntax(#[from] toml::de::Error),
}

/// The validated policy.
#[derive(Clone, Debug, PartialEq)]
pub struct ThrottlePolicy {
    /// The limit when no profile matches.
    pub limits: Limits,
    /// Longest delay of one request.
    pub max_delay: Duration,
    /// Burst, as a duration of the rate.
    pub burst: Duration,
    /// Profiles.
    pub schedule: Schedule,
    /// Adaptive mode, when configured.
    pub adaptive: Option<AdaptivePolicy>,
    /// cgroup I/O settings, when configured.
    pub io: Option<IoPolicy>,
}

impl ThrottlePolicy {
    /// No limits, no profiles, no adaptation: what an absent `[throttle]` means.
    pub fn unlimited() -> ThrottlePolicy {
        ThrottlePolicy {
            limits: Limits::UNLIMITED,
            max_delay: DEFAULT_MAX_DELAY,
            burst: DEFAULT_BURST,
            schedule: Schedule::default(),
            adaptive: None,
            io: None,
        }
    }

    /// A fixed limit with the default delay cap and burst.
    pub fn fixed(limits: Limits) -> ThrottlePolicy {
        ThrottlePolicy {
            limits,
            ..ThrottlePolicy::unlimited()
        }
    }

    /// Parses the `[throttle]` table of a whole strata.toml text (other
    /// tables are ignored here: they belong to other modules) and validates it.
    pub fn from_toml(text: &str) -> Result<ThrottlePolicy, ThrottleConfigError> {
        #[derive(Deserialize)]
        struct Doc {
            throttle: Option<ThrottleConfig>,
        }
        let doc: Doc = toml::from_str(text)?;
        doc.throttle.unwrap_or_default().validate()
    }
}

fn invalid(key: &str, value: &Value, problem: impl Into<String>) -> ThrottleConfigError {
    ThrottleConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        problem: problem.into(),
    }
}

/// The text of a string value, or an integer/float written as text.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

fn byte_limit(key: &str, v: &Option<Value>) -> Result<Option<ByteRate>, ThrottleConfigError> {
    let Some(v) = v else { return Ok(None) };
    let text =
        scalar_text(v).ok_or_else(|| invalid(key, v, format!("expected {BYTE_RATE_FORMS}")))?;
    parse_byte_limit(&text).map_err(|e| invalid(key, v, format!("expected {}", e.expected)))
}

fn byte_rate(key: &str, v: &Option<Value>) -> Result<Option<ByteRate>, ThrottleConfigError> {
    let Some(val) = v else { return Ok(None) };
    match byte_limit(key, v)? {
        Some(r) => Ok(Some(r)),
        None => Err(invalid(
            key,
            val,
            "must be a finite rate here, e.g. \"1MiB/s\"",
        )),
    }
}

fn ops_limit(key: &str, v: &Option<Value>) -> Result<Option<OpsRate>, ThrottleConfigError> {
    let Some(v) = v else { return Ok(None) };
    let text =
        scalar_text(v).ok_or_else(|| invalid(key, v, format!("expected {OPS_RATE_FORMS}")))?;
    parse_ops_limit(&text).map_err(|e| invalid(key, v, format!("expected {}", e.expected)))
}

fn duration(
    key: &str,
    v: &Option<Value>,
    range: (Duration, Duration),
) -> Result<Option<Duration>, ThrottleConfigError> {
    let Some(v) = v else { return Ok(None) };
    let expected = || {
        format!(
            "expected {DURATION_FORMS}, from {} to {}",
            humantime::format_duration(range.0),
            humantime::format_duration(range.1)
        )
    };
    let Value::String(s) = v else {
        return Err(invalid(key, v, expected()));
    };
    match humantime::parse_duration(s.trim()) {
        Ok(d) if (range.0..=range.1).contains(&d) => Ok(Some(d)),
        _ => Err(invalid(key, v, expected())),
    }
}

fn string<'a>(key: &str, v: &'a Value, expected: &str) -> Result<&'a str, ThrottleConfigError> {
    v.as_str()
        .ok_or_else(|| invalid(key, v, format!("expected {expected}")))
}

fn days(key: &str, v: &Option<Value>) -> Result<[bool; 7], ThrottleConfigError> {
    const FORMS: &str = "a list of days like [\"mon\", \"tue\"] or [\"mon-fri\", \"sun\"] \
                         (mon, tue, wed, thu, fri, sat, sun, or full names)";
    let Some(v) = v else { return Ok([true; 7]) };
    let list = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| invalid(key, v, format!("expected {FORMS}")))?;
    let mut set = [false; 7];
    for item in list {
        let s = string(key, item, FORMS)?;
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let (Ok(a), Ok(b)) = (a.parse::<Weekday>(), b.parse::<Weekday>()) else {
            return Err(invalid(
                key,
                v,
                format!("{s:?} is not a day; expected {FORMS}"),
            ));
        };
        // A range runs forward through the week: "fri-mon" is fri, sat, sun, mon.
        let mut d = a;
        loop {
            set[d.index()] = true;
            if d == b {
                break;
            }
            d = d.add_days(1);
        }
    }
    Ok(set)
}

fn time_of_day(
    key: &str,
    v: &Option<Value>,
    default: TimeOfDay,
) -> Result<TimeOfDay, ThrottleConfigError> {
    const FORMS: &str = "a 24-hour time \"HH:MM\" or \"HH:MM:SS\" (\"24:00\" allowed as an end)";
    let Some(v) = v else { return Ok(default) };
    string(key, v, FORMS)?
        .parse::<TimeOfDay>()
        .map_err(|()| invalid(key, v, format!("expected {FORMS}")))
}

impl ThrottleConfig {
    /// Checks every key and builds the policy.
    pub fn validate(&self) -> Result<ThrottlePolicy, ThrottleConfigError> {
        let limits = Limits {
            bytes: byte_limit("throttle.rate", &self.rate)?,
            ops: ops_limit("throttle.ops", &self.ops)?,
        };
        let max_delay = duration(
            "throttle.max_delay",
            &self.max_delay,
            (Duration::from_millis(1), MAX_MAX_DELAY),
        )?
        .unwrap_or(DEFAULT_MAX_DELAY);
        let burst = duration(
            "throttle.burst",
            &self.burst,
            (Duration::from_millis(1), Duration::from_secs(60)),
        )?
        .unwrap_or(DEFAULT_BURST);

        let mut schedule = Schedule::default();
        let mut names = HashSet::new();
        for (i, p) in self.profile.iter().enumerate() {
            let key = |k: &str| format!("throttle.profile[{i}].{k}");
            let name_v = p
                .name
                .as_ref()
                .ok_or_else(|| ThrottleConfigError::Missing {
                    key: key("name"),
                    why: "in every [[throttle.profile]]: it is shown as the reason for the limit"
                        .into(),
                })?;
            let name = string(&key("name"), name_v, "a non-empty string")?.trim();
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(invalid(
                    &key("name"),
                    name_v,
                    "expected a non-empty printable name",
                ));
            }
            if !names.insert(name.to_string()) {
                return Err(invalid(
                    &key("name"),
                    name_v,
                    "another profile has this name; names must differ",
                ));
            }
            let from = time_of_day(&key("from"), &p.from, TimeOfDay::MIDNIGHT)?;
            let to = time_of_day(&key("to"), &p.to, TimeOfDay::END_OF_DAY)?;
            if from == TimeOfDay::END_OF_DAY {
                return Err(invalid(
                    &key("from"),
                    p.from.as_ref().expect("parsed"),
                    "a window cannot start at 24:00; use \"00:00\"",
                ));
            }
            if from == to {
                return Err(invalid(
                    &key("to"),
                    p.to.as_ref().unwrap_or(&Value::String("24:00".into())),
                    format!("the window {from}-{to} is empty; for the whole day omit from and to"),
                ));
            }
            schedule.profiles.push(Profile {
                name: name.to_string(),
                days: days(&key("days"), &p.days)?,
                from,
                to,
                limits: Limits {
                    bytes: byte_limit(&key("rate"), &p.rate)?,
                    ops: ops_limit(&key("ops"), &p.ops)?,
                },
            });
        }

        let adaptive = self
            .adaptive
            .as_ref()
            .map(|a| a.validate(limits.bytes))
            .transpose()?;
        let io = self.io.as_ref().map(IoConfig::validate).transpose()?;
        Ok(ThrottlePolicy {
            limits,
            max_delay,
            burst,
            schedule,
            adaptive,
            io,
        })
    }
}

impl AdaptiveConfig {
    fn validate(&self, rate: Option<ByteRate>) -> Result<AdaptivePolicy, ThrottleConfigError> {
        let psi = match &self.psi {
            None => None,
            Some(v) => Some(
                match v.as_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
                    Some("io") => PsiSource::Io,
                    Some("cpu") => PsiSource::Cpu,
                    Some("both") => PsiSource::Both,
                    _ => {
                        return Err(invalid(
                            "throttle.adaptive.psi",
                            v,
                            "expected \"io\", \"cpu\" or \"both\" (omit the key for no PSI)",
                        ))
                    }
                },
            ),
        };
        let threshold = match &self.threshold {
            None => 10.0,
            Some(v) => scalar_text(v)
                .as_deref()
                .and_then(parse_percent)
                .ok_or_else(|| {
                    invalid(
                        "throttle.adaptive.threshold",
                        v,
                        "expected a percentage above 0 and at most 100, like \"10%\" or 10",
                    )
                })?,
        };
        let interval = duration(
            "throttle.adaptive.interval",
            &self.interval,
            (Duration::from_millis(100), Duration::from_secs(3600)),
        )?
        .unwrap_or(Duration::from_secs(5));
        let probe = match &self.probe {
            None => None,
            Some(v) => {
                const FORMS: &str = "a non-empty list of strings, the program as an absolute path \
                     first, like [\"/usr/local/bin/db-latency\", \"--host\", \"db1\"]";
                let argv: Vec<String> = v
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
                    .ok_or_else(|| {
                        invalid("throttle.adaptive.probe", v, format!("expected {FORMS}"))
                    })?;
                if !argv[0].starts_with('/') {
                    return Err(invalid(
                        "throttle.adaptive.probe",
                        v,
                        format!("the program must be an absolute path (probes run with a fixed PATH); expected {FORMS}"),
                    ));
                }
                let threshold = duration(
                    "throttle.adaptive.probe_threshold",
                    &self.probe_threshold,
                    (Duration::from_micros(1), Duration::from_secs(3600)),
                )?
                .ok_or_else(|| ThrottleConfigError::Missing {
                    key: "throttle.adaptive.probe_threshold".into(),
                    why: "when throttle.adaptive.probe is set: the latency above which the probe counts as pressure, like \"50ms\"".into(),
                })?;
                let timeout = duration(
                    "throttle.adaptive.probe_timeout",
                    &self.probe_timeout,
                    (Duration::from_millis(1), Duration::from_secs(3600)),
                )?
                .unwrap_or(interval);
                Some(ProbeSpec {
                    argv,
                    timeout,
                    threshold,
                })
            }
        };
        if probe.is_none() {
            for (k, v) in [
                ("probe_threshold", &self.probe_threshold),
                ("probe_timeout", &self.probe_timeout),
            ] {
                if let Some(v) = v {
                    return Err(invalid(
                        &format!("throttle.adaptive.{k}"),
                        v,
                        "has no effect without throttle.adaptive.probe; set probe or remove this key",
                    ));
                }
            }
        }
        if psi.is_none() && probe.is_none() {
            return Err(ThrottleConfigError::Missing {
                key: "throttle.adaptive.psi or throttle.adaptive.probe".into(),
                why: "in [throttle.adaptive]: without a source of pressure it cannot adapt (remove the table to turn adaptive mode off)".into(),
            });
        }
        let min_rate =
            byte_rate("throttle.adaptive.min_rate", &self.min_rate)?.unwrap_or(ByteRate(1 << 20));
        if let (Some(r), Some(v)) = (rate, &self.min_rate) {
            if min_rate > r {
                return Err(invalid(
                    "throttle.adaptive.min_rate",
                    v,
                    format!("is above throttle.rate ({r}); the floor must not exceed the limit"),
                ));
            }
        }
        let decrease = match &self.decrease {
            None => 0.5,
            Some(v) => v
                .as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .filter(|f| *f > 0.0 && *f < 1.0)
                .ok_or_else(|| {
                    invalid(
                        "throttle.adaptive.decrease",
                        v,
                        "expected a factor between 0 and 1 (exclusive), like 0.5",
                    )
                })?,
        };
        let increase =
            byte_rate("throttle.adaptive.increase", &self.increase)?.unwrap_or(ByteRate(1 << 20));
        Ok(AdaptivePolicy {
            psi,
            threshold,
            probe,
            interval,
            aimd: Aimd {
                min_rate,
                decrease,
                increase,
            },
        })
    }
}

impl IoConfig {
    fn validate(&self) -> Result<IoPolicy, ThrottleConfigError> {
        let weight = match &self.weight {
            None => None,
            Some(v) => Some(
                v.as_integer()
                    .filter(|w| (1..=10_000).contains(w))
                    .map(|w| w as u16)
                    .ok_or_else(|| {
                        invalid(
                            "throttle.io.weight",
                            v,
                            "expected an integer from 1 to 10000 (cgroup v2 io.weight; the default weight is 100)",
                        )
                    })?,
            ),
        };
        let policy = IoPolicy {
            weight,
            max_write: byte_rate("throttle.io.max_write", &self.max_write)?,
            max_read: byte_rate("throttle.io.max_read", &self.max_read)?,
            class: self.class()?,
        };
        Ok(policy)
    }

    fn class(&self) -> Result<Option<IoClass>, ThrottleConfigError> {
        let level = match &self.level {
            None => None,
            Some(v) => Some(
                v.as_integer()
                    .filter(|l| (0..=i64::from(LOWEST_LEVEL)).contains(l))
                    .map(|l| l as u8)
                    .ok_or_else(|| {
                        invalid(
                            "throttle.io.level",
                            v,
                            "expected an integer from 0 (highest) to 7 (lowest), as ionice -n takes",
                        )
                    })?,
            ),
        };
        let Some(v) = &self.class else {
            return match level {
                None => Ok(None),
                Some(_) => Err(ThrottleConfigError::Missing {
                    key: "throttle.io.class".into(),
                    why: "with throttle.io.level (class = \"best-effort\")".into(),
                }),
            };
        };
        match (v.as_str(), level) {
            (Some("idle"), None) => Ok(Some(IoClass::Idle)),
            (Some("idle"), Some(_)) => Err(invalid(
                "throttle.io.level",
                self.level.as_ref().expect("level is set"),
                "the idle class has no levels; remove level or use class = \"best-effort\"",
            )),
            (Some("best-effort"), l) => Ok(Some(IoClass::BestEffort(l.unwrap_or(LOWEST_LEVEL)))),
            _ => Err(invalid(
                "throttle.io.class",
                v,
                "expected \"idle\" or \"best-effort\" (the I/O scheduling class of the pack writeback thread)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_keeps_the_toml_error_as_its_source() {
        use std::error::Error;
        let e = ThrottlePolicy::from_toml("[throttle]\nrat = \"1MiB/s\"").unwrap_err();
        let toml = e
            .source()
            .unwrap()
            .downcast_ref::<toml::de::Error>()
            .unwrap();
        assert_eq!(e.to_string(), format!("strata.toml: {toml}"));
        assert_eq!(
            crate::sys::chain::Chain(&e).to_string(),
            e.to_string(),
            "the source is quoted once"
        );
    }
}
