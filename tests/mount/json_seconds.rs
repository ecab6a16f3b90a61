//! Durations in `--json` output are numbers of seconds, not serde's
//! `{"secs": .., "nanos": ..}`.

use crate::common::tier::{self, Tier};
use crate::harness::{ok, Mount};

fn json(m: &Mount, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(m.strata().args(args).arg("--json"))).unwrap()
}

fn secs(v: &serde_json::Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number of seconds: {v}"))
}

#[test]
fn throttle_and_status_durations_are_seconds() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    let config = m.path("strata.toml");
    std::fs::write(
        &config,
        "[throttle]\nrate = \"10MiB/s\"\nmax_delay = \"300ms\"\n",
    )
    .unwrap();
    m.mount_with(&["--config", config.to_str().unwrap()]);
    std::fs::write(m.head().join("f"), vec![7u8; 1 << 20]).unwrap();

    let s = json(&m, &["throttle", "show"]);
    assert!(secs(&s, "window") > 0.0, "{s}");
    assert_eq!(secs(&s, "max_delay"), 0.3, "{s}");
    assert!(secs(&s, "total_delay") >= 0.0, "{s}");
    assert!(s["override_remaining"].is_null(), "{s}");

    let s = json(&m, &["throttle", "set", "5MiB/s", "--for", "1h"]);
    let left = secs(&s, "override_remaining");
    assert!((3500.0..=3600.0).contains(&left), "{s}");

    let status = json(&m, &["status"]);
    let t = &status["throttle"];
    assert!(secs(t, "window") > 0.0, "{status}");
    assert!(secs(t, "override_remaining") > 3500.0, "{status}");
    assert!(!status.to_string().contains("nanos"), "{status}");
}
