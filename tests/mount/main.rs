//! The mount as users see it: real mounts over /dev/fuse, driven by rsync,
//! tar and cp, and the failures they must see.

mod alert_classes;
mod audit;
mod backup;
mod catalog;
mod check_names;
#[path = "../common/mod.rs"]
mod common;
mod content;
mod drill;
mod first_run;
mod forget;
mod freshness;
mod harness;
mod head_reset;
mod holds;
mod honest;
mod hook_programs;
mod ioprio;
mod json_seconds;
mod metrics;
mod mount_side;
mod postgres;
mod prune;
mod replicate;
mod runs;
mod s3;
mod summary;
mod throttle;
mod tiers;
mod transport;
mod tree;
mod umount_default;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::tier::{self, Tier};
use harness::{differences, fails, ok, rsync_into, run, sh, sh_as, Mount};

/// `strata --repo REPO --password-file PW ARGS` for a repository kept on
/// a filesystem of its own.
fn strata_at(m: &Mount, repo: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(harness::strata_bin());
    c.arg("--repo")
        .arg(repo)
        .arg("--password-file")
        .arg(m.path("pw"))
        .env("STRATA_STATE_DIR", m.dir.path())
        .args(args);
    c
}

/// Creates a repository at `repo` and mounts it on the test's mountpoint.
fn init_and_mount_at(m: &Mount, repo: &Path, flags: &[&str]) {
    ok(&mut strata_at(
        m,
        repo,
        &["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"],
    ));
    ok(strata_at(m, repo, &["mount", "--log-file"])
        .arg(m.path("mountd.log"))
        .args(flags)
        .arg(m.mnt()));
}

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

#[test]
fn rsync_in_snapshot_and_copy_out_keeps_every_file_kind() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let src = m.path("src");
    tree::make(&src);
    let dst = m.head().join("tree");

    assert!(rsync_into(&src, &dst) > 3000);
    assert_eq!(differences(&src, &dst), "", "head differs from the source");

    let snap = m.snapshot("first");
    assert_eq!(
        differences(&src, &snap.join("tree")),
        "",
        "snapshot differs from the source"
    );

    // Restores by ordinary copies, out of the snapshot.
    let by_cp = m.path("restore-cp");
    ok(Command::new("cp")
        .arg("-a")
        .arg(m.snapshots().join("latest/tree"))
        .arg(&by_cp));
    assert_eq!(differences(&src, &by_cp), "", "cp -a restore differs");
    let by_rsync = m.path("restore-rsync");
    rsync_into(&snap.join("tree"), &by_rsync);
    assert_eq!(differences(&src, &by_rsync), "", "rsync restore differs");
    // Holes survive a sparse-aware copy back out.
    let sparse = std::fs::metadata(by_rsync.join("sparse")).unwrap();
    assert!(
        sparse.blocks() * 512 < sparse.len() / 2,
        "holes were filled"
    );

    // Hard links share an inode inside a snapshot, files never share one
    // across snapshots or with the head.
    let ino = |p: &Path| std::fs::symlink_metadata(p).unwrap().ino();
    let t = snap.join("tree");
    assert_eq!(ino(&t.join("hard-a")), ino(&t.join("hard-b")));
    assert_eq!(ino(&t.join("hard-a")), ino(&t.join("dup/hard-c")));
    assert_eq!(std::fs::metadata(t.join("hard-a")).unwrap().nlink(), 3);

    // A second identical rsync sends nothing; a small change only the changed file.
    assert_eq!(rsync_into(&src, &dst), 0);
    std::fs::write(src.join("hello.txt"), b"changed\n").unwrap();
    assert_eq!(rsync_into(&src, &dst), 1);
    let second = m.snapshot("second");
    assert_ne!(second, snap);
    assert_ne!(
        ino(&snap.join("tree/random.bin")),
        ino(&second.join("tree/random.bin"))
    );
    assert_ne!(
        ino(&second.join("tree/random.bin")),
        ino(&dst.join("random.bin"))
    );
    assert_eq!(differences(&src, &second.join("tree")), "");
    // The first snapshot still has the old content.
    assert_eq!(
        std::fs::read(snap.join("tree/hello.txt")).unwrap(),
        b"hello, world\n"
    );

    // Everything is still there after an unmount and mount.
    m.umount();
    m.mount();
    assert_eq!(differences(&src, &dst), "");
    assert_eq!(differences(&src, &m.snapshots().join("second/tree")), "");
}

#[test]
fn tar_with_xattrs_and_acls_round_trips() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let src = m.path("src");
    tree::make(&src);
    let dst = m.head().join("tar");
    std::fs::create_dir(&dst).unwrap();
    sh(&format!(
        "tar --xattrs --xattrs-include='*' --acls --format=posix -C {} -cf - . | tar --xattrs --xattrs-include='*' --acls --numeric-owner -C {} -xpf -",
        src.display(),
        dst.display()
    ));
    let snap = m.snapshot("tar");
    let out = m.path("out");
    std::fs::create_dir(&out).unwrap();
    sh(&format!(
        "tar --xattrs --xattrs-include='*' --acls --format=posix -C {} -cf - . | tar --xattrs --xattrs-include='*' --acls --numeric-owner -C {} -xpf -",
        snap.join("tar").display(),
        out.display()
    ));
    // tar keeps hard links, xattrs, ACLs, owners and (posix format) ns times;
    // it does not restore holes or atimes, which the comparison ignores.
    assert_eq!(differences(&src, &out), "");
}

#[test]
fn snapshots_refuse_every_change_with_erofs() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::create_dir(m.head().join("d")).unwrap();
    std::fs::write(m.head().join("d/f"), b"data").unwrap();
    let snap = m.snapshot("ro");
    let f = snap.join("d/f");
    let d = snap.join("d");
    let erofs = libc::EROFS;
    assert_eq!(errno_of(std::fs::write(d.join("new"), b"x")), erofs);
    assert_eq!(
        errno_of(std::fs::OpenOptions::new().append(true).open(&f)),
        erofs
    );
    assert_eq!(errno_of(std::fs::create_dir(d.join("sub"))), erofs);
    assert_eq!(errno_of(std::fs::remove_file(&f)), erofs);
    assert_eq!(errno_of(std::fs::remove_dir(&d)), erofs);
    assert_eq!(errno_of(std::fs::rename(&f, d.join("g"))), erofs);
    assert_eq!(errno_of(std::fs::hard_link(&f, d.join("g"))), erofs);
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("f", d.join("g"))),
        erofs
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        errno_of(std::fs::set_permissions(
            &f,
            std::fs::Permissions::from_mode(0o600)
        )),
        erofs
    );
    assert_eq!(
        errno_of(std::os::unix::fs::chown(&f, Some(1), Some(1))),
        erofs
    );
    for cmd in [
        format!("touch -m {}", f.display()),
        format!("setfattr -n user.x -v y {}", f.display()),
        format!("setfacl -m u:1:r {}", f.display()),
        format!("truncate -s 0 {}", f.display()),
    ] {
        let out = run(Command::new("sh").args(["-c", &cmd]));
        assert!(!out.status.success(), "{cmd} succeeded in a snapshot");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Nor can the mount's own directories be changed.
    assert_eq!(errno_of(std::fs::write(m.mnt().join("x"), b"")), erofs);
    assert_eq!(errno_of(std::fs::remove_dir(&snap)), erofs);
    assert_eq!(std::fs::read(&f).unwrap(), b"data");
}

#[test]
fn snapshot_names_never_collide_and_links_follow_the_newest() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::write(m.head().join("f"), b"1").unwrap();
    let a = m.snapshot("nightly");
    std::fs::write(m.head().join("f"), b"2").unwrap();
    // A name in snapshots/ is taken: mkdir of an existing label fails in
    // the kernel, as for any directory; the CLI reuses labels.
    assert_eq!(
        errno_of(std::fs::create_dir(m.snapshots().join("nightly"))),
        libc::EEXIST
    );
    ok(m.strata()
        .args(["snapshot", "create", "--label", "nightly"]));
    let b = m
        .snapshots()
        .join(std::fs::read_link(m.snapshots().join("nightly")).unwrap());
    assert_ne!(a, b, "two snapshots in one second got one name");
    let latest = std::fs::read_link(m.snapshots().join("latest")).unwrap();
    assert_eq!(m.snapshots().join(latest), b);
    assert_eq!(std::fs::read(a.join("f")).unwrap(), b"1");
    assert_eq!(std::fs::read(b.join("f")).unwrap(), b"2");

    // Through the control socket while mounted.
    let out = ok(m
        .strata()
        .args(["snapshot", "create", "--label", "manual", "--json"]));
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let name = created["name"].as_str().unwrap();
    assert!(m.snapshots().join(name).join("f").exists());
    assert_eq!(
        std::fs::read_link(m.snapshots().join("latest")).unwrap(),
        Path::new(name)
    );
    let list: serde_json::Value =
        serde_json::from_str(&ok(m.strata().args(["snapshot", "list", "--json"]))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
    let status: serde_json::Value =
        serde_json::from_str(&ok(m.strata().args(["status", "--json"]))).unwrap();
    assert_eq!(status["mounted"], true);
    assert_eq!(status["snapshots"], 3);
    let names: Vec<String> = std::fs::read_dir(m.snapshots())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for want in ["latest", "nightly", "manual"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    // The kernel caches symlink targets; a snapshot taken by mkdir still
    // moves a cached `latest` before mkdir returns.
    for label in ["again", "once-more"] {
        let _cached = std::fs::read_link(m.snapshots().join("latest")).unwrap();
        let dir = m.snapshot(label);
        let latest = std::fs::read_link(m.snapshots().join("latest")).unwrap();
        assert_eq!(m.snapshots().join(latest), dir, "`latest` was stale");
    }

    // Labels that could pass for a time name or for `latest` are refused.
    for (bad, errno) in [
        ("2026-01-01", libc::EINVAL),
        ("has space", libc::EINVAL),
        ("latest", libc::EEXIST),
    ] {
        assert_eq!(
            errno_of(std::fs::create_dir(m.snapshots().join(bad))),
            errno,
            "{bad}"
        );
    }
    // Unmounted, the CLI opens the repository itself and sees the same.
    m.umount();
    let list: serde_json::Value =
        serde_json::from_str(&ok(m.strata().args(["snapshot", "list", "--json"]))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 5);
}

#[test]
fn mount_refusals_name_the_problem_and_change_nothing() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    let listing = || {
        sh(&format!(
            "cd {} && find . -printf '%p %s %T@\\n' | sort",
            m.repo().display()
        ))
    };
    let before = listing();

    std::fs::write(m.path("wrong"), "wrong horse\n").unwrap();
    let out = run(Command::new(harness::strata_bin())
        .arg("--repo")
        .arg(m.repo())
        .arg("--password-file")
        .arg(m.path("wrong"))
        .arg("mount")
        .arg(m.mnt()));
    fails(&out, 12, "wrong passphrase");

    let out = run(Command::new(harness::strata_bin())
        .arg("--repo")
        .arg(m.path("no-repo"))
        .arg("mount")
        .arg(m.mnt()));
    fails(&out, 10, "no-repo");

    let out = run(m.strata().arg("mount").arg(m.path("no-mnt")));
    fails(&out, 14, "does not exist");
    assert_eq!(listing(), before, "a refused mount changed the repository");

    m.mount();
    let out = run(m.strata().arg("mount").arg(m.mnt()));
    fails(&out, 14, "already mounted");
    let other = m.path("mnt2");
    std::fs::create_dir(&other).unwrap();
    let out = run(m.strata().arg("mount").arg(&other));
    fails(&out, 11, "in use");
    let _ = strata::sys::mountpoint::set_immutable(&other, false);

    let out = run(m.strata().arg("umount").arg(&other));
    fails(&out, 14, "not a strata mount");
}

#[test]
fn the_bare_mountpoint_refuses_writes_while_unmounted() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::write(m.head().join("f"), b"in the repository").unwrap();
    m.umount();
    assert_eq!(
        errno_of(std::fs::write(m.mnt().join("f"), b"lost")),
        libc::EPERM
    );
    m.mount();
    assert_eq!(
        std::fs::read(m.head().join("f")).unwrap(),
        b"in the repository"
    );
}

#[test]
fn a_killed_daemon_loses_no_snapshot_and_the_next_rsync_completes() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let src = m.path("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..40 {
        let f = src.join(format!("f{i:02}"));
        std::fs::write(&f, tree::bytes(i, 1 << 20)).unwrap();
        // Last week: rsync -a compares whole seconds.
        tree::set_times(&f, 1_700_000_000 + i as i64, 0);
    }
    let dst = m.head().join("data");
    rsync_into(&src, &dst);
    let snap = m.snapshot("before");
    let snap_name = snap.file_name().unwrap().to_owned();

    // Change everything, and kill the daemon in the middle of the rsync.
    for i in 0..40 {
        std::fs::write(src.join(format!("f{i:02}")), tree::bytes(100 + i, 1 << 20)).unwrap();
    }
    let pid = m.daemon_pid();
    // Slowed to 20 MB/s, so that the kill surely lands in the middle.
    let mut rsync = Command::new("rsync")
        .args(["-aHAXS", "--delete", "--bwlimit=20000"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display()))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Once rsync writes into the mount (its temporary file for the first
    // changed file appears), the kill lands in the middle of the transfer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let writing = || {
        std::fs::read_dir(&dst)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with('.'))
    };
    while !writing() {
        assert!(
            std::time::Instant::now() < deadline,
            "rsync never started writing into the mount"
        );
        assert!(rsync.try_wait().unwrap().is_none(), "rsync ended early");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: plain kill of the daemon's pid.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let status = rsync.wait().unwrap();
    assert!(!status.success(), "rsync did not notice the daemon's death");

    // Status says the mount is dead and what to do, and fails.
    let out = run(m.strata().args(["status", "--json"]));
    fails(&out, 14, "has died; run `strata umount");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["dead_mount"], m.mnt().display().to_string(), "{s}");

    // Mount again: the dead mount is cleaned up with a message.
    let out = run(m
        .strata()
        .arg("mount")
        .arg(m.mnt())
        .arg("--log-file")
        .arg(m.path("mountd.log")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("dead strata mount"));

    // The snapshot is as it was; the rsync runs to completion.
    let old = m.path("old");
    std::fs::create_dir(&old).unwrap();
    for i in 0..40 {
        std::fs::write(old.join(format!("f{i:02}")), tree::bytes(i, 1 << 20)).unwrap();
    }
    let snap = m.snapshots().join(&snap_name).join("data");
    assert_eq!(
        sh(&format!("cd {} && cat * | md5sum", snap.display())),
        sh(&format!("cd {} && cat * | md5sum", old.display()))
    );
    rsync_into(&src, &dst);
    assert_eq!(differences(&src, &dst), "");

    // And the repository checks clean.
    m.umount();
    ok(m.strata().args(["check", "--read-data"]));
}

#[test]
fn a_damaged_pack_gives_eio_for_its_file_only_and_never_wrong_bytes() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let good = tree::bytes(7, 200_000);
    let bad = tree::bytes(8, 8 << 20);
    std::fs::write(m.head().join("damaged"), &bad).unwrap();
    std::fs::write(m.head().join("intact"), &good).unwrap();
    m.snapshot("s");
    m.umount();

    // Flip bytes inside the first file's chunks (written first, at the
    // start of the largest pack).
    let pack = sh(&format!(
        "find {0}/open {0}/packs -type f -printf '%s %p\\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-",
        m.repo().display()
    ));
    let pack = Path::new(pack.trim());
    let mut data = std::fs::read(pack).unwrap();
    assert!(data.len() > 4 << 20, "the pack holds the file");
    // Several places, so that one lands in chunk data even if a checkpoint
    // (written when a commit came during the write) sits at another.
    for mib in 1..=5 {
        data[mib << 20] ^= 0x40;
    }
    std::fs::write(pack, &data).unwrap();

    let (config, alerts) = webhook_alerts(&m);
    m.mount_with(&["--config", config.to_str().unwrap()]);
    for dir in [m.head(), m.snapshots().join("latest")] {
        assert_eq!(std::fs::read(dir.join("intact")).unwrap(), good);
        let mut f = std::fs::File::open(dir.join("damaged")).unwrap();
        let mut eio = 0;
        let mut offset = 0usize;
        let mut buf = vec![0u8; 64 << 10];
        while offset < bad.len() {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    assert!(
                        buf[..n] == bad[offset..offset + n],
                        "wrong bytes at {offset}"
                    );
                    offset += n;
                }
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EIO));
                    eio += 1;
                    offset += buf.len();
                    use std::io::Seek;
                    f.seek(std::io::SeekFrom::Start(offset as u64)).unwrap();
                }
            }
        }
        assert!(eio > 0, "damage went unnoticed in {}", dir.display());
    }
    assert!(
        m.log().contains("damaged"),
        "the damage was not logged: {}",
        m.log()
    );
    // The daemon's storage watch raised a corruption alert on its own.
    let got = alerts
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("a corruption alert within 30 s");
    let event: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(event["kind"], "storage_error", "{event}");
    assert_eq!(event["class"], "corruption", "{event}");
}

#[test]
fn a_full_disk_reaches_the_writer_as_enospc() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    // The repository on a small filesystem of its own.
    let small = m.path("small");
    std::fs::create_dir(&small).unwrap();
    ok(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&small));
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _guard = Unmount(&small);
    let repo = small.join("repo");
    init_and_mount_at(&m, &repo, &[]);
    let out = run(Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=64", "conv=fsync"])
        .arg(format!("of={}", m.head().join("big").display())));
    assert!(!out.status.success(), "64 MiB fit on a 24 MiB disk");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No space left on device"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(m.head().join("big")).unwrap();
    // Whether the final commit still fits depends on where the disk ran
    // out (a staging write, freed by the unlink, or a pack write, which
    // turns the store read-only): either umount succeeds, or it says what
    // was not committed and what to do, with exit 25. Never a silent 0
    // after a failed commit (tests/mount/mount_side.rs forces that case).
    let out = run(Command::new(harness::strata_bin())
        .arg("umount")
        .arg(m.mnt()));
    if !out.status.success() {
        fails(&out, 25, "not everything written was committed");
        fails(&out, 25, "free space on, or repair, the disk");
    }
}

#[test]
fn posix_acls_are_enforced_by_the_kernel_and_follow_chmod() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    m.mount_with(&["--allow-other"]);
    let head = m.head();
    std::fs::set_permissions(&head, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let f = head.join("record");
    std::fs::write(&f, b"private\n").unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // Mode 0600 root: user 1234 may not read it ...
    let out = sh_as(1234, 1234, &[], &format!("cat {}", f.display()));
    assert!(!out.status.success(), "read without permission");
    // ... until an ACL entry allows it; the group bits show the mask.
    sh(&format!("setfacl -m u:1234:r {}", f.display()));
    let out = sh_as(1234, 1234, &[], &format!("cat {}", f.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sh(&format!("stat -c %a {}", f.display())).trim(), "640");
    // chmod g-r narrows the mask, and with it the named user's access.
    sh(&format!("chmod g-r {}", f.display()));
    assert!(sh(&format!("getfacl -p {}", f.display())).contains("mask::---"));
    let out = sh_as(1234, 1234, &[], &format!("cat {}", f.display()));
    assert!(!out.status.success(), "the mask did not apply");

    // A default ACL is inherited by new files and directories.
    let d = head.join("shared");
    std::fs::create_dir(&d).unwrap();
    sh(&format!("setfacl -d -m u:1234:rw {}", d.display()));
    std::fs::write(d.join("new"), b"x").unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    assert!(sh(&format!("getfacl -p {}/new", d.display())).contains("user:1234:rw-"));
    assert!(sh(&format!("getfacl -p {}/sub", d.display())).contains("default:user:1234:rw-"));
    // And the snapshot keeps all of it.
    let snap = m.snapshot("acl");
    let acls = |root: &Path| {
        sh(&format!(
            "cd {} && getfacl -p shared shared/new shared/sub record",
            root.display()
        ))
    };
    assert_eq!(acls(&head), acls(&snap));
}

#[test]
fn readers_browse_snapshots_and_nobody_else_gets_in() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    m.mount_with(&["--reader-group", "5678"]);
    std::fs::write(m.head().join("f"), b"data").unwrap();
    let snap = m.snapshot("s");
    // A member of the reader group can list and read snapshots ...
    let reader = sh_as(
        1234,
        1234,
        &[5678],
        &format!("ls {} && cat {}/f", m.snapshots().display(), snap.display()),
    );
    assert!(
        reader.status.success(),
        "{}",
        String::from_utf8_lossy(&reader.stderr)
    );
    assert!(String::from_utf8_lossy(&reader.stdout).contains("latest"));
    // ... but not write into the head, nor into a snapshot.
    let write = sh_as(
        1234,
        1234,
        &[5678],
        &format!("echo x > {}/g", m.head().display()),
    );
    assert!(!write.status.success());
    // Someone outside the group cannot even enter the mount.
    let outsider = sh_as(4321, 4321, &[], &format!("ls {}", m.mnt().display()));
    assert!(!outsider.status.success());
    assert!(String::from_utf8_lossy(&outsider.stderr).contains("Permission denied"));

    // The control socket is root's only; requests are logged with the caller.
    let socket = sh("ls -l /run/strata/ | grep -c '^srw------- 1 root'");
    assert_ne!(socket.trim(), "0");
    let show: serde_json::Value = serde_json::from_str(&ok(m
        .strata()
        .args(["snapshot", "show", "latest", "--json"])))
    .unwrap();
    assert_eq!(show["caller_uid"], 0);
    assert!(m.log().contains("control request"), "{}", m.log());
}

/// A host configuration whose alerts go to a webhook receiver on loopback,
/// and what that receiver gets.
fn webhook_alerts(
    m: &Mount,
) -> (
    std::path::PathBuf,
    std::sync::mpsc::Receiver<common::webhook::Request>,
) {
    let (url, alerts) = common::webhook::receiver(200);
    let config = m.path("strata.toml");
    std::fs::write(
        &config,
        format!("[alerts]\n[[alerts.channel]]\ntype = \"webhook\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    (config, alerts)
}

/// A small ext4 on a loop device whose backing file lives on a tmpfs too
/// small for it: writes are accepted into the page cache, and fail when the
/// kernel writes them back, so fsync reports an error, as a dying disk does.
struct FailingDisk {
    tmpfs: std::path::PathBuf,
    fs: std::path::PathBuf,
    loopdev: String,
}

impl FailingDisk {
    fn new(dir: &Path) -> FailingDisk {
        let tmpfs = dir.join("backing");
        let fs = dir.join("disk");
        std::fs::create_dir(&tmpfs).unwrap();
        std::fs::create_dir(&fs).unwrap();
        ok(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
            .arg(&tmpfs));
        let image = tmpfs.join("image");
        ok(Command::new("truncate").args(["-s", "400M"]).arg(&image));
        let loopdev = ok(Command::new("losetup").args(["-f", "--show"]).arg(&image))
            .trim()
            .to_owned();
        let disk = FailingDisk { tmpfs, fs, loopdev };
        ok(Command::new("mkfs.ext4").args(["-q", &disk.loopdev]));
        ok(Command::new("mount").arg(&disk.loopdev).arg(&disk.fs));
        disk
    }
}

impl Drop for FailingDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.fs).status();
        let _ = Command::new("losetup").args(["-d", &self.loopdev]).status();
        let _ = Command::new("umount").arg("-l").arg(&self.tmpfs).status();
    }
}

#[test]
fn a_failed_sync_turns_the_head_read_only_with_a_clear_message() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    let disk = FailingDisk::new(m.dir.path());
    let repo = disk.fs.join("repo");
    // Alerts go to a webhook receiver on loopback.
    let (config, alerts) = webhook_alerts(&m);
    init_and_mount_at(&m, &repo, &["--config", config.to_str().unwrap()]);
    std::fs::write(m.head().join("before"), b"kept").unwrap();
    // More than the disk can really hold; the sync that follows fails.
    let out = run(Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=120", "conv=fsync"])
        .arg(format!("of={}", m.head().join("big").display())));
    assert!(!out.status.success(), "the failed sync went unreported");

    // From now on the head takes no writes, and says why.
    assert_eq!(
        errno_of(std::fs::write(m.head().join("after"), b"x")),
        libc::EROFS
    );
    let status: serde_json::Value =
        serde_json::from_str(&ok(&mut strata_at(&m, &repo, &["status", "--json"]))).unwrap();
    let reason = status["read_only_reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "status does not say why: {status}");
    assert!(m.log().contains("refusing further writes"), "{}", m.log());
    // Prune refuses too, and deletes nothing.
    let packs = || {
        ok(Command::new("find")
            .arg(repo.join("packs"))
            .args(["-type", "f", "-printf", "%p %s\n"]))
    };
    let before = packs();
    fails(
        &run(&mut strata_at(&m, &repo, &["prune"])),
        1,
        "prune changed nothing: the repository's store refuses writes",
    );
    assert_eq!(packs(), before);
    // The daemon's storage watch raised the alert on its own, within 30 s.
    let got = alerts
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("a storage alert within 30 s");
    let event: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(event["kind"], "storage_error", "{event}");
    // The loop device reports its full backing store as ENOSPC.
    assert_eq!(event["fields"]["errno"], libc::ENOSPC, "{event}");
    assert_eq!(event["class"], "capacity", "{event}");
    assert!(!got.body.contains(&*repo.to_string_lossy()), "{}", got.body);
    // What was committed before is still readable.
    assert_eq!(std::fs::read(m.head().join("before")).unwrap(), b"kept");
    let _ = run(Command::new(harness::strata_bin())
        .arg("umount")
        .arg(m.mnt()));
}

#[test]
fn a_filesystem_the_kernel_turns_read_only_raises_a_corruption_alert() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    let disk = FailingDisk::new(m.dir.path());
    // As a damaged disk mounted errors=remount-ro does: ext4 detects an
    // error (here one the kernel is asked to report, through its test
    // trigger) and turns the filesystem read-only under the daemon.
    ok(Command::new("mount")
        .args(["-o", "remount,errors=remount-ro"])
        .arg(&disk.fs));
    let dev = disk.loopdev.trim_start_matches("/dev/");
    let trigger = format!("/sys/fs/ext4/{dev}/trigger_fs_error");
    assert!(Path::new(&trigger).exists(), "{trigger} is missing");
    let repo = disk.fs.join("repo");
    let (config, alerts) = webhook_alerts(&m);
    init_and_mount_at(&m, &repo, &["--config", config.to_str().unwrap()]);
    std::fs::write(m.head().join("before"), b"kept").unwrap();
    ok(Command::new("sync").arg("-f").arg(m.head().join("before")));
    std::fs::write(&trigger, "strata test: disk error\n").unwrap();

    let out = run(Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=8", "conv=fsync"])
        .arg(format!("of={}", m.head().join("after").display())));
    assert!(
        !out.status.success(),
        "a write to a read-only disk went unreported"
    );
    let got = alerts
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("a storage alert within 30 s");
    let event: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(event["kind"], "storage_error", "{event}");
    assert_eq!(event["fields"]["errno"], libc::EROFS, "{event}");
    assert_eq!(event["class"], "corruption", "{event}");
    // Status still opens the repository and says why; what was committed
    // is still readable.
    let status: serde_json::Value =
        serde_json::from_str(&ok(&mut strata_at(&m, &repo, &["status", "--json"]))).unwrap();
    let reason = status["read_only_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("Read-only file system"), "{status}");
    assert_eq!(std::fs::read(m.head().join("before")).unwrap(), b"kept");
    let _ = run(Command::new(harness::strata_bin())
        .arg("umount")
        .arg(m.mnt()));
}

#[test]
fn foreground_mode_tells_systemd_when_it_is_ready() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    let socket_path = m.path("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    notify
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut daemon = m
        .strata()
        .args(["mount", "--foreground"])
        .arg(m.mnt())
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("no readiness notification");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means answering.
    std::fs::write(m.head().join("f"), b"served").unwrap();
    m.umount();
    let status = daemon.wait().unwrap();
    assert!(
        status.success(),
        "the foreground daemon exited with {status}"
    );
    let n = notify.recv(&mut buf).expect("no stopping notification");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

#[test]
fn the_key_reaches_the_daemon_through_a_descriptor_only() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    // The passphrase in the CLI's environment this time.
    let out = run(Command::new(harness::strata_bin())
        .arg("--repo")
        .arg(m.repo())
        .arg("mount")
        .arg(m.mnt())
        .arg("--log-file")
        .arg(m.path("mountd.log"))
        .env("STRATA_PASSWORD", "correct horse"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = m.daemon_pid();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    for (what, bytes) in [("argv", &cmdline), ("environment", &environ)] {
        assert!(
            !bytes.windows(13).any(|w| w == b"correct horse"),
            "the passphrase is in the daemon's {what}"
        );
    }
    assert!(!environ.windows(15).any(|w| w == b"STRATA_PASSWORD"));
    // Only the key descriptor's number is on the command line, and it is closed.
    assert!(cmdline.windows(8).any(|w| w == b"--key-fd"));
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            std::fs::read_link(e.unwrap().path())
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
        .collect();
    assert!(
        !fds.iter().any(|l| l.starts_with("pipe:")),
        "the key pipe is still open: {fds:?}"
    );
}

#[test]
fn a_busy_mount_is_refused_at_once_and_unmounts_once_free() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::write(m.head().join("kept"), b"kept").unwrap();
    // A shell whose working directory is in the mount keeps it busy.
    let mut holder = Command::new("sleep")
        .arg("600")
        .current_dir(m.head())
        .spawn()
        .unwrap();
    let out = run(m.strata().arg("umount").arg(m.mnt()));
    fails(&out, 14, "is busy");
    fails(&out, 14, "fuser -vm");
    // Still mounted and serving.
    std::fs::write(m.head().join("after"), b"after").unwrap();
    assert_eq!(std::fs::read(m.head().join("kept")).unwrap(), b"kept");
    // A second try while still busy is refused the same way.
    fails(&run(m.strata().arg("umount").arg(m.mnt())), 14, "is busy");

    holder.kill().unwrap();
    holder.wait().unwrap();
    m.umount();
    assert!(!m.head().exists(), "still mounted");
    m.mount();
    assert_eq!(std::fs::read(m.head().join("after")).unwrap(), b"after");
}
