//! `strata umount` with no argument: the default mountpoint, else the only
//! strata mount; several or none are refused, naming what to do.
//!
//! Runs in a mount namespace of its own, with the other strata mounts of
//! the machine (other tests') detached there only, so that "the only
//! strata mount" is this test's and nothing outside is touched.

use std::process::Command;

use crate::common::tier::{self, Tier};
use crate::harness::{run, strata_bin, Mount};

/// `STRATA_STATE_DIR=… strata --repo … --password-file …`, as shell words.
fn strata(m: &Mount) -> String {
    format!(
        "env STRATA_STATE_DIR='{}' '{}' --repo '{}' --password-file '{}'",
        m.dir.path().display(),
        strata_bin().display(),
        m.repo().display(),
        m.path("pw").display()
    )
}

#[test]
fn umount_without_an_argument_unmounts_the_only_strata_mount() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let (a, b) = (Mount::unmounted(), Mount::unmounted());
    let (sa, sb) = (strata(&a), strata(&b));
    let (ma, mb) = (a.mnt().display().to_string(), b.mnt().display().to_string());
    let script = format!(
        "findmnt -rn -o TARGET,SOURCE,FSTYPE | awk '$2 ~ /^strata:/ && $3 ~ /^fuse/ {{print $1}}' \
           | while read -r t; do umount -l \"$t\"; done\n\
         {sa} mount '{ma}' >&2 || exit 99\n\
         {sb} mount '{mb}' >&2 || exit 99\n\
         {sa} umount; echo several=$?\n\
         {sb} umount '{mb}'; echo named=$?\n\
         {sa} umount; echo only=$?\n\
         mountpoint -q '{ma}' && echo still_mounted=yes || echo still_mounted=no\n\
         {sa} umount; echo none=$?\n\
         {sa} umount '{ma}' 2>/dev/null; {sb} umount '{mb}' 2>/dev/null; true\n"
    );
    let out =
        run(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Two mounts: refused as a usage error naming both, and both stay.
    assert!(stdout.contains("several=2"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("several strata mounts exist")
            && stderr.contains(&ma)
            && stderr.contains(&mb)
            && stderr.contains("strata umount MOUNTPOINT"),
        "{stderr}"
    );
    assert!(stdout.contains("named=0"), "{stdout}\n{stderr}");
    // One left: that one is unmounted.
    assert!(stdout.contains("only=0"), "{stdout}\n{stderr}");
    assert!(stdout.contains("still_mounted=no"), "{stdout}\n{stderr}");
    // None left: exit 14, saying so.
    assert!(stdout.contains("none=14"), "{stdout}\n{stderr}");
    assert!(stderr.contains("no strata mount to unmount"), "{stderr}");
}
