//! The crash-image layer under the head: at every sync point, every image a
//! power cut could leave reopens; every file fsynced before that point reads
//! back as it was at its fsync or as a later version (a crash may keep
//! work done after the last durable commit, never lose what it covered),
//! and every snapshot completed before it is there and reads back whole.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use strata::store::io::sim::SimDisk;
use strata::store::io::Disk;
use strata::tree::head::Head;
use strata::tree::objects::Tree;
use strata::tree::snapshot::Snapshots;
use strata::tree::types::{Caller, InodeNo};

const ME: Caller = Caller::ROOT;

/// What is acknowledged at some moment: fsynced files and completed snapshots.
#[derive(Clone, Default)]
struct Acked {
    files: BTreeMap<String, Vec<u8>>,
    snapshots: BTreeMap<u64, BTreeMap<String, Vec<u8>>>,
}

fn read_path(h: &Head, name: &str) -> Vec<u8> {
    let ino = h.lookup(ME, InodeNo::ROOT, &n(name)).unwrap().ino;
    h.read(ME, ino, 0, u32::MAX).unwrap()
}

#[test]
fn fsynced_files_and_snapshots_survive_every_crash_image() {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    let h = Head::new(open(disk)).unwrap();
    sim.record_sync_points();
    let mut acked = Acked::default();
    let mut history = vec![(0usize, acked.clone())];
    let mut current: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // Every version each file had, with the sync point count when it was written.
    let mut versions: BTreeMap<String, Vec<(usize, Vec<u8>)>> = BTreeMap::new();
    for round in 0..8u64 {
        let name = format!("f{}", round % 3);
        let data = bytes(round, 30_000 + round as usize * 17_000);
        let ino = match h.lookup(ME, InodeNo::ROOT, &n(&name)) {
            Ok(a) => {
                h.setattr(
                    ME,
                    a.ino,
                    &strata::tree::types::SetAttr {
                        size: Some(0),
                        ..Default::default()
                    },
                )
                .unwrap();
                a.ino
            }
            Err(_) => {
                h.create(ME, InodeNo::ROOT, &n(&name), 0o644, 0)
                    .unwrap()
                    .ino
            }
        };
        versions
            .entry(name.clone())
            .or_default()
            .push((sim.sync_point_count(), data.clone()));
        h.write(ME, ino, 0, &data).unwrap();
        current.insert(name.clone(), data.clone());
        if round % 3 == 2 {
            let rec = Snapshots::of(&h).take(ME, None).unwrap();
            acked.snapshots.insert(rec.seq, current.clone());
            acked.files = current.clone();
        } else {
            h.fsync(ME, ino).unwrap();
            // fsync flushes every file: all current content is acknowledged.
            acked.files = current.clone();
        }
        history.push((sim.sync_point_count(), acked.clone()));
    }
    drop(h);
    let points = sim.sync_point_count();
    assert!(points > 20, "only {points} sync points");
    for p in 0..points {
        let expected = &history.iter().rev().find(|(k, _)| *k <= p).unwrap().1;
        for (k, image) in sim.crash_images_at(p, p as u64, 2).into_iter().enumerate() {
            let d: Arc<dyn Disk> = Arc::new(image);
            let h = Head::new(open(d)).unwrap_or_else(|e| panic!("point {p} image {k}: {e}"));
            for (name, data) in &expected.files {
                let got = read_path(&h, name);
                // Later versions, and the empty file a truncate leaves on the way, may survive too.
                let acked_at = versions[name].iter().position(|(_, v)| v == data).unwrap();
                let later = versions[name][acked_at..].iter().any(|(_, v)| got == *v);
                let which: Vec<(usize, usize, bool)> = versions[name]
                    .iter()
                    .map(|(at, v)| {
                        (
                            *at,
                            v.len(),
                            got.len() <= v.len() && v[..got.len()] == got[..],
                        )
                    })
                    .collect();
                assert!(got == *data || got.is_empty() || later, "point {p} image {k}: {name} ({} bytes) is neither its fsynced content nor a later version; versions (written at, len, got is prefix): {which:?}", got.len());
            }
            let rows = Snapshots::of(&h).list().unwrap();
            for (seq, files) in &expected.snapshots {
                let row = rows
                    .iter()
                    .find(|r| r.record.seq == *seq)
                    .unwrap_or_else(|| panic!("point {p} image {k}: snapshot {seq} lost"));
                let tree = Tree::load(h.repo().store(), &row.record.root.subtree.unwrap()).unwrap();
                for (name, data) in files {
                    let e = tree
                        .entries
                        .iter()
                        .find(|e| e.name == name.as_bytes())
                        .unwrap();
                    assert!(
                        Snapshots::of(&h).read_file(ME, e, 0, u32::MAX).unwrap() == *data,
                        "point {p} image {k}: snapshot {seq} {name}"
                    );
                }
            }
            let report = strata::ops::check::check(
                h.repo(),
                strata::ops::check::ReadData::All,
                false,
                |_, _| {},
            )
            .unwrap();
            assert!(report.ok(), "point {p} image {k}: {:?}", report.errors);
        }
    }
}
