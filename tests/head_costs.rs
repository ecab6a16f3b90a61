//! The cost claims of the head, checked by counters: a snapshot serializes
//! only changed directories, a create costs the same in a huge directory,
//! and identical data is stored once.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use strata::store::chunker::ChunkerParams;
use strata::store::crypto::slot::SlotKind;
use strata::store::io::{Disk, LocalDisk};
use strata::store::repo::{init, InitOptions};
use strata::tree::head::txn::Reader;
use strata::tree::head::Head;
use strata::tree::snapshot::Snapshots;
use strata::tree::types::{Caller, InodeNo, RenameMode, SetAttr, Timestamp};

const ME: Caller = Caller::ROOT;

fn mem_head() -> Head {
    let disk: Arc<dyn Disk> = Arc::new(strata::store::io::sim::SimDisk::new());
    init_encrypted(disk.clone());
    Head::new(open(disk)).unwrap()
}

/// A repository with the default chunk sizes on a real disk.
fn disk_head(dir: &std::path::Path) -> Head {
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(dir));
    init(
        disk.clone(),
        InitOptions {
            id: strata::store::id::RepoId::random(),
            secret: Some((passphrase("correct horse"), SlotKind::Passphrase)),
            label: String::new(),
            kdf: CHEAP_KDF,
            chunker: ChunkerParams::default(),
            pack_size: 64 << 20,
        },
    )
    .unwrap();
    Head::new(open(disk)).unwrap()
}

fn du(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("du")
        .args(["-sb"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn touching_one_file_in_a_100k_file_tree_serializes_only_its_chain() {
    let h = mem_head();
    let big = h.mkdir(ME, InodeNo::ROOT, &n("big"), 0o755, 0).unwrap().ino;
    h.create(ME, big, &n("first"), 0o644, 0).unwrap();
    let small_dir_cost = h.counters.last_txn_index_bytes.load(Ordering::Relaxed);
    for i in 0..100_000 {
        h.create(ME, big, &n(&format!("file-{i:06}")), 0o644, 0)
            .unwrap();
    }
    // A create writes the same rows whatever the directory's size.
    h.create(ME, big, &n("last"), 0o644, 0).unwrap();
    let big_dir_cost = h.counters.last_txn_index_bytes.load(Ordering::Relaxed);
    assert!(big_dir_cost <= small_dir_cost + 16, "create in a 100k directory wrote {big_dir_cost} index bytes, in a small one {small_dir_cost}");
    let a = h.mkdir(ME, InodeNo::ROOT, &n("a"), 0o755, 0).unwrap().ino;
    let b = h.mkdir(ME, a, &n("b"), 0o755, 0).unwrap().ino;
    let c = h.mkdir(ME, b, &n("c"), 0o755, 0).unwrap().ino;
    let f = h.create(ME, c, &n("f"), 0o644, 0).unwrap().ino;
    let first = Snapshots::of(&h).take(ME, None).unwrap();
    assert_eq!(first.stats.dirs_serialized, 5, "root, big, a, b, c");
    h.setattr(
        ME,
        f,
        &SetAttr {
            mtime: Some(Timestamp { secs: 1, nanos: 0 }),
            ..Default::default()
        },
    )
    .unwrap();
    let second = Snapshots::of(&h).take(ME, None).unwrap();
    assert_eq!(
        second.stats.dirs_serialized, 4,
        "c, b, a and the root; big is reused"
    );
    assert_eq!(second.stats.dirs_reused, 1);
    // Renaming a directory dirties its old and new parents, not its contents.
    h.rename(
        ME,
        InodeNo::ROOT,
        &n("a"),
        InodeNo::ROOT,
        &n("a2"),
        RenameMode::Replace,
    )
    .unwrap();
    let third = Snapshots::of(&h).take(ME, None).unwrap();
    assert_eq!(third.stats.dirs_serialized, 1, "only the root");
}

fn write_tree(h: &Head, dir: InodeNo, seed: u64) {
    for i in 0..12u64 {
        let f = h
            .create(ME, dir, &n(&format!("f{i}")), 0o644, 0)
            .unwrap()
            .ino;
        let data = if i % 3 == 0 {
            b"log line: something happened\n".repeat(100_000)
        } else {
            bytes(seed + i, 3 << 20)
        };
        for (k, piece) in data.chunks(128 << 10).enumerate() {
            h.write(ME, f, (k * (128 << 10)) as u64, piece).unwrap();
        }
        h.release(ME, f).unwrap();
    }
}

#[test]
fn re_ingesting_identical_data_adds_under_one_percent() {
    let dir = tempfile::tempdir().unwrap();
    let h = disk_head(dir.path());
    let x = h.mkdir(ME, InodeNo::ROOT, &n("x"), 0o755, 0).unwrap().ino;
    write_tree(&h, x, 1);
    Snapshots::of(&h).take(ME, None).unwrap();
    let before = du(dir.path());
    let y = h.mkdir(ME, InodeNo::ROOT, &n("y"), 0o755, 0).unwrap().ino;
    write_tree(&h, y, 1);
    Snapshots::of(&h).take(ME, None).unwrap();
    let after = du(dir.path());
    let growth = (after - before) as f64 / before as f64;
    eprintln!(
        "re-ingest of identical data: {before} -> {after} bytes, +{:.3} %",
        growth * 100.0
    );
    assert!(
        growth < 0.01,
        "second copy grew the repository by {:.2} % ({before} -> {after} bytes)",
        growth * 100.0
    );
}

#[test]
fn an_rsync_style_replace_of_an_unchanged_file_stores_no_data() {
    let h = mem_head();
    let data = bytes(5, 2 << 20);
    let f = h.create(ME, InodeNo::ROOT, &n("db"), 0o644, 0).unwrap().ino;
    h.write(ME, f, 0, &data).unwrap();
    h.release(ME, f).unwrap();
    Snapshots::of(&h).take(ME, None).unwrap();
    let new_objects = || h.repo().store().counters.chunks_new.load(Ordering::Relaxed);
    let before = new_objects();
    // rsync writes a temporary file and renames it over the original.
    let t = h
        .create(ME, InodeNo::ROOT, &n(".db.Xy12ab"), 0o600, 0)
        .unwrap()
        .ino;
    for (k, piece) in data.chunks(256 << 10).enumerate() {
        h.write(ME, t, (k * (256 << 10)) as u64, piece).unwrap();
    }
    h.release(ME, t).unwrap();
    h.rename(
        ME,
        InodeNo::ROOT,
        &n(".db.Xy12ab"),
        InodeNo::ROOT,
        &n("db"),
        RenameMode::Replace,
    )
    .unwrap();
    Snapshots::of(&h).take(ME, None).unwrap();
    // Only the new root tree and the snapshot record: no file content.
    assert_eq!(
        new_objects() - before,
        2,
        "replacing an unchanged file stored new objects"
    );
}

/// A file written as `rsync -S` writes database pages (each page's data,
/// then a seek over its free space) ends a chunk at every seek. The chunks
/// are recorded in the head in batches: one transaction per page was most
/// of what such a file cost.
#[test]
fn a_sparse_writers_pages_are_recorded_in_batches_not_one_per_page() {
    let h = mem_head();
    let f = h
        .create(ME, InodeNo::ROOT, &n("pages"), 0o644, 0)
        .unwrap()
        .ino;
    let data = bytes(7, 2000 * 4096);
    let txns = || h.counters.write_txns.load(Ordering::Relaxed);
    let before = txns();
    for (k, page) in data.chunks(4096).enumerate() {
        h.write(ME, f, (k * 8192) as u64, page).unwrap();
    }
    h.release(ME, f).unwrap();
    let used = txns() - before;
    assert!(used <= 10, "{used} head transactions for 2000 pages");
    // Each page reads back, with zeros where the writer seeked.
    let mut written = vec![0u8; 1999 * 8192 + 4096];
    for (k, page) in data.chunks(4096).enumerate() {
        written[k * 8192..k * 8192 + 4096].copy_from_slice(page);
    }
    let back = h.read(ME, f, 0, 2000 * 8192).unwrap();
    assert!(back == written, "the pages do not read back as written");
}

/// What a stream has stored but not recorded stays bounded: the committer
/// skips a file busy in a write, and such a file is left out of that
/// durable commit by at most 8 MiB (an eighth of the commit cadence's
/// bytes) and its chunker's look-ahead.
#[test]
fn a_streams_unrecorded_chunks_stay_bounded() {
    // The default chunk sizes: 40 MiB is far fewer chunks than the count
    // that also makes a stream record, so the bytes decide.
    let dir = tempfile::tempdir().unwrap();
    let h = disk_head(dir.path());
    let f = h
        .create(ME, InodeNo::ROOT, &n("big"), 0o644, 0)
        .unwrap()
        .ino;
    let data = bytes(9, 40 << 20);
    for (k, piece) in data.chunks(1 << 20).enumerate() {
        h.write(ME, f, (k << 20) as u64, piece).unwrap();
    }
    let recorded = h.rtx().unwrap().extents(f, 0, u64::MAX).unwrap();
    let end = recorded.last().map_or(0, |&(o, _, l)| o + u64::from(l));
    let max = u64::from(h.repo().chunker().params().max_size);
    assert!(
        end + (8 << 20) + max >= 40 << 20,
        "only {end} of {} bytes recorded before the flush",
        40 << 20
    );
    h.release(ME, f).unwrap();
}

#[test]
fn absent_xattrs_are_answered_without_reading_the_index_and_present_ones_survive_a_reopen() {
    use strata::tree::types::FsError;
    let disk: Arc<dyn Disk> = Arc::new(strata::store::io::sim::SimDisk::new());
    init_encrypted(disk.clone());
    let reads = |h: &Head| h.counters.read_txns.load(Ordering::Relaxed);
    let (bare, tagged) = {
        let h = Head::new(open(disk.clone())).unwrap();
        let bare = h
            .create(ME, InodeNo::ROOT, &n("bare"), 0o644, 0)
            .unwrap()
            .ino;
        let tagged = h
            .create(ME, InodeNo::ROOT, &n("tagged"), 0o644, 0)
            .unwrap()
            .ino;
        h.setxattr(ME, tagged, b"user.tag", b"night", false, false)
            .unwrap();
        let before = reads(&h);
        assert!(matches!(
            h.getxattr(ME, bare, b"security.capability"),
            Err(FsError::NoAttr)
        ));
        assert!(h.listxattr(ME, bare).unwrap().is_empty());
        assert_eq!(reads(&h), before, "an absent xattr read the index");
        assert_eq!(h.getxattr(ME, tagged, b"user.tag").unwrap(), b"night");
        assert!(matches!(
            h.getxattr(ME, tagged, b"user.other"),
            Err(FsError::NoAttr)
        ));
        // Removed and set again: found again.
        h.removexattr(ME, tagged, b"user.tag").unwrap();
        assert!(h.listxattr(ME, tagged).unwrap().is_empty());
        h.setxattr(ME, tagged, b"user.tag", b"again", false, false)
            .unwrap();
        h.commit().unwrap();
        (bare, tagged)
    };
    // A reopened head knows from the index which inodes have xattrs.
    let h = Head::new(open(disk)).unwrap();
    assert_eq!(h.getxattr(ME, tagged, b"user.tag").unwrap(), b"again");
    assert_eq!(h.listxattr(ME, tagged).unwrap(), vec![b"user.tag".to_vec()]);
    let before = reads(&h);
    assert!(matches!(
        h.getxattr(ME, bare, b"system.posix_acl_access"),
        Err(FsError::NoAttr)
    ));
    assert_eq!(reads(&h), before, "an absent xattr read the index");
}
