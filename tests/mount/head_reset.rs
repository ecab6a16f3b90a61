//! Interrupted runs leave no silent leftovers: a run that fails after its
//! copy wrote into head/ marks the head, `strata status` and the next run
//! say so, that run's snapshot record names it, and `strata head reset`
//! rolls head/ back to a snapshot's tree exactly.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::tier::{self, Tier};
use crate::harness::{differences, fails, ok, run, Mount};

/// `strata backup --config (empty) ARGS -- COPY...`.
fn backup(m: &Mount, args: &[&str], copy: &[&str]) -> Command {
    let config = m.path("strata.toml");
    if !config.exists() {
        std::fs::write(&config, "").unwrap();
    }
    let mut c = m.strata();
    c.arg("backup")
        .arg("--config")
        .arg(&config)
        .args(args)
        .arg("--")
        .args(copy)
        .current_dir(m.dir.path());
    c
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn status(m: &Mount) -> serde_json::Value {
    json(&ok(m.strata().args(["status", "--json"])))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every entry below `dir` as `stat` sees it: path, type and mode, owner,
/// group, mtime with nanoseconds, link count, size (of non-directories)
/// and symlink target. Inode numbers and ctime differ by design.
fn stat_tree(dir: &Path) -> String {
    let out = ok(Command::new("find").arg(".").current_dir(dir).args([
        "(",
        "-type",
        "d",
        "-printf",
        "%p %M %U %G %T@\\n",
        ")",
        "-o",
        "-printf",
        "%p %M %U %G %T@ %n %s %l\\n",
    ]));
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    lines.join("\n")
}

/// Asserts that head/ is snapshot `name`'s tree: no difference for rsync
/// with checksums and exact times, for `diff -r`, or in `stat`.
fn head_is_snapshot(m: &Mount, name: &str) {
    let snap = m.snapshots().join(name);
    assert_eq!(
        differences(&snap, &m.head()),
        "",
        "head/ differs from {name}"
    );
    // diff calls two fifos (or devices) different whatever they are: the
    // special files of tree::make are left to rsync and stat.
    ok(Command::new("diff")
        .args(["-r", "--no-dereference"])
        .args(["-x", "fifo", "-x", "null-dev", "-x", "block-dev"])
        .arg(&snap)
        .arg(m.head()));
    assert_eq!(stat_tree(&snap), stat_tree(&m.head()));
}

/// A source with several small files and one big one that a bandwidth
/// limit makes slow to copy (rsync copies in name order).
fn slow_source(m: &Mount) -> std::path::PathBuf {
    let src = m.path("slow");
    std::fs::create_dir(&src).unwrap();
    for i in 0..5 {
        std::fs::write(src.join(format!("a{i}")), crate::common::bytes(i, 20_000)).unwrap();
    }
    std::fs::write(src.join("z-big"), crate::common::bytes(9, 8 << 20)).unwrap();
    src
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_failed_copy_is_marked_taken_over_by_the_next_run_and_rolled_back_by_reset() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let src = m.path("src");
    crate::tree::make(&src);
    let dst = format!("{}/", m.head().join("data").display());
    let src_arg = format!("{}/", src.display());
    let good = json(&ok(&mut backup(
        &m,
        &["--label", "nightly", "--json"],
        &["rsync", "-aHAXS", "--delete", &src_arg, &dst],
    )));
    let good_name = good["summary"]["snapshot"].as_str().unwrap().to_owned();
    let s = status(&m);
    assert_eq!(s["leftovers"], serde_json::Value::Null);
    assert_eq!(s["repository"], m.repo().display().to_string());
    assert!(s["repository_id"].is_string(), "{s}");

    // A copy that fails after writing: rsync copies what it can and exits
    // 23 for a source that does not exist.
    let more = m.path("more");
    std::fs::create_dir(&more).unwrap();
    std::fs::write(more.join("new-file"), "written by the failed run\n").unwrap();
    let out = run(&mut backup(
        &m,
        &["--label", "nightly", "--json"],
        &[
            "rsync",
            "-a",
            &format!("{}/", more.display()),
            "/nonexistent-source",
            &dst,
        ],
    ));
    fails(&out, 21, "the copy command rsync");
    let report = json(&stdout(&out));
    let failed = report["record"]["run"].as_str().unwrap().to_owned();
    assert_eq!(report["summary"]["left_in_head"]["run"], failed.as_str());
    assert!(m.head().join("data/new-file").exists());

    // status names it, in JSON and in text, with the snapshot to reset to.
    let s = status(&m);
    assert_eq!(s["leftovers"]["run"], failed.as_str(), "{s}");
    assert_eq!(s["leftovers"]["label"], "nightly");
    assert_eq!(s["leftovers"]["last_good"], good_name.as_str());
    assert!(
        s["leftovers"]["why"].as_str().unwrap().contains("rsync"),
        "{s}"
    );
    let text = ok(m.strata().arg("status"));
    assert!(
        text.contains(&format!(
            "LEFTOVERS   head/ holds the leftovers of failed run {failed}"
        )) && text.contains(&format!("strata head reset --to {good_name}")),
        "{text}"
    );

    // The next run warns before its copy and in its summary, and its
    // snapshot's record names the failed run; the marker is then gone.
    let out = run(&mut backup(
        &m,
        &[],
        &["rsync", "-aHAXS", "--delete", &src_arg, &dst],
    ));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let warning = format!("warning: head/ held the leftovers of failed run {failed}");
    assert!(
        err.contains(&warning) && err.contains(&format!("strata head reset --to {good_name}")),
        "{err}"
    );
    let text = stdout(&out);
    assert!(text.contains(&warning), "{text}");
    let show = ok(m.strata().args(["snapshot", "show", "latest"]));
    assert!(
        show.contains(&format!("taken over leftovers of failed run {failed}")),
        "{show}"
    );
    let shown = json(&ok(m
        .strata()
        .args(["snapshot", "show", "latest", "--json"])));
    assert_eq!(shown["run"]["leftovers"]["run"], failed.as_str());
    assert_eq!(status(&m)["leftovers"], serde_json::Value::Null);

    // Later changes, then back to the good snapshot, exactly.
    std::fs::write(m.head().join("data/after"), "later").unwrap();
    let out = ok(m.strata().args(["head", "reset", "--to", "nightly"]));
    assert!(
        out.contains(&format!(
            "head/ reset to snapshot 1 ({good_name}, label nightly"
        )) && out.contains("discarded"),
        "{out}"
    );
    head_is_snapshot(&m, &good_name);
    assert!(!m.head().join("data/new-file").exists());
    assert!(!m.head().join("data/after").exists());
    // Through a remount too: the reset is durable.
    m.umount();
    m.mount();
    head_is_snapshot(&m, &good_name);
}

#[test]
fn a_stopped_run_is_marked_and_reset_is_refused_during_a_run_with_open_files_and_bad_names() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::write(m.head().join("kept"), "before the runs").unwrap();
    let base = m.snapshot("base");
    let base_name = base.file_name().unwrap().to_str().unwrap().to_owned();
    let src = slow_source(&m);
    let dst = format!("{}/", m.head().join("data").display());
    let strata = backup(
        &m,
        &[],
        &[
            "rsync",
            "-a",
            "--bwlimit=200",
            &format!("{}/", src.display()),
            &dst,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for("the copy writing into head/", || {
        m.head().join("data/a4").exists()
    });

    // During the run: refused at once, naming it, head/ unchanged.
    let out = run(m.strata().args(["head", "reset", "--to", "base"]));
    fails(&out, 24, "a backup run is in progress (pid ");
    assert!(stderr(&out).contains("head/ was not reset"));
    assert!(m.head().join("data/a0").exists());

    // SIGINT (Ctrl-C) during the copy.
    // SAFETY: kill(2) with plain integers.
    unsafe { libc::kill(strata.id() as i32, libc::SIGINT) };
    let out = strata.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(128 + libc::SIGINT),
        "{}",
        stderr(&out)
    );
    let s = status(&m);
    let l = &s["leftovers"];
    assert!(l["why"].as_str().unwrap().contains("SIGINT"), "{s}");
    assert_eq!(l["last_good"], base_name.as_str());
    assert_eq!(l["label"], serde_json::Value::Null);
    let failed = l["run"].as_str().unwrap().to_owned();

    // A file open in head/: refused, saying how to find who holds it.
    let open = std::fs::File::open(m.head().join("kept")).unwrap();
    let out = run(m.strata().args(["head", "reset", "--to", "base"]));
    fails(&out, 14, &format!("fuser -vm {}", m.mnt().display()));
    assert!(m.head().join("data/a0").exists());
    drop(open);

    // A snapshot that does not exist: usage, nothing changed.
    let out = run(m.strata().args(["head", "reset", "--to", "nosuch"]));
    fails(
        &out,
        2,
        "no snapshot \"nosuch\": see `strata snapshot list`",
    );
    assert!(m.head().join("data/a0").exists());
    assert_eq!(status(&m)["leftovers"]["run"], failed.as_str());

    // Then it works, says what it discarded, and clears the marker.
    let out = json(&ok(m
        .strata()
        .args(["head", "reset", "--to", "base", "--json"])));
    assert_eq!(out["snapshot"]["name"], base_name.as_str());
    assert_eq!(out["leftovers"]["run"], failed.as_str());
    head_is_snapshot(&m, &base_name);
    assert_eq!(status(&m)["leftovers"], serde_json::Value::Null);
}

#[test]
fn head_reset_works_unmounted() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::create_dir(m.head().join("etc")).unwrap();
    std::fs::write(m.head().join("etc/app.conf"), "one").unwrap();
    let snap = m.snapshot("one");
    let name = snap.file_name().unwrap().to_str().unwrap().to_owned();
    std::fs::write(m.head().join("etc/app.conf"), "two, longer").unwrap();
    std::fs::write(m.head().join("extra"), "later").unwrap();
    m.umount();
    // status names the repository, mounted or not (here: not).
    let s = status(&m);
    let id = s["repository_id"].as_str().unwrap().to_owned();
    assert_eq!(s["repository"], m.repo().display().to_string());
    assert_eq!(id.len(), 32, "{s}");
    let text = ok(m.strata().arg("status"));
    assert!(
        text.starts_with(&format!("repository  {} (id {id})", m.repo().display())),
        "{text}"
    );

    let out = ok(m.strata().args(["head", "reset", "--to", "latest"]));
    assert!(out.contains(&format!("({name}, label one")), "{out}");
    let out = run(m.strata().args(["head", "reset", "--to", "9"]));
    fails(&out, 2, "no snapshot \"9\"");

    m.mount();
    head_is_snapshot(&m, &name);
    assert_eq!(
        std::fs::read_to_string(m.head().join("etc/app.conf")).unwrap(),
        "one"
    );
    assert!(!m.head().join("extra").exists());
}
