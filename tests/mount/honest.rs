//! What strata says after a failure: `umount` and `snapshot create` after
//! a storage failure turned the head read-only say what was not committed
//! and exit 25.

use std::process::Command;

use super::harness::{self, fails, run, Mount};
use super::{init_and_mount_at, strata_at, FailingDisk};

#[test]
fn after_a_storage_failure_snapshot_and_umount_say_what_was_not_committed() {
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
    assert!(strata::mountpoint::mounted_on(&m.mnt()).is_none());
}
