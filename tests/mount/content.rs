//! File content through the mount: appends that resume a stored file, and
//! open(O_TRUNC), whose truncation the daemon does itself (the mount
//! negotiates atomic O_TRUNC, so the kernel sends no truncate of its own).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::common::tier::{self, Tier};
use crate::harness::{sh, Mount};

/// Compares a file in the mount with the reference copy on the local disk.
fn same_file(got: &Path, want: &Path, what: &str) {
    let out = std::process::Command::new("cmp")
        .arg(got)
        .arg(want)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The report: 4 MiB of one byte value (chunks cut at the maximum
/// size), then `echo more >>` killed the daemon. Each shape of a file's
/// last chunk, appended to after the file was closed and after a remount.
#[test]
fn appends_resume_files_of_every_shape_across_remounts() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let refs = m.path("refs");
    std::fs::create_dir(&refs).unwrap();
    let cases = [
        ("max", "yes a | tr -d '\\n' | head -c 4194304"),
        ("max-plus-min", "yes a | tr -d '\\n' | head -c 1114112"),
        ("max-plus-one", "yes a | tr -d '\\n' | head -c 1048577"),
        ("random", "head -c 3000001 /dev/urandom"),
        ("one-byte", "printf x"),
    ];
    for (name, make) in cases {
        sh(&format!("{make} > {}/{name}", refs.display()));
        sh(&format!(
            "cp {r}/{name} {h}/{name}; sync",
            r = refs.display(),
            h = m.head().display()
        ));
    }
    // A file ending in a hole.
    sh(&format!(
        "head -c 300000 /dev/urandom > {r}/hole; truncate -s 2000000 {r}/hole; cp --sparse=always {r}/hole {h}/hole",
        r = refs.display(),
        h = m.head().display()
    ));
    let names: Vec<&str> = cases.iter().map(|c| c.0).chain(["hole"]).collect();
    for round in 0..2 {
        for name in &names {
            sh(&format!(
                "echo more {round} >> {h}/{name}; echo more {round} >> {r}/{name}",
                h = m.head().display(),
                r = refs.display()
            ));
            same_file(&m.head().join(name), &refs.join(name), name);
        }
        m.umount();
        m.mount();
        for name in &names {
            same_file(&m.head().join(name), &refs.join(name), name);
        }
    }
    let snap = m.snapshot("appended");
    for name in &names {
        same_file(&snap.join(name), &refs.join(name), name);
    }
    assert!(!m.log().contains("panicked"), "{}", m.log());
}

/// `stat` of a file: (size, mtime ns, ctime ns).
fn stamps(p: &Path) -> (u64, i128, i128) {
    let md = std::fs::metadata(p).unwrap();
    let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
    (
        md.len(),
        ns(md.mtime(), md.mtime_nsec()),
        ns(md.ctime(), md.ctime_nsec()),
    )
}

#[test]
fn open_with_o_trunc_empties_the_file() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let h = m.head();
    let long = "the old content, longer than what replaces it\n".repeat(1000);
    let old = (1_600_000_000, 0);
    let put = |name: &str| {
        std::fs::write(h.join(name), &long).unwrap();
        crate::tree::set_times(&h.join(name), old.0, old.1);
    };

    // Shell redirection over a longer file.
    put("redirect");
    sh(&format!("printf new > {}", h.join("redirect").display()));
    assert_eq!(std::fs::read(h.join("redirect")).unwrap(), b"new");
    // `: > f` empties it.
    put("empty");
    sh(&format!(": > {}", h.join("empty").display()));
    assert_eq!(std::fs::read(h.join("empty")).unwrap(), b"");
    // cp of a shorter file over it.
    put("cp");
    std::fs::write(m.path("short"), b"short\n").unwrap();
    sh(&format!(
        "cp {} {}",
        m.path("short").display(),
        h.join("cp").display()
    ));
    assert_eq!(std::fs::read(h.join("cp")).unwrap(), b"short\n");

    // open(O_WRONLY|O_TRUNC) alone: size 0, mtime and ctime now.
    put("plain");
    let before = stamps(&h.join("plain"));
    // Not synchronisation: time passes, so that the truncation's ctime
    // differs from the one before even on a coarse clock.
    std::thread::sleep(Duration::from_millis(20));
    drop(
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(h.join("plain"))
            .unwrap(),
    );
    let after = stamps(&h.join("plain"));
    assert_eq!(after.0, 0);
    assert!(
        after.1 > before.1,
        "mtime was not updated: {before:?} {after:?}"
    );
    assert!(
        after.2 > before.2,
        "ctime was not updated: {before:?} {after:?}"
    );

    // A file with staged (non-append) writes still open.
    put("staged");
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(h.join("staged"))
        .unwrap();
    use std::os::unix::fs::FileExt;
    writer.write_all_at(b"OVERWRITE", 100).unwrap();
    writer.flush().unwrap();
    sh(&format!("printf fresh > {}", h.join("staged").display()));
    assert_eq!(std::fs::read(h.join("staged")).unwrap(), b"fresh");
    drop(writer);
    assert_eq!(std::fs::read(h.join("staged")).unwrap(), b"fresh");

    // A file whose appending writer still has it open: the writer's next
    // bytes land at its own offset, past a hole, as on any filesystem.
    let mut appender = std::fs::File::create(h.join("open")).unwrap();
    appender.write_all(long.as_bytes()).unwrap();
    sh(&format!("printf cut > {}", h.join("open").display()));
    assert_eq!(std::fs::read(h.join("open")).unwrap(), b"cut");
    appender.write_all(b"tail").unwrap();
    drop(appender);
    let mut want = b"cut".to_vec();
    want.resize(long.len(), 0);
    want.extend_from_slice(b"tail");
    assert!(
        std::fs::read(h.join("open")).unwrap() == want,
        "open writer"
    );

    // Snapshots store what the files hold now, and so does a remount.
    let snap = m.snapshot("truncated");
    let check = |root: &Path| {
        assert_eq!(std::fs::read(root.join("redirect")).unwrap(), b"new");
        assert_eq!(std::fs::read(root.join("empty")).unwrap(), b"");
        assert_eq!(std::fs::read(root.join("cp")).unwrap(), b"short\n");
        assert_eq!(std::fs::read(root.join("plain")).unwrap(), b"");
        assert_eq!(std::fs::read(root.join("staged")).unwrap(), b"fresh");
        assert!(std::fs::read(root.join("open")).unwrap() == want);
    };
    check(&snap);
    m.umount();
    m.mount();
    check(&m.head());
}
