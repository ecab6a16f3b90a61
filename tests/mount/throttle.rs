//! The write throttle through a real mount: a configured rate holds a
//! writer back without holding anyone else back, and `strata throttle`
//! changes it live. Only lower bounds on time are asserted: a shared
//! machine can make anything slower, never faster.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::tier::{self, Tier};
use crate::harness::{fails, ok, run, Mount};

fn throttle_json(m: &Mount, args: &[&str]) -> serde_json::Value {
    let out = ok(m.strata().arg("throttle").args(args).arg("--json"));
    serde_json::from_str(&out).unwrap()
}

const MIB: u64 = 1 << 20;

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

    // 50 MiB at 10 MiB/s with half a second of burst: at least 4.5 s.
    let start = Instant::now();
    let mut dd = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=50", "status=none"])
        .arg(format!("of={}", m.head().join("big").display()))
        .spawn()
        .unwrap();
    // Meanwhile, other requests are answered at once: a hundred stats and
    // a listing finish while the throttled writer is still held back.
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..100 {
        std::fs::metadata(m.head().join("other")).unwrap();
        let _ = std::fs::read_dir(m.head()).unwrap().count();
    }
    assert!(
        dd.try_wait().unwrap().is_none(),
        "the other requests waited behind the throttled writer"
    );
    assert!(dd.wait().unwrap().success());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(4400),
        "50 MiB at 10 MiB/s took only {took:?}"
    );
    assert_eq!(
        std::fs::metadata(m.head().join("big")).unwrap().len(),
        50 * MIB
    );

    let status: serde_json::Value =
        serde_json::from_str(&ok(m.strata().args(["status", "--json"]))).unwrap();
    let t = &status["throttle"];
    assert!(t["delayed_requests"].as_u64().unwrap() > 0, "{t}");
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
    let start = Instant::now();
    ok(Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=50", "status=none"])
        .arg(format!("of={}", m.head().join("big2").display())));
    let unthrottled = start.elapsed();
    let s = throttle_json(&m, &["clear"]);
    assert_eq!(s["effective"]["bytes"], 10 * MIB);
    // The override really lifted the limit: the same write went faster
    // than the limit allows.
    assert!(
        unthrottled < Duration::from_millis(4400),
        "unthrottled write took {unthrottled:?}"
    );

    let out = run(m.strata().args(["throttle", "set", "ten-fast"]));
    fails(&out, 2, "ten-fast");
    m.umount();
    let out = run(m.strata().args(["throttle", "show"]));
    fails(&out, 14, "not mounted");
}
