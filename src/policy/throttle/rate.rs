//! Rates as written in the configuration and on the command line:
//! "20MiB/s", "500kB/s", "2000ops/s", "2000/s", plain numbers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a byte rate may look like, for error messages.
pub const BYTE_RATE_FORMS: &str = "a rate like \"20MiB/s\", \"500kB/s\", \"1.5GB/s\" \
     (units B, kB, MB, GB, TB = powers of 1000; KiB, MiB, GiB, TiB = powers of 1024), \
     a plain number of bytes per second, or \"unlimited\"";

/// What an operation rate may look like, for error messages.
pub const OPS_RATE_FORMS: &str =
    "a rate like \"2000/s\" or \"2000ops/s\", a plain number of write requests per second, or \"unlimited\"";

/// Bytes per second, at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ByteRate(pub u64);

/// Write requests per second, at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpsRate(pub u64);

/// A rate that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not {expected}")]
pub struct RateParseError {
    /// The text given.
    pub value: String,
    /// What is accepted.
    pub expected: &'static str,
}

fn split_number(s: &str) -> Option<(f64, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    Some((num.parse().ok()?, rest.trim_start()))
}

/// Bytes per unit: B, kB, MB, GB, TB (powers of 1000), KiB, MiB, GiB,
/// TiB (powers of 1024), or none.
fn byte_unit(unit: &str) -> Option<f64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

/// Parses a size: "2GiB", "500MB", a plain number of bytes; at least 1.
pub fn parse_size(text: &str) -> Option<u64> {
    let (num, unit) = split_number(text.trim())?;
    positive_whole(num * byte_unit(unit.trim_end())?)
}

fn positive_whole(x: f64) -> Option<u64> {
    let r = x.round();
    (r >= 1.0 && r < u64::MAX as f64).then_some(r as u64)
}

impl ByteRate {
    /// Parses a byte rate; "unlimited" is not a `ByteRate` (see
    /// [`parse_byte_limit`]).
    pub fn parse(text: &str) -> Result<ByteRate, RateParseError> {
        let err = || RateParseError {
            value: text.to_string(),
            expected: BYTE_RATE_FORMS,
        };
        let (num, rest) = split_number(text.trim()).ok_or_else(err)?;
        let unit = match rest.strip_suffix("/s") {
            Some(u) => u.trim_end(),
            // A bare number is bytes per second; a unit needs its "/s".
            None if rest.is_empty() => "",
            None => return Err(err()),
        };
        let mult = byte_unit(unit).ok_or_else(err)?;
        positive_whole(num * mult).map(ByteRate).ok_or_else(err)
    }

    /// Bytes per second.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl OpsRate {
    /// Parses an operation rate; "unlimited" is not an `OpsRate`.
    pub fn parse(text: &str) -> Result<OpsRate, RateParseError> {
        let err = || RateParseError {
            value: text.to_string(),
            expected: OPS_RATE_FORMS,
        };
        let (num, rest) = split_number(text.trim()).ok_or_else(err)?;
        let rest = rest.trim();
        let ok = matches!(rest, "" | "/s") || {
            let unit = rest.strip_suffix("/s").map(str::trim_end);
            matches!(unit, Some("ops" | "op" | "iops"))
        };
        if !ok {
            return Err(err());
        }
        positive_whole(num).map(OpsRate).ok_or_else(err)
    }

    /// Requests per second.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A pair of limits; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes per second.
    pub bytes: Option<ByteRate>,
    /// Write requests per second.
    pub ops: Option<OpsRate>,
}

impl Limits {
    /// No limit at all.
    pub const UNLIMITED: Limits = Limits {
        bytes: None,
        ops: None,
    };

    /// Whether neither rate is limited.
    pub fn is_unlimited(&self) -> bool {
        self.bytes.is_none() && self.ops.is_none()
    }
}

impl fmt::Display for Limits {
    /// "20 MiB/s", "20 MiB/s, 500 ops/s", "unlimited".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.bytes, self.ops) {
            (None, None) => f.write_str("unlimited"),
            (Some(b), None) => write!(f, "{b}"),
            (None, Some(o)) => write!(f, "{o}"),
            (Some(b), Some(o)) => write!(f, "{b}, {o}"),
        }
    }
}

/// Parses "unlimited" as `None`, anything else as a [`ByteRate`].
pub fn parse_byte_limit(text: &str) -> Result<Option<ByteRate>, RateParseError> {
    if text.trim().eq_ignore_ascii_case("unlimited") {
        Ok(None)
    } else {
        ByteRate::parse(text).map(Some)
    }
}

/// Parses "unlimited" as `None`, anything else as an [`OpsRate`].
pub fn parse_ops_limit(text: &str) -> Result<Option<OpsRate>, RateParseError> {
    if text.trim().eq_ignore_ascii_case("unlimited") {
        Ok(None)
    } else {
        OpsRate::parse(text).map(Some)
    }
}

impl FromStr for ByteRate {
    type Err = RateParseError;
    fn from_str(s: &str) -> Result<ByteRate, RateParseError> {
        ByteRate::parse(s)
    }
}

impl FromStr for OpsRate {
    type Err = RateParseError;
    fn from_str(s: &str) -> Result<OpsRate, RateParseError> {
        OpsRate::parse(s)
    }
}

impl fmt::Display for ByteRate {
    /// The largest binary unit that keeps at least 1, up to two decimals:
    /// "20 MiB/s", "1.5 GiB/s", "512 B/s".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", format_bytes(self.0 as f64))
    }
}

impl fmt::Display for OpsRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ops/s", self.0)
    }
}

/// "20 MiB", "1.5 GiB", "512 B".
pub fn format_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} {}", UNITS[i])
}

/// Parses a percentage: "10%", "10", "2.5%"; `0 < p <= 100`.
pub fn parse_percent(text: &str) -> Option<f64> {
    let t = text.trim();
    let t = t.strip_suffix('%').unwrap_or(t).trim_end();
    let v: f64 = t.parse().ok()?;
    (v.is_finite() && v > 0.0 && v <= 100.0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_rates() {
        let mib = 1024 * 1024;
        for (text, want) in [
            ("20MiB/s", 20 * mib),
            ("20 MiB/s", 20 * mib),
            ("20mib/s", 20 * mib),
            ("1.5GiB/s", 3 * 512 * mib),
            ("500kB/s", 500_000),
            ("500KiB/s", 500 * 1024),
            ("100MB/s", 100_000_000),
            ("4096", 4096),
            ("4096B/s", 4096),
            ("4096/s", 4096),
        ] {
            assert_eq!(ByteRate::parse(text), Ok(ByteRate(want)), "{text}");
        }
        for bad in [
            "",
            "MiB/s",
            "20MiB",
            "20 MiB/h",
            "20Mbit/s",
            "-1",
            "0",
            "0MiB/s",
            "1.",
            ".5MiB/s",
            "unlimited",
            "20MiB/s/s",
        ] {
            let e = ByteRate::parse(bad).unwrap_err();
            assert_eq!(e.value, bad);
        }
        assert_eq!(parse_byte_limit("Unlimited"), Ok(None));
        assert_eq!(parse_byte_limit("1KiB/s"), Ok(Some(ByteRate(1024))));
    }

    #[test]
    fn ops_rates() {
        for (text, want) in [
            ("2000/s", 2000),
            ("500ops/s", 500),
            ("500 ops/s", 500),
            ("7", 7),
        ] {
            assert_eq!(OpsRate::parse(text), Ok(OpsRate(want)), "{text}");
        }
        for bad in ["", "/s", "500MiB/s", "500 ops", "0/s", "x/s"] {
            assert!(OpsRate::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(parse_ops_limit("unlimited"), Ok(None));
    }

    #[test]
    fn display_round_trips() {
        for r in [
            ByteRate(20 * 1024 * 1024),
            ByteRate(1536 * 1024 * 1024),
            ByteRate(512),
        ] {
            assert_eq!(ByteRate::parse(&r.to_string()), Ok(r), "{r}");
        }
        assert_eq!(ByteRate(20 * 1024 * 1024).to_string(), "20 MiB/s");
        assert_eq!(OpsRate(5).to_string(), "5 ops/s");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size(" 500 MB "), Some(500_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("2 parsecs"), None);
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("10%"), Some(10.0));
        assert_eq!(parse_percent(" 2.5 % "), Some(2.5));
        assert_eq!(parse_percent("100"), Some(100.0));
        for bad in ["0%", "101%", "-5", "ten", "%", "NaN"] {
            assert_eq!(parse_percent(bad), None, "{bad}");
        }
    }
}
