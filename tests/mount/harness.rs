//! A real mount for a test: a repository in a temporary directory, mounted
//! over /dev/fuse by the real `strata mount`, unmounted when dropped.

use crate::common::tier::{self, Tier};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every test here starts with `if tier::missing(&[Tier::Mount]) { return; }`
/// (root, /dev/fuse, strata-mountd and the tools; see tests/common/tier.rs);
/// this catches one that does not.
pub fn setup() {
    assert!(
        !tier::missing(&[Tier::Mount]),
        "a mount test must start by asking for the mount tier"
    );
}

pub fn strata_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strata"))
}

pub use crate::common::{ok, run};

/// Asserts that `out` failed with `code` and a message containing `message`.
pub fn fails(out: &Output, code: i32, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        stderr.contains(message),
        "expected {message:?} in: {stderr}"
    );
}

pub fn sh(script: &str) -> String {
    ok(Command::new("sh").args(["-c", script]))
}

/// Runs `script` as user `uid`, group `gid` (no supplementary groups but
/// `groups`); returns its output.
pub fn sh_as(uid: u32, gid: u32, groups: &[u32], script: &str) -> Output {
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        c.arg(format!("--groups={}", groups.join(",")));
    }
    run(c.args(["sh", "-c", script]))
}

/// A repository and a mountpoint in one temporary directory.
pub struct Mount {
    pub dir: tempfile::TempDir,
}

impl Mount {
    /// An encrypted repository, mounted.
    pub fn new() -> Mount {
        let m = Mount::unmounted();
        m.mount();
        m
    }

    /// An encrypted repository whose `strata init` also got `flags`, mounted.
    pub fn with_init(flags: &[&str]) -> Mount {
        let m = Mount::unmounted_with(flags);
        m.mount();
        m
    }

    /// An encrypted repository and an empty mountpoint, not mounted.
    pub fn unmounted() -> Mount {
        Mount::unmounted_with(&[])
    }

    /// As [`Mount::unmounted`], made with extra `strata init` flags.
    pub fn unmounted_with(flags: &[&str]) -> Mount {
        setup();
        let dir = tempfile::Builder::new()
            .prefix("strata-mount-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let m = Mount { dir };
        std::fs::write(m.path("pw"), "correct horse\n").unwrap();
        std::fs::create_dir(m.mnt()).unwrap();
        ok(m.strata()
            .args(["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"])
            .args(flags));
        m
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    pub fn mnt(&self) -> PathBuf {
        self.path("mnt")
    }

    pub fn head(&self) -> PathBuf {
        self.mnt().join("head")
    }

    pub fn snapshots(&self) -> PathBuf {
        self.mnt().join("snapshots")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("mountd.log")).unwrap_or_default()
    }

    /// `strata --repo REPO --password-file PW`.
    pub fn strata(&self) -> Command {
        let mut c = Command::new(strata_bin());
        c.arg("--repo")
            .arg(self.repo())
            .arg("--password-file")
            .arg(self.path("pw"))
            .env_remove("STRATA_PASSWORD")
            .env_remove("STRATA_REPO")
            .env("STRATA_STATE_DIR", self.dir.path());
        c
    }

    pub fn mount(&self) {
        self.mount_with(&[]);
    }

    /// Mounts with extra `strata mount` flags.
    pub fn mount_with(&self, flags: &[&str]) {
        ok(self
            .strata()
            .arg("mount")
            .arg(self.mnt())
            .arg("--log-file")
            .arg(self.path("mountd.log"))
            .args(flags));
    }

    pub fn umount(&self) {
        ok(self.strata().arg("umount").arg(self.mnt()));
    }

    /// `strata status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = ok(self.strata().args(["status", "--json"]));
        serde_json::from_str(&out).unwrap()
    }

    /// The daemon's process id, from `strata status --json`.
    pub fn daemon_pid(&self) -> u32 {
        self.status()["pid"].as_u64().expect("mounted") as u32
    }

    /// Takes a snapshot through the mount (mkdir in snapshots/); returns
    /// the directory it is reached by.
    pub fn snapshot(&self, label: &str) -> PathBuf {
        std::fs::create_dir(self.snapshots().join(label)).expect("mkdir in snapshots/");
        let name = std::fs::read_link(self.snapshots().join(label)).expect("label symlink");
        self.snapshots().join(name)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .contains(&format!(" {} ", self.mnt().display()));
        if mounted {
            let out = run(Command::new(strata_bin()).arg("umount").arg(self.mnt()));
            if !out.status.success() {
                // Leave no mount behind a failed test.
                let _ = strata::sys::mountpoint::detach(&self.mnt());
            }
        }
        let _ = strata::sys::mountpoint::set_immutable(&self.mnt(), false);
    }
}

/// Differences between two trees as rsync sees them with checksums and
/// exact nanosecond times; empty when they are the same.
pub fn differences(a: &Path, b: &Path) -> String {
    ok(Command::new("rsync")
        .args([
            "-aHAXc",
            "--modify-window=-1",
            "--dry-run",
            "--itemize-changes",
            "--delete",
        ])
        .arg(format!("{}/", a.display()))
        .arg(format!("{}/", b.display())))
}

/// `rsync -aHAXS --stats SRC/ DST/`; returns the number of regular files
/// it transferred.
pub fn rsync_into(src: &Path, dst: &Path) -> u64 {
    let out = ok(Command::new("rsync")
        .args(["-aHAXS", "--delete", "--stats"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display())));
    out.lines()
        .find_map(|l| l.strip_prefix("Number of regular files transferred: "))
        .unwrap_or_else(|| panic!("no transfer count in rsync --stats: {out}"))
        .replace(',', "")
        .trim()
        .parse()
        .unwrap()
}
