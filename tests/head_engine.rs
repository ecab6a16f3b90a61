//! The head filesystem through its Rust API, without a mount.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use strata::store::io::sim::SimDisk;
use strata::store::io::Disk;
use strata::tree::head::txn::Reader;
use strata::tree::head::Head;
use strata::tree::objects::Tree;
use strata::tree::record::RunStatus;
use strata::tree::snapshot::Snapshots;
use strata::tree::types::{
    Caller, FileKind, FsError, InodeNo, OpenMode, RenameMode, SetAttr, Timestamp,
};

fn head() -> (SimDisk, Head) {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    (sim, Head::new(open(disk)).unwrap())
}

/// Compares bytes without printing them: reports lengths and the first difference.
fn same(got: &[u8], want: &[u8]) {
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got == want,
        "{} bytes vs {} expected; first difference at {:?}",
        got.len(),
        want.len(),
        first
    );
}

const ME: Caller = Caller {
    uid: 1000,
    gid: 100,
    pid: 1,
};
const ROOT: InodeNo = InodeNo::ROOT;

#[test]
fn create_write_read_back() {
    let (_, h) = head();
    let f = h.create(ME, ROOT, &n("a"), 0o644, 0o022).unwrap();
    assert_eq!(
        (f.uid, f.gid, f.perm, f.kind),
        (1000, 100, 0o644, FileKind::File)
    );
    let data = bytes(1, 500_000);
    h.open(ME, f.ino, OpenMode::Write).unwrap();
    for (i, piece) in data.chunks(70_000).enumerate() {
        h.write(ME, f.ino, (i * 70_000) as u64, piece).unwrap();
        // Reads see the bytes just written, before any flush.
        same(
            &h.read(ME, f.ino, 0, 1 << 30).unwrap(),
            &data[..(i * 70_000 + piece.len())],
        );
    }
    h.release(ME, f.ino).unwrap();
    assert_eq!(h.getattr(ME, f.ino).unwrap().size, 500_000);
    same(&h.read(ME, f.ino, 1000, 10).unwrap(), &data[1000..1010]);
    assert_eq!(h.lookup(ME, ROOT, &n("a")).unwrap().ino, f.ino);
}

#[test]
fn overwrites_truncates_and_holes() {
    let (_, h) = head();
    let f = h.create(ME, ROOT, &n("f"), 0o644, 0).unwrap().ino;
    let mut model = bytes(2, 300_000);
    h.write(ME, f, 0, &model).unwrap();
    h.flush(ME, f).unwrap();
    // Overwrite in the middle, then extend past a gap.
    h.write(ME, f, 1000, b"hello").unwrap();
    model[1000..1005].copy_from_slice(b"hello");
    h.write(ME, f, 400_000, b"tail").unwrap();
    model.resize(400_000, 0);
    model.extend_from_slice(b"tail");
    same(&h.read(ME, f, 0, 1 << 30).unwrap(), &model);
    h.flush(ME, f).unwrap();
    same(&h.read(ME, f, 0, 1 << 30).unwrap(), &model);
    h.setattr(
        ME,
        f,
        &SetAttr {
            size: Some(150_000),
            ..Default::default()
        },
    )
    .unwrap();
    model.truncate(150_000);
    same(&h.read(ME, f, 0, 1 << 30).unwrap(), &model);
    h.setattr(
        ME,
        f,
        &SetAttr {
            size: Some(200_000),
            ..Default::default()
        },
    )
    .unwrap();
    model.resize(200_000, 0);
    same(&h.read(ME, f, 0, 1 << 30).unwrap(), &model);
}

#[test]
fn namespace_operations() {
    let (_, h) = head();
    let d = h.mkdir(ME, ROOT, &n("d"), 0o755, 0o022).unwrap().ino;
    assert_eq!(h.getattr(ME, ROOT).unwrap().nlink, 3);
    let f = h.create(ME, d, &n("f"), 0o600, 0).unwrap().ino;
    h.link(ME, f, ROOT, &n("hard")).unwrap();
    assert_eq!(h.getattr(ME, f).unwrap().nlink, 2);
    h.symlink(ME, ROOT, &n("s"), b"d/f").unwrap();
    assert_eq!(
        h.readlink(ME, h.lookup(ME, ROOT, &n("s")).unwrap().ino)
            .unwrap(),
        b"d/f"
    );
    assert!(matches!(h.rmdir(ME, ROOT, &n("d")), Err(FsError::NotEmpty)));
    assert!(matches!(
        h.rename(ME, ROOT, &n("d"), d, &n("x"), RenameMode::Replace),
        Err(FsError::Loop)
    ));
    h.rename(ME, d, &n("f"), ROOT, &n("g"), RenameMode::Replace)
        .unwrap();
    assert!(matches!(
        h.rename(ME, ROOT, &n("g"), ROOT, &n("hard"), RenameMode::NoReplace),
        Err(FsError::Exists)
    ));
    h.rename(ME, ROOT, &n("s"), ROOT, &n("d"), RenameMode::Exchange)
        .unwrap();
    assert_eq!(h.lookup(ME, ROOT, &n("s")).unwrap().kind, FileKind::Dir);
    h.unlink(ME, ROOT, &n("hard")).unwrap();
    assert_eq!(h.getattr(ME, f).unwrap().nlink, 1);
    h.rmdir(ME, ROOT, &n("s")).unwrap();
    let mut names: Vec<Vec<u8>> = h
        .readdir(ME, ROOT, 0)
        .unwrap()
        .into_iter()
        .map(|e| e.name.as_bytes().to_vec())
        .collect();
    names.sort();
    assert_eq!(names, vec![b"d".to_vec(), b"g".to_vec()]);
    h.setxattr(ME, f, b"user.k", b"v", true, false).unwrap();
    assert!(matches!(
        h.setxattr(ME, f, b"user.k", b"v", true, false),
        Err(FsError::Exists)
    ));
    assert_eq!(h.getxattr(ME, f, b"user.k").unwrap(), b"v");
    assert_eq!(h.listxattr(ME, f).unwrap(), vec![b"user.k".to_vec()]);
    h.removexattr(ME, f, b"user.k").unwrap();
    assert!(matches!(h.getxattr(ME, f, b"user.k"), Err(FsError::NoAttr)));
    let t = Timestamp {
        secs: -86_400 * 365,
        nanos: 123_456_789,
    };
    let a = h
        .setattr(
            ME,
            f,
            &SetAttr {
                mtime: Some(t),
                perm: Some(0o4755),
                uid: Some(7),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((a.mtime, a.perm, a.uid), (t, 0o4755, 7));
}

#[test]
fn readdir_resumes_from_its_cursor_over_many_entries() {
    let (_, h) = head();
    for i in 0..1000 {
        h.mknod(ME, ROOT, &n(&format!("e{i}")), libc::S_IFREG | 0o644, 0, 0)
            .unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = 0;
    loop {
        let batch = h.readdir(ME, ROOT, cursor).unwrap();
        let Some(last) = batch.last() else { break };
        cursor = last.cursor;
        for e in batch {
            assert!(
                seen.insert(e.name.as_bytes().to_vec()),
                "entry returned twice"
            );
        }
    }
    assert_eq!(seen.len(), 1000);
}

#[test]
fn setgid_directories_pass_on_their_group() {
    let (_, h) = head();
    let d = h.mkdir(ME, ROOT, &n("shared"), 0o2775, 0).unwrap();
    h.setattr(
        ME,
        d.ino,
        &SetAttr {
            gid: Some(555),
            ..Default::default()
        },
    )
    .unwrap();
    let f = h.create(ME, d.ino, &n("f"), 0o644, 0).unwrap();
    assert_eq!(f.gid, 555);
    let sub = h.mkdir(ME, d.ino, &n("sub"), 0o755, 0).unwrap();
    assert_eq!((sub.gid, sub.perm & libc::S_ISGID), (555, libc::S_ISGID));
}

#[test]
fn an_unlinked_open_file_lives_until_released() {
    let (_, h) = head();
    let f = h.create(ME, ROOT, &n("tmp"), 0o644, 0).unwrap().ino;
    h.open(ME, f, OpenMode::Write).unwrap();
    h.write(ME, f, 0, b"still here").unwrap();
    h.unlink(ME, ROOT, &n("tmp")).unwrap();
    same(&h.read(ME, f, 0, 100).unwrap(), b"still here");
    h.release(ME, f).unwrap();
    assert!(matches!(h.getattr(ME, f), Err(FsError::NotFound)));
}

#[test]
fn default_acls_are_inherited_instead_of_the_umask() {
    use strata::tree::head::acl::{Acl, ACCESS, DEFAULT};
    let (_, h) = head();
    let d = h.mkdir(ME, ROOT, &n("shared"), 0o770, 0).unwrap().ino;
    let default = Acl::from_mode(0o770).with_user(2000, 7);
    h.setxattr(ME, d, DEFAULT, &default.encode(), false, false)
        .unwrap();
    // The umask 077 would leave 0600; the default ACL wins.
    let f = h.create(ME, d, &n("f"), 0o666, 0o077).unwrap();
    assert_eq!(f.perm, 0o660);
    let access = Acl::parse(&h.getxattr(ME, f.ino, ACCESS).unwrap()).unwrap();
    assert_eq!(access.mode_bits(), 0o660);
    let sub = h.mkdir(ME, d, &n("sub"), 0o777, 0o022).unwrap();
    assert_eq!(
        h.getxattr(ME, sub.ino, DEFAULT).unwrap(),
        default.encode(),
        "directories inherit the default ACL"
    );
    // chmod keeps the mask in step with the group bits.
    h.setattr(
        ME,
        f.ino,
        &SetAttr {
            perm: Some(0o640),
            ..Default::default()
        },
    )
    .unwrap();
    let access = Acl::parse(&h.getxattr(ME, f.ino, ACCESS).unwrap()).unwrap();
    assert_eq!(access.mode_bits(), 0o640);
    // Setting an access ACL sets the mode; a minimal one is not stored.
    h.setxattr(
        ME,
        f.ino,
        ACCESS,
        &Acl::from_mode(0o604).encode(),
        false,
        false,
    )
    .unwrap();
    assert_eq!(h.getattr(ME, f.ino).unwrap().perm, 0o604);
    assert!(matches!(
        h.getxattr(ME, f.ino, ACCESS),
        Err(FsError::NoAttr)
    ));
    assert!(matches!(
        h.setxattr(ME, f.ino, DEFAULT, &default.encode(), false, false),
        Err(FsError::PermissionDenied)
    ));
    assert!(matches!(
        h.setxattr(ME, f.ino, ACCESS, b"junk", false, false),
        Err(FsError::Invalid(_))
    ));
    // Without a default ACL the umask applies.
    let g = h.create(ME, ROOT, &n("g"), 0o666, 0o027).unwrap();
    assert_eq!(g.perm, 0o640);
}

#[test]
fn statfs_counts_inodes_and_bytes() {
    let (_, h) = head();
    let f = h.create(ME, ROOT, &n("f"), 0o644, 0).unwrap().ino;
    h.write(ME, f, 0, &bytes(9, 100_000)).unwrap();
    h.fsync(ME, f).unwrap();
    let s = h.statfs(ME).unwrap();
    assert_eq!(s.inodes, 2);
    assert!(s.used_bytes > 100_000);
}

#[test]
fn sequential_writes_stage_nothing_and_a_small_overwrite_stores_few_chunks() {
    use std::sync::atomic::Ordering;
    let (_, h) = head();
    let f = h.create(ME, ROOT, &n("big"), 0o644, 0).unwrap().ino;
    let data = bytes(10, 8 << 20);
    for (k, piece) in data.chunks(128 << 10).enumerate() {
        h.write(ME, f, (k * (128 << 10)) as u64, piece).unwrap();
        assert_eq!(
            h.counters.staging_bytes.load(Ordering::Relaxed),
            0,
            "an append staged bytes"
        );
    }
    h.release(ME, f).unwrap();
    let new_objects = || h.repo().store().counters.chunks_new.load(Ordering::Relaxed);
    let before = new_objects();
    h.write(ME, f, 5 << 20, &[0xAB; 4096]).unwrap();
    assert_eq!(h.counters.staging_bytes.load(Ordering::Relaxed), 4096);
    h.flush(ME, f).unwrap();
    let stored = new_objects() - before;
    // Content-defined chunking falls back into step with the old boundaries
    // within a few chunks; how many depends on the key-dependent cuts (over
    // 40 random keys: 1 in 32 runs, at most 5). The file has about 500.
    assert!(
        (1..=16).contains(&stored),
        "a 4 KiB overwrite of an 8 MiB file stored {stored} chunks"
    );
    let mut model = data;
    model[5 << 20..(5 << 20) + 4096].fill(0xAB);
    same(&h.read(ME, f, 0, u32::MAX).unwrap(), &model);
}

#[test]
fn a_failed_flush_leaves_a_size_and_mtime_rsync_will_not_trust() {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    let h = Head::new(open(disk)).unwrap();
    let f = h.create(ME, ROOT, &n("f"), 0o644, 0).unwrap().ino;
    h.write(ME, f, 0, &bytes(11, 20_000)).unwrap();
    // The source's mtime, as rsync sets it after writing.
    let source_time = Timestamp {
        secs: 1_700_000_000,
        nanos: 5,
    };
    h.setattr(
        ME,
        f,
        &SetAttr {
            mtime: Some(source_time),
            ..Default::default()
        },
    )
    .unwrap();
    sim.fail_write(0, std::io::ErrorKind::StorageFull);
    assert!(matches!(h.flush(ME, f), Err(FsError::NoSpace)));
    sim.heal();
    let a = h.getattr(ME, f).unwrap();
    assert_ne!(
        (a.size, a.mtime),
        (20_000, source_time),
        "rsync's quick check would skip this file"
    );
}

/// Chunks are sealed and stored off the writer's path, so a write is
/// acknowledged before its chunks are stored; one that then fails to store
/// fails the file's later records and its flush, even once the disk heals.
#[test]
fn a_chunk_that_fails_after_its_write_was_acknowledged_fails_the_flush() {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    let h = Head::new(open(disk)).unwrap();
    let f = h.create(ME, ROOT, &n("f"), 0o644, 0).unwrap().ino;
    let data = bytes(13, 12 << 20);
    // Enough to cut chunks while writing: they go to the pipeline.
    h.write(ME, f, 0, &data[..4 << 20]).unwrap();
    sim.fail_write(0, std::io::ErrorKind::StorageFull);
    let mut acknowledged = 0;
    for piece in data[4 << 20..].chunks(128 << 10) {
        if h.write(ME, f, (4 << 20) + acknowledged, piece).is_err() {
            break;
        }
        acknowledged += piece.len() as u64;
    }
    assert!(acknowledged > 0, "no write was acknowledged");
    // The disk has room again, but what was lost stays lost: the flush says so.
    sim.heal();
    assert!(matches!(h.flush(ME, f), Err(FsError::NoSpace)));
    let a = h.getattr(ME, f).unwrap();
    assert!(
        a.size < (4 << 20) + acknowledged,
        "the lost bytes count in the size"
    );
}

#[test]
fn an_unlinked_open_file_is_removed_after_a_crash() {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    let h = Head::new(open(disk)).unwrap();
    let f = h.create(ME, ROOT, &n("tmp"), 0o644, 0).unwrap().ino;
    h.open(ME, f, OpenMode::Write).unwrap();
    h.write(ME, f, 0, &bytes(12, 50_000)).unwrap();
    h.unlink(ME, ROOT, &n("tmp")).unwrap();
    h.fsync(ME, f).unwrap();
    let image = sim.crash_images(1, 0).remove(0);
    std::mem::forget(h);
    let h = Head::new(open(Arc::new(image))).unwrap();
    assert!(
        matches!(h.getattr(ME, f), Err(FsError::NotFound)),
        "orphan survived the crash"
    );
    assert_eq!(h.statfs(ME).unwrap().inodes, 1);
}

#[test]
fn small_reads_never_decode_a_chunk_twice() {
    use std::sync::atomic::Ordering;
    let (_, h) = head();
    let f = h.create(ME, ROOT, &n("f"), 0o644, 0).unwrap().ino;
    let data = bytes(13, 70_000);
    h.write(ME, f, 0, &data).unwrap();
    h.release(ME, f).unwrap();
    let reads = || {
        h.repo()
            .store()
            .counters
            .objects_read
            .load(Ordering::Relaxed)
    };
    let before = reads();
    let mut back = Vec::new();
    for k in 0..15 {
        back.extend(h.read(ME, f, k * 4096, 4096).unwrap());
    }
    same(&back, &data[..15 * 4096]);
    let chunks = h.repo().chunker().lengths(&data).len() as u64;
    assert!(
        reads() - before <= chunks,
        "{} decodes for {chunks} chunks",
        reads() - before
    );
}

#[test]
fn repair_keeps_the_head_or_recovers_snapshots_from_packs() {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    let data = bytes(14, 90_000);
    {
        let h = Head::new(open(disk.clone())).unwrap();
        let f = h.create(ME, ROOT, &n("record"), 0o644, 0).unwrap().ino;
        h.write(ME, f, 0, &data).unwrap();
        Snapshots::of(&h).take(ME, Some("one")).unwrap();
        let mut run = run_record(RunStatus::Pending, 1);
        let seq = Snapshots::of(&h)
            .take_run(ME, Some("two"), Some(&run))
            .unwrap()
            .seq;
        run.status = RunStatus::Failed;
        run.revision = 2;
        Snapshots::of(&h).set_run(ME, seq, &run).unwrap();
        assert!(
            Snapshots::of(&h).set_run(ME, seq, &run).is_err(),
            "only a newer revision replaces it"
        );
        assert_eq!(Snapshots::of(&h).runs().unwrap()[&seq], run);
    }
    // The run record (status and all) survives both kinds of repair.
    let failed_run = |h: &Head| {
        let runs = Snapshots::of(h).runs().unwrap();
        assert_eq!(runs.keys().collect::<Vec<_>>(), [&2]);
        assert_eq!((runs[&2].status, runs[&2].revision), (RunStatus::Failed, 2));
    };
    // An index that still opens: the head and the snapshot list are kept.
    let report = repair(&disk);
    assert!(report.head_preserved);
    {
        let h = Head::new(open(disk.clone())).unwrap();
        let f = h.lookup(ME, ROOT, &n("record")).unwrap().ino;
        same(&h.read(ME, f, 0, u32::MAX).unwrap(), &data);
        assert_eq!(Snapshots::of(&h).list().unwrap().len(), 2);
        failed_run(&h);
    }
    // A lost index: the snapshots come back from their records in the packs.
    disk.remove(strata::store::format::INDEX_FILE).unwrap();
    let report = repair(&disk);
    assert!(!report.head_preserved);
    assert_eq!(report.snapshots_recovered, 2);
    let h = Head::new(open(disk)).unwrap();
    let rows = Snapshots::of(&h).list().unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.record.label.clone().unwrap())
            .collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert_eq!(rows[1].record.prev, Some(rows[0].id), "the chain is intact");
    failed_run(&h);
    let tree = Tree::load(h.repo().store(), &rows[1].record.root.subtree.unwrap()).unwrap();
    same(
        &Snapshots::of(&h)
            .read_file(ME, &tree.entries[0], 0, u32::MAX)
            .unwrap(),
        &data,
    );
    // New snapshots continue the numbering.
    assert_eq!(Snapshots::of(&h).take(ME, None).unwrap().seq, 3);
}

#[test]
fn the_cadence_makes_metadata_changes_durable_without_fsync() {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    let mut h = Head::new(open(disk)).unwrap();
    h.set_cadence(std::time::Duration::ZERO, u64::MAX);
    h.mkdir(ME, ROOT, &n("kept"), 0o755, 0).unwrap();
    let image = sim.crash_images(3, 0).remove(0);
    std::mem::forget(h);
    let h = Head::new(open(Arc::new(image))).unwrap();
    assert!(h.lookup(ME, ROOT, &n("kept")).is_ok());
}

#[test]
fn a_committer_thread_takes_the_cadence_commits_off_the_operations() {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    let mut h = Head::new(open(disk)).unwrap();
    // Only bytes make a commit due here, so the test decides when.
    h.set_cadence(std::time::Duration::from_secs(3600), 1 << 20);
    let h = Arc::new(h);
    let committer = std::thread::spawn({
        let h = h.clone();
        move || h.run_committer()
    });
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    until("the committer did not start", &|| h.has_committer());
    let commits = || h.counters.durable_commits.load(Ordering::Relaxed);
    let background = || h.counters.background_commits.load(Ordering::Relaxed);
    let before = commits();

    // A window of bytes is made durable by the committer, not by the writer.
    h.mkdir(ME, ROOT, &n("kept"), 0o755, 0).unwrap();
    let f = h.create(ME, ROOT, &n("f"), 0o644, 0).unwrap().ino;
    h.write(ME, f, 0, &bytes(3, 3 << 19)).unwrap();
    until("no cadence commit", &|| background() >= 1);
    assert_eq!(commits() - before, 1, "the writer committed too");
    assert_eq!(background(), 1);
    let image = sim.crash_images(3, 0).remove(0);
    let h2 = Head::new(open(Arc::new(image))).unwrap();
    assert!(h2.lookup(ME, ROOT, &n("kept")).is_ok());

    // A writer two byte windows ahead of the committer commits itself.
    h.write(ME, f, 3 << 19, &bytes(4, 3 << 20)).unwrap();
    assert_eq!(commits() - before, 2, "no inline commit");
    assert_eq!(background(), 1);

    h.stop_committer();
    committer.join().unwrap();
    assert!(!h.has_committer());
}

#[test]
fn verify_snapshots_finds_chunks_lost_from_the_index() {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    {
        let h = Head::new(open(disk.clone())).unwrap();
        let f = h.create(ME, ROOT, &n("f"), 0o644, 0).unwrap().ino;
        h.write(ME, f, 0, &bytes(15, 200_000)).unwrap();
        Snapshots::of(&h).take(ME, None).unwrap();
        assert!(
            Snapshots::of(&h).verify(ME).unwrap().is_empty(),
            "a healthy snapshot verifies"
        );
        h.repo().store().flush_pack().unwrap();
        // Lose the finished packs (a disk failure), then rebuild the index.
        for id in h.repo().store().backend().list().unwrap() {
            h.repo().store().backend().delete(id).unwrap();
        }
    }
    repair(&disk);
    let h = Head::new(open(disk)).unwrap();
    let problems = Snapshots::of(&h).verify(ME).unwrap();
    assert!(
        !problems.is_empty() && problems.iter().all(|p| p.starts_with("snapshot 1")),
        "{problems:?}"
    );
}

/// Writers, fsyncs and snapshots at once, as FUSE threads and the control
/// socket will drive them: no deadlock, nothing lost.
#[test]
fn concurrent_writers_and_snapshots_do_not_deadlock() {
    let (_, h) = head();
    let h = Arc::new(h);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            for _ in 0..600 {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            eprintln!("deadlock: writers and snapshots did not finish in 60 s");
            std::process::abort();
        })
    };
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..6u64 {
                    let f = h
                        .create(ME, ROOT, &n(&format!("t{t}-{i}")), 0o644, 0)
                        .unwrap()
                        .ino;
                    let data = bytes(t * 100 + i, 150_000);
                    for (k, piece) in data.chunks(40_000).enumerate() {
                        h.write(ME, f, (k * 40_000) as u64, piece).unwrap();
                    }
                    if i % 2 == 0 {
                        h.fsync(ME, f).unwrap();
                    }
                    h.release(ME, f).unwrap();
                }
            })
        })
        .collect();
    let mut taken = 0;
    while taken < 3 || !writers.iter().all(|w| w.is_finished()) {
        Snapshots::of(&h).take(ME, None).unwrap();
        taken += 1;
    }
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watchdog.join().unwrap();
    for t in 0..4u64 {
        for i in 0..6u64 {
            let f = h.lookup(ME, ROOT, &n(&format!("t{t}-{i}"))).unwrap().ino;
            same(
                &h.read(ME, f, 0, u32::MAX).unwrap(),
                &bytes(t * 100 + i, 150_000),
            );
        }
    }
    let last = Snapshots::of(&h).take(ME, None).unwrap();
    assert!(Snapshots::of(&h).verify(ME).unwrap().is_empty());
    assert_eq!(last.seq, taken + 1);
}

/// Reads a whole file.
fn contents(h: &Head, ino: InodeNo) -> Vec<u8> {
    h.read(ME, ino, 0, u32::MAX).unwrap()
}

/// Appends `data` at the file's end as `>>` does: open, write, release.
fn append(h: &Head, ino: InodeNo, data: &[u8]) {
    h.open(ME, ino, OpenMode::Write).unwrap();
    let size = h.getattr(ME, ino).unwrap().size;
    h.write(ME, ino, size, data).unwrap();
    h.release(ME, ino).unwrap();
}

/// `len` bytes of one value whose chunks (under this repository's key) are
/// all cut at the maximum size but the last: the shapes the chunker's
/// look-ahead cares about when a stream resumes.
fn uniform(h: &Head, len: usize) -> Vec<u8> {
    let max = h.repo().chunker().params().max_size as usize;
    (1..=255u8)
        .map(|b| vec![b; len])
        .find(|d| {
            let l = h.repo().chunker().lengths(d);
            l[..l.len() - 1].iter().all(|&n| n == max)
        })
        .expect("a byte value whose chunks are cut at the maximum")
}

/// An append to a file written earlier (the stream resumes by re-feeding
/// its last chunk) used to panic the request, and every later one on the
/// file, when that chunk was cut at the maximum size.
#[test]
fn appends_after_reopen_at_every_shape_of_the_last_chunk() {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    let mut h = Head::new(open(disk.clone())).unwrap();
    let max = h.repo().chunker().params().max_size as usize;
    let min = h.repo().chunker().params().min_size as usize;
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        ("last chunk at max size", uniform(&h, 4 * max), 0),
        ("last chunk at min size", uniform(&h, max + min), 0),
        ("last chunk one byte", uniform(&h, max + 1), 0),
        ("a natural last chunk", bytes(11, 3 * max + 777), 0),
        ("a hole at the end", bytes(12, 2 * max), 100_000),
    ];
    let mut files = Vec::new();
    for (i, (what, data, hole)) in cases.iter().enumerate() {
        let f = h
            .create(ME, ROOT, &n(&format!("f{i}")), 0o644, 0)
            .unwrap()
            .ino;
        append(&h, f, data);
        let mut want = data.clone();
        if *hole > 0 {
            let size = (data.len() as u64) + hole;
            let set = SetAttr {
                size: Some(size),
                ..SetAttr::default()
            };
            h.setattr(ME, f, &set).unwrap();
            want.resize(size as usize, 0);
        }
        same(&contents(&h, f), &want);
        files.push((what, f, want));
    }
    h.commit().unwrap();
    for round in 0..3 {
        drop(h);
        h = Head::new(open(disk.clone())).unwrap();
        for (what, f, want) in &mut files {
            let more = format!("more {round}\n");
            append(&h, *f, more.as_bytes());
            want.extend_from_slice(more.as_bytes());
            let got = contents(&h, *f);
            assert!(got == *want, "{what}, round {round}: content differs");
        }
        h.commit().unwrap();
    }
    // And once more within the same head, without a reopen between appends.
    for (what, f, want) in &mut files {
        let tail = uniform(&h, max);
        append(&h, *f, &tail);
        append(&h, *f, b"x");
        want.extend_from_slice(&tail);
        want.push(b'x');
        assert!(contents(&h, *f) == *want, "{what}: content differs");
    }
}

/// A file still open keeps up to a chunk in the chunker's look-ahead; a
/// cadence commit stores it (and the file's size and mtime), so a crash
/// loses no more than the documented window, and the next snapshot sees
/// the file as written.
#[test]
fn a_commit_covers_the_pending_bytes_of_open_files() {
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    let h = Head::new(open(disk)).unwrap();
    let dir = h.mkdir(ME, ROOT, &n("d"), 0o755, 0).unwrap().ino;
    let f = h.create(ME, dir, &n("f"), 0o644, 0).unwrap().ino;
    let staged = h.create(ME, dir, &n("staged"), 0o644, 0).unwrap().ino;
    Snapshots::of(&h).take(ME, Some("before")).unwrap();
    // A stream written in pieces that leave bytes in the look-ahead, and a
    // file with an overwrite held in staging; neither is closed.
    h.open(ME, f, OpenMode::Write).unwrap();
    let data = bytes(21, 300_001);
    for (i, piece) in data.chunks(10_000).enumerate() {
        h.write(ME, f, (i * 10_000) as u64, piece).unwrap();
    }
    h.open(ME, staged, OpenMode::Write).unwrap();
    h.write(ME, staged, 0, b"first").unwrap();
    h.write(ME, staged, 2, b"ERW").unwrap();
    let written = h.getattr(ME, f).unwrap();
    h.commit().unwrap();
    let image = sim.crash_images(0, 0).remove(0);
    // The writer goes on after the commit; the crash image must not need it.
    h.write(ME, f, data.len() as u64, b"after").unwrap();
    std::mem::forget(h);
    let h = Head::new(open(Arc::new(image))).unwrap();
    same(&contents(&h, f), &data);
    same(&contents(&h, staged), b"fiERW");
    let attr = h.getattr(ME, f).unwrap();
    assert_eq!(attr.size, data.len() as u64);
    assert_eq!(attr.mtime, written.mtime, "the mtime of the last write");
    // The snapshot after the crash serializes the changed directory.
    let rec = Snapshots::of(&h).take(ME, Some("after")).unwrap();
    let root = Tree::load(h.repo().store(), &rec.root.subtree.unwrap()).unwrap();
    let d = Tree::load(h.repo().store(), &root.entries[0].subtree.unwrap()).unwrap();
    let entry = d.entries.iter().find(|e| e.name == b"f").unwrap();
    same(
        &Snapshots::of(&h).read_file(ME, entry, 0, u32::MAX).unwrap(),
        &data,
    );
    // After the crash the stream resumes on what the commit stored.
    append(&h, f, b"tail");
    let mut want = data.clone();
    want.extend_from_slice(b"tail");
    same(&contents(&h, f), &want);
}

/// chown takes setuid and executable setgid off every non-directory, as
/// Linux does, not only off regular files; directories keep theirs.
#[test]
fn a_new_owner_clears_setid_on_every_non_directory() {
    let (_, h) = head();
    let setid = 0o6755;
    let mut nodes = vec![
        h.create(ME, ROOT, &n("file"), setid, 0).unwrap(),
        h.mkdir(ME, ROOT, &n("dir"), setid, 0).unwrap(),
    ];
    for (name, kind) in [
        ("fifo", libc::S_IFIFO),
        ("chr", libc::S_IFCHR),
        ("blk", libc::S_IFBLK),
        ("sock", libc::S_IFSOCK),
    ] {
        nodes.push(h.mknod(ME, ROOT, &n(name), kind | setid, 0, 0).unwrap());
    }
    for node in nodes {
        assert_eq!(node.perm, setid, "{:?}", node.kind);
        let set = SetAttr {
            gid: Some(200),
            ..SetAttr::default()
        };
        let after = h.setattr(ME, node.ino, &set).unwrap();
        let want = match node.kind {
            FileKind::Dir => setid,
            _ => 0o755,
        };
        assert_eq!(after.perm, want, "{:?}", node.kind);
    }
}

/// open(O_TRUNC) empties the file in the open itself, pending writes too,
/// and updates mtime and ctime even when it was empty already.
#[test]
fn open_with_truncate_empties_the_file_and_its_pending_writes() {
    let (_, h) = head();
    let f = h.create(ME, ROOT, &n("f"), 0o644, 0).unwrap().ino;
    h.write(ME, f, 0, &bytes(3, 200_000)).unwrap();
    h.release(ME, f).unwrap();
    // A writer still has it open with staged and streamed bytes.
    h.open(ME, f, OpenMode::Write).unwrap();
    h.write(ME, f, 10, b"staged").unwrap();
    let before = h.getattr(ME, f).unwrap();
    let after = h.open(ME, f, OpenMode::Truncate).unwrap();
    assert_eq!(after.size, 0);
    assert!(after.mtime > before.mtime && after.ctime > before.ctime);
    assert_eq!(contents(&h, f), b"");
    h.write(ME, f, 0, b"new").unwrap();
    h.release(ME, f).unwrap();
    h.release(ME, f).unwrap();
    assert_eq!(contents(&h, f), b"new");
    let empty = h.create(ME, ROOT, &n("empty"), 0o644, 0).unwrap();
    let again = h.open(ME, empty.ino, OpenMode::Truncate).unwrap();
    assert!(again.mtime > empty.mtime && again.ctime > empty.ctime);
}

/// Writes `data` as rsync -S does: 32 KiB pieces, the zeros at both ends
/// of each seeked over, and a file that ends in zeros extended by a
/// truncate.
fn write_sparsely(h: &Head, ino: InodeNo, data: &[u8]) {
    h.open(ME, ino, OpenMode::Write).unwrap();
    let mut end = 0;
    for (i, piece) in data.chunks(32 << 10).enumerate() {
        let Some(first) = piece.iter().position(|&b| b != 0) else {
            continue;
        };
        let last = piece.iter().rposition(|&b| b != 0).unwrap();
        let at = (i * (32 << 10) + first) as u64;
        h.write(ME, ino, at, &piece[first..=last]).unwrap();
        end = at + (last + 1 - first) as u64;
    }
    if end < data.len() as u64 {
        let set = SetAttr {
            size: Some(data.len() as u64),
            ..SetAttr::default()
        };
        h.setattr(ME, ino, &set).unwrap();
    }
    h.release(ME, ino).unwrap();
}

/// A file written with its zero runs seeked over (rsync -S on database
/// pages, whose free space is zeros) reads back as written, and the same
/// bytes written the same way again store no new chunk. (Each seek ends the
/// stream's chunk there, so such files get chunks about as small as the
/// writer's buffers: more chunks, but a changed page costs one of them.)
#[test]
fn zeros_seeked_over_read_back_and_dedup_when_written_alike() {
    let (_, h) = head();
    let max = h.repo().chunker().params().max_size as usize;
    let mut data = bytes(31, 3 * max + 12_345);
    // 8 KiB pages, the second half of each free; one whole free megabyte;
    // and a file that ends in zeros.
    for page in data.chunks_mut(8 << 10) {
        let n = page.len();
        page[n / 2..].fill(0);
    }
    data[max..2 * max].fill(0);
    let tail = data.len() - 3000;
    data[tail..].fill(0);
    let first = h.create(ME, ROOT, &n("first"), 0o644, 0).unwrap().ino;
    write_sparsely(&h, first, &data);
    same(&contents(&h, first), &data);
    let again = h.create(ME, ROOT, &n("again"), 0o644, 0).unwrap().ino;
    write_sparsely(&h, again, &data);
    same(&contents(&h, again), &data);
    let r = h.rtx().unwrap();
    let extents = r.extents(first, 0, u64::MAX).unwrap();
    assert!(extents.len() >= 3, "{extents:?}");
    assert_eq!(r.extents(again, 0, u64::MAX).unwrap(), extents);
}

/// Tier classification on the write path: what a file's first bytes tell
/// is kept with its inode when it is flushed, follows it through a rename,
/// is decided again when its start is rewritten, is read back when the
/// writes left a gap, and survives a reopen.
#[test]
fn a_written_file_is_classified_from_its_first_bytes_at_flush() {
    use strata::policy::hostconfig::HostConfig;
    use strata::tree::classify::Classify;
    let host = HostConfig::parse(TIER_RULES).unwrap();
    let classifier: Arc<dyn Classify> = Arc::new(host.classifier().unwrap().unwrap());
    let sim = SimDisk::new();
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    init_encrypted(disk.clone());
    let h = Head::new(open(disk.clone())).unwrap();
    let tier_of = |h: &Head, ino: InodeNo, path: &str| {
        let facts = h.facts(ino).unwrap().unwrap_or_default();
        classifier
            .place(std::path::Path::new(path), 1000, &facts)
            .tier
    };

    // Written before classification was configured: nothing is known.
    let before = h.create(ME, ROOT, &n("before.pdf"), 0o644, 0).unwrap().ino;
    h.write(ME, before, 0, b"%PDF-1.7\n").unwrap();
    h.flush(ME, before).unwrap();
    assert_eq!(h.facts(before).unwrap(), None);

    h.set_classifier(Some(classifier.clone()));
    // rsync's way: a temporary name, written in pieces from the start, renamed.
    let f = h
        .create(ME, ROOT, &n(".report.XyZ123"), 0o600, 0)
        .unwrap()
        .ino;
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend(bytes(21, 300_000));
    for (i, piece) in pdf.chunks(32 << 10).enumerate() {
        h.write(ME, f, (i * (32 << 10)) as u64, piece).unwrap();
    }
    h.flush(ME, f).unwrap();
    let facts = h.facts(f).unwrap().expect("classified at flush");
    assert_eq!(facts.types, ["pdf"]);
    h.rename(
        ME,
        ROOT,
        &n(".report.XyZ123"),
        ROOT,
        &n("report.pdf"),
        RenameMode::default(),
    )
    .unwrap();
    assert_eq!(tier_of(&h, f, "report.pdf"), "phi");

    // Its start rewritten with text that holds a national id.
    h.setattr(
        ME,
        f,
        &SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    h.write(ME, f, 0, b"patient 123-45-6789 seen today\n")
        .unwrap();
    h.flush(ME, f).unwrap();
    let facts = h.facts(f).unwrap().unwrap();
    assert!(facts.types.is_empty(), "{facts:?}");
    assert_eq!(facts.patterns, ["us-ssn"]);

    // Written out of order: the first bytes are read back once stored.
    let g = h.create(ME, ROOT, &n("notes.txt"), 0o644, 0).unwrap().ino;
    h.write(ME, g, 8, b"nothing to see here\n").unwrap();
    h.write(ME, g, 0, b"%PDF-1.").unwrap();
    h.flush(ME, g).unwrap();
    assert_eq!(h.facts(g).unwrap().unwrap().types, ["pdf"]);
    assert_eq!(tier_of(&h, g, "notes.txt"), "phi");

    // Plain text goes to the default tier.
    let t = h.create(ME, ROOT, &n("plain.txt"), 0o644, 0).unwrap().ino;
    h.write(ME, t, 0, b"just text\n").unwrap();
    h.flush(ME, t).unwrap();
    assert_eq!(tier_of(&h, t, "plain.txt"), "general");

    h.fsync(ME, t).unwrap();
    drop(h);
    let h = Head::new(open(disk)).unwrap();
    assert_eq!(h.facts(f).unwrap().unwrap().patterns, ["us-ssn"]);
    assert_eq!(h.facts(g).unwrap().unwrap().types, ["pdf"]);
    assert_eq!(h.facts(before).unwrap(), None);
    same(
        &h.read(ME, g, 0, 100).unwrap(),
        b"%PDF-1.\0nothing to see here\n",
    );
}
