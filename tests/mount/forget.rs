//! Forgetting while mounted: through the daemon, the kernel drops the
//! forgotten directories and `latest` moves at once; `strata backup`
//! applies [retention] after each good run; refusals change nothing; a
//! prune in the daemon keeps every kept snapshot readable.

use std::path::PathBuf;

use crate::common::tier::{self, Tier};
use crate::harness::{fails, ok, run, Mount};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn listing(m: &Mount) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(m.snapshots())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Takes a snapshot labelled `label` through the daemon (mkdir in
/// snapshots/ refuses a label that exists); returns its directory.
fn snapshot(m: &Mount, label: &str) -> PathBuf {
    let out = json(&ok(m
        .strata()
        .args(["snapshot", "create", "--label", label, "--json"])));
    m.snapshots().join(out["name"].as_str().unwrap())
}

/// The numbers of the snapshots `snapshot list` shows.
fn snapshot_seqs(m: &Mount) -> Vec<u64> {
    let list = json(&ok(m.strata().args(["snapshot", "list", "--json"])));
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["seq"].as_u64().unwrap())
        .collect()
}

fn config(m: &Mount, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = m.path("strata.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn forgetting_through_the_daemon_drops_the_directory_and_moves_latest() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::write(m.head().join("record"), "night 1").unwrap();
    let first = m.snapshot("nightly");
    std::fs::write(m.head().join("record"), "night 2").unwrap();
    let second = snapshot(&m, "nightly");
    let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    // The kernel has both directories and `latest` cached now.
    assert!(listing(&m).contains(&name(&second)));
    assert_eq!(
        std::fs::read_link(m.snapshots().join("latest")).unwrap(),
        PathBuf::from(name(&second))
    );

    ok(m.strata()
        .args(["snapshot", "hold", "1", "--reason", "case 4"]));
    fails(
        &run(m.strata().args(["forget", "1"])),
        26,
        "is under a legal hold",
    );
    assert_eq!(std::fs::read(first.join("record")).unwrap(), b"night 1");

    let out = json(&ok(m.strata().args(["forget", "latest", "--json"])));
    assert_eq!(out["forgotten"], 1, "{out}");
    assert!(
        !listing(&m).contains(&name(&second)),
        "the kernel dropped it: {:?}",
        listing(&m)
    );
    assert_eq!(
        std::fs::metadata(&second).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    assert_eq!(
        std::fs::read_link(m.snapshots().join("latest")).unwrap(),
        PathBuf::from(name(&first)),
        "latest moved back to the newest snapshot still kept"
    );
    assert_eq!(
        std::fs::read_link(m.snapshots().join("nightly")).unwrap(),
        PathBuf::from(name(&first)),
        "and so did the label"
    );
    assert!(m.log().contains("snapshot forgotten"), "the daemon logs it");

    // A new snapshot gets a new number, never the forgotten one's.
    std::fs::write(m.head().join("record"), "night 3").unwrap();
    let third = snapshot(&m, "nightly");
    assert_ne!(name(&third), name(&second));
    let shown = json(&ok(m
        .strata()
        .args(["snapshot", "show", "latest", "--json"])));
    assert_eq!(shown["seq"], 3);
    let pruned = json(&ok(m.strata().args([
        "prune",
        "--max-unused",
        "0",
        "--json",
    ])));
    assert_eq!(pruned["dry_run"], false, "{pruned}");
    assert!(m.log().contains("prune finished"), "the daemon pruned");
    assert_eq!(std::fs::read(first.join("record")).unwrap(), b"night 1");
    m.umount();
    ok(m.strata().args(["check", "--read-data"]));
    m.mount();
    assert_eq!(std::fs::read(first.join("record")).unwrap(), b"night 1");
    assert_eq!(std::fs::read(third.join("record")).unwrap(), b"night 3");
    assert_eq!(std::fs::read(m.head().join("record")).unwrap(), b"night 3");
}

#[test]
fn backup_applies_the_configured_policy_after_each_good_run() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let cfg = config(
        &m,
        "[retention]\nkeep_last = 2\ntimezone = \"UTC\"\nlock_label = { monthly = \"10y\" }\n",
    );
    let src = m.path("src");
    std::fs::create_dir(&src).unwrap();
    let copy = format!("cp -a {}/. {}/", src.display(), m.head().display());
    let backup = |label: &str| {
        run(m
            .strata()
            .args(["backup", "--json", "--label", label, "--config"])
            .arg(&cfg)
            .args(["--", "sh", "-c", &copy]))
    };
    let mut summaries = Vec::new();
    for (night, label) in ["daily", "monthly", "daily", "daily"].iter().enumerate() {
        std::fs::write(src.join("record"), format!("night {night}")).unwrap();
        let out = backup(label);
        assert!(out.status.success(), "{out:?}");
        summaries.push(json(&String::from_utf8_lossy(&out.stdout)));
    }
    let forgotten = |i: usize| summaries[i]["summary"]["retention"]["forgotten"].clone();
    assert_eq!(forgotten(1), serde_json::json!([]), "{}", summaries[1]);
    assert_eq!(
        forgotten(2).as_array().unwrap().len(),
        1,
        "{}",
        summaries[2]
    );
    let seqs = snapshot_seqs(&m);
    assert_eq!(
        seqs,
        [2, 3, 4],
        "the monthly snapshot is inside its label's lock; the oldest daily went"
    );
    let dry = ok(m
        .strata()
        .args(["forget", "--dry-run", "--config"])
        .arg(&cfg));
    assert!(
        dry.contains("retention lock  10y for label monthly"),
        "{dry}"
    );
    assert!(dry.contains("locked until"), "{dry}");
    assert!(dry.contains("would forget 0 snapshot(s), kept 3"), "{dry}");

    // A failed run forgets nothing: keep_last = 2 would take snapshot 3.
    let out = run(m
        .strata()
        .args(["backup", "--json", "--config"])
        .arg(&cfg)
        .args(["--", "false"]));
    assert_eq!(out.status.code(), Some(21), "{out:?}");
    let failed = json(&String::from_utf8_lossy(&out.stdout));
    assert!(failed["summary"]["retention"].is_null(), "{failed}");
    let seqs = snapshot_seqs(&m);
    assert!(seqs.starts_with(&[2, 3, 4]), "{seqs:?}");
    let before = seqs.len();

    // A shorter lock in the file is refused, also after a good run: the
    // backup says so and exits 26, and nothing is forgotten.
    config(
        &m,
        "[retention]\nkeep_last = 1\ntimezone = \"UTC\"\nlock_label = { monthly = \"1d\" }\n",
    );
    std::fs::write(src.join("record"), "night 5").unwrap();
    let out = backup("daily");
    fails(&out, 26, "refusing to shorten the retention lock");
    let text = json(&String::from_utf8_lossy(&out.stdout));
    assert!(
        text["summary"]["retention"]["error"]
            .as_str()
            .unwrap()
            .contains("shorter than the repository's 10y"),
        "{text}"
    );
    assert_eq!(
        snapshot_seqs(&m).len(),
        before + 1,
        "the run's snapshot stays"
    );
}
