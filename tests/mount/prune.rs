//! Garbage collection inside the daemon: rsync into head/ and snapshots go
//! on while it prunes, also storing the very bytes it is deleting, and a
//! daemon killed at any moment of a prune loses nothing kept.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::common::tier::{self, Tier};
use crate::harness::{differences, ok, rsync_into, Mount};
use crate::tree;

/// Night `night`'s tree: 24 files of 256 KiB, each night different.
fn night(m: &Mount, night: u64) -> PathBuf {
    let dir = m.path(&format!("night{night}"));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..24u64 {
        let f = dir.join(format!("f{i:02}"));
        std::fs::write(&f, tree::bytes(night * 100 + i, 256 << 10)).unwrap();
        tree::set_times(&f, 1_700_000_000 + (night * 1000 + i) as i64, 0);
    }
    dir
}

/// Three nights copied into head/data and snapshotted; the first two
/// forgotten, so their data is garbage. Returns the nights' sources and
/// the kept snapshot's directory.
fn three_nights_two_forgotten(m: &Mount) -> (Vec<PathBuf>, PathBuf) {
    let sources: Vec<PathBuf> = (0..3).map(|n| night(m, n)).collect();
    let mut last = PathBuf::new();
    for (n, src) in sources.iter().enumerate() {
        rsync_into(src, &m.head().join("data"));
        last = m.snapshot(&format!("night{n}"));
    }
    ok(m.strata().args(["forget", "night0", "night1"]));
    (sources, last)
}

fn prune_in_background(m: &Mount) -> Child {
    m.strata()
        .args(["prune", "--max-unused", "0", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn same(a: &Path, b: &Path) {
    assert_eq!(differences(a, b), "", "{} vs {}", a.display(), b.display());
}

#[test]
fn rsync_and_snapshots_go_on_while_the_daemon_prunes() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let (sources, kept) = three_nights_two_forgotten(&m);
    for round in 0..3 {
        // The forgotten nights' bytes, stored again while they are pruned.
        let again = m.head().join(format!("again{round}"));
        let prune = prune_in_background(&m);
        rsync_into(&sources[round % 2], &again);
        let snap = m.snapshot(&format!("during{round}"));
        let out = prune.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        same(&sources[round % 2], &again);
        same(&sources[round % 2], &snap.join(format!("again{round}")));
        same(&sources[2], &kept.join("data"));
    }
    assert!(m.log().contains("prune finished"));
    m.umount();
    ok(m.strata().args(["check", "--read-data"]));
    m.mount();
    same(&sources[0], &m.head().join("again0"));
    same(&sources[2], &kept.join("data"));
}

#[test]
fn a_daemon_killed_during_a_prune_loses_nothing_and_the_next_prune_finishes() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let (sources, kept) = three_nights_two_forgotten(&m);
    let kept_name = kept.file_name().unwrap().to_owned();
    for round in 0..6u64 {
        // New garbage each round: a night stored, snapshotted, forgotten.
        let extra = night(&m, 10 + round);
        rsync_into(&extra, &m.head().join("extra"));
        m.snapshot(&format!("extra{round}"));
        std::fs::remove_dir_all(m.head().join("extra")).unwrap();
        m.snapshot(&format!("clean{round}"));
        ok(m.strata().args(["forget", &format!("extra{round}")]));

        let pid = m.daemon_pid();
        let prune = prune_in_background(&m);
        std::thread::sleep(Duration::from_millis(round * 40));
        // SAFETY: plain kill of the daemon's pid.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let _ = prune.wait_with_output().unwrap();
        // The mount counts as dead once the daemon's process is gone.
        let gone = std::time::Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                std::time::Instant::now() < gone,
                "the killed daemon lingers"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        m.mount();
        same(&sources[2], &m.snapshots().join(&kept_name).join("data"));
        same(&sources[2], &m.head().join("data"));
    }
    ok(m.strata().args(["prune"]));
    m.umount();
    ok(m.strata().args(["check", "--read-data"]));
    let report: serde_json::Value = serde_json::from_str(&ok(m.strata().args([
        "prune",
        "--max-unused",
        "0",
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        report["packs_deleted"], 0,
        "the earlier prune finished: {report}"
    );
}
