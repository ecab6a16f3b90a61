//! `strata check --read-data` names the files and snapshots that use a
//! damaged chunk, on a terminal only: logs and piped output keep the ids.

use std::process::Command;

use crate::common::tier::{self, Tier};
use crate::harness::{run, strata_bin, Mount};

#[test]
fn a_damaged_chunk_is_named_by_file_and_snapshot_on_the_terminal_only() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    // Small packs, so the file's pack is finished: a check while mounted
    // reads finished packs only.
    let m = Mount::with_init(&["--pack-size", "1MiB"]);
    std::fs::create_dir(m.head().join("ward")).unwrap();
    // Incompressible, so that it fills most of its pack.
    std::fs::write(
        m.head().join("ward/jane-doe.bin"),
        crate::common::bytes(11, 3 << 20),
    )
    .unwrap();
    std::fs::write(m.head().join("notes"), "one").unwrap();
    let first = m.snapshot("first");
    std::fs::write(m.head().join("notes"), "two").unwrap();
    let second = m.snapshot("second");
    assert_ne!(first, second);
    let name = |p: &std::path::Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let (first, second) = (name(&first), name(&second));
    m.umount();

    // One byte flipped in the middle of the largest pack (finished or still
    // open): in the file's data.
    let mut packs: Vec<(u64, std::path::PathBuf)> = Vec::new();
    let mut dirs = vec![m.repo().join("packs"), m.repo().join("open")];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                packs.push((e.metadata().unwrap().len(), e.path()));
            }
        }
    }
    let (len, pack) = packs.into_iter().max().expect("a pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[len as usize / 2] ^= 0x40;
    std::fs::write(&pack, bytes).unwrap();

    // On a terminal (script(1) gives it one), with the log on stderr.
    let log = m.path("check.log");
    let cmd = format!(
        "STRATA_LOG=debug {} --repo {} --password-file {} check --read-data 2>{}",
        strata_bin().display(),
        m.repo().display(),
        m.path("pw").display(),
        log.display()
    );
    let out = run(Command::new("script").args(["-qec", &cmd, "/dev/null"]));
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(13), "{terminal}");
    assert!(terminal.contains("error: chunk "), "{terminal}");
    assert!(terminal.contains("is used by:"), "{terminal}");
    let line = terminal
        .lines()
        .find(|l| l.contains("ward/jane-doe.bin"))
        .unwrap_or_else(|| panic!("the file is not named: {terminal}"));
    assert!(line.contains(&first), "{line}");
    assert!(line.contains(&second), "{line}");
    assert!(line.contains("head/"), "{line}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.is_empty(), "nothing was logged");
    for secret in ["jane-doe", &first, &second] {
        assert!(!logged.contains(secret), "{secret} in the log: {logged}");
    }

    // Not a terminal (a pipe, a timer's journal): ids only, and how to see more.
    let out = run(m.strata().args(["check", "--read-data"]));
    let piped = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(13), "{piped}");
    assert!(piped.contains("error: chunk "), "{piped}");
    assert!(piped.contains("on a terminal"), "{piped}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for secret in ["jane-doe", &first, &second] {
        assert!(!piped.contains(secret), "{secret} in piped output: {piped}");
        assert!(!stderr.contains(secret), "{secret} on stderr: {stderr}");
    }
    // Nor in --json.
    let out = run(m.strata().args(["check", "--read-data", "--json"]));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("jane-doe"));

    // Mounted, the daemon checks, and the terminal names the same file;
    // the daemon's log keeps the ids.
    m.mount();
    let out = run(Command::new("script").args(["-qec", &cmd, "/dev/null"]));
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(13), "{terminal}");
    let line = terminal
        .lines()
        .find(|l| l.contains("ward/jane-doe.bin"))
        .unwrap_or_else(|| panic!("the file is not named through the daemon: {terminal}"));
    assert!(line.contains(&first) && line.contains(&second), "{line}");
    let daemon = m.log();
    assert!(daemon.contains("check done"), "{daemon}");
    for secret in ["jane-doe", &first, &second] {
        assert!(!daemon.contains(secret), "{secret} in the daemon's log");
    }
}

#[test]
fn a_mounted_repository_is_checked_while_writes_go_on() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::with_init(&["--pack-size", "1MiB"]);
    for i in 0..4 {
        std::fs::write(
            m.head().join(format!("f{i}")),
            crate::common::bytes(i, 2 << 20),
        )
        .unwrap();
    }
    m.snapshot("nightly");
    // A writer keeps the open pack changing during the whole check.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, head) = (stop.clone(), m.head());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::write(
                    head.join(format!("w{}", n % 50)),
                    crate::common::bytes(100 + n, 300_000),
                )
                .unwrap();
                n += 1;
            }
            n
        })
    };
    for _ in 0..3 {
        let out = run(m.strata().args(["check", "--read-data", "--json"]));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(report["chunks_read"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["snapshots"], 1);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        writer.join().unwrap() > 0,
        "the writer wrote during the checks"
    );
}
