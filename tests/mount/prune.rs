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
    // Restored the way an administrator restores: cp -a.
    let restored = m.path("restored");
    ok(std::process::Command::new("cp")
        .arg("-a")
        .arg(&kept)
        .arg(&restored));
    same(&sources[2], &restored.join("data"));
}

/// Nights `kept` and `gone` interleaved in one tree, `name` (files fNNk
/// and fNNg, which rsync copies in that order), so that their chunks share
/// packs: once `gone`'s files are forgotten, prune must copy `kept`'s out.
fn interleaved(m: &Mount, name: &str, kept: u64, gone: u64) -> PathBuf {
    let dir = m.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (n, tag) in [(kept, "k"), (gone, "g")] {
        let src = night(m, n);
        for i in 0..24 {
            let file = format!("f{i:02}");
            std::fs::copy(src.join(&file), dir.join(format!("{file}{tag}"))).unwrap();
        }
    }
    dir
}

/// Removes the `gone` files of an interleaved tree from each of `dirs`,
/// giving each the same times again.
fn drop_gone(dirs: &[PathBuf]) {
    for dir in dirs {
        for i in 0..24 {
            std::fs::remove_file(dir.join(format!("f{i:02}g"))).unwrap();
        }
        tree::set_times(dir, 1_700_000_000, 0);
    }
}

/// How many prune requests the daemon's log shows begun.
fn prunes_begun(m: &Mount) -> usize {
    m.log()
        .lines()
        .filter(|l| l.contains("control request") && l.contains("prune"))
        .count()
}

#[test]
fn a_daemon_killed_during_a_prune_loses_nothing_and_the_next_prune_finishes() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = small_packs();
    // Kill points drawn at random; the seed is printed to replay a failure.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    eprintln!("kill points from seed {seed}");
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let mut kept = Vec::new();
    let mut interrupted = 0;
    for round in 0..10u64 {
        // Kept and forgotten data in the same packs each round.
        let name = format!("mix{round}");
        let src = interleaved(&m, &name, 2 * round, 2 * round + 1);
        let dst = m.head().join(&name);
        rsync_into(&src, &dst);
        m.snapshot(&format!("both{round}"));
        drop_gone(&[src.clone(), dst]);
        let snap = m.snapshot(&format!("kept{round}"));
        kept.push((snap, name));
        ok(m.strata().args(["forget", &format!("both{round}")]));

        // Even rounds: the throttle stretches the copying (6 MiB at
        // 2 MiB/s), and the kill lands within it. Odd rounds: full speed,
        // the kill lands anywhere, also after the end.
        let delay = if round % 2 == 0 {
            ok(m.strata().args(["throttle", "set", "2MiB/s"]));
            random(1500)
        } else {
            random(300)
        };
        let pid = m.daemon_pid();
        let begun = prunes_begun(&m);
        let prune = prune_in_background(&m);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while prunes_begun(&m) == begun {
            assert!(
                std::time::Instant::now() < deadline,
                "the prune never began"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(delay));
        // SAFETY: plain kill of the daemon's pid.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        if !prune.wait_with_output().unwrap().status.success() {
            interrupted += 1;
        }
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
        for (snap, name) in &kept {
            same(&m.path(name), &snap.join(name));
            same(&m.path(name), &m.head().join(name));
        }
    }
    assert!(
        interrupted >= 5,
        "kills landed in {interrupted} prunes only"
    );
    ok(m.strata().args(["prune", "--max-unused", "0"]));
    m.umount();
    ok(m.strata().args(["check", "--read-data"]));
    let report: serde_json::Value = serde_json::from_str(&ok(m.strata().args([
        "prune",
        "--max-unused",
        "0",
        "--json",
    ])))
    .unwrap();
    // What is left is what the unmount wrote (the head's trees, replaced
    // since), not a round's 6 MiB of garbage.
    assert_eq!(
        report["packs_deleted"], 0,
        "the earlier prune finished: {report}"
    );
    assert!(
        report["bytes_freed"].as_u64() < Some(1 << 20),
        "the earlier prune finished: {report}"
    );
}

#[test]
fn a_throttled_prune_keeps_to_the_limit_and_status_answers_meanwhile() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = small_packs();
    let mixed = interleaved(&m, "mixed", 1, 0);
    rsync_into(&mixed, &m.head().join("data"));
    m.snapshot("both");
    drop_gone(&[mixed.clone(), m.head().join("data")]);
    let kept = m.snapshot("new");
    ok(m.strata().args(["forget", "both"]));

    ok(m.strata().args(["throttle", "set", "1MiB/s"]));
    let before = status_throttle(&m);
    let mut prune = prune_in_background(&m);
    // `strata status` answers while the prune copies (it is what polls).
    wait_for_throttle(&m, |t| t["bytes"].as_u64() > before["bytes"].as_u64());
    let status: serde_json::Value =
        serde_json::from_str(&ok(m.strata().args(["status", "--json"]))).unwrap();
    assert!(
        prune.try_wait().unwrap().is_none(),
        "the prune still runs while status answers"
    );
    // Status says how far it is.
    let progress = &status["prune"];
    assert!(
        progress["phase"] == "copy" || progress["phase"] == "commit",
        "{status}"
    );
    assert!(
        progress["done"].as_u64() <= progress["total"].as_u64(),
        "{status}"
    );
    let text = ok(m.strata().arg("status"));
    assert!(text.contains("pruning     "), "{text}");
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
    let status: serde_json::Value =
        serde_json::from_str(&ok(m.strata().args(["status", "--json"]))).unwrap();
    assert!(status.get("prune").is_none(), "done: {status}");
    same(&mixed, &kept.join("data"));
    same(&mixed, &m.head().join("data"));
    m.umount();
    ok(m.strata().args(["check", "--read-data"]));
}
