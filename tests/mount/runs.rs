//! Backup runs are serialized per repository: a second run is refused at
//! once (or waits with --wait), hooks of two runs never overlap, and a
//! snapshot is not taken in the middle of a run unless forced.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::tier::{self, Tier};
use crate::harness::{fails, ok, run, Mount};

/// strata.toml with one pre_backup hook that logs its start, waits until
/// `go-LABEL` exists (at most 30 s), and logs its end.
fn config(m: &Mount) {
    let hook = m.path("hold");
    std::fs::write(
        &hook,
        "#!/bin/sh\n\
         echo \"start $STRATA_LABEL\" >> \"$DIR/hooks.log\"\n\
         i=0\n\
         while [ ! -e \"$DIR/go-$STRATA_LABEL\" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n\
         echo \"end $STRATA_LABEL\" >> \"$DIR/hooks.log\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        m.path("strata.toml"),
        format!(
            "[[hook]]\nname = \"hold\"\nphase = \"pre_backup\"\ncommand = [\"{}\"]\nenv = {{ DIR = \"{}\" }}\n",
            hook.display(),
            m.dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        m.path("strata.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

fn backup(m: &Mount, label: &str, flags: &[&str]) -> Command {
    let mut c = m.strata();
    c.args(["backup", "--label", label, "--config"])
        .arg(m.path("strata.toml"))
        .args(flags)
        .args(["--", "true"]);
    c
}

fn spawn(mut c: Command) -> Child {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn hooks_log(m: &Mount) -> Vec<String> {
    std::fs::read_to_string(m.path("hooks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn wait_for_line(m: &Mount, line: &str) {
    let start = Instant::now();
    while !hooks_log(m).iter().any(|l| l == line) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{line:?} never came"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `child`'s stderr until a line containing `needle` (at most 30 s);
/// the rest of its stderr is drained in the background.
fn wait_for_stderr(child: &mut Child, needle: &str) {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains(needle)) {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("{needle:?} never came ({e}); stderr: {seen:?}"),
        }
    }
}

fn go(m: &Mount, label: &str) {
    std::fs::write(m.path(&format!("go-{label}")), "").unwrap();
}

#[test]
fn a_second_run_is_refused_or_waits_and_hooks_never_overlap() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    config(&m);
    let mut a = spawn(backup(&m, "a", &[]));
    wait_for_line(&m, "start a");

    // A second run is refused at once, naming the run in progress: it ends
    // while a (which only ends when told to) is still running.
    let out = run(&mut backup(&m, "b", &[]));
    fails(&out, 24, "another backup run is in progress");
    fails(&out, 24, &format!("(pid {}, label a, started 2", a.id()));
    fails(&out, 24, "--wait");
    // It may wait, but only as long as it is told.
    let out = run(&mut backup(&m, "b", &["--wait=1s"]));
    fails(&out, 24, "after waiting 1s");
    assert!(
        !hooks_log(&m).iter().any(|l| l.ends_with(" b")),
        "b's hooks ran"
    );
    assert!(a.try_wait().unwrap().is_none(), "b waited for a to end");

    // No snapshot in the middle of the run, unless a human means it.
    let out = run(m.strata().args(["snapshot", "create", "--label", "manual"]));
    fails(
        &out,
        24,
        &format!("a backup run is in progress (pid {}", a.id()),
    );
    fails(&out, 24, "--force");
    ok(m.strata()
        .args(["snapshot", "create", "--label", "manual", "--force"]));
    // Nor by mkdir in snapshots/, which has no way to say --force.
    let err = std::fs::create_dir(m.snapshots().join("by-mkdir")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
    assert!(
        m.log().contains("a backup run is in progress"),
        "{}",
        m.log()
    );

    // A run told to wait starts when the first one ends, not before. It
    // says so once it has found the run lock taken; from then on it only
    // tries the lock again, which a holds until it ends. Its hook may end
    // at once, so were c not waiting, "start c" and "end c" would come
    // before "end a".
    let mut c = spawn(backup(&m, "c", &["--wait"]));
    wait_for_stderr(&mut c, "waiting for the backup run in progress");
    go(&m, "c");
    assert_eq!(hooks_log(&m), ["start a"], "c waits for a");
    go(&m, "a");
    let a = a.wait_with_output().unwrap();
    assert!(a.status.success(), "{a:?}");
    let c = c.wait_with_output().unwrap();
    assert!(c.status.success(), "{c:?}");
    assert_eq!(hooks_log(&m), ["start a", "end a", "start c", "end c"]);

    // A run killed outright leaves its lock file behind; it blocks nothing.
    let mut d = spawn(backup(&m, "d", &[]));
    wait_for_line(&m, "start d");
    d.kill().unwrap();
    d.wait().unwrap();
    go(&m, "e");
    ok(&mut backup(&m, "e", &[]));
    go(&m, "d");
    ok(m.strata().args(["snapshot", "create"]));
}
