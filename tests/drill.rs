//! Restore drills without a mount, through the namespace the mount serves
//! from: a restore is the snapshot (content, holes, hard links, symlinks,
//! fifos, owners, modes, nanosecond times, extended attributes), a discard
//! writes nothing, damage is found and named by path, objectives decide
//! the verdict, bad input changes nothing, and the records outlive an
//! index rebuilt from packs and a prune.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use strata::daemon::control::{run_drill, ControlError};
use strata::ops::drill::{DrillContext, DrillError, DrillSpec};
use strata::ops::prune::{prune, PruneContext, PruneOptions};
use strata::store::id::ChunkId;
use strata::store::io::{Disk, LocalDisk};
use strata::tree::head::Head;
use strata::tree::namespace::{Access, Namespace};
use strata::tree::snapshot::drills::DrillResult;
use strata::tree::snapshot::Snapshots;
use strata::tree::types::{Caller, InodeNo, SetAttr, Timestamp};

const ME: Caller = Caller::ROOT;

/// A repository on a real directory (a restore writes real files).
struct Repo {
    dir: tempfile::TempDir,
    disk: Arc<dyn Disk>,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("repo")).unwrap();
        let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(dir.path().join("repo")));
        init_encrypted(disk.clone());
        Repo { dir, disk }
    }

    fn namespace(&self) -> Namespace {
        Namespace::new(
            Head::new(open(self.disk.clone())).unwrap(),
            Access::default(),
        )
        .unwrap()
    }

    /// A fresh path for a restore.
    fn target(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn spec(path: &str, to: Option<PathBuf>) -> DrillSpec {
    DrillSpec {
        snapshot: "latest".into(),
        path: path.into(),
        to,
        readers: 4,
        rto_secs: None,
        name: None,
        deferred: false,
    }
}

const MTIME: Timestamp = Timestamp {
    secs: 1_700_000_000,
    nanos: 123_456_789,
};

/// One of everything a restore must bring back, under /data; returns the
/// content of data/a.
fn populate(ns: &Namespace) -> Vec<u8> {
    let h = ns.head();
    let data = h
        .mkdir(ME, InodeNo::ROOT, &n("data"), 0o750, 0)
        .unwrap()
        .ino;
    let a_bytes = bytes(7, 300_000);
    let a = h.create(ME, data, &n("a"), 0o640, 0).unwrap().ino;
    h.write(ME, a, 0, &a_bytes).unwrap();
    h.setxattr(ME, a, b"user.origin", b"ward 7", false, false)
        .unwrap();
    h.link(ME, a, data, &n("a2")).unwrap();
    let sparse = h.create(ME, data, &n("sparse"), 0o600, 0).unwrap().ino;
    h.write(ME, sparse, 3 << 20, b"the end").unwrap();
    h.create(ME, data, &n("empty"), 0o644, 0).unwrap();
    h.symlink(ME, data, &n("link"), b"a").unwrap();
    h.mknod(ME, data, &n("pipe"), libc::S_IFIFO | 0o600, 0, 0)
        .unwrap();
    let sub = h.mkdir(ME, data, &n("sub"), 0o755, 0).unwrap().ino;
    let deep = h.create(ME, sub, &n("deep"), 0o444, 0).unwrap().ino;
    h.write(ME, deep, 0, b"deep down").unwrap();
    for ino in [a, sparse, deep, sub, data] {
        let set = SetAttr {
            uid: Some(1234),
            gid: Some(99),
            mtime: Some(MTIME),
            ..SetAttr::default()
        };
        h.setattr(ME, ino, &set).unwrap();
    }
    ns.snapshot(ME, None).unwrap();
    a_bytes
}

#[test]
fn a_restore_is_the_snapshot_and_a_discard_writes_nothing() {
    let repo = Repo::new();
    let ns = repo.namespace();
    let a = populate(&ns);
    let to = repo.target("restored");
    let record = run_drill(
        &ns,
        ME,
        &spec("/", Some(to.clone())),
        None,
        DrillContext::default(),
    )
    .unwrap();
    assert_eq!(record.result, DrillResult::Passed, "{:?}", record.problems);
    assert_eq!(record.through, "repository");
    assert_eq!((record.files, record.dirs), (4, 3), "{record:?}");
    assert_eq!(record.bytes, 300_000 + (3 << 20) + 7 + 9);
    assert!(record.restore_secs > 0.0 && record.verify_secs > 0.0);

    let data = to.join("data");
    assert_eq!(std::fs::read(data.join("a")).unwrap(), a);
    let md = |p: &str| std::fs::symlink_metadata(data.join(p)).unwrap();
    assert_eq!(md("a").ino(), md("a2").ino(), "hard links stay linked");
    assert_eq!(
        (md("a").mode() & 0o7777, md("a").uid(), md("a").gid()),
        (0o640, 1234, 99)
    );
    assert_eq!(
        (md("a").mtime(), md("a").mtime_nsec()),
        (MTIME.secs, MTIME.nanos as i64)
    );
    assert_eq!(
        xattr::get(data.join("a"), "user.origin")
            .unwrap()
            .as_deref(),
        Some(&b"ward 7"[..])
    );
    assert_eq!(md("sparse").size(), (3 << 20) + 7);
    assert!(
        md("sparse").blocks() * 512 < 1 << 20,
        "the hole stays a hole: {} blocks",
        md("sparse").blocks()
    );
    assert_eq!(
        std::fs::read_link(data.join("link")).unwrap(),
        Path::new("a")
    );
    assert!(md("pipe").file_type().is_fifo());
    assert_eq!(std::fs::read(data.join("sub/deep")).unwrap(), b"deep down");
    assert_eq!(
        md("sub").mtime(),
        MTIME.secs,
        "directory times are set last"
    );
    assert_eq!(md("").mode() & 0o7777, 0o750);

    let discard = run_drill(&ns, ME, &spec("/", None), None, DrillContext::default()).unwrap();
    assert_eq!(
        discard.result,
        DrillResult::Passed,
        "{:?}",
        discard.problems
    );
    assert_eq!(discard.to, None);
    assert_eq!(discard.bytes, record.bytes);
    let drills = Snapshots::of(ns.head()).drills().unwrap();
    assert_eq!(
        drills.iter().map(|d| d.number).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(drills[1], discard);
}

#[test]
fn a_path_inside_the_snapshot_restores_alone() {
    let repo = Repo::new();
    let ns = repo.namespace();
    let a = populate(&ns);
    let sub = repo.target("sub");
    let r = run_drill(
        &ns,
        ME,
        &spec("/data/sub", Some(sub.clone())),
        None,
        DrillContext::default(),
    )
    .unwrap();
    assert_eq!(r.result, DrillResult::Passed, "{:?}", r.problems);
    assert_eq!(r.path, "/data/sub");
    assert_eq!(std::fs::read(sub.join("deep")).unwrap(), b"deep down");
    // A single file goes into the directory under its own name.
    let one = repo.target("one");
    let r = run_drill(
        &ns,
        ME,
        &spec("data/a", Some(one.clone())),
        None,
        DrillContext::default(),
    )
    .unwrap();
    assert_eq!((r.result, r.files), (DrillResult::Passed, 1));
    assert_eq!(std::fs::read(one.join("a")).unwrap(), a);
}

#[test]
fn objectives_decide_between_passed_and_missed() {
    let repo = Repo::new();
    let ns = repo.namespace();
    populate(&ns);
    let mut s = spec("/", None);
    s.rto_secs = Some(0.0);
    let missed = run_drill(&ns, ME, &s, None, DrillContext::default()).unwrap();
    assert_eq!(missed.result, DrillResult::MissedRto);
    assert!(missed.problems.is_empty());
    s.rto_secs = Some(3600.0);
    let met = run_drill(&ns, ME, &s, None, DrillContext::default()).unwrap();
    assert_eq!(met.result, DrillResult::Passed);
    assert_eq!(met.rto_secs, Some(3600.0));
}

#[test]
fn damage_is_found_and_named_by_path() {
    let repo = Repo::new();
    {
        let ns = repo.namespace();
        populate(&ns);
        ns.shutdown().unwrap();
    }
    // Flip a byte of data/a's first chunk where it is stored.
    {
        let ns = repo.namespace();
        let row = Snapshots::of(ns.head()).last().unwrap().unwrap();
        let plan =
            strata::ops::drill::plan::Plan::of(ns.head().repo().store(), &row, "/data/a").unwrap();
        let chunk = ChunkId(plan.items[0].entry.extents[0].1);
        let at = ns
            .head()
            .repo()
            .store()
            .index()
            .chunk(&chunk)
            .unwrap()
            .unwrap();
        ns.shutdown().unwrap();
        drop(ns);
        let finished = strata::store::io::backend::LocalBackend::path(at.pack);
        let path = if repo.disk.exists(&finished) {
            finished
        } else {
            strata::store::chunks::open_pack_path(at.pack)
        };
        let mut bytes = repo.disk.read(&path).unwrap();
        bytes[at.offset as usize + 20] ^= 0xff;
        repo.disk.write_atomic(&path, &bytes).unwrap();
    }
    let ns = repo.namespace();
    for to in [None, Some(repo.target("damaged"))] {
        let r = run_drill(&ns, ME, &spec("/", to), None, DrillContext::default()).unwrap();
        assert_eq!(r.result, DrillResult::Failed);
        assert!(
            r.problems.iter().any(|p| p.starts_with("/data/a:")),
            "{:?}",
            r.problems
        );
        assert!(
            !r.problems.iter().any(|p| p.starts_with("/data/sub")),
            "only what is damaged: {:?}",
            r.problems
        );
    }
}

#[test]
fn bad_paths_and_targets_change_nothing() {
    let repo = Repo::new();
    let ns = repo.namespace();
    populate(&ns);
    let full = repo.target("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("precious"), b"keep me").unwrap();
    let file = repo.target("file");
    std::fs::write(&file, b"a file").unwrap();
    let shared = repo.target("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let cases: Vec<(DrillSpec, &str, u8)> = vec![
        (spec("/nope", None), "nothing at \"/nope\"", 2),
        (spec("/data/../..", None), "\"..\" is not allowed", 2),
        (
            spec("/data/a/x", None),
            "\"/data/a\" in the snapshot is not a directory",
            2,
        ),
        (spec("/", Some(full.clone())), "is not empty", 2),
        (spec("/", Some(file.clone())), "is not a directory", 2),
        (spec("/", Some(shared.clone())), "is not yours alone", 2),
        (
            spec("/", Some(repo.target("no/such/parent"))),
            "its parent must exist",
            1,
        ),
        (
            DrillSpec {
                snapshot: "nightly".into(),
                ..spec("/", None)
            },
            "no snapshot \"nightly\"",
            1,
        ),
    ];
    for (s, message, code) in cases {
        let e = run_drill(&ns, ME, &s, None, DrillContext::default()).unwrap_err();
        let text = strata::sys::chain::Chain(&e).to_string();
        assert!(text.contains(message), "{text}");
        assert_eq!(strata::daemon::exit_code(&e), code, "{text}");
        if let ControlError::Drill(DrillError::Plan(_) | DrillError::Target(_)) = e {
            assert!(text.starts_with("nothing drilled"), "{text}");
        }
    }
    assert_eq!(std::fs::read(full.join("precious")).unwrap(), b"keep me");
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);
    assert_eq!(std::fs::read(&file).unwrap(), b"a file");
    assert!(Snapshots::of(ns.head()).drills().unwrap().is_empty());
}

#[test]
fn drill_records_outlive_a_rebuilt_index_and_a_prune() {
    let repo = Repo::new();
    let recorded = {
        let ns = repo.namespace();
        populate(&ns);
        run_drill(&ns, ME, &spec("/", None), None, DrillContext::default()).unwrap();
        let mut s = spec("/data", None);
        s.rto_secs = Some(0.0);
        run_drill(&ns, ME, &s, None, DrillContext::default()).unwrap();
        let d = Snapshots::of(ns.head()).drills().unwrap();
        ns.shutdown().unwrap();
        d
    };
    assert_eq!(recorded.len(), 2);
    repair(&repo.disk);
    {
        let ns = repo.namespace();
        assert_eq!(Snapshots::of(ns.head()).drills().unwrap(), recorded);
        prune(
            ns.head(),
            ME,
            PruneOptions {
                max_unused_percent: 0.0,
                ..PruneOptions::default()
            },
            PruneContext::default(),
        )
        .unwrap();
        ns.shutdown().unwrap();
    }
    repair(&repo.disk);
    let ns = repo.namespace();
    assert_eq!(Snapshots::of(ns.head()).drills().unwrap(), recorded);
    // Numbers are never given again.
    let next = run_drill(&ns, ME, &spec("/", None), None, DrillContext::default()).unwrap();
    assert_eq!(next.number, 3);
}

#[test]
fn an_estimate_samples_reads_as_the_drill_does_and_leaves_the_target_as_it_was() {
    let repo = Repo::new();
    let ns = repo.namespace();
    let h = ns.head();
    // Many small files and a few large ones, so both kinds of sampling run.
    let dir = h
        .mkdir(ME, InodeNo::ROOT, &n("many"), 0o755, 0)
        .unwrap()
        .ino;
    for i in 0..300u64 {
        let f = h
            .create(ME, dir, &n(&format!("f{i}")), 0o644, 0)
            .unwrap()
            .ino;
        h.write(ME, f, 0, &bytes(i, 2_000 + (i as usize % 7) * 1_000))
            .unwrap();
    }
    for i in 0..2u64 {
        let f = h
            .create(ME, InodeNo::ROOT, &n(&format!("big{i}")), 0o644, 0)
            .unwrap()
            .ino;
        h.write(ME, f, 0, &bytes(1000 + i, 10 << 20)).unwrap();
    }
    ns.snapshot(ME, None).unwrap();
    let predict = |to: Option<PathBuf>| {
        strata::daemon::control::run_estimate(&ns, ME, &spec("/", to), None).unwrap()
    };
    let e = predict(None);
    assert!(e.problems.is_empty(), "{:?}", e.problems);
    assert_eq!((e.files, e.dirs, e.restore), (302, 2, false));
    assert!(e.predicted_secs > 0.0 && e.files_secs > 0.0, "{e:?}");
    assert!(e.sampled_files >= 2 && e.sampled_files <= e.files, "{e:?}");
    // Large files are sampled by runs of chunks, about 8 MiB of each
    // 10 MiB one.
    assert!(e.sampled_bytes < e.bytes - (1 << 20), "{e:?}");

    // Into an existing empty directory: empty again afterwards; into a new
    // one: gone afterwards. Nothing is recorded.
    let empty = repo.target("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = predict(Some(empty.clone()));
    assert!(e.restore && e.predicted_secs > 0.0);
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    let new = repo.target("new");
    predict(Some(new.clone()));
    assert!(!new.exists());
    assert!(Snapshots::of(ns.head()).drills().unwrap().is_empty());
}

#[test]
fn a_target_that_refuses_the_restore_is_not_damage() {
    use common::tier::{self, Tier};
    if tier::missing(&[Tier::Root]) {
        return;
    }
    let repo = Repo::new();
    let ns = repo.namespace();
    let h = ns.head();
    let f = h
        .create(ME, InodeNo::ROOT, &n("scan"), 0o644, 0)
        .unwrap()
        .ino;
    h.write(ME, f, 0, &bytes(9, 3 << 20)).unwrap();
    ns.snapshot(ME, None).unwrap();
    // A filesystem of 1 MiB takes a 3 MiB restore only in part.
    let small = repo.target("small");
    std::fs::create_dir(&small).unwrap();
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(&small)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = run_drill(
        &ns,
        ME,
        &spec("/", Some(small.clone())),
        None,
        DrillContext::default(),
    );
    let _ = std::process::Command::new("umount").arg(&small).status();
    let r = r.unwrap();
    assert_eq!(r.result, DrillResult::Failed);
    assert!(r.problem_count > 0);
    assert_eq!(
        r.damage_count, 0,
        "the repository read clean: {:?}",
        r.problems
    );
    assert!(
        r.problems
            .iter()
            .any(|p| p.starts_with("/scan:") && p.contains("writing")),
        "{:?}",
        r.problems
    );
}
