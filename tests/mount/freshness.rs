//! `strata check --freshness`, as the shipped timer runs it: the missed
//! backup and storage fill alerts a dead daemon could not raise.

use crate::common::tier::{self, Tier};
use crate::common::webhook::receiver;
use crate::harness::{fails, ok, run, Mount};

fn freshness_cmd(m: &Mount) -> std::process::Command {
    let mut c = m.strata();
    c.args(["check", "--freshness", "--config"])
        .arg(m.path("strata.toml"));
    c
}

fn freshness(m: &Mount, args: &[&str]) -> std::process::Output {
    run(freshness_cmd(m).args(args))
}

#[test]
fn a_missed_backup_and_a_full_disk_raise_alerts_mounted_or_not() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let (url, alerts) = receiver(200);
    let config = |extra: &str| {
        std::fs::write(
            m.path("strata.toml"),
            format!("[alerts]\n{extra}\n[[alerts.channel]]\ntype = \"webhook\"\nurl = \"{url}\"\n"),
        )
        .unwrap()
    };
    let next = || -> serde_json::Value {
        let r = alerts
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("an alert");
        serde_json::from_str(&r.body).unwrap()
    };
    config("fill_threshold = \"100%\"");

    // A new repository has one allowed age of grace.
    let out = ok(freshness_cmd(&m).arg("--json"));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["missed"], false);
    assert!(report["newest"].is_null());
    assert!(alerts.try_recv().is_err(), "no alert while fresh");

    // Past the allowed age (time passes): exit 16 and the backup_missed
    // alert.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    fails(
        &freshness(&m, &["--max-age", "1s"]),
        16,
        "no good snapshot for",
    );
    let e = next();
    assert_eq!(e["kind"], "backup_missed");
    assert!(e["fields"]["elapsed_secs"].as_u64().unwrap() >= 2);
    assert_eq!(e["fields"]["limit_secs"], 1);

    // A snapshot makes it fresh again, and the alert resolved.
    m.snapshot("nightly");
    let out = ok(&mut freshness_cmd(&m));
    assert!(out.contains("newest good snapshot"), "{out}");
    let resolved = next();
    assert_eq!(resolved["kind"], "backup_missed");
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["id"], e["id"]);

    // A disk fuller than the threshold raises storage_full.
    config("fill_threshold = \"1%\"");
    ok(&mut freshness_cmd(&m));
    let e = next();
    assert_eq!(e["kind"], "storage_full");
    assert_eq!(e["fields"]["threshold_percent"], 1);

    // Unmounted, the repository is read directly.
    m.umount();
    config("fill_threshold = \"100%\"");
    // Time passes: more than the allowed age since the last snapshot.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fails(&freshness(&m, &["--max-age", "1s"]), 16, "no good snapshot");
    assert_eq!(next()["kind"], "backup_missed");
}

#[test]
fn a_check_that_cannot_be_made_is_alerted_too() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    let (url, alerts) = receiver(200);
    std::fs::write(
        m.path("strata.toml"),
        format!("[alerts]\n[[alerts.channel]]\ntype = \"webhook\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    // The backup disk did not mount: the repository is not there.
    let gone = m.path("unmounted-disk/repo");
    let out = run(freshness_cmd(&m).arg("--repo").arg(&gone));
    fails(&out, 10, "no strata repository at");
    let r = alerts
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("an alert that the check could not be made");
    let e: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(e["kind"], "storage_error", "{e}");
    assert_eq!(e["class"], "configuration", "{e}");
    assert_eq!(e["fields"]["exit_status"], 10, "{e}");
    assert!(!r.body.contains("unmounted-disk"), "no path: {}", r.body);
}
