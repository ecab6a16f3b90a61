//! Engine benchmark without FUSE: ingest a dataset through the head API the
//! way rsync would through a mount (mkdir, create, 128 KiB writes, release;
//! the second night writes a temporary file per changed file and renames it
//! over the original), then snapshot. Compared in the same run with copying
//! the same tree file by file into a plain directory on the same disk.
//!
//! ```text
//! cargo run --release --example head_bench -- NIGHT0 [NIGHT1]
//! ```
//! The upper bound for ingest through the mount: FUSE adds its round trips.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use strata::store::chunker::ChunkerParams;
use strata::store::crypto::slot::{KdfParams, Secret, SlotKind};
use strata::store::io::{Disk, LocalDisk};
use strata::store::repo::{init, InitOptions, LockedRepo};
use strata::tree::head::Head;
use strata::tree::snapshot::Snapshots;
use strata::tree::types::{Caller, FileName, InodeNo, RenameMode};
use zeroize::Zeroizing;

const ME: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 0,
};
const PIECE: usize = 128 << 10;

fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn name(p: &Path) -> FileName {
    use std::os::unix::ffi::OsStrExt;
    FileName::new(p.file_name().unwrap().as_bytes()).unwrap()
}

/// Copies `src` into directory `dir` of the head; returns bytes written.
fn ingest(h: &Head, src: &Path, dir: InodeNo, temp_rename: bool) -> u64 {
    let mut bytes = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let n = name(&p);
        if meta.is_dir() {
            let sub = match h.lookup(ME, dir, &n) {
                Ok(a) => a.ino,
                Err(_) => h.mkdir(ME, dir, &n, 0o755, 0).unwrap().ino,
            };
            bytes += ingest(h, &p, sub, temp_rename);
        } else if meta.is_file() {
            let data = std::fs::read(&p).unwrap();
            if temp_rename {
                if let Ok(old) = h.lookup(ME, dir, &n) {
                    if old.size == data.len() as u64
                        && h.read(ME, old.ino, 0, u32::MAX).unwrap() == data
                    {
                        continue; // rsync's quick check would skip it
                    }
                }
            }
            let target = if temp_rename {
                FileName::new(b".tmp.rsync").unwrap()
            } else {
                n.clone()
            };
            let f = h.create(ME, dir, &target, 0o644, 0).unwrap().ino;
            h.open(ME, f, strata::tree::types::OpenMode::Write).unwrap();
            for (k, piece) in data.chunks(PIECE).enumerate() {
                h.write(ME, f, (k * PIECE) as u64, piece).unwrap();
            }
            h.release(ME, f).unwrap();
            if temp_rename {
                h.rename(ME, dir, &target, dir, &n, RenameMode::Replace)
                    .unwrap();
            }
            bytes += data.len() as u64;
        }
    }
    bytes
}

fn copy_plain(src: &Path, dst: &Path) -> u64 {
    std::fs::create_dir_all(dst).unwrap();
    let mut bytes = 0;
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let to = dst.join(p.file_name().unwrap());
        if meta.is_dir() {
            bytes += copy_plain(&p, &to);
        } else if meta.is_file() {
            bytes += std::fs::copy(&p, &to).unwrap();
        }
    }
    bytes
}

fn report(what: &str, bytes: u64, wall: f64, cpu: f64) {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    println!("{what:<28} {mib:>9.1} MiB  {wall:>7.2} s  {:>8.1} MiB/s wall  {:>8.1} MiB/s per CPU-second", mib / wall, mib / cpu);
}

fn main() {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let Some(night0) = args.first() else {
        eprintln!("usage: head_bench NIGHT0 [NIGHT1]");
        std::process::exit(2);
    };
    let work = tempfile::tempdir_in(night0.parent().unwrap_or(Path::new("."))).unwrap();
    let plain = work.path().join("plain");
    let (t, c) = (Instant::now(), cpu_seconds());
    let bytes = copy_plain(night0, &plain);
    report(
        "plain copy, night 0",
        bytes,
        t.elapsed().as_secs_f64(),
        cpu_seconds() - c,
    );

    let repo_dir = work.path().join("repo");
    std::fs::create_dir(&repo_dir).unwrap();
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(&repo_dir));
    let secret = Secret::Passphrase(Zeroizing::new("bench".into()));
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let opts = InitOptions {
        id: strata::store::id::RepoId::random(),
        secret: Some((secret, SlotKind::Passphrase)),
        label: String::new(),
        kdf,
        chunker: ChunkerParams::default(),
        pack_size: 64 << 20,
    };
    init(disk.clone(), opts).unwrap();
    let secret = Secret::Passphrase(Zeroizing::new("bench".into()));
    let h = Head::new(
        LockedRepo::open(disk, "bench")
            .unwrap()
            .unlock(Some(&secret))
            .unwrap(),
    )
    .unwrap();
    let (t, c) = (Instant::now(), cpu_seconds());
    let bytes = ingest(&h, night0, InodeNo::ROOT, false);
    h.commit().unwrap();
    report(
        "head ingest, night 0",
        bytes,
        t.elapsed().as_secs_f64(),
        cpu_seconds() - c,
    );
    let t = Instant::now();
    let rec = Snapshots::of(&h).take(ME, Some("night0")).unwrap();
    println!(
        "snapshot night 0: {:.3} s, {} directories serialized",
        t.elapsed().as_secs_f64(),
        rec.stats.dirs_serialized
    );
    if let Some(night1) = args.get(1) {
        let before = h
            .repo()
            .store()
            .counters
            .bytes_written
            .load(Ordering::Relaxed);
        let (t, c) = (Instant::now(), cpu_seconds());
        let bytes = ingest(&h, night1, InodeNo::ROOT, true);
        h.commit().unwrap();
        report(
            "head ingest, night 1 changes",
            bytes,
            t.elapsed().as_secs_f64(),
            cpu_seconds() - c,
        );
        let t = Instant::now();
        let rec = Snapshots::of(&h).take(ME, Some("night1")).unwrap();
        let stored = h
            .repo()
            .store()
            .counters
            .bytes_written
            .load(Ordering::Relaxed)
            - before;
        println!(
            "snapshot night 1: {:.3} s, {} directories serialized, {} reused; {:.1} MiB stored for the night",
            t.elapsed().as_secs_f64(),
            rec.stats.dirs_serialized,
            rec.stats.dirs_reused,
            stored as f64 / (1u64 << 20) as f64
        );
    }
    let stats = h.stats().unwrap();
    println!("inodes {}, snapshots {}", stats.inodes, stats.snapshots);
}
