//! Garbage collection inside the daemon: rsync into head/ and snapshots go
//! on while it prunes, also storing the very bytes it is deleting, and a
//! daemon killed at any moment of a prune loses nothing kept. A throttled
//! prune keeps to the write limit, and status answers while it runs.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::common::tier::{self, Tier};
use crate::harness::{differences, ok, rsync_into, Mount};
use crate::throttle::{status_throttle, wait_for_throttle};
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

/// A mounted repository with 1 MiB packs, so that the few MiB a test
/// writes fill finished packs, the only ones prune judges.
fn small_packs() -> Mount {
    Mount::with_init(&["--pack-size", "1MiB"])
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
    let m = small_packs();
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
        if round == 0 {
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(report["bytes_freed"].as_u64() > Some(4 << 20), "{report}");
        }
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
    let m = small_packs();
    let (sources, kept) = three_nights_two_forgotten(&m);
    let kept_name = kept.file_name().unwrap().to_owned();
    for round in 0..10u64 {
        // New garbage each round: a night stored, snapshotted, forgotten.
        let extra = night(&m, 10 + round);
        rsync_into(&extra, &m.head().join("extra"));
        m.snapshot(&format!("extra{round}"));
        std::fs::remove_dir_all(m.head().join("extra")).unwrap();
        m.snapshot(&format!("clean{round}"));
        ok(m.strata().args(["forget", &format!("extra{round}")]));

        let pid = m.daemon_pid();
        let prune = prune_in_background(&m);
        std::thread::sleep(Duration::from_millis(round * 30));
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

#[test]
fn a_throttled_prune_keeps_to_the_limit_and_status_answers_meanwhile() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = small_packs();
    // Old and new files interleaved, so the packs hold both: once the old
    // ones are forgotten, prune must copy the new ones out.
    let (old, new) = (night(&m, 0), night(&m, 1));
    let mixed = m.path("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    for entry in std::fs::read_dir(&new)
        .unwrap()
        .chain(std::fs::read_dir(&old).unwrap())
    {
        let f = entry.unwrap().path();
        let tag = if f.starts_with(&old) { "o" } else { "n" };
        let name = format!("{}{tag}", f.file_name().unwrap().to_string_lossy());
        std::fs::copy(&f, mixed.join(name)).unwrap();
    }
    rsync_into(&mixed, &m.head().join("data"));
    m.snapshot("both");
    for dir in [mixed.clone(), m.head().join("data")] {
        for i in 0..24 {
            std::fs::remove_file(dir.join(format!("f{i:02}o"))).unwrap();
        }
        tree::set_times(&dir, 1_700_000_000, 0);
    }
    let kept = m.snapshot("new");
    ok(m.strata().args(["forget", "both"]));

    ok(m.strata().args(["throttle", "set", "1MiB/s"]));
    let before = status_throttle(&m);
    let prune = prune_in_background(&m);
    // `strata status` answers while the prune copies (it is what polls).
    wait_for_throttle(&m, |t| t["bytes"].as_u64() > before["bytes"].as_u64());
    let mut prune = prune;
    assert!(
        prune.try_wait().unwrap().is_none(),
        "the prune still runs while status answers"
    );
    let out = prune.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copied = report["bytes_repacked"].as_u64().unwrap();
    assert!(copied > 4 << 20, "{report}");
    let after = status_throttle(&m);
    let admitted = after["bytes"].as_u64().unwrap() - before["bytes"].as_u64().unwrap();
    assert_eq!(admitted, copied, "every byte prune copied was admitted");
    assert!(
        after["delayed_requests"].as_u64() > before["delayed_requests"].as_u64(),
        "the limit held the prune back: {after}"
    );
    same(&mixed, &kept.join("data"));
    same(&mixed, &m.head().join("data"));
    m.umount();
    ok(m.strata().args(["check", "--read-data"]));
}
