//! `strata check` above the store: what head/ refers to must be stored.
//! A chunk a head file uses that the index lost is damage, found and
//! reported with exit 13, though every pack is sound.

mod common;

use std::sync::Arc;

use common::*;
use strata::ops::check::{check_repo, ReadData};
use strata::store::io::{Disk, LocalDisk};
use strata::tree::head::Head;
use strata::tree::types::{Caller, InodeNo};

const ME: Caller = Caller::ROOT;

#[test]
fn a_chunk_head_refers_to_that_the_index_lost_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(dir.path()));
    init_encrypted(disk.clone());
    let chunk = {
        let h = Head::new(open(disk.clone())).unwrap();
        let f = h
            .create(ME, InodeNo::ROOT, &n("chart"), 0o644, 0)
            .unwrap()
            .ino;
        h.write(ME, f, 0, &bytes(5, 100_000)).unwrap();
        h.flush_all(ME).unwrap();
        h.commit().unwrap();
        let (chunks, _) = h.rtx().unwrap().references().unwrap();
        chunks[0]
    };
    let report = check_repo(open(disk.clone()), ME, ReadData::All, |_, _| {}).unwrap();
    assert!(report.ok(), "{:?}", report.errors);

    // The index loses the chunk's row; the pack still holds the object.
    {
        let db = redb::Database::open(dir.path().join("index.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<[u8; 32], &[u8]> = redb::TableDefinition::new("chunks");
            let mut t = tx.open_table(def).unwrap();
            assert!(t.remove(chunk.0).unwrap().is_some());
        }
        tx.commit().unwrap();
    }
    let report = check_repo(open(disk), ME, ReadData::None, |_, _| {}).unwrap();
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("head/") && e.contains(&chunk.to_string())),
        "{:?}",
        report.errors
    );
}

#[test]
fn the_verify_cycle_reads_on_from_its_cursor_until_every_pack_is_read() {
    let (_dir, disk) = packed(12);
    let month = ReadData::Cycle {
        cycle_secs: 30 * 86_400,
    };
    let run = |read| check_repo(open(disk.clone()), ME, read, |_, _| {}).unwrap();
    // A first run counts a day of a 30-day cycle: one pack of the few.
    let first = run(month);
    assert!(first.ok(), "{:?}", first.errors);
    let c = first.cycle.unwrap();
    assert!(c.packs >= 5, "{c:?}");
    assert_eq!((c.packs_read, c.packs_covered, c.cycles), (1, 1, 0));
    assert!(first.chunks_read > 0);
    // The next run goes on from the cursor.
    let c = run(month).cycle.unwrap();
    assert_eq!((c.packs_read, c.packs_covered), (1, 2), "{c:?}");
    // A cycle whose time has run out reads everything left, and completes.
    let c = run(ReadData::Cycle { cycle_secs: 1 }).cycle.unwrap();
    assert_eq!(c.packs_covered, c.packs, "{c:?}");
    assert_eq!(c.packs_read, c.packs - 2);
    assert_eq!(c.cycles, 1);
    assert!(c.last_completed > 0);
    // And the next run starts a new one.
    let c = run(month).cycle.unwrap();
    assert_eq!((c.packs_covered, c.cycles), (1, 1), "{c:?}");
}

#[test]
fn the_verify_cycle_stays_on_a_damaged_slice_until_it_reads_clean() {
    let (dir, disk) = packed(8);
    // Every finished pack damaged in the middle of its data.
    let mut saved = Vec::new();
    let mut dirs = vec![dir.path().join("packs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let mut damaged = bytes.clone();
                damaged[bytes.len() / 2] ^= 0x40;
                std::fs::write(&p, damaged).unwrap();
                saved.push((p, bytes));
            }
        }
    }
    assert!(!saved.is_empty());
    let run = || {
        check_repo(
            open(disk.clone()),
            ME,
            ReadData::Cycle {
                cycle_secs: 30 * 86_400,
            },
            |_, _| {},
        )
        .unwrap()
    };
    for _ in 0..2 {
        let r = run();
        assert!(!r.ok(), "the slice is damaged");
        assert_eq!(r.cycle.unwrap().packs_covered, 1, "the cursor stays");
    }
    // Repaired (the packs as they were), the same slice reads clean and
    // the cursor moves on.
    for (p, bytes) in saved {
        std::fs::write(p, bytes).unwrap();
    }
    let r = run();
    assert!(r.ok(), "{:?}", r.errors);
    assert_eq!(r.cycle.unwrap().packs_covered, 1);
    assert_eq!(run().cycle.unwrap().packs_covered, 2);
}

/// A repository (1 MiB packs) holding `files` files of 700 kB in head/,
/// committed: several finished packs.
fn packed(files: u64) -> (tempfile::TempDir, Arc<dyn Disk>) {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(dir.path()));
    init_encrypted(disk.clone());
    let h = Head::new(open(disk.clone())).unwrap();
    for i in 0..files {
        let f = h
            .create(ME, InodeNo::ROOT, &n(&format!("f{i}")), 0o644, 0)
            .unwrap()
            .ino;
        h.write(ME, f, 0, &bytes(i, 700_000)).unwrap();
    }
    h.flush_all(ME).unwrap();
    h.commit().unwrap();
    (dir, disk)
}
