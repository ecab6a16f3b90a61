//! The mount's side of hardening: a missing daemon is named, a non-empty
//! mountpoint is refused, making a user's directory immutable is said,
//! refusals while mounted name the mount, snapshots by mkdir are logged,
//! SIGTERM on a busy mount unmounts once it is free, and a final commit
//! or a head that fails is reported as such.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::harness::{self, fails, ok, run, Mount};
use super::{init_and_mount_at, strata_at, FailingDisk};
use crate::common::tier::{self, Tier};

/// Whether `lsattr -d` shows the immutable flag on `dir`.
fn immutable(dir: &Path) -> bool {
    let out = ok(Command::new("lsattr").arg("-d").arg(dir));
    out.split_whitespace()
        .next()
        .is_some_and(|flags| flags.contains('i'))
}

/// Waits until every thread of `pid` has ended, at most `limit`.
fn wait_gone(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = state.rsplit(')').next().unwrap_or_default().trim_start();
        if state.is_empty() || state.starts_with('Z') || state.starts_with('X') {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_missing_daemon_is_named_with_where_strata_looked() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    // strata alone in a directory, with a PATH that has no strata-mountd.
    let alone = m.path("bin");
    std::fs::create_dir(&alone).unwrap();
    let strata = alone.join("strata");
    // Copied by cp, not by this process: a file this process had open
    // for writing could be inherited by a child another test forks at that
    // moment, and executing it would then fail with ETXTBSY.
    ok(Command::new("cp").arg(harness::strata_bin()).arg(&strata));
    let cmd = |mountd: Option<&str>| {
        let mut c = Command::new(&strata);
        c.arg("--repo")
            .arg(m.repo())
            .arg("--password-file")
            .arg(m.path("pw"))
            .env("STRATA_STATE_DIR", m.dir.path())
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env_remove("STRATA_MOUNTD")
            .arg("mount")
            .arg(m.mnt());
        if let Some(p) = mountd {
            c.env("STRATA_MOUNTD", p);
        }
        c
    };
    let out = run(&mut cmd(None));
    fails(
        &out,
        1,
        "strata-mountd, the daemon that serves mounts, was not found",
    );
    fails(&out, 1, &alone.join("strata-mountd").display().to_string());
    fails(&out, 1, "/usr/sbin:/usr/bin:/sbin:/bin");
    fails(&out, 1, "STRATA_MOUNTD");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("before the mount was ready"), "{stderr}");
    // Nothing changed: not mounted, the directory as it was.
    assert!(strata::sys::mountpoint::mounted_on(&m.mnt()).is_none());
    assert!(!immutable(&m.mnt()));

    let wrong = m.path("no-such-mountd");
    let out = run(&mut cmd(Some(wrong.to_str().unwrap())));
    fails(&out, 1, &format!("not at {}", wrong.display()));
    fails(&out, 1, "STRATA_MOUNTD");
    assert!(strata::sys::mountpoint::mounted_on(&m.mnt()).is_none());
}

#[test]
fn a_non_empty_mountpoint_is_refused_unless_nonempty() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    std::fs::write(m.mnt().join("stray"), b"left here").unwrap();
    let out = run(m
        .strata()
        .arg("mount")
        .arg(m.mnt())
        .arg("--log-file")
        .arg(m.path("mountd.log")));
    fails(&out, 14, &format!("{} is not empty", m.mnt().display()));
    fails(&out, 14, "stray");
    fails(&out, 14, "--nonempty");
    assert!(strata::sys::mountpoint::mounted_on(&m.mnt()).is_none());
    assert!(
        !immutable(&m.mnt()),
        "a refused mount changed the directory"
    );

    m.mount_with(&["--nonempty"]);
    assert!(m.head().is_dir());
    assert!(!m.mnt().join("stray").exists(), "the mount hides it");
    m.umount();
    assert_eq!(std::fs::read(m.mnt().join("stray")).unwrap(), b"left here");
}

#[test]
fn making_a_users_directory_immutable_is_said_once() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    assert!(!immutable(&m.mnt()));
    let mount = || {
        run(m
            .strata()
            .arg("mount")
            .arg(m.mnt())
            .arg("--log-file")
            .arg(m.path("mountd.log")))
    };
    let out = mount();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "made the mountpoint {} immutable",
            m.mnt().display()
        )) && stderr.contains(&format!("chattr -i {}", m.mnt().display())),
        "{stderr}"
    );
    m.umount();
    assert!(immutable(&m.mnt()), "the bare mountpoint is not immutable");
    // Already immutable: nothing new to say.
    let out = mount();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("chattr"),
        "{out:?}"
    );
    m.umount();
}

#[test]
fn commands_refused_while_mounted_name_the_mountpoint() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let mnt = m.mnt().display().to_string();
    let out = run(m.strata().args(["repair", "index"]));
    fails(&out, 11, "in use");
    fails(&out, 11, &format!("yes, on {mnt}"));
    fails(&out, 11, &format!("`strata umount {mnt}` first"));
    // A check is not refused: the daemon makes it.
    ok(m.strata().arg("check"));
    m.umount();
    ok(m.strata().arg("check"));
}

#[test]
fn a_snapshot_taken_by_mkdir_is_logged() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::write(m.head().join("f"), b"x").unwrap();
    m.snapshot("by-mkdir");
    let log = m.log();
    let line = log
        .lines()
        .find(|l| l.contains("snapshot taken") && l.contains("by-mkdir"))
        .unwrap_or_else(|| panic!("no snapshot line in: {log}"));
    for field in ["seq=1", "uid=0", "pid=", "by=\"mkdir\""] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
}

#[test]
fn sigterm_on_a_busy_mount_unmounts_once_it_is_free() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::write(m.head().join("kept"), b"kept").unwrap();
    // A file held open keeps the mount busy, until the holder's input ends.
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 3<'{}'; echo open; read -r _ || true",
            m.head().join("kept").display()
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "open\n");
    let pid = m.daemon_pid();
    // SAFETY: plain kill of the daemon's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    // The daemon finds the mount busy and says so; then the file is closed.
    let start = Instant::now();
    while !m.log().contains("is busy") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the daemon never found the mount busy: {}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        strata::sys::mountpoint::mounted_on(&m.mnt()).is_some(),
        "unmounted while a file was open"
    );
    drop(holder.stdin.take());
    assert!(
        wait_gone(pid, Duration::from_secs(30)),
        "the daemon did not exit after SIGTERM once the mount was free: {}",
        m.log()
    );
    assert!(
        strata::sys::mountpoint::mounted_on(&m.mnt()).is_none(),
        "a mount is left on {}",
        m.mnt().display()
    );
    assert!(holder.wait().unwrap().success());
    let log = m.log();
    assert!(log.contains("unmounting on signal"), "{log}");
    assert!(log.contains("is busy"), "{log}");
    assert!(log.contains("unmounted; everything committed"), "{log}");
    m.mount();
    assert_eq!(std::fs::read(m.head().join("kept")).unwrap(), b"kept");
}

#[test]
fn a_final_commit_that_fails_is_not_reported_as_committed() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    let disk = FailingDisk::new(m.dir.path());
    ok(Command::new("mount")
        .args(["-o", "remount,errors=remount-ro"])
        .arg(&disk.fs));
    let repo = disk.fs.join("repo");
    init_and_mount_at(&m, &repo, &[]);
    std::fs::write(m.head().join("committed"), b"kept").unwrap();
    ok(Command::new("sync")
        .arg("-f")
        .arg(m.head().join("committed")));
    // Written, then the disk fails (the kernel's test trigger for an ext4
    // error) before the daemon commits it: the status is still healthy.
    std::fs::write(m.head().join("uncommitted"), b"lost").unwrap();
    let dev = disk.loopdev.trim_start_matches("/dev/");
    std::fs::write(
        format!("/sys/fs/ext4/{dev}/trigger_fs_error"),
        "strata test: disk error\n",
    )
    .unwrap();
    let out = run(Command::new(harness::strata_bin())
        .arg("umount")
        .arg(m.mnt()));
    fails(&out, 25, "not everything written was committed");
    fails(&out, 25, "the daemon's final commit failed");
    fails(&out, 25, "`dmesg`");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("everything written was committed"),
        "{out:?}"
    );
    assert!(strata::sys::mountpoint::mounted_on(&m.mnt()).is_none());
}

#[test]
fn a_head_that_cannot_open_on_a_failing_disk_says_what_to_do() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    let disk = FailingDisk::new(m.dir.path());
    let repo = disk.fs.join("repo");
    ok(&mut strata_at(
        &m,
        &repo,
        &["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"],
    ));
    ok(Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&disk.fs));
    let out = run(strata_at(&m, &repo, &["mount", "--log-file"])
        .arg(m.path("mountd.log"))
        .arg(m.mnt()));
    fails(
        &out,
        1,
        &format!(
            "cannot open the repository at {} for writing",
            repo.display()
        ),
    );
    fails(&out, 1, "Read-only file system");
    fails(&out, 1, "refuses writes");
    fails(&out, 1, "`dmesg`");
    assert!(strata::sys::mountpoint::mounted_on(&m.mnt()).is_none());
    assert!(
        !immutable(&m.mnt()),
        "a failed mount left the directory immutable"
    );
}
