//! What strata says after a failure: `umount` right after the daemon was
//! killed, and `umount` and `snapshot create` after a storage failure
//! turned the head read-only, say what was not committed and exit 25;
//! recovery at the next open is logged; ioctls get a quiet ENOTTY.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Command;

use super::harness::{self, fails, run, Mount};
use super::{init_and_mount_at, strata_at, FailingDisk};
use crate::common::tier::{self, Tier};

#[test]
fn umount_right_after_a_kill_detaches_and_says_what_was_lost() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    // A file deleted while still open, committed as such: recovery at
    // the next open removes it.
    let mut open = std::fs::File::create(m.head().join("tmp")).unwrap();
    open.write_all(b"scratch").unwrap();
    open.sync_all().unwrap();
    std::fs::remove_file(m.head().join("tmp")).unwrap();
    let kept = std::fs::File::create(m.head().join("kept")).unwrap();
    kept.sync_all().unwrap();
    // Written but not committed: its bytes lie past the pack's synced
    // length, which recovery cuts back to.
    std::fs::write(m.head().join("unsynced"), b"lost with the daemon").unwrap();

    let pid = m.daemon_pid();
    // SAFETY: plain kill of the daemon's pid.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let out = run(m.strata().arg("umount").arg(m.mnt()));
    fails(&out, 25, "not everything written was committed");
    fails(&out, 25, "daemon had stopped");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("everything written was committed"),
        "{out:?}"
    );
    drop(open);
    assert!(
        strata::sys::mountpoint::mounted_on(&m.mnt()).is_none(),
        "the dead mount is still there"
    );

    // The next mount recovers, and its log says what recovery did.
    m.mount();
    let log = m.log();
    assert!(
        log.contains("recovery: removed files deleted while still open")
            && log.contains("inodes=1")
            && log.contains("recovery: cut an open pack back"),
        "{log}"
    );
    assert!(m.head().join("kept").exists());
    m.umount();
}

#[test]
fn an_ioctl_gets_enotty_quietly_and_umount_logs_no_spurious_warning() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let f = std::fs::File::create(m.head().join("f")).unwrap();
    // SAFETY: isatty only reads the descriptor's state.
    let tty = unsafe { libc::isatty(f.as_raw_fd()) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((tty, errno), (0, Some(libc::ENOTTY)));
    drop(f);
    m.umount();
    let log = m.log();
    assert!(!log.contains("Not Implemented"), "{log}");
    assert!(!log.contains("umount"), "{log}");
    assert!(!log.contains("Invalid argument"), "{log}");
    assert!(log.contains("unmounted; everything committed"), "{log}");
}

#[test]
fn after_a_storage_failure_snapshot_and_umount_say_what_was_not_committed() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    let disk = FailingDisk::new(m.dir.path());
    let repo = disk.fs.join("repo");
    init_and_mount_at(&m, &repo, &[]);
    // More than the disk can really hold; the sync that follows fails and
    // the head turns read-only.
    let out = run(Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=120", "conv=fsync"])
        .arg(format!("of={}", m.head().join("big").display())));
    assert!(!out.status.success(), "the failed sync went unreported");

    let out = run(&mut strata_at(&m, &repo, &["snapshot", "create"]));
    fails(&out, 25, "no snapshot taken: the head turned read-only");
    fails(&out, 25, "strata mount` again");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Please close and re-open"),
        "{out:?}"
    );

    let out = run(Command::new(harness::strata_bin())
        .arg("umount")
        .arg(m.mnt()));
    fails(&out, 25, "not everything written was committed");
    fails(&out, 25, "read-only after a storage failure");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("everything written was committed"),
        "{out:?}"
    );
    assert!(strata::sys::mountpoint::mounted_on(&m.mnt()).is_none());
}
