//! `strata mount` with the default repository: created on a genuine first
//! run only, never silently replaced when its disk did not mount.

use std::path::PathBuf;
use std::process::Command;

use crate::common::tier::{self, Tier};
use crate::harness::{fails, ok, run, setup, strata_bin, Mount};

/// `strata --repo STATE/repo` with the default places (state, keys, logs)
/// redirected into the test's directory, and no passphrase: as a new
/// administrator runs it.
fn strata(m: &Mount) -> Command {
    let mut c = Command::new(strata_bin());
    c.arg("--repo")
        .arg(m.repo())
        .env_remove("STRATA_PASSWORD")
        .env_remove("STRATA_PASSWORD_FILE")
        .env_remove("STRATA_KEY_FILE")
        .env_remove("STRATA_REPO")
        .env("STRATA_STATE_DIR", m.dir.path())
        .env("STRATA_KEY_DIR", m.path("keys"))
        .env("STRATA_LOG_DIR", m.path("log"));
    c
}

fn files_in(dir: &PathBuf) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_missing_default_repository_is_never_replaced() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    setup();
    let m = Mount {
        dir: tempfile::Builder::new()
            .prefix("strata-first-run-")
            .tempdir_in("/var/tmp")
            .unwrap(),
    };
    std::fs::create_dir(m.mnt()).unwrap();

    // A genuine first run: nothing here yet, so the repository and its key
    // file are made, and the mount is ready.
    let out = run(strata(&m).arg("mount").arg(m.mnt()));
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("first run"),
        "{out:?}"
    );
    let keys = files_in(&m.path("keys"));
    assert_eq!(keys.len(), 1, "one generated key file: {keys:?}");
    std::fs::write(m.head().join("f"), "the night's backup").unwrap();
    ok(strata(&m).arg("umount").arg(m.mnt()));
    assert_eq!(files_in(&m.path("log")).len(), 1, "the daemon's log");

    // The backup disk did not mount: the repository is not there.
    std::fs::rename(m.repo(), m.path("disk")).unwrap();
    let out = run(strata(&m).arg("mount").arg(m.mnt()));
    fails(
        &out,
        10,
        &format!("no repository at {}", m.repo().display()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        keys[0].display().to_string(),
        "mounted".into(),
        format!("strata init --repo {}", m.repo().display()),
    ] {
        assert!(stderr.contains(&want), "{want:?} in: {stderr}");
    }
    assert!(!m.repo().exists(), "no new repository");
    assert_eq!(files_in(&m.path("keys")), keys, "no new key file");

    // Nor does the freshness check pass on it.
    fails(
        &run(strata(&m).args(["check", "--freshness"])),
        10,
        "no strata repository at",
    );

    // Each trace alone is enough: the daemon's log, then alert state (the
    // failed check above left some).
    for f in files_in(&m.dir.path().to_path_buf()) {
        if f.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("alerts-")
        {
            std::fs::remove_file(f).unwrap();
        }
    }
    let key = std::fs::read(&keys[0]).unwrap();
    std::fs::remove_file(&keys[0]).unwrap();
    let log = files_in(&m.path("log")).remove(0);
    fails(
        &run(strata(&m).arg("mount").arg(m.mnt())),
        10,
        &log.display().to_string(),
    );
    std::fs::remove_file(&log).unwrap();
    let alerts = m.path("alerts-0123.json");
    std::fs::write(&alerts, "{}").unwrap();
    fails(
        &run(strata(&m).arg("mount").arg(m.mnt())),
        10,
        &alerts.display().to_string(),
    );
    assert!(!m.repo().exists());

    // The disk is back: the same repository mounts, with its data.
    std::fs::rename(m.path("disk"), m.repo()).unwrap();
    std::fs::write(&keys[0], key).unwrap();
    ok(strata(&m).arg("mount").arg(m.mnt()));
    assert_eq!(
        std::fs::read_to_string(m.head().join("f")).unwrap(),
        "the night's backup"
    );
}
