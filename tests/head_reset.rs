//! `Snapshots::reset_head` (`strata head reset --to`): head/ becomes a
//! snapshot's tree at once, directories load when first needed, and
//! nothing a later snapshot stores can be stale.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use strata::store::io::sim::SimDisk;
use strata::store::io::Disk;
use strata::tree::head::Head;
use strata::tree::objects::Tree;
use strata::tree::snapshot::Snapshots;
use strata::tree::types::{Caller, FileKind, FsError, InodeNo, OpenMode, RenameMode};

const ME: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 1,
};
const ROOT: InodeNo = InodeNo::ROOT;

fn head() -> (SimDisk, Head) {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    (sim, Head::new(open(disk)).unwrap())
}

fn reopen(sim: &SimDisk) -> Head {
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    Head::new(open(disk)).unwrap()
}

/// What a walk of head/ sees: per path its kind, mode, size, nlink,
/// content (or link target) and xattrs.
type Walk = BTreeMap<String, (FileKind, u32, u64, u32, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>)>;

fn walk(h: &Head) -> Walk {
    let mut out = Walk::new();
    let mut stack = vec![(String::new(), ROOT)];
    while let Some((path, dir)) = stack.pop() {
        let mut cursor = 0;
        loop {
            let batch = h.readdir(ME, dir, cursor).unwrap();
            let Some(last) = batch.last() else { break };
            cursor = last.cursor;
            for e in batch {
                let p = format!("{path}/{}", String::from_utf8_lossy(e.name.as_bytes()));
                let a = h.getattr(ME, e.ino).unwrap();
                let body = match a.kind {
                    FileKind::File => h.read(ME, e.ino, 0, u32::MAX).unwrap(),
                    FileKind::Symlink => h.readlink(ME, e.ino).unwrap(),
                    _ => Vec::new(),
                };
                let xattrs = h
                    .listxattr(ME, e.ino)
                    .unwrap()
                    .into_iter()
                    .map(|k| {
                        let v = h.getxattr(ME, e.ino, &k).unwrap();
                        (k, v)
                    })
                    .collect();
                if a.kind == FileKind::Dir {
                    stack.push((p.clone(), e.ino));
                }
                out.insert(p, (a.kind, a.perm, a.size, a.nlink, body, xattrs));
            }
        }
    }
    out
}

fn path(h: &Head, p: &str) -> InodeNo {
    p.split('/')
        .filter(|s| !s.is_empty())
        .fold(ROOT, |dir, name| h.lookup(ME, dir, &n(name)).unwrap().ino)
}

fn file(h: &Head, dir: InodeNo, name: &str, data: &[u8]) -> InodeNo {
    let ino = h.create(ME, dir, &n(name), 0o644, 0).unwrap().ino;
    h.write(ME, ino, 0, data).unwrap();
    h.flush(ME, ino).unwrap();
    ino
}

/// a/ with a file (xattr), a/b/ with a file and a hard link to a/f, a
/// symlink, and c/ with 50 files.
fn populate(h: &Head) {
    let a = h.mkdir(ME, ROOT, &n("a"), 0o750, 0).unwrap().ino;
    let b = h.mkdir(ME, a, &n("b"), 0o755, 0).unwrap().ino;
    let f = file(h, a, "f", &bytes(1, 300_000));
    h.setxattr(ME, f, b"user.tag", b"night", false, false)
        .unwrap();
    file(h, b, "g", &bytes(2, 5_000));
    h.link(ME, f, b, &n("f2")).unwrap();
    h.symlink(ME, ROOT, &n("s"), b"a/f").unwrap();
    let c = h.mkdir(ME, ROOT, &n("c"), 0o755, 0).unwrap().ino;
    for i in 0..50 {
        file(h, c, &format!("x{i}"), &bytes(10 + i, 2_000));
    }
}

/// Changes of every kind after the snapshot: content, names, xattrs,
/// new and removed files, a moved directory.
fn scribble(h: &Head) {
    let f = path(h, "a/f");
    h.write(ME, f, 100, b"overwritten").unwrap();
    h.flush(ME, f).unwrap();
    h.setxattr(ME, f, b"user.tag", b"changed", false, false)
        .unwrap();
    h.unlink(ME, path(h, "a/b"), &n("g")).unwrap();
    file(h, ROOT, "new", b"later");
    h.rename(ME, ROOT, &n("c"), ROOT, &n("c-moved"), RenameMode::Replace)
        .unwrap();
    h.mkdir(ME, path(h, "a"), &n("late"), 0o755, 0).unwrap();
}

#[test]
fn a_reset_brings_back_the_snapshot_and_stores_nothing_new() {
    let (_, h) = head();
    populate(&h);
    let snap = Snapshots::of(&h).take(ME, None).unwrap();
    let want = walk(&h);
    scribble(&h);
    assert_ne!(walk(&h), want);

    let out = Snapshots::of(&h).reset_head(ME, snap.seq).unwrap();
    assert_eq!(out.seq, snap.seq);
    assert!(out.discarded_inodes > 50, "{out:?}");
    assert_eq!(walk(&h), want);

    // Reset again, and snapshot before anything is read: the whole tree
    // is reused, nothing is serialized.
    Snapshots::of(&h).reset_head(ME, snap.seq).unwrap();
    let again = Snapshots::of(&h).take(ME, None).unwrap();
    assert_eq!(again.stats.dirs_serialized, 0);
    assert_eq!(again.root.subtree, snap.root.subtree);
}

#[test]
fn a_reset_costs_the_same_for_any_tree_and_loads_only_what_is_used() {
    let (_, h) = head();
    populate(&h);
    let snap = Snapshots::of(&h).take(ME, None).unwrap();
    Snapshots::of(&h).reset_head(ME, snap.seq).unwrap();
    assert_eq!(h.stats().unwrap().inodes, 1, "only the root, unloaded");
    // A lookup in a/ loads the root and a/, not c/ and its 50 files.
    path(&h, "a/f");
    let loaded = h.stats().unwrap().inodes;
    assert!(loaded < 10, "{loaded} inodes loaded for one lookup");
    assert_eq!(
        h.read(ME, path(&h, "c/x7"), 0, u32::MAX).unwrap(),
        bytes(17, 2_000)
    );
    assert!(h.stats().unwrap().inodes > 50);
}

#[test]
fn namespace_rules_hold_in_directories_not_loaded_yet() {
    let (_, h) = head();
    populate(&h);
    h.mkdir(ME, ROOT, &n("empty"), 0o755, 0).unwrap();
    let snap = Snapshots::of(&h).take(ME, None).unwrap();
    let check = |op: &dyn Fn(&Head) -> Result<(), FsError>, want: FsError| {
        Snapshots::of(&h).reset_head(ME, snap.seq).unwrap();
        let got = op(&h).unwrap_err();
        assert_eq!(
            std::mem::discriminant(&got),
            std::mem::discriminant(&want),
            "{got:?}"
        );
    };
    check(&|h| h.rmdir(ME, ROOT, &n("c")).map(drop), FsError::NotEmpty);
    check(
        &|h| {
            h.rename(ME, ROOT, &n("empty"), ROOT, &n("a"), RenameMode::Replace)
                .map(drop)
        },
        FsError::NotEmpty,
    );
    check(
        &|h| h.create(ME, ROOT, &n("c"), 0o644, 0).map(drop),
        FsError::Exists,
    );
    check(
        &|h| h.mkdir(ME, path(h, "a"), &n("b"), 0o755, 0).map(drop),
        FsError::Exists,
    );
    check(
        &|h| h.unlink(ME, path(h, "c"), &n("missing")).map(drop),
        FsError::NotFound,
    );
    // Each reset left the tree as the snapshot has it.
    Snapshots::of(&h).reset_head(ME, snap.seq).unwrap();
    h.rmdir(ME, ROOT, &n("empty")).unwrap();
    h.unlink(ME, path(&h, "c"), &n("x3")).unwrap();
    assert_eq!(walk(&h).keys().filter(|p| p.starts_with("/c/")).count(), 49);
}

#[test]
fn changing_a_hard_linked_file_reaches_its_names_in_directories_not_loaded() {
    let (_, h) = head();
    populate(&h);
    let snap = Snapshots::of(&h).take(ME, None).unwrap();
    Snapshots::of(&h).reset_head(ME, snap.seq).unwrap();
    // Reach the file by a/f only: a/b/, which holds its other name, is
    // not loaded.
    let f = path(&h, "a/f");
    h.write(ME, f, 0, b"NEW").unwrap();
    h.flush(ME, f).unwrap();
    let after = Snapshots::of(&h).take(ME, None).unwrap();
    let root = Tree::load(h.repo().store(), &after.root.subtree.unwrap()).unwrap();
    let a = root.entries.iter().find(|e| e.name == b"a").unwrap();
    let a = Tree::load(h.repo().store(), &a.subtree.unwrap()).unwrap();
    let b = a.entries.iter().find(|e| e.name == b"b").unwrap();
    let b = Tree::load(h.repo().store(), &b.subtree.unwrap()).unwrap();
    let f2 = b.entries.iter().find(|e| e.name == b"f2").unwrap();
    let f1 = a.entries.iter().find(|e| e.name == b"f").unwrap();
    assert_eq!(f2.digest, f1.digest, "a/b/f2 kept the old content");
    assert_eq!(
        &Snapshots::of(&h).read_file(ME, f2, 0, 3).unwrap(),
        b"NEW",
        "the snapshot's a/b/f2"
    );
    assert_eq!(&h.read(ME, path(&h, "a/b/f2"), 0, 3).unwrap(), b"NEW");
}

#[test]
fn a_reset_is_refused_while_a_file_is_open() {
    let (_, h) = head();
    populate(&h);
    let snap = Snapshots::of(&h).take(ME, None).unwrap();
    let ino = file(&h, ROOT, "open", b"data");
    h.open(ME, ino, OpenMode::Write).unwrap();
    assert!(matches!(
        Snapshots::of(&h).reset_head(ME, snap.seq),
        Err(FsError::Busy(_))
    ));
    assert_eq!(h.lookup(ME, ROOT, &n("open")).unwrap().ino, ino);
    h.release(ME, ino).unwrap();
    Snapshots::of(&h).reset_head(ME, snap.seq).unwrap();
    assert!(matches!(
        h.lookup(ME, ROOT, &n("open")),
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        Snapshots::of(&h).reset_head(ME, snap.seq + 1),
        Err(FsError::NotFound)
    ));
}

#[test]
fn a_reset_is_durable_and_unloaded_directories_survive_a_crash() {
    let (sim, h) = head();
    populate(&h);
    let snap = Snapshots::of(&h).take(ME, None).unwrap();
    let want = walk(&h);
    scribble(&h);
    h.commit().unwrap();
    Snapshots::of(&h).reset_head(ME, snap.seq).unwrap();
    // The crash comes before anything was loaded or committed again.
    let image = sim.crash_images(7, 0).remove(0);
    drop(h);
    let h = reopen(&image);
    assert_eq!(h.stats().unwrap().inodes, 1, "the reset's state, unloaded");
    assert_eq!(walk(&h), want);
    h.commit().unwrap();
    drop(h);
    assert_eq!(walk(&reopen(&image)), want);
}
