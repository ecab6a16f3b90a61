//! Replication and pack repair on simulated disks: at every sync point of a
//! copy, the replica's crash images open as a prefix of the source and a
//! second copy finishes; at every sync point of a repair from a replica,
//! nothing kept is lost and a second repair finishes the job.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::nights::*;
use common::*;
use strata::ops::replicate::repair::repair_packs;
use strata::ops::replicate::verify::verify;
use strata::ops::replicate::{replicate, ReplicateContext};
use strata::store::io::backend::{LocalBackend, PackBackend};
use strata::store::io::sim::SimDisk;
use strata::store::io::Disk;
use strata::store::repo::{init_replica, LockedRepo};
use strata::tree::head::Head;

/// A source with four nights on a simulated disk, and what each holds.
fn source() -> (Head, BTreeMap<u64, Files>) {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
    init_encrypted(disk.clone());
    let h = Head::new(open(disk)).unwrap();
    let expected = nights(&h);
    h.repo().store().flush_pack().unwrap();
    (h, expected)
}

/// The replica on `disk` of `source`, opened with its keys.
fn replica_on(disk: Arc<dyn Disk>, source: &Head) -> Head {
    let locked = LockedRepo::open(disk, "replica").unwrap();
    Head::new(locked.unlock_as(source.repo()).unwrap()).unwrap()
}

#[test]
fn every_crash_image_of_a_copy_is_a_prefix_and_a_second_copy_finishes() {
    let (src, expected) = source();
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_replica(disk.clone(), src.repo(), "0a0b0c0d").unwrap();
    sim.record_sync_points();
    {
        let r = replica_on(disk, &src);
        let report = replicate(&src, &r, ReplicateContext::default()).unwrap();
        assert_eq!(report.snapshots_sent, vec![1, 2, 3, 4]);
    }
    let points = sim.sync_point_count();
    assert!(points >= 4, "a copy commits at least once per snapshot");
    for point in 0..points {
        for image in sim.crash_images_at(point, point as u64, 2) {
            let r = replica_on(Arc::new(image), &src);
            let v = verify(&src, &r).unwrap();
            assert!(v.chains.diverged.is_none(), "point {point}: {v:?}");
            assert_eq!(
                v.objects_missing, 0,
                "point {point}: what it holds is whole"
            );
            replicate(&src, &r, ReplicateContext::default()).unwrap();
            assert!(verify(&src, &r).unwrap().in_step(), "point {point}");
            snapshots_intact(&r, &expected);
            clean(&r);
        }
    }
}

#[test]
fn every_crash_image_of_a_pack_repair_keeps_everything_and_a_second_repair_finishes() {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    let expected = {
        let h = Head::new(open(disk.clone())).unwrap();
        let expected = nights(&h);
        h.repo().store().flush_pack().unwrap();
        expected
    };
    let rsim = SimDisk::new();
    let rdisk: Arc<dyn Disk> = Arc::new(rsim.clone());
    {
        let h = Head::new(open(disk.clone())).unwrap();
        init_replica(rdisk.clone(), h.repo(), "01020304").unwrap();
        let r = replica_on(rdisk.clone(), &h);
        replicate(&h, &r, ReplicateContext::default()).unwrap();
    }
    // Damage every finished pack of the source.
    let packs = LocalBackend::new(disk.clone()).list().unwrap();
    assert!(!packs.is_empty());
    for p in &packs {
        let path = LocalBackend::path(*p);
        let mut bytes = disk.read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        disk.write_atomic(&path, &bytes).unwrap();
    }
    sim.record_sync_points();
    {
        let h = Head::new(open(disk.clone())).unwrap();
        let r = replica_on(rdisk.clone(), &h);
        let report = repair_packs(&h, &r).unwrap();
        assert_eq!(report.bad_packs.len(), packs.len(), "{report:?}");
        assert_eq!(report.packs_replaced, packs.len() as u64);
        assert!(report.complete(), "{report:?}");
        all_intact(&h, &expected);
        clean(&h);
    }
    let points = sim.sync_point_count();
    assert!(points >= 3, "new packs, the index, the deletions");
    for point in 0..points {
        for image in sim.crash_images_at(point, point as u64, 2) {
            let h = Head::new(open(Arc::new(image))).unwrap();
            let r = replica_on(rdisk.clone(), &h);
            let again = repair_packs(&h, &r).unwrap();
            assert!(again.complete(), "point {point}: {again:?}");
            all_intact(&h, &expected);
            clean(&h);
        }
    }
}
