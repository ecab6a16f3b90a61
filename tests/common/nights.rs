//! A repository's nights on the engine: files written into the head,
//! snapshots taken, and the checks that everything reads back.

use std::collections::BTreeMap;

use strata::ops::check::{check, ReadData};
use strata::tree::head::Head;
use strata::tree::objects::{Tree, TreeEntry};
use strata::tree::snapshot::Snapshots;
use strata::tree::types::{Caller, InodeNo};

use super::{bytes, n};

/// Who the tests are.
pub const ME: Caller = Caller::ROOT;

/// File name → content, of one snapshot or the head.
pub type Files = BTreeMap<String, Vec<u8>>;

/// Writes `name` in the head's root, replacing what it held.
pub fn write(h: &Head, name: &str, data: &[u8]) {
    let ino = match h.lookup(ME, InodeNo::ROOT, &n(name)) {
        Ok(a) => {
            let empty = strata::tree::types::SetAttr {
                size: Some(0),
                ..Default::default()
            };
            h.setattr(ME, a.ino, &empty).unwrap();
            a.ino
        }
        Err(_) => h.create(ME, InodeNo::ROOT, &n(name), 0o644, 0).unwrap().ino,
    };
    h.write(ME, ino, 0, data).unwrap();
}

/// Four nights: a shared file, and one file rewritten every night; returns
/// what each snapshot holds, by number.
pub fn nights(h: &Head) -> BTreeMap<u64, Files> {
    let mut files = Files::new();
    let shared = bytes(99, 300_000);
    write(h, "shared", &shared);
    files.insert("shared".into(), shared);
    let mut out = BTreeMap::new();
    for night in 0..4u64 {
        let data = bytes(night, 700_000);
        write(h, "nightly", &data);
        files.insert("nightly".into(), data);
        let seq = Snapshots::of(h).take(ME, None).unwrap().seq;
        out.insert(seq, files.clone());
    }
    out
}

pub fn entry_bytes(h: &Head, e: &TreeEntry) -> Vec<u8> {
    Snapshots::of(h)
        .read_file(ME, e, 0, e.meta.size as u32)
        .unwrap()
}

/// Every file of every kept snapshot reads back as it was written, and so
/// does the head.
pub fn all_intact(h: &Head, expected: &BTreeMap<u64, Files>) {
    snapshots_intact(h, expected);
    let newest = expected.values().last().unwrap();
    for (name, data) in newest {
        let ino = h.lookup(ME, InodeNo::ROOT, &n(name)).unwrap().ino;
        assert_eq!(&h.read(ME, ino, 0, u32::MAX).unwrap(), data, "head/{name}");
    }
}

/// Every file of every kept snapshot reads back as it was written (a
/// replica's head is its own: only the snapshots are compared).
pub fn snapshots_intact(h: &Head, expected: &BTreeMap<u64, Files>) {
    let s = Snapshots::of(h);
    for row in s.list().unwrap() {
        let want = &expected[&row.record.seq];
        let root = Tree::load(h.repo().store(), &row.record.root.subtree.unwrap()).unwrap();
        let got: Files = root
            .entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.name).into_owned(),
                    entry_bytes(h, e),
                )
            })
            .collect();
        assert_eq!(&got, want, "snapshot {}", row.record.seq);
    }
}

pub fn clean(h: &Head) {
    let report = check(h.repo(), ReadData::All, false, |_, _| {}).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let errors = Snapshots::of(h).verify(ME).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
}
