//! Garbage collection on a simulated disk: after forget and prune every
//! kept snapshot and the head read back byte for byte, check is clean, and
//! the packs really shrink; at every sync point of a prune, every crash
//! image opens with nothing kept lost, and a second prune finishes the job.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::nights::*;
use common::*;
use strata::ops::prune::{prune, PruneContext, PruneError, PruneOptions, PruneProgress};
use strata::policy::throttle::{ByteRate, Limits, Throttle, ThrottlePolicy};
use strata::store::io::sim::SimDisk;
use strata::store::io::Disk;
use strata::tree::head::Head;
use strata::tree::snapshot::Snapshots;
use strata::tree::types::InodeNo;

const DRY_RUN: PruneOptions = PruneOptions {
    max_unused_percent: 5.0,
    max_repack_bytes: None,
    dry_run: true,
};

fn pack_bytes(sim: &SimDisk) -> u64 {
    sim.contents()
        .iter()
        .filter(|(p, _)| p.starts_with("packs/") || p.starts_with("open/"))
        .map(|(_, d)| d.len() as u64)
        .sum()
}

fn repository() -> (SimDisk, Arc<dyn Disk>) {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    (sim, disk)
}

/// A repository after three nights and two of them forgotten (their data
/// is garbage), and what each snapshot still holds.
fn two_nights_forgotten() -> (Head, BTreeMap<u64, Files>) {
    two_nights_forgotten_on(repository().1)
}

/// [`two_nights_forgotten`] on `disk`.
fn two_nights_forgotten_on(disk: Arc<dyn Disk>) -> (Head, BTreeMap<u64, Files>) {
    let h = Head::new(open(disk)).unwrap();
    let mut expected = nights(&h);
    h.repo().store().flush_pack().unwrap();
    Snapshots::of(&h).forget(ME, &[1, 2], "test").unwrap();
    expected.retain(|seq, _| *seq > 2);
    (h, expected)
}

/// The forgotten nights' bytes, written again as `count` files named
/// PREFIX-I (fsynced each), with a snapshot "during" after the first half:
/// each write deduplicates against a chunk the mark found unused.
fn store_again(h: &Head, prefix: &str, count: u64) -> Files {
    let garbage: Vec<Vec<u8>> = (0..2).map(|night| bytes(night, 700_000)).collect();
    let mut mine = Files::new();
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        let data = &garbage[(i % 2) as usize];
        write(h, &name, data);
        h.fsync(ME, h.lookup(ME, InodeNo::ROOT, &n(&name)).unwrap().ino)
            .unwrap();
        mine.insert(name, data.clone());
        if i + 1 == count / 2 {
            Snapshots::of(h).take(ME, Some("during")).unwrap();
        }
    }
    mine
}

/// Every file of `files` reads back from the head as written.
fn reads_back(h: &Head, files: &Files) {
    for (name, data) in files {
        let ino = h.lookup(ME, InodeNo::ROOT, &n(name)).unwrap().ino;
        assert_eq!(&h.read(ME, ino, 0, u32::MAX).unwrap(), data, "{name}");
    }
}

#[test]
fn prune_after_forget_frees_space_and_loses_nothing_kept() {
    let (sim, disk) = repository();
    let h = Head::new(open(disk)).unwrap();
    let mut expected = nights(&h);
    h.repo().store().flush_pack().unwrap();

    let dry = prune(&h, ME, DRY_RUN, PruneContext::default()).unwrap();
    assert_eq!((dry.packs_deleted, dry.packs_repacked), (0, 0), "{dry:?}");

    Snapshots::of(&h).forget(ME, &[1, 2], "test").unwrap();
    expected.retain(|seq, _| *seq > 2);
    let before = pack_bytes(&sim);
    let dry = prune(&h, ME, DRY_RUN, PruneContext::default()).unwrap();
    assert!(dry.packs_deleted + dry.packs_repacked > 0, "{dry:?}");
    assert_eq!(pack_bytes(&sim), before, "a dry run deletes nothing");

    // The daemon's throttle admits every byte prune copies.
    let throttle = Throttle::with_system_clock(ThrottlePolicy::unlimited());
    // It says how far it is, phase by phase.
    let told = std::sync::Mutex::new(Vec::<PruneProgress>::new());
    let tell = |p: &PruneProgress| told.lock().unwrap().push(p.clone());
    let cx = PruneContext {
        throttle: Some(&throttle),
        progress: Some(&tell),
    };
    let report = prune(&h, ME, PruneOptions::default(), cx).unwrap();
    let told = told.into_inner().unwrap();
    let mut phases: Vec<&str> = told.iter().map(|p| p.phase.as_str()).collect();
    phases.dedup();
    assert_eq!(phases, ["mark", "judge", "copy", "commit"]);
    assert!(
        told.iter().all(|p| p.done <= p.total || p.total == 0),
        "{told:?}"
    );
    let copies: Vec<&PruneProgress> = told.iter().filter(|p| p.phase == "copy").collect();
    assert!(copies.iter().all(|p| p.total == report.bytes_repacked));
    assert!(copies.windows(2).all(|w| w[0].done < w[1].done));
    assert!(report.bytes_freed > 1_000_000, "{report:?}");
    assert!(report.bytes_repacked > 0, "{report:?}");
    assert_eq!(throttle.status().bytes, report.bytes_repacked);
    assert!(
        report.unused_bytes_left * 20 <= report.bytes_after,
        "{report:?}"
    );
    let after = pack_bytes(&sim);
    assert!(
        after + 1_000_000 < before,
        "the pack files shrank: {before} -> {after}"
    );
    all_intact(&h, &expected);
    clean(&h);

    let again = prune(&h, ME, PruneOptions::default(), PruneContext::default()).unwrap();
    assert_eq!(
        (again.packs_deleted, again.packs_repacked),
        (0, 0),
        "{again:?}"
    );
    drop(h);
    // An index rebuilt from the packs alone still has everything kept.
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    disk.remove(strata::store::format::INDEX_FILE).unwrap();
    repair(&disk);
    let h = Head::new(open(disk)).unwrap();
    let rows = Snapshots::of(&h).list().unwrap();
    assert_eq!(
        rows.iter().map(|r| r.record.seq).collect::<Vec<_>>(),
        [3, 4]
    );
}

#[test]
fn every_crash_image_of_a_prune_keeps_everything_kept_and_a_second_prune_finishes() {
    let (sim, disk) = repository();
    let expected = {
        let h = Head::new(open(disk.clone())).unwrap();
        let mut expected = nights(&h);
        Snapshots::of(&h).forget(ME, &[1, 3], "test").unwrap();
        expected.retain(|seq, _| *seq == 2 || *seq == 4);
        h.repo().store().flush_pack().unwrap();
        sim.record_sync_points();
        prune(&h, ME, PruneOptions::default(), PruneContext::default()).unwrap();
        expected
    };
    let points = sim.sync_point_count();
    assert!(points >= 3, "a prune syncs new packs, the index, deletions");
    for point in 0..points {
        for image in sim.crash_images_at(point, point as u64, 2) {
            let disk: Arc<dyn Disk> = Arc::new(image.clone());
            let h = Head::new(open(disk)).unwrap();
            all_intact(&h, &expected);
            clean(&h);
            prune(&h, ME, PruneOptions::default(), PruneContext::default()).unwrap();
            all_intact(&h, &expected);
            clean(&h);
        }
    }
}

/// Flips a byte inside the object at `offset` of pack `pack`.
fn damage(disk: &Arc<dyn Disk>, pack: strata::store::id::PackId, offset: u64) {
    let path = strata::store::io::backend::LocalBackend::path(pack);
    let mut bytes = disk.read(&path).unwrap();
    bytes[offset as usize + 20] ^= 0xff;
    disk.write_atomic(&path, &bytes).unwrap();
}

/// Prunes a repository damaged where `expected` says; the error must say
/// nothing was deleted, with exit code 13, and no pack may change.
fn prune_stops_at_damage(sim: &SimDisk, disk: Arc<dyn Disk>, expected: fn(&PruneError) -> bool) {
    let h = Head::new(open(disk)).unwrap();
    let packs = || -> Vec<(String, Vec<u8>)> {
        sim.contents()
            .into_iter()
            .filter(|(p, _)| p.starts_with("packs/"))
            .collect()
    };
    let before = packs();
    match prune(&h, ME, PruneOptions::default(), PruneContext::default()) {
        Err(e) if expected(&e) => {
            assert!(
                e.to_string().contains("stopped before deleting anything"),
                "{e}"
            );
            assert_eq!(strata::exit::ExitCode::exit_code(&e), strata::exit::DAMAGED);
        }
        other => panic!("{other:?}"),
    }
    assert!(packs() == before, "no pack changed");
}

#[test]
fn max_unused_and_max_repack_size_bound_what_is_repacked() {
    let (h, expected) = two_nights_forgotten();
    let with = |max_unused_percent: f64, max_repack_bytes: Option<u64>, dry_run: bool| {
        let opts = PruneOptions {
            max_unused_percent,
            max_repack_bytes,
            dry_run,
        };
        prune(&h, ME, opts, PruneContext::default()).unwrap()
    };
    let everything = with(0.0, None, true);
    assert!(everything.packs_repacked >= 2, "{everything:?}");
    // 100 %: only the packs nothing uses go.
    let empty_only = with(100.0, None, true);
    assert_eq!(empty_only.packs_repacked, 0, "{empty_only:?}");
    assert_eq!(empty_only.packs_deleted, everything.packs_deleted);
    // A budget below what any pack holds in use repacks nothing.
    let none = with(0.0, Some(1), true);
    assert_eq!(
        (none.packs_repacked, none.bytes_repacked),
        (0, 0),
        "{none:?}"
    );
    // A budget of half copies at most half, and for real loses nothing.
    let budget = everything.bytes_repacked / 2;
    let half = with(0.0, Some(budget), false);
    assert!(half.bytes_repacked <= budget, "{half:?}");
    assert!(half.packs_repacked < everything.packs_repacked, "{half:?}");
    all_intact(&h, &expected);
    clean(&h);
}

#[test]
fn a_tree_that_cannot_be_read_stops_prune_before_anything_is_deleted() {
    let (sim, disk) = repository();
    let loc = {
        let (h, _) = two_nights_forgotten_on(disk.clone());
        let row = Snapshots::of(&h).by_seq(4).unwrap();
        let root = strata::store::id::ChunkId(row.record.root.subtree.unwrap());
        h.repo().store().index().chunk(&root).unwrap().unwrap()
    };
    // Damage the pack holding snapshot 4's root tree.
    damage(&disk, loc.pack, loc.offset);
    prune_stops_at_damage(&sim, disk, |e| matches!(e, PruneError::Mark(_)));
}

#[test]
fn a_damaged_object_still_in_use_stops_the_repack_before_anything_is_deleted() {
    let (sim, disk) = repository();
    let in_use = {
        let (h, _) = two_nights_forgotten_on(disk.clone());
        let live = Snapshots::of(&h).live().unwrap();
        let store = h.repo().store();
        let mut in_use = Vec::new();
        for pack in store.pack_records().into_keys() {
            for e in store.pack_contents(pack).unwrap() {
                if e.kind == strata::store::format::Kind::Chunk && live.ids.contains(&e.id) {
                    in_use.push((pack, e.offset));
                }
            }
        }
        in_use
    };
    // Every chunk still in use is damaged (the mark reads trees only), so
    // whatever prune repacks, it meets one.
    assert!(!in_use.is_empty());
    for (pack, offset) in in_use {
        damage(&disk, pack, offset);
    }
    prune_stops_at_damage(&sim, disk, |e| matches!(e, PruneError::Damaged { .. }));
}

#[test]
fn writes_while_a_throttled_prune_copies_lose_nothing() {
    let (h, mut expected) = two_nights_forgotten();
    let garbage: Vec<Vec<u8>> = (0..2).map(|night| bytes(night, 700_000)).collect();
    // Slow copying, so that the writes below surely fall inside it: the
    // garbage is doomed by then, and the writes must store it afresh.
    let throttle = Throttle::with_system_clock(ThrottlePolicy {
        limits: Limits {
            bytes: Some(ByteRate(256 << 10)),
            ops: None,
        },
        ..ThrottlePolicy::unlimited()
    });
    let done = std::sync::atomic::AtomicBool::new(false);
    let written = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while throttle.status().bytes == 0 {
                assert!(std::time::Instant::now() < deadline, "prune never copied");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let mine = store_again(&h, "again", 4);
            let overlapped = !done.load(std::sync::atomic::Ordering::SeqCst);
            (mine, overlapped)
        });
        let cx = PruneContext {
            throttle: Some(&throttle),
            ..PruneContext::default()
        };
        let report = prune(&h, ME, PruneOptions::default(), cx).unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(report.bytes_repacked > 0, "{report:?}");
        writer.join().unwrap()
    });
    let (written, overlapped) = written;
    assert!(overlapped, "the writes ended inside the prune");
    // The snapshot taken meanwhile holds the first two writes.
    let during_seq = Snapshots::of(&h).list().unwrap().last().unwrap().record.seq;
    let mut during = expected.values().last().unwrap().clone();
    for (i, data) in garbage.iter().enumerate() {
        during.insert(format!("again-{i}"), data.clone());
    }
    expected.insert(during_seq, during);
    h.repo().store().commit().unwrap();
    reads_back(&h, &written);
    all_intact(&h, &expected);
    clean(&h);
}

#[test]
fn writes_that_store_garbage_again_during_a_prune_lose_nothing() {
    for round in 0..4u64 {
        let (h, _) = two_nights_forgotten();
        // Night 0's and night 1's files are garbage now; a writer stores
        // exactly those bytes again while prune runs.
        let mut written = Files::new();
        std::thread::scope(|s| {
            let writer = s.spawn(|| store_again(&h, &format!("again-{round}"), 6));
            std::thread::sleep(std::time::Duration::from_millis(round * 15));
            prune(&h, ME, PruneOptions::default(), PruneContext::default()).unwrap();
            written = writer.join().unwrap();
        });
        reads_back(&h, &written);
        // A prune after the writes finds the rest, and still loses nothing.
        prune(&h, ME, PruneOptions::default(), PruneContext::default()).unwrap();
        h.repo().store().commit().unwrap();
        reads_back(&h, &written);
        let during = Snapshots::of(&h).list().unwrap();
        assert_eq!(
            during.len(),
            3,
            "snapshots 3, 4 and the one taken meanwhile"
        );
        clean(&h);
    }
}

#[test]
fn prune_on_a_store_that_refuses_writes_changes_nothing() {
    let (sim, disk) = repository();
    let (h, _) = two_nights_forgotten_on(disk);
    // A failed sync turns the store read-only, as a failing disk does.
    sim.fail_sync(0);
    write(&h, "after", &bytes(7, 10_000));
    assert!(h.repo().store().commit().is_err());
    sim.heal();
    let files = sim.contents();
    match prune(&h, ME, PruneOptions::default(), PruneContext::default()) {
        Err(e @ PruneError::ReadOnly(_)) => {
            assert!(e.to_string().starts_with("prune changed nothing"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.contents(), files, "nothing changed");
}
