//! A source tree with every kind of file a backup meets.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

pub use super::common::bytes;
use super::harness::ok;

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Sets atime and mtime with nanoseconds, without following a symlink.
pub fn set_times(p: &Path, secs: i64, nanos: i64) {
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    let times = [t, t];
    // SAFETY: a valid path and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cpath(p).as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", p.display());
}

/// Sets the times of everything below `dir`, children before their directory.
fn backdate(dir: &Path, n: &mut i64) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            backdate(&p, n);
        }
        *n += 1;
        set_times(&p, 1_700_000_000 + *n, *n * 7919 % 1_000_000_000);
    }
}

fn mknod(p: &Path, mode: u32, dev: u64) {
    // SAFETY: a valid path.
    let rc = unsafe { libc::mknod(cpath(p).as_ptr(), mode, dev) };
    assert_eq!(rc, 0, "mknod {}", p.display());
}

fn write(p: &Path, data: &[u8]) {
    std::fs::write(p, data).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

/// Builds the tree under `root` (which must not exist).
pub fn make(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let r = |name: &str| root.join(name);

    // Regular files: empty, small text, large random, duplicates.
    write(&r("empty"), b"");
    write(&r("hello.txt"), b"hello, world\n");
    let big = bytes(1, 6 << 20);
    write(&r("random.bin"), &big);
    std::fs::create_dir(r("dup")).unwrap();
    write(&r("dup/random-copy.bin"), &big);
    write(
        &r("text.log"),
        "a line of a log file\n".repeat(20_000).as_bytes(),
    );

    // Sparse: holes at the start, the middle and the end.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(r("sparse")).unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(&bytes(2, 100_000)).unwrap();
        f.seek(SeekFrom::Start(9 << 20)).unwrap();
        f.write_all(b"tail").unwrap();
        f.set_len(12 << 20).unwrap();
    }

    // Symlinks: relative, absolute, dangling, to a directory.
    symlink("hello.txt", r("link-rel")).unwrap();
    symlink("/etc/hostname", r("link-abs")).unwrap();
    symlink("does/not/exist", r("link-dangling")).unwrap();
    symlink("dup", r("link-dir")).unwrap();

    // Hard links, one in another directory.
    write(&r("hard-a"), b"one inode, three names\n");
    std::fs::hard_link(r("hard-a"), r("hard-b")).unwrap();
    std::fs::hard_link(r("hard-a"), r("dup/hard-c")).unwrap();

    // Special files.
    mknod(&r("fifo"), libc::S_IFIFO | 0o644, 0);
    mknod(&r("null-dev"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    mknod(&r("block-dev"), libc::S_IFBLK | 0o600, libc::makedev(7, 0));

    // Modes and owners.
    write(&r("setuid"), b"#!/bin/sh\n");
    std::fs::set_permissions(r("setuid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    write(&r("mode000"), b"nobody may read this\n");
    std::fs::set_permissions(r("mode000"), std::fs::Permissions::from_mode(0o000)).unwrap();
    write(&r("foreign"), b"owned by someone else\n");
    std::os::unix::fs::chown(r("foreign"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(r("link-rel"), Some(4321), Some(8765)).unwrap();
    std::fs::create_dir(r("sticky")).unwrap();
    std::fs::set_permissions(r("sticky"), std::fs::Permissions::from_mode(0o1777)).unwrap();

    // Extended attributes and ACLs.
    write(&r("xattrs"), b"has attributes\n");
    ok(std::process::Command::new("setfattr")
        .args(["-n", "user.comment", "-v", "patient-free test value"])
        .arg(r("xattrs")));
    ok(std::process::Command::new("setfattr")
        .args(["-n", "user.binary", "-v", "0x00ff10"])
        .arg(r("xattrs")));
    write(&r("acl-file"), b"has an access ACL\n");
    ok(std::process::Command::new("setfacl")
        .args(["-m", "u:1234:rw,g:5678:r"])
        .arg(r("acl-file")));
    std::fs::create_dir(r("acl-dir")).unwrap();
    ok(std::process::Command::new("setfacl")
        .args(["-m", "u:1234:rwx", "-d", "-m", "u:1234:rwx"])
        .arg(r("acl-dir")));
    write(&r("acl-dir/inherits"), b"made under a default ACL\n");

    // Names: not UTF-8, with a newline, 255 bytes.
    let odd = r("names");
    std::fs::create_dir(&odd).unwrap();
    write(&odd.join(OsStr::from_bytes(b"latin1-\xe9t\xe9")), b"x");
    write(&odd.join("new\nline"), b"y");
    write(&odd.join("n".repeat(255)), b"z");
    write(&odd.join(" leading space and trailing "), b"s");

    // A large directory.
    let wide = r("wide");
    std::fs::create_dir(&wide).unwrap();
    for i in 0..3000 {
        write(
            &wide.join(format!("entry-{i:05}")),
            format!("{i}\n").as_bytes(),
        );
    }

    // A deep path.
    let mut deep = r("deep");
    for i in 0..40 {
        deep = deep.join(format!("level{i:02}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    write(&deep.join("bottom"), b"40 levels down\n");

    // Every time a day in the past, with distinct nanoseconds (rsync -a
    // compares whole seconds unless told otherwise, so a tree made in the
    // second it is copied would hide times that were not kept); then
    // times before 1970 and after 2038.
    backdate(root, &mut 0);
    set_times(&r("hello.txt"), -1_000_000_000, 123_456_789);
    set_times(&r("random.bin"), 4_102_444_800, 999_999_999);
    set_times(&r("link-rel"), 2_000_000_000, 1);
    set_times(&r("fifo"), -1, 500_000_000);
    set_times(&r("names"), -86_400, 7);
    set_times(root, 1_700_000_000, 42);
}
