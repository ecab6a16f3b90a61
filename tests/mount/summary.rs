//! `strata backup` ends by saying what the run did, and warns when a copy
//! that succeeded wrote nothing into head/ (a mistyped destination).

use std::process::Output;

use crate::common::tier::{self, Tier};
use crate::harness::{ok, run, Mount};

/// `strata backup ARGS -- sh -c COPY`, with no host configuration file.
fn backup(m: &Mount, args: &[&str], copy: &str) -> Output {
    let config = m.path("strata.toml");
    if !config.exists() {
        std::fs::write(&config, "").unwrap();
    }
    run(m
        .strata()
        .arg("backup")
        .arg("--config")
        .arg(&config)
        .args(args)
        .args(["--", "sh", "-c", copy])
        .current_dir(m.dir.path()))
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_backup_run_reports_what_it_wrote_stored_and_took() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let src = m.path("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..3 {
        // Incompressible, so the packs grow by about as much.
        std::fs::write(src.join(format!("f{i}")), crate::common::bytes(i, 200_000)).unwrap();
    }
    let copy = format!(
        "cp -r {} {}",
        src.display(),
        m.head().join("data").display()
    );
    let out = backup(&m, &["--json"], &copy);
    let report = json(&out);
    let s = &report["summary"];
    assert_eq!(s["files_created"], 3, "{report}");
    assert!(s["write_requests"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(s["bytes_written"], 600_000, "{report}");
    let stored = s["bytes_stored"].as_u64().unwrap();
    assert!(stored > 500_000, "{report}");
    assert!(s["duration"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(s["nothing_written"], false, "{report}");
    let name = s["snapshot"].as_str().unwrap();
    assert!(m.snapshots().join(name).join("data/f2").exists());
    assert_eq!(s["status"], "complete");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // In text: one line naming the snapshot, the files and the bytes.
    let out = backup(
        &m,
        &[],
        &format!("echo changed > {}", m.head().join("data/f0").display()),
    );
    let text = ok_text(&out);
    assert!(text.starts_with("backup run "), "{text}");
    assert!(text.contains("snapshot 20"), "{text}");
    assert!(
        text.contains("0 files created and 8 B written into head/ (1 writes)"),
        "{text}"
    );
    assert!(text.contains("newly stored, in "), "{text}");
}

fn ok_text(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_copy_that_wrote_nothing_into_head_is_warned_about() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let elsewhere = m.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    // A mistyped destination: the copy succeeds, into the wrong directory.
    let out = backup(
        &m,
        &["--json"],
        &format!("echo data > {}/f", elsewhere.display()),
    );
    let report = json(&out);
    assert_eq!(report["summary"]["nothing_written"], true, "{report}");
    assert_eq!(report["summary"]["files_created"], 0, "{report}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: nothing was written into")
            && stderr.contains(&format!("{}/", m.head().display()))
            && stderr.contains("check the copy's destination"),
        "{stderr}"
    );
    // The snapshot is still taken: the warning does not fail the run.
    let list = ok(m.strata().args(["snapshot", "list", "--json"]));
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&list)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_failed_hook_shows_the_end_of_its_stderr_even_when_quiet() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let m = Mount::new();
    let hook = m.path("quiesce.sh");
    let mut body = String::from("#!/bin/sh\n");
    for i in 1..=15 {
        body.push_str(&format!("echo 'line {i} of the hook' >&2\n"));
    }
    body.push_str("echo 'FATAL: database is locked' >&2\nexit 3\n");
    std::fs::write(&hook, body).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        m.path("strata.toml"),
        format!(
            "[[hook]]\nname = \"quiesce\"\nphase = \"pre_backup\"\ncommand = [\"{}\"]\n",
            hook.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        m.path("strata.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let out = backup(&m, &["--quiet"], "true");
    assert_eq!(
        out.status.code(),
        Some(20),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hook quiesce failed; the end of its standard error:"),
        "{stderr}"
    );
    assert!(stderr.contains("  | FATAL: database is locked"), "{stderr}");
    assert!(stderr.contains("  | line 15 of the hook"), "{stderr}");
    // Only the end: the first lines are left to the run record.
    assert!(!stderr.contains("line 6 of the hook"), "{stderr}");
}

#[test]
fn a_failed_run_that_took_no_snapshot_is_kept_listed_and_shown() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let m = Mount::new();
    let hook = m.path("quiesce.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\n[ -e \"$0.ok\" ] && exit 0\necho 'FATAL: database is locked' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = m.path("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[[hook]]\nname = \"quiesce\"\nphase = \"pre_backup\"\ncommand = [\"{}\"]\n",
            hook.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let copy = format!("echo data > {}/f", m.head().display());
    let out = backup(&m, &["--json"], &copy);
    assert_eq!(out.status.code(), Some(20));
    let failed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed_run = failed["record"]["run"].as_str().unwrap().to_owned();
    std::fs::write(m.path("quiesce.sh.ok"), "").unwrap();
    // Runs are ordered by their start, in whole seconds.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let good = json(&backup(&m, &["--json"], &copy));
    let good_run = good["record"]["run"].as_str().unwrap();

    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ok(m.strata().args(["runs", "list", "--json"]))).unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["run"], failed_run.as_str());
    assert_eq!(list[0]["status"], "failed");
    assert!(list[0]["snapshot"].is_null());
    assert!(
        list[0]["failure"].as_str().unwrap().contains("quiesce"),
        "{list:?}"
    );
    assert_eq!(list[1]["run"], good_run);
    assert_eq!(list[1]["snapshot"], good["snapshot"]["name"]);
    let text = ok(m.strata().args(["runs", "list"]));
    assert!(
        text.contains(&format!("{failed_run}  ")) && text.contains("no snapshot"),
        "{text}"
    );

    let shown = ok(m.strata().args(["runs", "show", &failed_run]));
    assert!(shown.contains("snapshot: none taken"), "{shown}");
    assert!(shown.contains("pre_backup quiesce:"), "{shown}");
    assert!(shown.contains("  | FATAL: database is locked"), "{shown}");

    // Kept on this host, root's only: hook output may be sensitive.
    let kept: Vec<_> = std::fs::read_dir(m.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("runs-"))
        .collect();
    assert_eq!(kept.len(), 1);
    let mode = kept[0].metadata().unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
    // Still there once unmounted.
    m.umount();
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ok(m.strata().args(["runs", "list", "--json"]))).unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let out = run(m.strata().args(["runs", "show", "no-such-run"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("strata runs list"));
}
