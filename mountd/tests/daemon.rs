//! strata-mountd started directly, as systemd does. (The mount itself is
//! tested through `strata mount` in the strata package's tests/mount.)

use std::process::Command;

fn mountd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata-mountd"));
    c.env_remove("STRATA_REPO").env_remove("NOTIFY_SOCKET");
    c
}

#[test]
fn help_names_the_key_sources_and_the_exit_codes() {
    let out = mountd().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "--key-file",
        "--password-file",
        "--key-fd",
        "--reader-group",
        "14  the mountpoint",
    ] {
        assert!(help.contains(want), "{want} missing from --help:\n{help}");
    }
    assert!(
        !help.contains("--ready-fd"),
        "an internal flag shows in --help"
    );
}

#[test]
fn a_missing_repository_is_named_with_its_exit_code() {
    let dir = std::env::temp_dir().join(format!("strata-mountd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = mountd()
        .arg("--repo")
        .arg(dir.join("no-such-repo"))
        .arg(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(10), "{stderr}");
    assert!(stderr.contains("no-such-repo"), "{stderr}");
}

#[test]
fn a_missing_mountpoint_is_refused_before_anything_is_opened() {
    let out = mountd()
        .arg("--repo")
        .arg("/nonexistent-strata-repo")
        .arg("/nonexistent-strata-mountpoint")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(14), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
}
