//! Durations in JSON as numbers of seconds (`2.5`), not serde's
//! `{"secs": 2, "nanos": 500000000}`, which no script reading `--json`
//! expects. Use as `#[serde(with = "secs")]`, or `with = "secs::opt"` for
//! an `Option<Duration>`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Writes `d` as seconds.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Reads seconds, refusing negative and non-finite numbers.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    from_secs(f64::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// A number that is not a duration: negative, not finite, or too large.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not a duration in seconds")]
pub struct NotSeconds(f64);

/// Rounded to the nanosecond, so that 0.3 reads back as 300 ms exactly.
fn from_secs(secs: f64) -> Result<Duration, NotSeconds> {
    if !(secs.is_finite() && (0.0..1.8e10).contains(&secs)) {
        return Err(NotSeconds(secs));
    }
    Ok(Duration::from_nanos((secs * 1e9).round() as u64))
}

/// The same for `Option<Duration>` (`null` for `None`).
pub mod opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` as seconds, or null.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads seconds or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|secs| super::from_secs(secs).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "super")]
        d: Duration,
        #[serde(with = "super::opt")]
        o: Option<Duration>,
    }

    #[test]
    fn durations_are_seconds_both_ways() {
        let t = T {
            d: Duration::from_millis(2500),
            o: None,
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"d":2.5,"o":null}"#);
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);
        let t = T {
            d: Duration::from_millis(300),
            o: Some(Duration::from_secs(7200)),
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"d":0.3,"o":7200.0}"#);
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);
        assert!(serde_json::from_str::<T>(r#"{"d":-1,"o":null}"#).is_err());
    }
}
