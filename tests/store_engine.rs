//! The chunk store through the repository API, on real and simulated disks.

mod common;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use common::*;
use strata::ops::check::{check, ReadData};
use strata::ops::repair::repair_index;
use strata::store::chunks::StoreError;
use strata::store::format::INDEX_FILE;
use strata::store::id::ChunkId;
use strata::store::io::sim::SimDisk;
use strata::store::io::{Disk, LocalDisk};
use strata::store::repo::{LockedRepo, RepoError};

fn sim() -> (SimDisk, Arc<dyn Disk>) {
    let d = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(d.clone());
    (d, disk)
}

#[test]
fn chunks_survive_reopen_on_a_real_disk() {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(dir.path()));
    init_encrypted(disk.clone());
    let data = bytes(1, 3 << 20);
    let ids = {
        let repo = open(disk.clone());
        let ids = repo.ingest(&data[..]).unwrap();
        repo.store().commit().unwrap();
        ids
    };
    let repo = open(disk);
    let mut back = Vec::new();
    for (id, len) in &ids {
        let c = repo.store().get(id).unwrap();
        assert_eq!(c.as_slice().len(), *len as usize);
        back.extend_from_slice(c.as_slice());
    }
    assert_eq!(back, data);
    let report = check(&repo, ReadData::All, false, |_, _| {}).unwrap();
    assert!(report.ok(), "{:?}", report.errors);
    assert_eq!(report.chunks_read as usize, ids.len());
}

#[test]
fn identical_data_is_stored_once() {
    let (_, disk) = sim();
    init_encrypted(disk.clone());
    let repo = open(disk);
    let data = bytes(2, 1 << 20);
    repo.ingest(&data[..]).unwrap();
    let written = repo
        .store()
        .counters
        .bytes_written
        .load(std::sync::atomic::Ordering::Relaxed);
    repo.ingest(&data[..]).unwrap();
    assert_eq!(
        repo.store()
            .counters
            .bytes_written
            .load(std::sync::atomic::Ordering::Relaxed),
        written
    );
}

/// Every crash image at every sync point reopens, every chunk acknowledged
/// by a completed commit before that point reads back, and check finds
/// nothing that refers to missing bytes.
#[test]
fn acknowledged_chunks_survive_every_crash_image() {
    let (sim, disk) = sim();
    init_encrypted(disk.clone());
    sim.record_sync_points();
    let mut acked: BTreeMap<ChunkId, Vec<u8>> = BTreeMap::new();
    // (sync points recorded when a commit returned, chunks acknowledged then)
    let mut history: Vec<(usize, BTreeMap<ChunkId, Vec<u8>>)> = vec![(0, BTreeMap::new())];
    {
        let repo = open(disk.clone());
        for round in 0..14u64 {
            let mut batch = Vec::new();
            for i in 0..3 {
                let data = bytes(round * 10 + i, 20_000 + (i as usize) * 30_000);
                let (id, _) = repo.store().put(&data).unwrap();
                batch.push((id, data));
            }
            if round % 5 == 4 {
                repo.store().flush_pack().unwrap();
            } else {
                repo.store().commit().unwrap();
            }
            acked.extend(batch);
            history.push((sim.sync_point_count(), acked.clone()));
        }
    }
    let points = sim.sync_point_count();
    assert!(points > 30, "only {points} sync points");
    for p in 0..points {
        // A commit that returned before sync point p started is acknowledged.
        let expected = &history.iter().rev().find(|(n, _)| *n <= p).unwrap().1;
        for (k, image) in sim.crash_images_at(p, p as u64, 3).into_iter().enumerate() {
            let image: Arc<dyn Disk> = Arc::new(image);
            let repo = LockedRepo::open(image.clone(), "image")
                .and_then(|l| l.unlock(Some(&passphrase("correct horse"))))
                .unwrap_or_else(|e| panic!("sync point {p} image {k}: {e}"));
            for (id, data) in expected {
                let got = repo
                    .store()
                    .get(id)
                    .unwrap_or_else(|e| panic!("sync point {p} image {k}: {e}"));
                assert_eq!(got.as_slice(), &data[..]);
            }
            let report = check(&repo, ReadData::None, false, |_, _| {}).unwrap();
            assert!(report.ok(), "sync point {p} image {k}: {:?}", report.errors);
            drop(repo);
            // Recovery itself is crash-safe: a second open needs no more work.
            let again = open(image);
            assert!(check(&again, ReadData::All, false, |_, _| {}).unwrap().ok());
        }
    }
}

#[test]
fn a_full_disk_stores_nothing_half_and_the_store_goes_on() {
    let (sim, disk) = sim();
    init_encrypted(disk.clone());
    let repo = open(disk.clone());
    let kept = bytes(3, 50_000);
    let (kept_id, _) = repo.store().put(&kept).unwrap();
    repo.store().commit().unwrap();
    sim.fail_write(0, io::ErrorKind::StorageFull);
    let lost = bytes(4, 50_000);
    assert!(matches!(repo.store().put(&lost), Err(StoreError::NoSpace)));
    sim.heal();
    assert!(repo.store().failed().is_none());
    let (again, _) = repo.store().put(&lost).unwrap();
    repo.store().commit().unwrap();
    drop(repo);
    let repo = open(disk);
    assert_eq!(repo.store().get(&kept_id).unwrap().as_slice(), &kept[..]);
    assert_eq!(repo.store().get(&again).unwrap().as_slice(), &lost[..]);
    assert!(check(&repo, ReadData::All, false, |_, _| {}).unwrap().ok());
}

#[test]
fn transient_read_errors_are_retried_and_persistent_ones_reported() {
    let (sim, disk) = sim();
    init_encrypted(disk.clone());
    let repo = open(disk.clone());
    let data = bytes(5, 50_000);
    let (id, _) = repo.store().put(&data).unwrap();
    repo.store().commit().unwrap();
    drop(repo);
    let repo = open(disk);
    // Two failed reads: the third attempt succeeds.
    sim.fail_reads(2);
    assert_eq!(repo.store().get(&id).unwrap().as_slice(), &data[..]);
    // A disk that keeps failing: an I/O error, after the last attempt.
    sim.fail_reads(1000);
    let err = repo.store().get(&id).unwrap_err();
    assert!(err.to_string().contains("Input/output error"), "{err}");
    sim.heal();
    // Writes were never affected, and nothing was marked failed.
    assert!(repo.store().failed().is_none());
    assert_eq!(repo.store().get(&id).unwrap().as_slice(), &data[..]);
}

#[test]
fn a_failed_sync_is_sticky_and_loses_nothing_acknowledged() {
    let (sim, disk) = sim();
    init_encrypted(disk.clone());
    let repo = open(disk.clone());
    let acked = bytes(5, 40_000);
    let (acked_id, _) = repo.store().put(&acked).unwrap();
    repo.store().commit().unwrap();
    repo.store().put(&bytes(6, 40_000)).unwrap();
    sim.fail_sync(0);
    assert!(matches!(repo.store().commit(), Err(StoreError::Failed(_))));
    sim.heal();
    // Healed disk or not, the store refuses until restarted.
    assert!(matches!(
        repo.store().put(&bytes(7, 40_000)),
        Err(StoreError::Failed(_))
    ));
    assert!(matches!(repo.store().commit(), Err(StoreError::Failed(_))));
    assert_eq!(
        repo.store().get(&acked_id).unwrap().as_slice(),
        &acked[..],
        "reads still work"
    );
    drop(repo);
    for image in sim.crash_images(9, 4) {
        let repo = open(Arc::new(image));
        assert_eq!(repo.store().get(&acked_id).unwrap().as_slice(), &acked[..]);
        assert!(check(&repo, ReadData::All, false, |_, _| {}).unwrap().ok());
    }
}

#[test]
fn any_failing_write_leaves_a_repository_that_opens_and_checks() {
    for n in 0..40 {
        let (sim, disk) = sim();
        init_encrypted(disk.clone());
        let mut acked = Vec::new();
        {
            let repo = open(disk.clone());
            sim.fail_write(n, io::ErrorKind::Other);
            for i in 0..8 {
                let data = bytes(100 + i, 30_000);
                let Ok((id, _)) = repo.store().put(&data) else {
                    break;
                };
                if i % 2 == 1 {
                    if repo.store().commit().is_err() {
                        break;
                    }
                    acked.push((id, data));
                }
            }
        }
        sim.heal();
        for image in sim.crash_images(n, 2) {
            let repo = open(Arc::new(image));
            for (id, data) in &acked {
                assert_eq!(
                    repo.store().get(id).unwrap().as_slice(),
                    &data[..],
                    "failing write {n}"
                );
            }
            let report = check(&repo, ReadData::All, false, |_, _| {}).unwrap();
            assert!(report.ok(), "failing write {n}: {:?}", report.errors);
        }
    }
}

#[test]
fn repair_rebuilds_the_same_index_from_packs() {
    let (sim, disk) = sim();
    init_encrypted(disk.clone());
    let (chunks, packs) = {
        let repo = open(disk.clone());
        for i in 0..40 {
            repo.store().put(&bytes(200 + i, 60_000)).unwrap();
            if i % 9 == 0 {
                repo.store().commit().unwrap();
            }
        }
        repo.store().commit().unwrap();
        let mut packs: Vec<_> = repo.store().pack_records().into_iter().collect();
        packs.sort_by_key(|(id, _)| *id);
        (repo.store().index().chunks().unwrap(), packs)
    };
    assert!(packs.len() >= 2, "the test wants finished and open packs");
    disk.remove(INDEX_FILE).unwrap();
    let locked = LockedRepo::open(disk.clone(), "r").unwrap();
    assert!(matches!(
        LockedRepo::open(disk.clone(), "r")
            .unwrap()
            .unlock(Some(&passphrase("correct horse"))),
        Err(RepoError::IndexMissing)
    ));
    let report = repair_index(&locked, Some(&passphrase("correct horse"))).unwrap();
    assert!(report.damaged_packs.is_empty());
    let repo = open(disk);
    assert_eq!(repo.store().index().chunks().unwrap(), chunks);
    let mut rebuilt: Vec<_> = repo.store().pack_records().into_iter().collect();
    rebuilt.sort_by_key(|(id, _)| *id);
    assert_eq!(rebuilt, packs);
    assert!(check(&repo, ReadData::All, false, |_, _| {}).unwrap().ok());
    drop(sim);
}

#[test]
fn no_plaintext_reaches_the_disk() {
    let (sim, disk) = sim();
    init_encrypted(disk.clone());
    let marker = b"PATIENT-RECORD-Jane-Doe-1970-01-01 diagnosis: confidential ";
    let data = marker.repeat(2000);
    {
        let repo = open(disk);
        repo.ingest(&data[..]).unwrap();
        repo.store().flush_pack().unwrap();
    }
    for (path, bytes) in sim.contents() {
        for needle in [&b"PATIENT-RECORD"[..], b"Jane-Doe", b"confidential"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{path} holds plaintext"
            );
        }
    }
}

#[test]
fn a_flipped_byte_is_an_error_naming_the_chunk_never_data() {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(dir.path()));
    init_encrypted(disk.clone());
    let data = bytes(9, 100_000);
    let ids = {
        let repo = open(disk.clone());
        let ids = repo.ingest(&data[..]).unwrap();
        repo.store().flush_pack().unwrap();
        ids
    };
    let repo = open(disk.clone());
    let (id, _) = ids[0];
    let loc = repo.store().index().chunk(&id).unwrap().unwrap();
    drop(repo);
    let path = dir
        .path()
        .join(strata::store::io::backend::LocalBackend::path(loc.pack));
    let mut pack = std::fs::read(&path).unwrap();
    pack[loc.offset as usize + 20] ^= 1;
    std::fs::write(&path, pack).unwrap();
    let repo = open(disk);
    match repo.store().get(&id) {
        Err(StoreError::Corrupt { chunk, .. }) => assert_eq!(chunk, id),
        other => panic!("expected corruption error, got {other:?}"),
    }
    let report = check(&repo, ReadData::All, false, |_, _| {}).unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.errors[0].contains(&id.to_string()));
}

/// A reader that hands out its bytes in the sizes it is given, as a pipe or
/// a FUSE write stream would.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl io::Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.sizes[self.next % self.sizes.len()].max(1);
        self.next += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// Streaming ingest in arbitrary pieces gives the chunks and ids of a
    /// one-shot pass over the whole input.
    #[test]
    fn streaming_ingest_matches_one_shot(seed in 0u64..1000, len in 0usize..300_000, sizes in proptest::collection::vec(1usize..100_000, 1..5)) {
        let (_, disk) = sim();
        init_encrypted(disk.clone());
        let repo = open(disk);
        let data = bytes(seed, len);
        let streamed = repo.ingest(Pieces { data: &data, sizes, next: 0 }).unwrap();
        let mut at = 0;
        let one_shot: Vec<(ChunkId, u32)> = repo.chunker().lengths(&data).into_iter().map(|n| {
            let id = repo.store().codec().id(&data[at..at + n]);
            at += n;
            (id, n as u32)
        }).collect();
        proptest::prop_assert_eq!(streamed, one_shot);
    }
}

#[test]
fn swapped_objects_in_a_pack_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(dir.path()));
    init_encrypted(disk.clone());
    // Two chunks of equal length, so their sealed objects can trade places.
    let (a, b) = (bytes(20, 30_000), bytes(21, 30_000));
    let (ia, ib) = {
        let repo = open(disk.clone());
        let ia = repo.store().put(&a).unwrap().0;
        let ib = repo.store().put(&b).unwrap().0;
        repo.store().flush_pack().unwrap();
        (ia, ib)
    };
    let repo = open(disk.clone());
    let (la, lb) = (
        repo.store().index().chunk(&ia).unwrap().unwrap(),
        repo.store().index().chunk(&ib).unwrap().unwrap(),
    );
    assert_eq!((la.pack, la.len), (lb.pack, lb.len));
    drop(repo);
    let path = dir
        .path()
        .join(strata::store::io::backend::LocalBackend::path(la.pack));
    let mut pack = std::fs::read(&path).unwrap();
    let (oa, ob, n) = (la.offset as usize, lb.offset as usize, la.len as usize);
    let object_a = pack[oa..oa + n].to_vec();
    pack.copy_within(ob..ob + n, oa);
    pack[ob..ob + n].copy_from_slice(&object_a);
    std::fs::write(&path, pack).unwrap();
    let repo = open(disk);
    assert!(matches!(
        repo.store().get(&ia),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        repo.store().get(&ib),
        Err(StoreError::Corrupt { .. })
    ));
}

/// Writes a patient record into a repository on a real disk and returns
/// grep's exit status for each identifying string (0 found, 1 not found).
fn grep_record(encrypted: bool) -> Vec<i32> {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(dir.path()));
    if encrypted {
        init_encrypted(disk.clone());
    } else {
        let opts = strata::store::repo::InitOptions {
            id: strata::store::id::RepoId::random(),
            secret: None,
            label: String::new(),
            kdf: CHEAP_KDF,
            chunker: SMALL_CHUNKS,
            pack_size: 1 << 20,
        };
        strata::store::repo::init(disk.clone(), opts).unwrap();
    }
    {
        let repo = LockedRepo::open(disk, "r")
            .unwrap()
            .unlock(Some(&passphrase("correct horse")))
            .unwrap();
        let text = b"Patient: Erika Mustermann, MRN 0042-7731, allergy: penicillin\n".repeat(5000);
        repo.ingest(&text[..]).unwrap();
        repo.ingest(&bytes(30, 200_000)[..]).unwrap();
        repo.store().commit().unwrap();
    }
    ["Mustermann", "penicillin", "MRN 0042"]
        .iter()
        .map(|needle| {
            let out = std::process::Command::new("grep")
                .args(["-r", "-a", "-q", needle])
                .arg(dir.path())
                .status()
                .unwrap();
            out.code().unwrap()
        })
        .collect()
}

#[test]
fn grep_finds_no_plaintext_in_a_real_repository() {
    assert_eq!(
        grep_record(true),
        [1, 1, 1],
        "plaintext found in an encrypted repository"
    );
    // The same scan does find it where nothing is encrypted, so it can fail.
    assert_eq!(grep_record(false), [0, 0, 0]);
}

#[test]
fn any_failing_sync_stops_writes_and_loses_nothing_acknowledged() {
    for n in 0..30 {
        let (sim, disk) = sim();
        init_encrypted(disk.clone());
        let mut acked = Vec::new();
        {
            let repo = open(disk.clone());
            sim.fail_sync(n);
            for i in 0..10 {
                let data = bytes(300 + i, 40_000);
                let Ok((id, _)) = repo.store().put(&data) else {
                    break;
                };
                let committed = if i % 4 == 3 {
                    repo.store().flush_pack()
                } else {
                    repo.store().commit()
                };
                match committed {
                    Ok(()) => acked.push((id, data)),
                    Err(StoreError::Failed(_)) => {
                        assert!(repo.store().failed().is_some());
                        assert!(
                            matches!(
                                repo.store().put(&bytes(999, 10)),
                                Err(StoreError::Failed(_))
                            ),
                            "sync {n}: writes after a failed sync"
                        );
                        break;
                    }
                    Err(e) => panic!("sync {n}: unexpected {e}"),
                }
            }
        }
        sim.heal();
        for image in sim.crash_images(n, 2) {
            let repo = open(Arc::new(image));
            for (id, data) in &acked {
                assert_eq!(
                    repo.store().get(id).unwrap().as_slice(),
                    &data[..],
                    "failing sync {n}"
                );
            }
            let report = check(&repo, ReadData::All, false, |_, _| {}).unwrap();
            assert!(report.ok(), "failing sync {n}: {:?}", report.errors);
        }
    }
}

/// The pack `id` is in, as the index says.
fn pack_of(repo: &strata::store::repo::Repo, id: &ChunkId) -> strata::store::id::PackId {
    repo.store().index().chunk(id).unwrap().unwrap().pack
}

#[test]
fn a_doomed_object_written_again_is_stored_afresh_and_survives_its_pack() {
    let (_sim, disk) = sim();
    init_encrypted(disk.clone());
    let repo = open(disk);
    let store = repo.store();
    let data = bytes(5, 50_000);
    let (x, _) = store.put(&data).unwrap();
    store.flush_pack().unwrap();
    let old = pack_of(&repo, &x);
    let doom = strata::store::index::Doom {
        packs: [old].into(),
        chunks: vec![x],
    };

    store.doom_objects([x].into());
    assert_eq!(
        store.put(&data).unwrap(),
        (x, true),
        "stored afresh, not deduplicated"
    );
    store.commit_dropping(&doom).unwrap();
    assert_ne!(pack_of(&repo, &x), old);
    assert_eq!(store.get(&x).unwrap().as_slice(), &data[..]);
    assert!(!store.backend().exists(old), "the doomed pack is deleted");
    assert_eq!(
        store.put(&data).unwrap(),
        (x, false),
        "dooming ended with the commit"
    );

    // Without the dooming, the same write would have deduplicated against
    // the doomed copy, and its reference would point at nothing.
    let (y, _) = store.put(&bytes(6, 50_000)).unwrap();
    store.flush_pack().unwrap();
    let old = pack_of(&repo, &y);
    assert_eq!(store.put(&bytes(6, 50_000)).unwrap(), (y, false));
    store
        .commit_dropping(&strata::store::index::Doom {
            packs: [old].into(),
            chunks: vec![y],
        })
        .unwrap();
    assert!(matches!(store.get(&y), Err(StoreError::NotFound(_))));
}

/// The write pipeline seals on several workers but appends in the order
/// chunks were handed over: a file's chunks lie in its pack as in the file.
#[test]
fn the_pipeline_appends_chunks_in_the_order_they_were_handed_over() {
    let (_, disk) = sim();
    init_encrypted(disk.clone());
    let repo = open(disk);
    let pipeline = strata::store::pipeline::Pipeline::start(repo.store_arc(), 3);
    // Lengths that differ a lot, so workers finish out of order.
    let chunks: Vec<Vec<u8>> = (0..48u64)
        .map(|i| bytes(100 + i, 1 + (i as usize * 7919) % 300_000))
        .collect();
    let tickets: Vec<_> = chunks.iter().map(|c| pipeline.submit(c.clone())).collect();
    let ids: Vec<ChunkId> = tickets.iter().map(|t| t.wait().unwrap()).collect();
    drop(pipeline);
    repo.store().commit().unwrap();
    let mut last = None;
    for (id, chunk) in ids.iter().zip(&chunks) {
        assert_eq!(repo.store().get(id).unwrap().as_slice(), chunk.as_slice());
        let loc = repo.store().index().chunk(id).unwrap().unwrap();
        if let Some((pack, offset)) = last {
            assert!(pack != loc.pack || offset < loc.offset, "out of order");
        }
        last = Some((loc.pack, loc.offset));
    }
}

/// Identical chunks sealed at the same time by two workers are appended once.
#[test]
fn the_pipeline_stores_a_duplicate_in_flight_once() {
    let (_, disk) = sim();
    init_encrypted(disk.clone());
    let repo = open(disk);
    let pipeline = strata::store::pipeline::Pipeline::start(repo.store_arc(), 2);
    let chunk = bytes(7, 200_000);
    let tickets: Vec<_> = (0..8).map(|_| pipeline.submit(chunk.clone())).collect();
    let ids: Vec<ChunkId> = tickets.iter().map(|t| t.wait().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    let new = &repo.store().counters.chunks_new;
    assert_eq!(new.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// Without workers the caller stores the chunk itself; a store that
/// refuses writes answers the ticket with its error.
#[test]
fn the_pipeline_without_workers_stores_on_the_callers_thread_and_reports_failures() {
    let (sim, disk) = sim();
    init_encrypted(disk.clone());
    let repo = open(disk);
    let pipeline = strata::store::pipeline::Pipeline::start(repo.store_arc(), 0);
    assert_eq!(pipeline.workers(), 0);
    let id = pipeline.submit(b"inline".to_vec()).wait().unwrap();
    assert_eq!(repo.store().get(&id).unwrap().as_slice(), b"inline");
    sim.fail_write(0, io::ErrorKind::Other);
    let failed = strata::store::pipeline::Pipeline::start(repo.store_arc(), 2)
        .submit(bytes(8, 100_000))
        .wait();
    assert!(failed.is_err());
}
