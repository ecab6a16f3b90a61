//! find, versions and diff through the daemon, compared with what `find`
//! and a walk of MNT/snapshots/*/ see; the same answers unmounted and
//! after `repair catalog`; and the errors a user can make.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::common::tier::{self, Tier};
use crate::harness::{fails, ok, rsync_into, run, Mount};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// What a walk sees of one path: is a dir, content, mode, mtime (s, ns).
type Seen = (bool, Vec<u8>, u32, (i64, i64));

/// Every path below `root` ("/a/b") and what is seen of it.
fn walk(root: &Path) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = format!("/{}", e.path().strip_prefix(root).unwrap().display());
            let content = if md.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            if md.is_dir() {
                stack.push(e.path());
            }
            out.insert(
                rel,
                (
                    md.is_dir(),
                    content,
                    md.mode() & 0o7777,
                    (md.mtime(), md.mtime_nsec()),
                ),
            );
        }
    }
    out
}

/// The snapshot directories, oldest first.
fn snapshot_dirs(m: &Mount) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(m.snapshots())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().unwrap().is_symlink())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Path -> snapshot names, from `strata find --json`.
fn strata_find(m: &Mount, names: &[String], args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let out = ok(m.strata().arg("find").args(args).arg("--json"));
    let mut got = BTreeMap::new();
    for f in json(&out).as_array().unwrap() {
        let mut in_snapshots = BTreeSet::new();
        for s in f["snapshots"].as_array().unwrap() {
            let a = names
                .iter()
                .position(|n| n == s["first"].as_str().unwrap())
                .unwrap();
            let b = names
                .iter()
                .position(|n| n == s["last"].as_str().unwrap())
                .unwrap();
            assert_eq!(s["count"].as_u64().unwrap() as usize, b - a + 1, "{f}");
            in_snapshots.extend(names[a..=b].iter().cloned());
        }
        got.insert(f["path"].as_str().unwrap().to_owned(), in_snapshots);
    }
    got
}

/// Path -> snapshot names, from GNU find over MNT/snapshots/*/.
fn gnu_find(m: &Mount, names: &[String], args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in names {
        let dir = m.snapshots().join(name);
        let out = ok(Command::new("find")
            .arg(&dir)
            .arg("-mindepth")
            .arg("1")
            .args(args));
        for line in out.lines() {
            let rel = line.strip_prefix(dir.to_str().unwrap()).unwrap();
            want.entry(rel.to_owned()).or_default().insert(name.clone());
        }
    }
    want
}

fn write(path: &Path, data: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

#[test]
fn find_versions_and_diff_through_the_daemon_agree_with_the_snapshot_directories() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let src = m.path("src");
    write(&src.join("etc/app.conf"), "v1");
    write(&src.join("etc/hosts"), "127.0.0.1 localhost");
    write(&src.join("data/report.txt"), "first report");
    write(&src.join("data/old/notes.txt"), "old notes");
    write(&src.join("data/big.bin"), &"x".repeat(20_000));
    rsync_into(&src, &m.head());
    m.snapshot("n1");
    // Night 2: a file changed, one chmodded, a directory removed, one added.
    write(&src.join("etc/app.conf"), "v2, longer");
    std::fs::set_permissions(
        src.join("etc/hosts"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::remove_dir_all(src.join("data/old")).unwrap();
    write(&src.join("data/new/report.txt"), "second report");
    rsync_into(&src, &m.head());
    m.snapshot("n2");
    // Night 3: the first content comes back.
    write(&src.join("etc/app.conf"), "v1");
    rsync_into(&src, &m.head());
    m.snapshot("n3");
    let names = snapshot_dirs(&m);
    assert_eq!(names.len(), 3);

    for (ours, gnu) in [
        (vec!["*.txt"], vec!["-name", "*.txt"]),
        (vec!["*"], vec![]),
        (
            vec!["/data/*", "--path"],
            vec!["-path", "*/data/*", "-not", "-path", "*/data/*/*"],
        ),
        (
            vec!["report", "--regex", "--type", "f"],
            vec!["-name", "*report*", "-type", "f"],
        ),
        (vec!["*", "--size", "+10k"], vec!["-size", "+10240c"]),
        (vec!["*", "--type", "d"], vec!["-type", "d"]),
    ] {
        assert_eq!(
            strata_find(&m, &names, &ours),
            gnu_find(&m, &names, &gnu),
            "strata find {ours:?} against find {gnu:?}"
        );
    }
    let only = strata_find(&m, &names, &["*.txt", "--snapshot", "n1"]);
    assert_eq!(
        only,
        gnu_find(&m, &names[..1], &["-name", "*.txt"]),
        "--snapshot by label"
    );

    // versions: one per distinct (content, mode, mtime) run over the snapshots.
    let out = json(&ok(m.strata().args([
        "versions",
        "/etc/app.conf",
        "--json",
    ])));
    let versions = out["versions"].as_array().unwrap();
    let seen: Vec<_> = names
        .iter()
        .map(|n| walk(&m.snapshots().join(n))["/etc/app.conf"].clone())
        .collect();
    let mut runs = seen.clone();
    runs.dedup();
    assert_eq!(versions.len(), runs.len(), "{out}");
    assert_eq!(versions.len(), 3, "v1, v2, then v1 again with a new mtime");
    for (v, r) in versions.iter().zip(&runs) {
        assert_eq!(v["size"].as_u64().unwrap(), r.1.len() as u64);
        assert_eq!(v["mode"].as_u64().unwrap() as u32 & 0o7777, r.2);
        assert_eq!(v["mtime"]["secs"].as_i64().unwrap(), r.3 .0);
        assert_eq!(v["snapshots"]["count"], 1);
    }
    let text = ok(m.strata().args(["versions", "/etc/hosts"]));
    assert_eq!(
        text.lines().count(),
        3,
        "a header and two versions (the chmod): {text}"
    );

    // diff: what a walk of the two directories finds.
    for (a, b) in [(0, 1), (1, 2), (0, 2), (2, 0)] {
        let out = json(&ok(m
            .strata()
            .args(["diff", &names[a], &names[b], "--json"])));
        let (ta, tb) = (
            walk(&m.snapshots().join(&names[a])),
            walk(&m.snapshots().join(&names[b])),
        );
        let mut want = BTreeMap::new();
        for p in ta.keys().chain(tb.keys()) {
            let change = match (ta.get(p), tb.get(p)) {
                (Some(_), None) => "removed",
                (None, Some(_)) => "added",
                (Some(x), Some(y)) if x != y => "changed",
                _ => continue,
            };
            want.insert(p.clone(), change.to_owned());
        }
        let got: BTreeMap<String, String> = out["differences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["path"].as_str().unwrap().to_owned(),
                    d["change"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(got, want, "diff {} {}", names[a], names[b]);
    }
    let out = ok(m.strata().args(["diff", "n1", "n2", "/etc"]));
    assert!(out.contains("M f /etc/app.conf  (content, times)"), "{out}");
    assert!(out.contains("M f /etc/hosts  (mode)"), "{out}");
    assert!(!out.contains("/data"), "only below /etc: {out}");

    // The errors a user can make, each with its code and what to do.
    fails(&run(m.strata().args(["find", "[abc"])), 2, "is not a glob");
    fails(
        &run(m.strata().args(["find", "(", "--regex"])),
        2,
        "is not a regular expression",
    );
    fails(
        &run(m.strata().args(["find", "*", "--size", "10Q"])),
        2,
        "is not a size",
    );
    fails(
        &run(m.strata().args(["find", "*", "--type", "z"])),
        2,
        "is not a type",
    );
    fails(
        &run(m.strata().args(["find", "*", "--since", "yesterday-ish"])),
        2,
        "is not a time",
    );
    fails(
        &run(m.strata().args(["find", "*", "--snapshot", "nope"])),
        1,
        "no snapshot \"nope\"",
    );
    fails(
        &run(m.strata().args(["diff", "n1", "99"])),
        1,
        "no snapshot \"99\"",
    );
    fails(
        &run(m.strata().args(["find", "no-such-name"])),
        31,
        "nothing matched",
    );
    fails(
        &run(m.strata().args(["versions", "/no/such"])),
        31,
        "no kept snapshot holds /no/such",
    );
    fails(
        &run(m.strata().args(["versions", "etc/hosts"])),
        2,
        "is not a path from a snapshot's root",
    );
    fails(
        &run(m.strata().args(["diff", "n1", "n2", "/no/such"])),
        31,
        "neither snapshot",
    );

    // Unmounted, the CLI opens the repository and answers the same; a
    // rebuilt catalog too.
    let mounted = ok(m.strata().args(["find", "*", "--json"]));
    m.umount();
    assert_eq!(ok(m.strata().args(["find", "*", "--json"])), mounted);
    let rebuilt = json(&ok(m.strata().args(["repair", "catalog", "--json"])));
    assert_eq!(rebuilt["snapshots"], 3);
    assert_eq!(ok(m.strata().args(["find", "*", "--json"])), mounted);
    m.mount();
    ok(m.strata().args(["repair", "catalog"]));
    assert_eq!(ok(m.strata().args(["find", "*", "--json"])), mounted);
    assert!(
        !m.log().contains("report.txt"),
        "no path reaches the daemon's log"
    );
}
