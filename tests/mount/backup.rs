//! `strata backup` against a real mount: hooks bracket the copy, the
//! snapshot is validated before `latest` moves, and every failure ends the
//! run with its own exit code. Hooks here are small shell scripts that log
//! what they saw, so each assertion checks what really happened.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::tier::{self, Tier};
use crate::harness::{fails, ok, run, Mount};

/// A hook script in the test directory; `body` runs with `set -eu`.
fn script(m: &Mount, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = m.path(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -eu\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Writes strata.toml; each hook gets `DIR` (the test directory) in its environment.
fn config(m: &Mount, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = m.path("strata.toml");
    let dir = m.dir.path().display().to_string();
    let text = text.replace("@DIR@", &dir);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A `[[hook]]` stanza running script `name`.
fn hook(m: &Mount, name: &str, phase: &str, extra: &str, body: &str) -> String {
    let path = script(m, name, body);
    format!(
        "[[hook]]\nname = \"{name}\"\nphase = \"{phase}\"\ncommand = [\"{}\"]\nenv = {{ DIR = \"@DIR@\" }}\n{extra}\n",
        path.display()
    )
}

/// `strata backup --config CONFIG [ARGS] -- COPY…`.
fn backup(m: &Mount, args: &[&str], copy: &str) -> Output {
    run(m
        .strata()
        .arg("backup")
        .arg("--config")
        .arg(m.path("strata.toml"))
        .args(args)
        .args(["--", "sh", "-c", copy])
        .current_dir(m.dir.path()))
}

fn show(m: &Mount, which: &str) -> serde_json::Value {
    let out = ok(m.strata().args(["snapshot", "show", which, "--json"]));
    serde_json::from_str(&out).unwrap()
}

fn snapshot_count(m: &Mount) -> usize {
    let out = ok(m.strata().args(["snapshot", "list", "--json"]));
    serde_json::from_str::<Vec<serde_json::Value>>(&out)
        .unwrap()
        .len()
}

fn latest(m: &Mount) -> String {
    std::fs::read_link(m.snapshots().join("latest"))
        .unwrap()
        .display()
        .to_string()
}

fn read(m: &Mount, name: &str) -> String {
    std::fs::read_to_string(m.path(name)).unwrap_or_default()
}

fn source_tree(m: &Mount) -> PathBuf {
    let src = m.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data.txt"), "patient records\n").unwrap();
    src
}

#[test]
fn a_backup_run_brackets_the_copy_with_hooks_and_validates_before_latest_moves() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    source_tree(&m);
    let first = m.snapshot("first");
    let first = first.file_name().unwrap().to_string_lossy().into_owned();
    let text = [
        hook(
            &m,
            "prepare",
            "pre_backup",
            "",
            "echo prepare >> \"$DIR/order\"; env | sort > \"$DIR/pre.env\"; echo prepared=yes",
        ),
        hook(
            &m,
            "db",
            "pre_backup",
            "session = true\ntimeout = \"30s\"",
            "echo db-ready >> \"$DIR/order\"; echo lsn=0/A; echo ready\n\
             read cmd; [ \"$cmd\" = finish ] || exit 5\n\
             echo db-finish >> \"$DIR/order\"\n\
             echo 'START WAL LOCATION: 0/A' > \"$STRATA_HEAD/app/backup_label\"\n\
             echo stop_lsn=0/B",
        ),
        hook(&m, "post", "post_backup", "", "echo post >> \"$DIR/order\""),
        hook(
            &m,
            "check",
            "validate",
            "",
            "echo check >> \"$DIR/order\"\n\
             readlink \"$STRATA_MOUNTPOINT/snapshots/latest\" > \"$DIR/latest-during-validate\"\n\
             test -f \"$STRATA_SNAPSHOT/app/backup_label\"\n\
             grep -q 'patient records' \"$STRATA_SNAPSHOT/app/data.txt\"\n\
             echo checked >&2",
        ),
        hook(
            &m,
            "done",
            "post_snapshot",
            "",
            "echo done >> \"$DIR/order\"; readlink \"$STRATA_MOUNTPOINT/snapshots/latest\" > \"$DIR/latest-after\"",
        ),
    ]
    .concat();
    config(&m, &text);
    let out = run(m
        .strata()
        .args(["backup", "--json", "--label", "nightly", "--config"])
        .arg(m.path("strata.toml"))
        .args([
            "--",
            "sh",
            "-c",
            "echo copy >> order; echo \"copy sees $STRATA_TEST_CALLER\" > copy.env; rsync -a src/ \"$STRATA_HEAD/app/\"",
        ])
        .env("STRATA_TEST_CALLER", "the caller's environment")
        .current_dir(m.dir.path()));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["record"]["status"], "validated");
    assert!(report["failure"].is_null());
    // The write throttle's view of the run: what the copy wrote into head/
    // (nothing held it back; no limit is configured).
    let io = &report["record"]["io"];
    assert!(io["written_bytes"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(io["delay_ms"], 0, "{report}");
    assert!(io["limit_bytes_per_sec"].is_null(), "{report}");

    // Every phase ran once, in order, and the session finished before the
    // snapshot (its backup_label is in it).
    assert_eq!(
        read(&m, "order"),
        "prepare\ndb-ready\ncopy\ndb-finish\npost\ncheck\ndone\n"
    );
    // Hooks get a cleared environment; the copy keeps the caller's.
    let env = read(&m, "pre.env");
    assert!(!env.contains("STRATA_TEST_CALLER"), "{env}");
    assert!(env.contains("STRATA_PHASE=pre_backup"), "{env}");
    assert!(env.contains("STRATA_LABEL=nightly"), "{env}");
    assert!(
        env.contains(&format!("STRATA_HEAD={}", m.head().display())),
        "{env}"
    );
    assert_eq!(read(&m, "copy.env"), "copy sees the caller's environment\n");

    // While validating, latest still named the previous snapshot; after,
    // the new one.
    let info = show(&m, "latest");
    let name = info["name"].as_str().unwrap().to_owned();
    assert_ne!(name, first);
    assert_eq!(read(&m, "latest-during-validate").trim(), first);
    assert_eq!(read(&m, "latest-after").trim(), name);
    assert_eq!(latest(&m), name);
    assert_eq!(
        std::fs::read_link(m.snapshots().join("nightly")).unwrap(),
        Path::new(&name)
    );
    assert_eq!(
        std::fs::read_to_string(m.snapshots().join(&name).join("app/backup_label")).unwrap(),
        "START WAL LOCATION: 0/A\n"
    );

    // The record keeps every hook's outcome and consistency point.
    assert_eq!(info["status"], "validated");
    let run = &info["run"];
    let hooks: Vec<&str> = run["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(hooks, ["prepare", "db", "post", "check", "done"]);
    assert_eq!(run["hooks"][1]["points"]["lsn"], "0/A");
    assert_eq!(run["hooks"][1]["points"]["stop_lsn"], "0/B");
    assert_eq!(run["hooks"][1]["session"], true);
    assert_eq!(run["hooks"][3]["stderr"], "checked\n");
    assert_eq!(run["copy"]["exit"], 0);
    // Hook output and consistency points stay out of the daemon's log.
    let log = m.log();
    assert!(log.contains("snapshot_run"), "{log}");
    for private in ["prepared", "0/B", "checked", "START WAL"] {
        assert!(!log.contains(private), "{private} in the log:\n{log}");
    }
    let human = ok(m.strata().args(["snapshot", "show", "latest"]));
    assert!(human.contains("status     validated"), "{human}");
    assert!(human.contains("point db.stop_lsn = 0/B"), "{human}");
    assert!(human.contains("stderr: checked"), "{human}");
    // It survives a remount.
    m.umount();
    m.mount();
    assert_eq!(
        show(&m, "latest")["run"]["hooks"][1]["points"]["lsn"],
        "0/A"
    );
}

#[test]
fn failures_stop_the_run_with_their_own_exit_codes() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    source_tree(&m);
    let good = m.snapshot("nightly");
    let good = good.file_name().unwrap().to_string_lossy().into_owned();
    let copy = "echo copied >> copies; rsync -a src/ \"$STRATA_HEAD/app/\"";
    let alarm = hook(
        &m,
        "alarm",
        "on_failure",
        "",
        "echo \"$STRATA_FAILURE\" >> \"$DIR/failures\"",
    );

    // A failing pre-backup hook: no copy, no snapshot, on_failure told why.
    config(
        &m,
        &[
            hook(
                &m,
                "quiesce",
                "pre_backup",
                "",
                "echo cannot quiesce >&2; exit 1",
            ),
            alarm.clone(),
        ]
        .concat(),
    );
    let out = backup(&m, &["--label", "nightly"], copy);
    fails(
        &out,
        20,
        "pre_backup hook quiesce: it failed (exit status 1)",
    );
    assert_eq!(read(&m, "copies"), "");
    assert_eq!(snapshot_count(&m), 1);
    assert!(
        read(&m, "failures").contains("quiesce"),
        "{}",
        read(&m, "failures")
    );

    // A hanging hook is killed at its timeout.
    config(
        &m,
        &hook(
            &m,
            "stuck",
            "pre_backup",
            "timeout = \"1s\"",
            "echo $$ > \"$DIR/stuck.pid\"; exec sleep 600",
        ),
    );
    let out = backup(&m, &[], copy);
    fails(&out, 20, "ran past its timeout");
    let pid = read(&m, "stuck.pid");
    assert!(!pid.trim().is_empty(), "the hook never started");
    assert!(
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the hanging hook {} is still there",
        pid.trim()
    );
    assert_eq!(snapshot_count(&m), 1);

    // A failed copy: the session is abandoned and sees end of input.
    config(
        &m,
        &hook(
            &m,
            "session",
            "pre_backup",
            "session = true",
            "echo ready; if read cmd; then echo \"$cmd\" > \"$DIR/session\"; else echo eof > \"$DIR/session\"; exit 3; fi",
        ),
    );
    let out = backup(&m, &[], "exit 7");
    fails(&out, 21, "exit status 7");
    assert_eq!(read(&m, "session"), "eof\n");
    assert_eq!(snapshot_count(&m), 1);

    // Failed validation: the snapshot is kept, marked failed, and neither
    // latest nor the label move to it.
    config(
        &m,
        &[
            hook(
                &m,
                "verify",
                "validate",
                "",
                "echo checksum mismatch >&2; exit 1",
            ),
            alarm.clone(),
        ]
        .concat(),
    );
    let out = backup(&m, &["--label", "nightly"], copy);
    fails(&out, 22, "validate hook verify");
    fails(&out, 22, "was taken, status failed");
    assert_eq!(snapshot_count(&m), 2);
    assert_eq!(latest(&m), good);
    assert_eq!(
        std::fs::read_link(m.snapshots().join("nightly")).unwrap(),
        Path::new(&good)
    );
    let list = ok(m.strata().args(["snapshot", "list"]));
    assert!(list.contains("failed"), "{list}");
    let failed = show(&m, "2");
    assert_eq!(failed["status"], "failed");
    let hooks = failed["run"]["hooks"].as_array().unwrap();
    assert_eq!(
        hooks.last().unwrap()["name"],
        "alarm",
        "on_failure is recorded too"
    );
    assert!(read(&m, "failures").contains("verify"));

    // A hook under mark-inconsistent: kept, marked, exit 23.
    config(
        &m,
        &hook(
            &m,
            "flush",
            "post_backup",
            "on_failure = \"mark-inconsistent\"",
            "exit 1",
        ),
    );
    let out = backup(&m, &[], copy);
    fails(&out, 23, "marked inconsistent");
    assert_eq!(show(&m, "3")["status"], "inconsistent");
    assert_eq!(latest(&m), good);

    // Policy latest = "always": latest moves even to a failed snapshot.
    config(
        &m,
        &format!(
            "[backup]\nlatest = \"always\"\n{}",
            hook(&m, "verify2", "validate", "", "exit 1")
        ),
    );
    let out = backup(&m, &[], copy);
    fails(&out, 22, "verify2");
    assert_eq!(latest(&m), show(&m, "4")["name"].as_str().unwrap());
}

#[test]
fn idempotent_hooks_are_retried_and_a_hook_can_redirect_the_source() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let frozen = m.path("frozen");
    std::fs::create_dir(&frozen).unwrap();
    std::fs::write(frozen.join("frozen.txt"), "as of the freeze\n").unwrap();
    config(
        &m,
        &[
            hook(
                &m,
                "flaky",
                "pre_backup",
                "idempotent = true\nretries = 3\nretry_delay = \"10ms\"",
                "echo try >> \"$DIR/tries\"; [ $(wc -l < \"$DIR/tries\") -ge 2 ]",
            ),
            hook(
                &m,
                "freeze",
                "pre_backup",
                "",
                "echo \"source=$DIR/frozen\"",
            ),
        ]
        .concat(),
    );
    let out = backup(&m, &[], "rsync -a \"$STRATA_SOURCE/\" \"$STRATA_HEAD/fs/\" && rsync -a {source}/ \"$STRATA_HEAD/fs2/\"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&m, "tries"), "try\ntry\n");
    let info = show(&m, "latest");
    assert_eq!(info["run"]["hooks"][0]["attempts"], 2);
    assert_eq!(info["status"], "complete");
    let snap = m.snapshots().join(info["name"].as_str().unwrap());
    for dir in ["fs", "fs2"] {
        assert_eq!(
            std::fs::read_to_string(snap.join(dir).join("frozen.txt")).unwrap(),
            "as of the freeze\n"
        );
    }

    // A session hook redirects the source by printing it before "ready".
    config(
        &m,
        &hook(
            &m,
            "hold",
            "pre_backup",
            "session = true",
            "echo \"source=$DIR/frozen\"; echo ready; read cmd",
        ),
    );
    ok(m.strata()
        .arg("backup")
        .arg("--config")
        .arg(m.path("strata.toml"))
        .args([
            "--",
            "rsync",
            "-a",
            "{source}/",
            &format!("{}/fs3/", m.head().display()),
        ]));
    let snap = m.snapshots().join("latest");
    assert_eq!(
        std::fs::read_to_string(snap.join("fs3/frozen.txt")).unwrap(),
        "as of the freeze\n"
    );

    // A hook that should have redirected it but did not: nothing is copied
    // from a path named "{source}".
    let before = snapshot_count(&m);
    config(&m, &hook(&m, "silent", "pre_backup", "", "true"));
    let out = backup(
        &m,
        &[],
        "echo ran > ran; rsync -a {source}/ \"$STRATA_HEAD/fs4/\"",
    );
    fails(&out, 21, "no pre_backup hook printed source=PATH");
    assert!(!m.path("ran").exists(), "the copy did not start");
    assert_eq!(snapshot_count(&m), before);
}

#[test]
fn a_bad_configuration_or_no_mount_is_refused_before_anything_runs() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let m = Mount::new();
    let marker = "touch ran";
    let path = config(
        &m,
        &hook(&m, "h", "pre_backup", "", "touch \"$DIR/hook-ran\""),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = backup(&m, &[], marker);
    fails(&out, 15, "refusing the host configuration");
    config(&m, &hook(&m, "h", "pre_backup", "retries = 2", "true"));
    let out = backup(&m, &[], marker);
    fails(&out, 15, "needs idempotent = true");
    config(
        &m,
        "[[hook]]\nname = \"h\"\nphase = \"before\"\ncommand = [\"true\"]\n",
    );
    let out = backup(&m, &[], marker);
    fails(&out, 15, "before");
    let out = run(m
        .strata()
        .args(["backup", "--config"])
        .arg(m.path("missing.toml"))
        .args(["--", "true"]));
    fails(&out, 15, "missing.toml");
    let out = backup(&m, &["--label", "0bad"], marker);
    fails(&out, 2, "label");
    assert!(!m.path("hook-ran").exists());
    assert!(!m.path("ran").exists());
    assert_eq!(snapshot_count(&m), 0);

    m.umount();
    // The mount refuses a bad configuration in full, TOML's lines and all.
    config(&m, "[backup]\nok_exits = [0]\n");
    let out = run(m
        .strata()
        .arg("mount")
        .arg(m.mnt())
        .arg("--config")
        .arg(m.path("strata.toml")));
    fails(&out, 15, "unknown field `ok_exits`, expected one of");
    config(&m, "");
    let out = backup(&m, &[], marker);
    fails(&out, 14, "is not mounted");
    assert!(!m.path("ran").exists());
    let out = run(m.strata().args(["backup"]));
    assert_eq!(out.status.code(), Some(2), "the copy command is required");
}

#[test]
fn failed_runs_and_hooks_raise_alerts_that_name_no_path() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    source_tree(&m);
    let pager = script(&m, "pager", "cat >> \"$0.events\"; echo >> \"$0.events\"");
    let channel = format!(
        "[alerts]\n[[alerts.channel]]\ntype = \"command\"\ncommand = [\"{}\"]\n",
        pager.display()
    );
    let events = || -> Vec<serde_json::Value> {
        read(&m, "pager.events")
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let copy = "rsync -a src/ \"$STRATA_HEAD/app/\"";
    let secret_path = "/srv/patients/jane-doe.pdf";
    let failing = hook(
        &m,
        "quiesce",
        "pre_backup",
        "",
        &format!("echo 'cannot open {secret_path}' >&2; exit 2"),
    );
    // The alert goes out at once, before the on-failure hooks run.
    let cleanup = hook(
        &m,
        "cleanup",
        "on_failure",
        "",
        "if [ -s \"$DIR/pager.events\" ]; then echo alert-first; else echo hook-first; fi > \"$DIR/which\"",
    );
    config(&m, &format!("{channel}{failing}{cleanup}"));
    fails(&backup(&m, &[], copy), 20, "quiesce");
    assert_eq!(read(&m, "which"), "alert-first\n");
    let got = events();
    assert_eq!(got.len(), 1, "{got:?}");
    let e = &got[0];
    assert_eq!(e["kind"], "run_failed");
    assert_eq!(e["class"], "hook");
    assert_eq!(e["fields"]["hook"], "quiesce");
    assert_eq!(e["fields"]["exit_status"], 2);
    assert!(e["repository"].is_string());
    assert!(!got[0].to_string().contains("patients"), "{}", got[0]);

    // The same failure again within the window is counted, not re-sent;
    // --json reports the run as failed, with no snapshot.
    let out = backup(&m, &["--json"], copy);
    fails(&out, 20, "quiesce");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["record"]["status"], "failed", "{report}");
    assert!(report["snapshot"].is_null(), "{report}");
    assert_eq!(events().len(), 1);

    // A hook that fails under mark-inconsistent raises hook_failed at once,
    // while the run goes on: the copy already sees the alert.
    config(
        &m,
        &format!(
            "{channel}{}",
            hook(
                &m,
                "flush",
                "pre_backup",
                "on_failure = \"mark-inconsistent\"",
                "exit 1"
            )
        ),
    );
    let seen = format!("grep -c hook_failed pager.events > seen-by-copy; {copy}");
    fails(&backup(&m, &[], &seen), 23, "inconsistent");
    assert_eq!(read(&m, "seen-by-copy"), "1\n", "alerted before the copy");
    let got = events();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[1]["kind"], "hook_failed");
    assert_eq!(got[1]["class"], "hook");
    assert_eq!(got[1]["fields"]["hook"], "flush");
    assert_eq!(got[1]["fields"]["exit_status"], 1);
    // That run did not fail (it made a snapshot): the run failure is
    // cleared, and the channel told so under the id of the alert it got.
    assert_eq!(got[2]["kind"], "run_failed");
    assert_eq!(got[2]["state"], "resolved");
    assert_eq!(got[2]["id"], got[0]["id"]);

    // A run that succeeds has nothing more to clear; the next failure is
    // news again.
    config(&m, &channel);
    ok(m.strata()
        .arg("backup")
        .arg("--config")
        .arg(m.path("strata.toml"))
        .args(["--", "sh", "-c", copy])
        .current_dir(m.dir.path()));
    assert_eq!(events().len(), 3);
    config(&m, &format!("{channel}{failing}"));
    fails(&backup(&m, &[], copy), 20, "quiesce");
    let got = events();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[3]["kind"], "run_failed");
    assert_eq!(got[3]["state"], "firing");
}

#[test]
fn a_stop_signal_stops_the_copy_with_its_group_and_runs_on_failure() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let cleanup = hook(
        &m,
        "cleanup",
        "on_failure",
        "",
        "echo \"$STRATA_FAILURE\" > \"$DIR/cleaned\"",
    );
    config(&m, &cleanup);
    // The copy runs in its own process group, so a signal to strata alone
    // (as `timeout` or `kill` sends) would leave it running on.
    let strata = m
        .strata()
        .arg("backup")
        .arg("--config")
        .arg(m.path("strata.toml"))
        .args(["--", "sh", "-c", "echo $$ > copy.pid; exec sleep 600"])
        .current_dir(m.dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let copy_pid: i32 = loop {
        if let Ok(pid) = read(&m, "copy.pid").trim().parse() {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the copy never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // SAFETY: kill(2) with plain integers.
    unsafe { libc::kill(strata.id() as i32, libc::SIGTERM) };
    let out = strata.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    assert!(stderr.contains("was told to stop (SIGTERM)"), "{stderr}");
    // SAFETY: as above; signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(copy_pid, 0) } == 0;
    assert!(!alive, "the copy (pid {copy_pid}) outlived the run");
    assert!(
        read(&m, "cleaned").contains("SIGTERM"),
        "on_failure did not run"
    );
    assert_eq!(snapshot_count(&m), 0);
}
