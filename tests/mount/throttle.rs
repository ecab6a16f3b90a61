//! The write throttle through a real mount: a configured rate holds a
//! writer back without holding anyone else back, and `strata throttle`
//! changes it live. No time is measured here: the throttle's counters say
//! what it held back (scripts/bench-throttle measures how closely it holds
//! its rate).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::tier::{self, Tier};
use crate::harness::{fails, ok, run, Mount};

fn throttle_json(m: &Mount, args: &[&str]) -> serde_json::Value {
    let out = ok(m.strata().arg("throttle").args(args).arg("--json"));
    serde_json::from_str(&out).unwrap()
}

const MIB: u64 = 1 << 20;

/// The throttle's counters, from `strata status --json`.
pub(crate) fn status_throttle(m: &Mount) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&ok(m.strata().args(["status", "--json"]))).unwrap();
    status["throttle"].clone()
}

/// Polls the throttle's counters until `ready` holds (at most 60 s).
pub(crate) fn wait_for_throttle(
    m: &Mount,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = status_throttle(m);
        if ready(&t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "the throttle never got there: {t}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_rate_limit_holds_the_writer_back_and_nobody_else() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    let config = m.path("strata.toml");
    std::fs::write(
        &config,
        "[throttle]\nrate = \"10MiB/s\"\nburst = \"500ms\"\n",
    )
    .unwrap();
    m.mount_with(&["--config", config.to_str().unwrap()]);
    std::fs::write(m.head().join("other"), "x").unwrap();

    let s = throttle_json(&m, &["show"]);
    assert_eq!(s["effective"]["bytes"], 10 * MIB);
    assert_eq!(s["configured"]["bytes"], 10 * MIB);

    // 50 MiB at 10 MiB/s with half a second of burst: after the first
    // 5 MiB, the writer's replies are held back for seconds.
    let mut dd = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=50", "status=none"])
        .arg(format!("of={}", m.head().join("big").display()))
        .spawn()
        .unwrap();
    let held = wait_for_throttle(&m, |t| t["delayed_requests"].as_u64().unwrap() > 0);
    assert!(held["bytes"].as_u64().unwrap() < 50 * MIB, "{held}");
    // Meanwhile, other requests are answered: a hundred stats and listings
    // finish while the throttled writer is still held back.
    for _ in 0..100 {
        std::fs::metadata(m.head().join("other")).unwrap();
        let _ = std::fs::read_dir(m.head()).unwrap().count();
    }
    assert!(
        dd.try_wait().unwrap().is_none(),
        "the other requests waited behind the throttled writer"
    );
    assert!(dd.wait().unwrap().success());
    assert_eq!(
        std::fs::metadata(m.head().join("big")).unwrap().len(),
        50 * MIB
    );

    let t = status_throttle(&m);
    let delayed = t["delayed_requests"].as_u64().unwrap();
    assert!(delayed > 0, "{t}");
    assert!(t["total_delay"].as_f64().unwrap() > 0.0, "{t}");
    assert_eq!(
        t["bytes"],
        50 * MIB + 1,
        "every byte written went through the throttle"
    );
    let human = ok(m.strata().arg("status"));
    assert!(human.contains("limit       10 MiB/s"), "{human}");

    // Live override, and back.
    let s = throttle_json(&m, &["set", "unlimited", "--for", "1h"]);
    assert!(s["effective"]["bytes"].is_null(), "{s}");
    assert!(s["reason"].as_str().unwrap().contains("override"), "{s}");
    ok(Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=50", "status=none"])
        .arg(format!("of={}", m.head().join("big2").display())));
    // The override really lifted the limit: the same write was counted,
    // and not one of its requests was held back.
    let t = status_throttle(&m);
    assert_eq!(t["bytes"], 100 * MIB + 1, "{t}");
    assert_eq!(t["delayed_requests"], delayed, "{t}");
    let s = throttle_json(&m, &["clear"]);
    assert_eq!(s["effective"]["bytes"], 10 * MIB);

    let out = run(m.strata().args(["throttle", "set", "ten-fast"]));
    fails(&out, 2, "ten-fast");
    m.umount();
    let out = run(m.strata().args(["throttle", "show"]));
    fails(&out, 14, "not mounted");
}
