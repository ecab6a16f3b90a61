//! The catalog against a model: random trees changed at random over many
//! snapshots, some forgotten; `find`, `versions` and `diff` must answer
//! exactly what a walk of the kept snapshots' trees answers. And the cost
//! claim: taking in a snapshot rewrites the records of the changed
//! directories only.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::store::chunks::Store;
use strata::store::io::Disk;
use strata::tree::catalog::query::{diff, Change, FindSpec, Pattern, SizeTest};
use strata::tree::catalog::Catalog;
use strata::tree::diff::Attribute;
use strata::tree::head::Head;
use strata::tree::objects::{SnapshotRow, Tree, TreeEntry};
use strata::tree::snapshot::Snapshots;
use strata::tree::types::{Caller, FileKind, InodeNo, RenameMode, SetAttr, Timestamp};

const ME: Caller = Caller::ROOT;

fn mem_head() -> Head {
    let disk: Arc<dyn Disk> = Arc::new(strata::store::io::sim::SimDisk::new());
    init_encrypted(disk.clone());
    Head::new(open(disk)).unwrap()
}

/// Every path below `root` and its entry: the reference the catalog is
/// compared with.
fn walk(store: &Store, root: &[u8; 32]) -> BTreeMap<String, TreeEntry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), *root)];
    while let Some((dir, id)) = stack.pop() {
        for e in Tree::load(store, &id).unwrap().entries {
            let p = format!("{dir}/{}", String::from_utf8(e.name.clone()).unwrap());
            if let Some(s) = e.subtree {
                stack.push((p.clone(), s));
            }
            out.insert(p, e);
        }
    }
    out
}

/// What makes two versions of a path distinct, computed here from the
/// entry, independently of the catalog.
type Fields = (
    FileKind,
    u64,
    Timestamp,
    u32,
    u32,
    u32,
    Option<String>,
    Option<String>,
);

fn fields(e: &TreeEntry) -> Fields {
    let file = e.meta.kind == FileKind::File;
    (
        e.meta.kind,
        if e.meta.kind == FileKind::Dir {
            0
        } else {
            e.meta.size
        },
        e.meta.mtime,
        e.meta.uid,
        e.meta.gid,
        e.meta.perm,
        file.then(|| hex::encode(e.digest)),
        (e.meta.kind == FileKind::Symlink).then(|| String::from_utf8(e.target.clone()).unwrap()),
    )
}

/// The head and what the test knows of it: live paths and their inodes.
struct World {
    h: Head,
    rng: StdRng,
    /// Path -> (inode, is a directory); "" is the root.
    live: BTreeMap<String, (InodeNo, bool)>,
}

const NAMES: [&str; 10] = [
    "a",
    "b",
    "c",
    "d.txt",
    "e.log",
    "f1",
    "f2",
    "g",
    "report.pdf",
    "x",
];

impl World {
    fn dirs(&self) -> Vec<String> {
        self.live
            .iter()
            .filter(|(_, (_, d))| *d)
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn files(&self) -> Vec<String> {
        self.live
            .iter()
            .filter(|(p, (_, d))| !*d && !p.is_empty())
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn pick(&mut self, from: &[String]) -> Option<String> {
        (!from.is_empty()).then(|| from[self.rng.random_range(0..from.len())].clone())
    }

    fn split(p: &str) -> (&str, &str) {
        let i = p.rfind('/').unwrap();
        (&p[..i], &p[i + 1..])
    }

    fn content(&mut self) -> Vec<u8> {
        // Few distinct contents, so equal digests recur.
        let k = self.rng.random_range(0..6u64);
        bytes(k, 100 + k as usize * 37)
    }

    fn put(&mut self, ino: InodeNo) {
        let data = self.content();
        self.h
            .setattr(
                ME,
                ino,
                &SetAttr {
                    size: Some(0),
                    ..Default::default()
                },
            )
            .unwrap();
        self.h.write(ME, ino, 0, &data).unwrap();
        self.h.release(ME, ino).unwrap();
    }

    /// One random change.
    fn step(&mut self) {
        let dirs = self.dirs();
        let files = self.files();
        let name = NAMES[self.rng.random_range(0..NAMES.len())];
        match self.rng.random_range(0..11) {
            0 | 1 => {
                let dir = self.pick(&dirs).unwrap();
                let p = format!("{dir}/{name}");
                if self.live.contains_key(&p) {
                    return;
                }
                let parent = self.live[&dir].0;
                let ino = self.h.create(ME, parent, &n(name), 0o644, 0).unwrap().ino;
                self.put(ino);
                self.live.insert(p, (ino, false));
            }
            2 => {
                if let Some(f) = self.pick(&files) {
                    let ino = self.live[&f].0;
                    self.put(ino);
                }
            }
            3 => {
                if let Some(f) = self.pick(&files) {
                    let perm = [0o600, 0o644, 0o755][self.rng.random_range(0..3)];
                    let set = SetAttr {
                        perm: Some(perm),
                        ..Default::default()
                    };
                    self.h.setattr(ME, self.live[&f].0, &set).unwrap();
                }
            }
            4 => {
                let all: Vec<String> = self
                    .live
                    .keys()
                    .filter(|p| !p.is_empty())
                    .cloned()
                    .collect();
                if let Some(f) = self.pick(&all) {
                    let uid = [0, 1000, 1001][self.rng.random_range(0..3)];
                    let set = SetAttr {
                        uid: Some(uid),
                        ..Default::default()
                    };
                    self.h.setattr(ME, self.live[&f].0, &set).unwrap();
                }
            }
            5 => {
                if let Some(f) = self.pick(&files) {
                    let secs = self.rng.random_range(1_000_000..1_000_010);
                    let set = SetAttr {
                        mtime: Some(Timestamp { secs, nanos: 0 }),
                        ..Default::default()
                    };
                    self.h.setattr(ME, self.live[&f].0, &set).unwrap();
                }
            }
            6 => {
                if let Some(f) = self.pick(&files) {
                    let v = [self.rng.random_range(0..3u8)];
                    self.h
                        .setxattr(ME, self.live[&f].0, b"user.tag", &v, false, false)
                        .unwrap();
                }
            }
            7 => {
                if let Some(f) = self.pick(&files) {
                    let (dir, base) = Self::split(&f);
                    let parent = self.live[dir].0;
                    self.h.unlink(ME, parent, &n(base)).unwrap();
                    self.live.remove(&f);
                }
            }
            8 => {
                let (Some(f), Some(to)) = (self.pick(&files), self.pick(&dirs)) else {
                    return;
                };
                let target = format!("{to}/{name}");
                if self.live.contains_key(&target) {
                    return;
                }
                let (dir, base) = Self::split(&f);
                let (from_ino, to_ino) = (self.live[dir].0, self.live[&to].0);
                self.h
                    .rename(
                        ME,
                        from_ino,
                        &n(base),
                        to_ino,
                        &n(name),
                        RenameMode::Replace,
                    )
                    .unwrap();
                let v = self.live.remove(&f).unwrap();
                self.live.insert(target, v);
            }
            9 => {
                let dir = self.pick(&dirs).unwrap();
                let p = format!("{dir}/{name}");
                if self.live.contains_key(&p) || dir.matches('/').count() > 3 {
                    return;
                }
                let parent = self.live[&dir].0;
                let ino = self.h.mkdir(ME, parent, &n(name), 0o755, 0).unwrap().ino;
                self.live.insert(p, (ino, true));
            }
            _ => {
                // Remove a whole directory, deepest first.
                let sub: Vec<String> = dirs.into_iter().filter(|d| !d.is_empty()).collect();
                let Some(d) = self.pick(&sub) else {
                    return;
                };
                let prefix = format!("{d}/");
                let mut below: Vec<String> = self
                    .live
                    .keys()
                    .filter(|p| p.starts_with(&prefix) || **p == d)
                    .cloned()
                    .collect();
                below.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
                for p in below {
                    let (dir, base) = Self::split(&p);
                    let parent = self.live[dir].0;
                    if self.live[&p].1 {
                        self.h.rmdir(ME, parent, &n(base)).unwrap();
                    } else {
                        self.h.unlink(ME, parent, &n(base)).unwrap();
                    }
                    self.live.remove(&p);
                }
            }
        }
    }
}

/// The reference answer of `find`: for each path, runs of consecutive
/// selected snapshots holding a version that passes `keep`.
fn reference_find(
    taken: &BTreeMap<u64, BTreeMap<String, TreeEntry>>,
    selected: &[u64],
    matches: impl Fn(&str) -> bool,
    keep: impl Fn(&TreeEntry) -> bool,
) -> BTreeMap<String, Vec<(u64, u64, u64)>> {
    let mut out: BTreeMap<String, Vec<(u64, u64, u64)>> = BTreeMap::new();
    let paths: BTreeSet<&String> = selected.iter().flat_map(|s| taken[s].keys()).collect();
    for p in paths.into_iter().filter(|p| matches(p)) {
        let mut runs: Vec<(u64, u64, u64)> = Vec::new();
        let mut prev_in = false;
        for s in selected {
            let here = taken[s].get(p).is_some_and(&keep);
            if here {
                match runs.last_mut() {
                    Some(r) if prev_in => {
                        r.1 = *s;
                        r.2 += 1;
                    }
                    _ => runs.push((*s, *s, 1)),
                }
            }
            prev_in = here;
        }
        if !runs.is_empty() {
            out.insert(p.clone(), runs);
        }
    }
    out
}

fn catalog_find(
    h: &Head,
    spec: &FindSpec,
    only: Option<u64>,
) -> BTreeMap<String, Vec<(u64, u64, u64)>> {
    let pattern = Pattern::new(spec).unwrap();
    Catalog::of(h)
        .find(spec, &pattern, only)
        .unwrap()
        .into_iter()
        .map(|f| {
            (
                f.path,
                f.snapshots
                    .iter()
                    .map(|s| (s.first_seq, s.last_seq, s.count))
                    .collect(),
            )
        })
        .collect()
}

/// The reference answer of `versions`: runs of consecutive kept snapshots
/// with equal fields.
fn reference_versions(
    taken: &BTreeMap<u64, BTreeMap<String, TreeEntry>>,
    kept: &[u64],
    path: &str,
) -> Vec<(Fields, u64, u64, u64)> {
    let mut out: Vec<(Fields, u64, u64, u64)> = Vec::new();
    let mut prev: Option<Fields> = None;
    for s in kept {
        let f = taken[s].get(path).map(fields);
        match (&f, out.last_mut()) {
            (Some(f), Some(last)) if prev.as_ref() == Some(f) => {
                last.2 = *s;
                last.3 += 1;
            }
            (Some(f), _) => out.push((f.clone(), *s, *s, 1)),
            (None, _) => {}
        }
        prev = f;
    }
    out
}

fn catalog_versions(h: &Head, path: &str) -> Vec<(Fields, u64, u64, u64)> {
    Catalog::of(h)
        .versions(path.as_bytes())
        .unwrap()
        .into_iter()
        .map(|v| {
            (
                (
                    v.kind, v.size, v.mtime, v.uid, v.gid, v.mode, v.digest, v.target,
                ),
                v.snapshots.first_seq,
                v.snapshots.last_seq,
                v.snapshots.count,
            )
        })
        .collect()
}

/// The reference answer of `diff`, from two full walks.
fn reference_diff(
    a: &BTreeMap<String, TreeEntry>,
    b: &BTreeMap<String, TreeEntry>,
) -> Vec<(String, Change, Vec<Attribute>)> {
    let mut out = Vec::new();
    let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for p in paths {
        match (a.get(p), b.get(p)) {
            (Some(_), None) => out.push((p.clone(), Change::Removed, vec![])),
            (None, Some(_)) => out.push((p.clone(), Change::Added, vec![])),
            (Some(x), Some(y)) => {
                let (m, k) = (&x.meta, &y.meta);
                let mut what = Vec::new();
                if m.kind != k.kind {
                    what.push(Attribute::Kind);
                }
                if m.kind == FileKind::File && k.kind == FileKind::File && x.digest != y.digest {
                    what.push(Attribute::Content);
                }
                if m.perm != k.perm {
                    what.push(Attribute::Mode);
                }
                if (m.uid, m.gid) != (k.uid, k.gid) {
                    what.push(Attribute::Owner);
                }
                if m.mtime != k.mtime {
                    what.push(Attribute::Times);
                }
                if x.xattrs != y.xattrs {
                    what.push(Attribute::Xattrs);
                }
                if x.target != y.target {
                    what.push(Attribute::Target);
                }
                if !what.is_empty() {
                    out.push((p.clone(), Change::Changed, what));
                }
            }
            (None, None) => unreachable!(),
        }
    }
    out
}

/// A find to run: the spec, and which paths and entries the reference keeps.
type Case = (
    FindSpec,
    Box<dyn Fn(&str) -> bool>,
    Box<dyn Fn(&TreeEntry) -> bool>,
);

fn check_all(
    h: &Head,
    rng: &mut StdRng,
    taken: &BTreeMap<u64, BTreeMap<String, TreeEntry>>,
    ever: &BTreeSet<String>,
) {
    let rows: Vec<SnapshotRow> = Snapshots::of(h).list().unwrap();
    let kept: Vec<u64> = rows.iter().map(|r| r.record.seq).collect();
    // find: base-name globs, full-path globs, regexes, filters.
    let base = |p: &str| p.rsplit('/').next().unwrap().to_owned();
    let cases: Vec<Case> = vec![
        (
            FindSpec {
                pattern: "*".into(),
                ..Default::default()
            },
            Box::new(|_| true),
            Box::new(|_| true),
        ),
        (
            FindSpec {
                pattern: "f?".into(),
                ..Default::default()
            },
            Box::new(move |p| {
                let b = base(p);
                b.len() == 2 && b.starts_with('f')
            }),
            Box::new(|_| true),
        ),
        (
            FindSpec {
                pattern: "/a/*".into(),
                path: true,
                ..Default::default()
            },
            Box::new(|p| p.starts_with("/a/") && p.matches('/').count() == 2),
            Box::new(|_| true),
        ),
        (
            FindSpec {
                pattern: "/**/b/**".into(),
                path: true,
                ..Default::default()
            },
            Box::new(|p| p.contains("/b/")),
            Box::new(|_| true),
        ),
        (
            FindSpec {
                pattern: r"\.(txt|log)$".into(),
                regex: true,
                ..Default::default()
            },
            Box::new(|p| p.ends_with(".txt") || p.ends_with(".log")),
            Box::new(|_| true),
        ),
        (
            FindSpec {
                pattern: "*".into(),
                size: Some(SizeTest::Over(200)),
                kind: Some(FileKind::File),
                ..Default::default()
            },
            Box::new(|_| true),
            Box::new(|e| e.meta.kind == FileKind::File && e.meta.size > 200),
        ),
        (
            FindSpec {
                pattern: "*".into(),
                uid: Some(1000),
                newer: Some(Timestamp {
                    secs: 1_000_004,
                    nanos: 0,
                }),
                ..Default::default()
            },
            Box::new(|_| true),
            Box::new(|e| {
                e.meta.uid == 1000
                    && e.meta.mtime
                        > Timestamp {
                            secs: 1_000_004,
                            nanos: 0,
                        }
            }),
        ),
        (
            FindSpec {
                pattern: "*".into(),
                kind: Some(FileKind::Dir),
                ..Default::default()
            },
            Box::new(|_| true),
            Box::new(|e| e.meta.kind == FileKind::Dir),
        ),
    ];
    for (spec, matches, keep) in &cases {
        assert_eq!(
            catalog_find(h, spec, None),
            reference_find(taken, &kept, matches, keep),
            "find {spec:?} over kept snapshots {kept:?}"
        );
    }
    // One snapshot, and a time window.
    let one = kept[rng.random_range(0..kept.len())];
    let spec = FindSpec {
        pattern: "*".into(),
        ..Default::default()
    };
    assert_eq!(
        catalog_find(h, &spec, Some(one)),
        reference_find(taken, &[one], |_| true, |_| true),
        "find --snapshot {one}"
    );
    let (i, j) = {
        let a = rng.random_range(0..kept.len());
        let b = rng.random_range(a..kept.len());
        (a, b)
    };
    let window = FindSpec {
        pattern: "*".into(),
        since: Some(rows[i].record.time),
        until: Some(rows[j].record.time),
        ..Default::default()
    };
    assert_eq!(
        catalog_find(h, &window, None),
        reference_find(taken, &kept[i..=j], |_| true, |_| true),
        "find --since/--until over {:?}",
        &kept[i..=j]
    );
    // versions of every path any snapshot ever held (forgotten ones too).
    for p in ever {
        assert_eq!(
            catalog_versions(h, p),
            reference_versions(taken, &kept, p),
            "versions {p} over kept snapshots {kept:?}"
        );
    }
    // diff of random pairs, whole and below a path.
    let store = h.repo().store();
    for _ in 0..6 {
        let a = &rows[rng.random_range(0..rows.len())];
        let b = &rows[rng.random_range(0..rows.len())];
        let got: Vec<_> = diff(store, a, b, None)
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|d| (d.path, d.change, d.what))
            .collect();
        let (ta, tb) = (&taken[&a.record.seq], &taken[&b.record.seq]);
        assert_eq!(
            got,
            reference_diff(ta, tb),
            "diff {} {}",
            a.record.seq,
            b.record.seq
        );
        for sub in ["/a", "/b"] {
            let got = diff(store, a, b, Some(sub.as_bytes())).unwrap();
            let inside = |m: &BTreeMap<String, TreeEntry>| -> BTreeMap<String, TreeEntry> {
                m.iter()
                    .filter(|(p, _)| *p == sub || p.starts_with(&format!("{sub}/")))
                    .map(|(p, e)| (p.clone(), e.clone()))
                    .collect()
            };
            let (ia, ib) = (inside(ta), inside(tb));
            if ia.is_empty() && ib.is_empty() {
                assert!(got.is_none(), "diff below {sub}, which neither holds");
                continue;
            }
            let got: Vec<_> = got
                .unwrap()
                .into_iter()
                .map(|d| (d.path, d.change, d.what))
                .collect();
            assert_eq!(
                got,
                reference_diff(&ia, &ib),
                "diff {} {} {sub}",
                a.record.seq,
                b.record.seq
            );
        }
    }
}

fn run_model(seed: u64, snapshots: usize) {
    let mut w = World {
        h: mem_head(),
        rng: StdRng::seed_from_u64(seed),
        live: BTreeMap::from([(String::new(), (InodeNo::ROOT, true))]),
    };
    let mut check_rng = StdRng::seed_from_u64(seed ^ 0xc0ffee);
    let mut taken = BTreeMap::new();
    let mut ever = BTreeSet::new();
    for k in 0..snapshots {
        let steps = if k == 0 {
            40
        } else {
            w.rng.random_range(1..12)
        };
        for _ in 0..steps {
            w.step();
        }
        let rec = Snapshots::of(&w.h).take(ME, None).unwrap();
        let tree = walk(w.h.repo().store(), &rec.root.subtree.unwrap());
        ever.extend(tree.keys().cloned());
        taken.insert(rec.seq, tree);
        // Forget now and then: an old one, or the newest (the catalog's tip).
        if k > 2 && w.rng.random_range(0..4) == 0 {
            let kept: Vec<u64> = Snapshots::of(&w.h)
                .list()
                .unwrap()
                .iter()
                .map(|r| r.record.seq)
                .collect();
            let victim = if w.rng.random_bool(0.3) {
                *kept.last().unwrap()
            } else {
                kept[w.rng.random_range(0..kept.len())]
            };
            Snapshots::of(&w.h).forget(ME, &[victim], "test").unwrap();
        }
        if k % 4 == 3 {
            check_all(&w.h, &mut check_rng, &taken, &ever);
        }
    }
    check_all(&w.h, &mut check_rng, &taken, &ever);
    // A rebuild from the trees answers the same.
    let before = catalog_find(
        &w.h,
        &FindSpec {
            pattern: "*".into(),
            ..Default::default()
        },
        None,
    );
    Catalog::of(&w.h).rebuild(ME).unwrap();
    let after = catalog_find(
        &w.h,
        &FindSpec {
            pattern: "*".into(),
            ..Default::default()
        },
        None,
    );
    assert_eq!(before, after, "rebuilt catalog");
    check_all(&w.h, &mut check_rng, &taken, &ever);
}

#[test]
fn find_versions_and_diff_answer_what_a_walk_of_the_kept_snapshots_answers() {
    run_model(1, 14);
}

#[test]
fn the_same_with_other_random_changes() {
    run_model(7, 10);
}

#[test]
fn taking_in_a_snapshot_rewrites_only_the_records_of_changed_directories() {
    let h = mem_head();
    let mut chain = InodeNo::ROOT;
    for name in ["a", "b", "c"] {
        chain = h.mkdir(ME, chain, &n(name), 0o755, 0).unwrap().ino;
    }
    let f = h.create(ME, chain, &n("f"), 0o644, 0).unwrap().ino;
    // 100k files in 100 directories beside the chain.
    for d in 0..100 {
        let dir = h
            .mkdir(ME, InodeNo::ROOT, &n(&format!("d{d:03}")), 0o755, 0)
            .unwrap()
            .ino;
        for i in 0..1000 {
            h.create(ME, dir, &n(&format!("file-{i:04}")), 0o644, 0)
                .unwrap();
        }
    }
    Snapshots::of(&h).take(ME, None).unwrap();
    let first = h.counters.last_catalog_records.load(Ordering::Relaxed);
    assert_eq!(
        first, 104,
        "every directory's record: the root, a, b, c and the 100"
    );
    h.write(ME, f, 0, b"changed").unwrap();
    h.release(ME, f).unwrap();
    Snapshots::of(&h).take(ME, None).unwrap();
    let records = h.counters.last_catalog_records.load(Ordering::Relaxed);
    let trees = h.counters.last_catalog_trees.load(Ordering::Relaxed);
    assert_eq!(
        records, 1,
        "only c's record: a, b and the root hold no changed entry"
    );
    assert_eq!(trees, 8, "the chain's trees, old and new: root, a, b, c");
    let found = Catalog::of(&h)
        .find(
            &FindSpec {
                pattern: "/a/b/c/f".into(),
                path: true,
                ..Default::default()
            },
            &Pattern::new(&FindSpec {
                pattern: "/a/b/c/f".into(),
                path: true,
                ..Default::default()
            })
            .unwrap(),
            None,
        )
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].snapshots.len(), 1, "one run of snapshots");
    assert_eq!(found[0].snapshots[0].count, 2);
    assert_eq!(Catalog::of(&h).versions(b"/a/b/c/f").unwrap().len(), 2);
}

#[test]
fn prune_keeps_the_catalog_tip_when_its_snapshot_is_forgotten() {
    let h = mem_head();
    let f = h.create(ME, InodeNo::ROOT, &n("f"), 0o644, 0).unwrap().ino;
    h.write(ME, f, 0, &bytes(1, 5000)).unwrap();
    h.release(ME, f).unwrap();
    Snapshots::of(&h).take(ME, None).unwrap();
    let d = h
        .mkdir(ME, InodeNo::ROOT, &n("gone"), 0o755, 0)
        .unwrap()
        .ino;
    h.create(ME, d, &n("g"), 0o644, 0).unwrap();
    let second = Snapshots::of(&h).take(ME, None).unwrap();
    assert_eq!(Catalog::of(&h).tip().unwrap().unwrap().seq, second.seq);
    h.unlink(ME, d, &n("g")).unwrap();
    h.rmdir(ME, InodeNo::ROOT, &n("gone")).unwrap();
    Snapshots::of(&h).forget(ME, &[second.seq], "test").unwrap();
    h.repo().store().flush_pack().unwrap();
    // Repack everything that holds any garbage (the forgotten record).
    let report = strata::ops::prune::prune(
        &h,
        ME,
        strata::ops::prune::PruneOptions {
            max_unused_percent: 0.0,
            ..Default::default()
        },
        strata::ops::prune::PruneContext::default(),
    )
    .unwrap();
    assert!(
        report.packs_deleted + report.packs_repacked > 0,
        "{report:?}"
    );
    let third = Snapshots::of(&h).take(ME, None).unwrap();
    assert_eq!(
        Catalog::of(&h).tip().unwrap().unwrap().seq,
        third.seq,
        "the catalog caught up from the forgotten tip"
    );
    let all = FindSpec {
        pattern: "*".into(),
        ..Default::default()
    };
    let found = Catalog::of(&h)
        .find(&all, &Pattern::new(&all).unwrap(), None)
        .unwrap();
    let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/f"],
        "what only the forgotten snapshot held is not found"
    );
    assert_eq!(found[0].snapshots[0].count, 2);
}
