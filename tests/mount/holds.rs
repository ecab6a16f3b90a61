//! Legal holds while mounted: placed and released through the daemon,
//! recorded with the caller the daemon saw, and kept across a remount.

use crate::common::tier::{self, Tier};
use crate::harness::{fails, ok, run, Mount};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_hold_placed_through_the_daemon_is_kept_across_a_remount_and_released() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::write(m.head().join("record"), "patient file").unwrap();
    let dir = m.snapshot("before-upgrade");
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();

    let out = ok(m.strata().args([
        "snapshot",
        "hold",
        "before-upgrade",
        "--reason",
        "audit 2026-12",
    ]));
    assert!(
        out.contains(&format!("({name}) is under a legal hold")),
        "{out}"
    );
    assert!(m.log().contains("legal hold placed"), "the daemon logs it");
    assert!(
        !m.log().contains("audit 2026-12"),
        "the reason may name a patient: it stays out of the log"
    );

    m.umount();
    m.mount();
    let shown = json(&ok(m.strata().args(["snapshot", "show", "1", "--json"])));
    assert_eq!(shown["hold"]["reason"], "audit 2026-12");
    assert_eq!(
        shown["hold"]["uid"], 0,
        "the caller the daemon saw (root here)"
    );
    fails(
        &run(m
            .strata()
            .args(["snapshot", "hold", "1", "--reason", "twice"])),
        1,
        "already under a legal hold",
    );
    assert_eq!(
        std::fs::read(dir.join("record")).unwrap(),
        b"patient file",
        "the snapshot is still there"
    );

    let out = ok(m
        .strata()
        .args(["snapshot", "release", "1", "--reason", "audit closed"]));
    assert!(out.contains("legal hold released"), "{out}");
    let shown = json(&ok(m.strata().args(["snapshot", "show", "1", "--json"])));
    assert!(shown.get("hold").is_none(), "{shown}");
}
