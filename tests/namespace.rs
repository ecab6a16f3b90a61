//! The namespace a mount shows (`head/`, `snapshots/`, `latest` and label
//! links, mount inode numbers), through its Rust API, without a mount.

mod common;

use std::sync::Arc;

use common::*;
use strata::store::io::sim::SimDisk;
use strata::store::io::Disk;
use strata::tree::head::Head;
use strata::tree::namespace::{Access, DirReply, Listed, Namespace, Node, HEAD_INO, LATEST};
use strata::tree::record::RunStatus;
use strata::tree::snapshot::SNAPSHOT_INO_BITS;
use strata::tree::types::{Attr, Caller, FileKind, FsError, OpenMode, SetAttr};

const ME: Caller = Caller {
    uid: 1000,
    gid: 100,
    pid: 1,
};

/// The node a namespace's answer names (its `ino` is the mount's number).
fn node(attr: &Attr) -> Node {
    Node::of(attr.ino.0)
}

fn namespace() -> Namespace {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
    init_encrypted(disk.clone());
    Namespace::new(Head::new(open(disk)).unwrap(), Access::default()).unwrap()
}

/// Creates `name` in `dir` holding `data`, as a writer would: create
/// and open, write, release.
fn put(ns: &Namespace, dir: Node, name: &str, data: &[u8]) -> Node {
    let ino = node(
        &ns.create_open(ME, dir, name.as_bytes(), 0o644, 0o022)
            .unwrap(),
    );
    ns.write(ME, ino, 0, data, false).unwrap();
    ns.release(ME, ino).unwrap();
    ino
}

fn names(ns: &Namespace, dir: Node) -> Vec<String> {
    let mut listed = Vec::new();
    ns.readdir(ME, dir, 0, false, &mut listed).unwrap();
    listed
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect()
}

/// The mount inode number of `path` under `dir`, by lookups.
fn walk(ns: &Namespace, mut dir: Node, path: &str) -> Node {
    for part in path.split('/') {
        dir = node(&ns.lookup(ME, dir, part.as_bytes()).unwrap());
    }
    dir
}

#[test]
fn the_root_holds_head_and_snapshots_and_head_inodes_keep_their_numbers() {
    let ns = namespace();
    assert_eq!(names(&ns, Node::Root), ["head", "snapshots"]);
    assert_eq!(walk(&ns, Node::Root, "head"), Node::HEAD);
    assert_eq!(
        Node::HEAD.ino(),
        HEAD_INO,
        "head/ shows under its fixed number"
    );
    assert_eq!(walk(&ns, Node::Root, "snapshots"), Node::Snapshots);
    assert!(matches!(
        ns.lookup(ME, Node::Root, b"other"),
        Err(FsError::NotFound)
    ));
    assert!(names(&ns, Node::Snapshots).is_empty(), "no snapshot yet");

    let dir = node(&ns.mkdir(ME, Node::HEAD, b"data", 0o755, 0o022).unwrap());
    let f = put(&ns, dir, "f", b"hello");
    assert!(matches!(f, Node::Head(_)));
    assert!(
        f.ino() >> SNAPSHOT_INO_BITS == 0,
        "head inodes sit below 2^40"
    );
    assert_eq!(walk(&ns, Node::HEAD, "data/f"), f);
    assert_eq!(ns.read(ME, f, 0, 100).unwrap(), b"hello");
    assert_eq!(names(&ns, Node::HEAD), ["data"]);
}

#[test]
fn a_snapshot_shows_under_its_time_with_latest_and_label_links() {
    let ns = namespace();
    let dir = node(&ns.mkdir(ME, Node::HEAD, b"data", 0o755, 0o022).unwrap());
    put(&ns, dir, "f", b"night one");
    let first = ns.snapshot(ME, Some("nightly")).unwrap();
    let name = first.name();

    assert_eq!(
        names(&ns, Node::Snapshots),
        [name.as_str(), LATEST, "nightly"]
    );
    for link in [LATEST, "nightly"] {
        let attr = ns.lookup(ME, Node::Snapshots, link.as_bytes()).unwrap();
        assert_eq!(attr.kind, FileKind::Symlink);
        assert_eq!(ns.readlink(ME, node(&attr)).unwrap(), name.as_bytes());
    }
    let f1 = walk(&ns, Node::Snapshots, &format!("{name}/data/f"));
    assert_eq!(ns.read(ME, f1, 0, 100).unwrap(), b"night one");
    assert!(matches!(f1, Node::Snap { seq, .. } if seq == first.seq));

    // The head moves on; the snapshot does not.
    let f = walk(&ns, Node::HEAD, "data/f");
    ns.open(ME, f, OpenMode::Truncate).unwrap();
    ns.write(ME, f, 0, b"night two", false).unwrap();
    ns.release(ME, f).unwrap();
    let second = ns.snapshot(ME, None).unwrap();
    assert_eq!(ns.read(ME, f1, 0, 100).unwrap(), b"night one");
    let f2 = walk(&ns, Node::Snapshots, &format!("{}/data/f", second.name()));
    assert_eq!(ns.read(ME, f2, 0, 100).unwrap(), b"night two");

    // latest follows the newest snapshot; the label stays with the newest
    // snapshot that carries it.
    let target = |link: &str| {
        let ino = node(&ns.lookup(ME, Node::Snapshots, link.as_bytes()).unwrap());
        String::from_utf8(ns.readlink(ME, ino).unwrap()).unwrap()
    };
    assert_eq!(target(LATEST), second.name());
    assert_eq!(target("nightly"), name);
    assert_eq!(
        ns.snapshots()
            .iter()
            .map(|r| r.record.seq)
            .collect::<Vec<_>>(),
        [first.seq, second.seq]
    );
}

#[test]
fn one_file_in_two_snapshots_has_two_inode_numbers_and_hard_links_share_one() {
    let ns = namespace();
    let f = put(&ns, Node::HEAD, "f", b"x");
    ns.link(ME, f, Node::HEAD, b"g").unwrap();
    let a = ns.snapshot(ME, None).unwrap();
    let b = ns.snapshot(ME, None).unwrap();
    let in_a = |s: &str| walk(&ns, Node::Snapshots, &format!("{}/{s}", a.name()));
    assert_eq!(
        in_a("f"),
        in_a("g"),
        "hard links share an inode within a snapshot"
    );
    let in_b = walk(&ns, Node::Snapshots, &format!("{}/f", b.name()));
    assert_ne!(
        in_a("f"),
        in_b,
        "never across snapshots (cp -a, rsync -H, du)"
    );
    assert_ne!(in_a("f"), f, "nor with the head");
    let attr = ns.getattr(ME, in_b).unwrap();
    assert_eq!((node(&attr), attr.nlink, attr.size), (in_b, 2, 1));
    for ino in [in_a("f"), in_b, f] {
        assert_eq!(Node::of(ino.ino()), ino, "mount inode numbers round-trip");
    }
}

#[test]
fn snapshots_refuse_every_change_with_erofs() {
    let ns = namespace();
    let dir = node(&ns.mkdir(ME, Node::HEAD, b"d", 0o755, 0o022).unwrap());
    put(&ns, dir, "f", b"kept");
    let snap = ns.snapshot(ME, None).unwrap();
    let root = walk(&ns, Node::Snapshots, &snap.name());
    let d = walk(&ns, root, "d");
    let f = walk(&ns, d, "f");
    let erofs = |r: Result<(), FsError>| {
        let e = r.unwrap_err();
        assert!(matches!(e, FsError::ReadOnly), "{e:?}");
        assert_eq!(e.errno(), libc::EROFS);
    };
    erofs(ns.write(ME, f, 0, b"x", false).map(drop));
    erofs(ns.create_open(ME, d, b"new", 0o644, 0).map(drop));
    erofs(ns.mkdir(ME, d, b"new", 0o755, 0).map(drop));
    erofs(ns.unlink(ME, d, b"f"));
    erofs(ns.rmdir(ME, root, b"d"));
    erofs(ns.link(ME, f, d, b"g").map(drop));
    erofs(ns.symlink(ME, d, b"s", b"f").map(drop));
    erofs(
        ns.setattr(
            ME,
            f,
            &SetAttr {
                perm: Some(0o600),
                ..SetAttr::default()
            },
        )
        .map(drop),
    );
    erofs(ns.setxattr(ME, f, b"user.a", b"1", false, false));
    erofs(ns.removexattr(ME, f, b"user.a"));
    erofs(ns.open(ME, f, OpenMode::Write).map(drop));
    assert_eq!(ns.read(ME, f, 0, 100).unwrap(), b"kept");
    assert_eq!(
        ns.open(ME, f, OpenMode::Read).unwrap().size,
        4,
        "reading a snapshot stays possible"
    );
}

#[test]
fn mkdir_in_snapshots_takes_a_labelled_snapshot_and_bad_labels_are_refused() {
    let ns = namespace();
    put(&ns, Node::HEAD, "f", b"x");
    let attr = ns
        .mkdir(ME, Node::Snapshots, b"before-upgrade", 0o755, 0)
        .unwrap();
    let rows = ns.snapshots();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].record.label.as_deref(), Some("before-upgrade"));
    assert_eq!(
        walk(&ns, Node::Snapshots, &rows[0].record.name()),
        node(&attr),
        "mkdir answers with the snapshot's directory"
    );
    for bad in ["latest", "2026-01-01", "", "a/b", "with space"] {
        assert!(
            matches!(ns.snapshot(ME, Some(bad)), Err(FsError::Invalid(_))),
            "label {bad:?}"
        );
    }
    assert_eq!(ns.snapshots().len(), 1, "a refused label takes no snapshot");
}

#[test]
fn latest_skips_a_snapshot_whose_run_failed_until_its_record_is_good() {
    let ns = namespace();
    put(&ns, Node::HEAD, "f", b"x");
    let good = ns.snapshot(ME, Some("nightly")).unwrap();
    let failed = ns
        .snapshot_run(ME, Some("nightly"), Some(&run_record(RunStatus::Failed, 1)))
        .unwrap();
    let target = |link: &str| {
        let ino = node(&ns.lookup(ME, Node::Snapshots, link.as_bytes()).unwrap());
        String::from_utf8(ns.readlink(ME, ino).unwrap()).unwrap()
    };
    assert_eq!(target(LATEST), good.name());
    assert_eq!(target("nightly"), good.name());
    assert_eq!(
        names(&ns, Node::Snapshots).len(),
        4,
        "both snapshots are listed, with latest and the label"
    );
    assert_eq!(ns.run(failed.seq).unwrap().status, RunStatus::Failed);

    let validated = run_record(RunStatus::Validated, 2);
    ns.set_run(ME, failed.seq, &validated).unwrap();
    assert_eq!(target(LATEST), failed.name());
    assert_eq!(target("nightly"), failed.name());
}

#[test]
fn a_snapshot_entry_is_kept_until_the_kernel_forgets_every_lookup_of_it() {
    let ns = namespace();
    let dir = node(&ns.mkdir(ME, Node::HEAD, b"d", 0o755, 0o022).unwrap());
    put(&ns, dir, "f", b"data");
    let snap = ns.snapshot(ME, None).unwrap();
    let f = walk(&ns, Node::Snapshots, &format!("{}/d/f", snap.name()));
    // readdirplus counts as a lookup too: two references now.
    let d = walk(&ns, Node::Snapshots, &format!("{}/d", snap.name()));
    let mut listed = Vec::new();
    ns.readdir(ME, d, 0, true, &mut listed).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].node, f);
    assert_eq!(listed[0].attr.as_ref().unwrap().size, 4);
    ns.forget(f, 1);
    assert_eq!(ns.getattr(ME, f).unwrap().size, 4, "one reference left");
    assert_eq!(ns.read(ME, f, 0, 100).unwrap(), b"data");
    ns.forget(f, 1);
    assert!(
        matches!(ns.getattr(ME, f), Err(FsError::NotFound)),
        "forgotten entries are not kept (memory stays bounded by what the kernel holds)"
    );
    assert_eq!(
        node(&ns.lookup(ME, d, b"f").unwrap()),
        f,
        "a new lookup finds it again"
    );
    assert_eq!(ns.read(ME, f, 0, 100).unwrap(), b"data");
}

/// A reply buffer with room for `room` entries.
struct Room {
    room: usize,
    taken: Vec<Listed>,
}

impl DirReply for Room {
    fn add(&mut self, entry: Listed) -> bool {
        if self.taken.len() == self.room {
            return false;
        }
        self.taken.push(entry);
        true
    }
}

#[test]
fn readdirplus_remembers_only_the_entries_the_reply_took() {
    let ns = namespace();
    for name in ["a", "b", "c"] {
        put(&ns, Node::HEAD, name, name.as_bytes());
    }
    let snap = ns.snapshot(ME, None).unwrap();
    let root = walk(&ns, Node::Snapshots, &snap.name());
    let mut reply = Room {
        room: 2,
        taken: Vec::new(),
    };
    ns.readdir(ME, root, 0, true, &mut reply).unwrap();
    let names: Vec<_> = reply.taken.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, [b"a".to_vec(), b"b".to_vec()]);
    let a = reply.taken[0].node;
    let c = Node::of(a.ino() + 2);
    assert!(
        matches!(ns.getattr(ME, c), Err(FsError::NotFound)),
        "c did not fit: the kernel holds no reference, so the namespace keeps none"
    );
    assert_eq!(ns.getattr(ME, a).unwrap().size, 1, "a did, and is kept");
    // The kernel asks again from the cursor of the last entry it took.
    let mut rest = Vec::new();
    ns.readdir(ME, root, reply.taken[1].cursor, true, &mut rest)
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].name, b"c");
    assert_eq!(ns.getattr(ME, rest[0].node).unwrap().size, 1);
}

#[test]
fn create_open_makes_an_open_file_in_one_call() {
    let ns = namespace();
    let attr = ns.create_open(ME, Node::HEAD, b"f", 0o640, 0o022).unwrap();
    assert_eq!((attr.kind, attr.perm), (FileKind::File, 0o640));
    let f = node(&attr);
    ns.write(ME, f, 0, b"open", false).unwrap();
    // Unlinked while open, it lives until its handle is released.
    ns.unlink(ME, Node::HEAD, b"f").unwrap();
    assert_eq!(ns.read(ME, f, 0, 10).unwrap(), b"open");
    ns.release(ME, f).unwrap();
    assert!(matches!(ns.getattr(ME, f), Err(FsError::NotFound)));
    assert!(matches!(
        ns.create_open(ME, Node::Snapshots, b"g", 0o644, 0),
        Err(FsError::ReadOnly)
    ));
}
