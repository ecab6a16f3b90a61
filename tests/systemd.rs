//! The shipped systemd units (scripts/systemd/) pass `systemd-analyze
//! verify` with the programs they start, and keep the properties the
//! daemon depends on.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/tier.rs"]
mod tier;
use tier::Tier;

fn units() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/systemd")
}

#[test]
fn the_units_verify_with_the_built_programs() {
    if tier::missing(&[Tier::Systemd]) {
        return;
    }
    let strata = PathBuf::from(env!("CARGO_BIN_EXE_strata"));
    let mountd = strata.with_file_name("strata-mountd");
    assert!(
        mountd.exists(),
        "{} is missing: `cargo test --workspace` builds it",
        mountd.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for e in std::fs::read_dir(units()).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/usr/bin/strata-mountd", &mountd.display().to_string())
            .replace("/usr/bin/strata ", &format!("{} ", strata.display()));
        std::fs::write(dir.path().join(&name), text).unwrap();
        // Templates are verified through an instance.
        names.push(name.replace("@.", "@nightly."));
    }
    names.sort();
    assert_eq!(
        names,
        [
            "strata-backup@nightly.service",
            "strata-backup@nightly.timer",
            "strata-drill.service",
            "strata-drill.timer",
            "strata-freshness.service",
            "strata-freshness.timer",
            "strata-mountd.service",
            "strata-replicate.service",
            "strata-replicate.timer",
            "strata-verify.service",
            "strata-verify.timer"
        ]
    );
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&names)
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze (package systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The backup unit's condition names a job script that exists only on
    // a configured host; anything else is a real complaint.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("/etc/strata/backup.d/"))
        .collect();
    assert!(complaints.is_empty(), "{stderr}");
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn the_daemon_unit_tells_systemd_when_ready_and_shares_its_mount() {
    let text = std::fs::read_to_string(units().join("strata-mountd.service")).unwrap();
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    assert!(text.contains("Type=notify"));
    assert!(text.contains("DeviceAllow=/dev/fuse rw"));
    // Each of these gives the service a private mount namespace, which
    // would hide the FUSE mount from everyone else.
    for private in [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateMounts",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "ReadWritePaths",
        "ReadOnlyPaths",
        "InaccessiblePaths",
        "TemporaryFileSystem",
        "BindPaths",
    ] {
        assert!(!keys.contains(&private), "{private} would hide the mount");
    }
    assert!(keys.contains(&"NoNewPrivileges"));
    assert!(keys.contains(&"CapabilityBoundingSet"));
}
