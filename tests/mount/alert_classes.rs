//! Alert classes and what a run resolves, through `strata backup` on a real
//! mount with a command channel that logs every event: a failed copy is
//! its own class, and a run clears only the failures it proved fixed.

use std::path::PathBuf;
use std::process::Output;

use crate::common::tier::{self, Tier};
use crate::harness::{ok, run, Mount};

/// An executable script in the test directory.
fn script(m: &Mount, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = m.path(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -eu\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// strata.toml: a command channel appending each event to `events`, and `hooks`.
fn config(m: &Mount, hooks: &str) {
    use std::os::unix::fs::PermissionsExt;
    let pager = script(m, "pager", "cat >> \"$0.events\"; echo >> \"$0.events\"");
    let path = m.path("strata.toml");
    std::fs::write(
        &path,
        format!(
            "[alerts]\n[[alerts.channel]]\ntype = \"command\"\ncommand = [\"{}\"]\n{hooks}",
            pager.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A `[[hook]]` stanza running a script with `body`.
fn hook(m: &Mount, name: &str, phase: &str, extra: &str, body: &str) -> String {
    let path = script(m, name, body);
    format!(
        "[[hook]]\nname = \"{name}\"\nphase = \"{phase}\"\ncommand = [\"{}\"]\n{extra}\n",
        path.display()
    )
}

fn backup(m: &Mount, copy: &str) -> Output {
    run(m
        .strata()
        .arg("backup")
        .arg("--config")
        .arg(m.path("strata.toml"))
        .args(["--", "sh", "-c", copy])
        .current_dir(m.dir.path()))
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn events(m: &Mount) -> Vec<serde_json::Value> {
    std::fs::read_to_string(m.path("pager.events"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_failed_copy_is_class_copy_and_only_a_validated_run_clears_corruption() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::create_dir(m.path("src")).unwrap();
    std::fs::write(m.path("src/data.txt"), "records\n").unwrap();
    let copy = "rsync -a src/ \"$STRATA_HEAD/app/\"";
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // A copy that fails raises run_failed of class copy, not hook.
    config(&m, "");
    let out = backup(&m, "exit 3");
    assert_eq!(code(&out), Some(21), "{}", stderr(&out));
    let got = events(&m);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["kind"], "run_failed");
    assert_eq!(got[0]["class"], "copy", "{}", got[0]);
    assert_eq!(got[0]["fields"]["exit_status"], 3);
    assert_eq!(got[0]["state"], "firing");

    // The copy works again but validation fails: a critical corruption
    // alert, and the copy failure is cleared, since the copy ran.
    let check = hook(&m, "verify", "validate", "", "exit 1");
    config(&m, &check);
    let out = backup(&m, copy);
    assert_eq!(code(&out), Some(22), "{}", stderr(&out));
    let got = events(&m);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[1]["kind"], "run_failed");
    assert_eq!(got[1]["class"], "corruption");
    assert_eq!(got[1]["severity"], "critical");
    assert_eq!(got[1]["state"], "firing");
    assert_eq!(got[2]["state"], "resolved");
    assert_eq!(got[2]["class"], "copy");
    assert_eq!(got[2]["id"], got[0]["id"]);
    let corruption = got[1]["id"].clone();

    // A run that ends inconsistent (exit 23) proves nothing about the
    // data, even though its validation hook passed: the alert stays open.
    let flaky = hook(
        &m,
        "flush",
        "pre_backup",
        "on_failure = \"mark-inconsistent\"",
        "exit 1",
    );
    let verify = hook(&m, "verify", "validate", "", "true");
    config(&m, &format!("{flaky}{verify}"));
    let out = backup(&m, copy);
    assert_eq!(code(&out), Some(23), "{}", stderr(&out));
    let got = events(&m);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[3]["kind"], "hook_failed");
    assert!(
        !got.iter()
            .any(|e| e["id"] == corruption && e["state"] == "resolved"),
        "an inconsistent run resolved the corruption alert: {got:?}"
    );
    let state = std::fs::read_to_string(
        std::fs::read_dir(m.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("alerts-") && n.ends_with(".json")
            })
            .expect("an alert state file"),
    )
    .unwrap();
    assert!(state.contains("\"corruption\""), "{state}");

    // A run whose validation passes clears it, under the id the channel got.
    config(&m, &verify);
    ok(m.strata()
        .arg("backup")
        .arg("--config")
        .arg(m.path("strata.toml"))
        .args(["--", "sh", "-c", copy])
        .current_dir(m.dir.path()));
    let got = events(&m);
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[4]["kind"], "run_failed");
    assert_eq!(got[4]["class"], "corruption");
    assert_eq!(got[4]["state"], "resolved");
    assert_eq!(got[4]["id"], corruption);
}
