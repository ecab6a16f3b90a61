//! Programs strata runs as root (hooks, alert commands, the copy when it
//! is a script) must be changeable by root alone, as strata.toml is.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::tier::{self, Tier};
use crate::harness::{fails, ok, run, Mount};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A script that leaves `ran-NAME` in the test directory when it runs.
fn script(m: &Mount, dir: &str, name: &str, mode: u32) -> PathBuf {
    let dir = m.path(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let marker = m.path(&format!("ran-{name}"));
    std::fs::write(&path, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    chmod(&path, mode);
    path
}

fn config(m: &Mount, text: &str) {
    std::fs::write(m.path("strata.toml"), text).unwrap();
    chmod(&m.path("strata.toml"), 0o600);
}

fn pre_backup(command: &str, env: &str) -> String {
    format!("[[hook]]\nname = \"pre\"\nphase = \"pre_backup\"\ncommand = [\"{command}\"]\n{env}\n")
}

fn backup(m: &Mount, copy: &[&str]) -> Output {
    run(m
        .strata()
        .arg("backup")
        .arg("--config")
        .arg(m.path("strata.toml"))
        .arg("--")
        .args(copy))
}

fn ran(m: &Mount, name: &str) -> bool {
    m.path(&format!("ran-{name}")).exists()
}

#[test]
fn a_program_others_could_change_is_refused_before_anything_runs() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let copy = ["true"];

    // A world-writable hook.
    let hook = script(&m, "hooks", "pre", 0o777);
    config(&m, &pre_backup(&hook.display().to_string(), ""));
    let out = backup(&m, &copy);
    fails(
        &out,
        15,
        &format!(
            "refusing to run hook \"pre\" ({0}) as root: the file {0} has mode 777, which lets group or others write it",
            hook.display()
        ),
    );
    fails(&out, 15, &format!("chmod go-w {}", hook.display()));
    assert!(!ran(&m, "pre"), "the hook ran");

    // A safe hook in a world-writable directory.
    chmod(&hook, 0o755);
    chmod(&m.path("hooks"), 0o777);
    let out = backup(&m, &copy);
    fails(
        &out,
        15,
        &format!("the directory {} has mode 777", m.path("hooks").display()),
    );
    assert!(!ran(&m, "pre"));
    // The mount refuses the configuration too, before it starts.
    m.umount();
    let out = run(m
        .strata()
        .arg("mount")
        .arg(m.mnt())
        .arg("--config")
        .arg(m.path("strata.toml")));
    fails(&out, 15, "refusing to run hook \"pre\"");
    m.mount();

    // Further up: a world-writable directory two levels above (not sticky).
    chmod(&m.path("hooks"), 0o755);
    let deep = script(&m, "open/sub", "deep", 0o755);
    chmod(&m.path("open"), 0o777);
    config(&m, &pre_backup(&deep.display().to_string(), ""));
    fails(
        &backup(&m, &copy),
        15,
        &format!("the directory {} has mode 777", m.path("open").display()),
    );
    // A sticky one owned by root (as /tmp) is accepted above the program's
    // own directory: nobody else can rename or remove root's entry in it.
    chmod(&m.path("open"), 0o1777);
    ok(m.strata()
        .arg("backup")
        .arg("--config")
        .arg(m.path("strata.toml"))
        .args(["--", "true"]));
    assert!(ran(&m, "deep"));
    // But not as the program's own directory: anyone may create the file
    // there whenever it is absent.
    chmod(&m.path("open/sub"), 0o1777);
    fails(
        &backup(&m, &copy),
        15,
        &format!(
            "the directory {} has mode 1777",
            m.path("open/sub").display()
        ),
    );

    // A bare name is checked where PATH finds it, as it will be run.
    let bin = script(&m, "bin", "quiesce", 0o775);
    config(
        &m,
        &pre_backup(
            "quiesce",
            &format!("env = {{ PATH = \"{}\" }}", m.path("bin").display()),
        ),
    );
    fails(
        &backup(&m, &copy),
        15,
        &format!("the file {} has mode 775", bin.display()),
    );
    assert!(!ran(&m, "quiesce"));

    // An alert command.
    let pager = script(&m, "bin", "pager", 0o757);
    config(
        &m,
        &format!(
            "[alerts]\n[[alerts.channel]]\ntype = \"command\"\ncommand = [\"{}\"]\n",
            pager.display()
        ),
    );
    fails(
        &backup(&m, &copy),
        15,
        "refusing to run alert channel 1 (command)",
    );

    // The copy command, when it names a script.
    config(&m, "");
    let copier = script(&m, "bin", "copier", 0o777);
    let out = backup(&m, &[&copier.display().to_string()]);
    fails(&out, 15, "refusing to run the copy command");
    assert!(!ran(&m, "copier"));
    chmod(&copier, 0o755);
    chmod(&m.path("bin"), 0o755);
    ok(m.strata()
        .arg("backup")
        .arg("--config")
        .arg(m.path("strata.toml"))
        .arg("--")
        .arg(&copier));
    assert!(ran(&m, "copier"));
}
