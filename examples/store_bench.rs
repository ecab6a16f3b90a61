//! Store benchmarks: chunk-size trade-off and ingest/read throughput.
//!
//! ```text
//! cargo run --release --example store_bench -- chunk-sizes DIR0 DIR1 [--avg 256,512,1024,2048] [--json]
//! cargo run --release --example store_bench -- throughput DIR [--classes text,db,random,all] [--repeat N] [--json]
//! cargo run --release --example store_bench -- index-cost [--chunks 400000] [--per-commit 256]
//! ```
//! DIR0/DIR1 are night 0 and night 1 of a dataset from `scripts/gen-dataset`
//! (files are classified by their top-level directory: src/ logs/ etc/ are
//! text, db/ is database pages, media/ is random, dup/ is duplicates).
//! `scripts/bench-store` builds, generates and runs everything.
//!
//! Repositories are encrypted (AES-256-GCM-SIV, cheap Argon2 for the slot),
//! on the local disk, in a temporary directory next to the dataset; each
//! ingest session ends with `Store::commit` and dropping the repository, both
//! inside the timed region. CPU time is getrusage(RUSAGE_SELF): the store is
//! single-threaded, so "MiB/s per core" is bytes / (user + sys) seconds.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use strata::store::chunker::{Chunker, ChunkerParams};
use strata::store::crypto::codec::ChunkCodec;
use strata::store::crypto::slot::{KdfParams, Secret, SlotKind};
use strata::store::crypto::Sealer;
use strata::store::format::{Suite, PACK_TARGET_SIZE};
use strata::store::id::{ChunkId, RepoId};
use strata::store::io::{Disk, LocalDisk};
use strata::store::repo::{init, InitOptions, LockedRepo, Repo};

const MIB: f64 = (1u64 << 20) as f64;
const PASSPHRASE: &str = "store bench";

#[derive(Parser)]
#[command(about = "strata store benchmarks (see scripts/bench-store)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// New bytes for a nightly change, per-chunk overhead and throughput per average chunk size.
    ChunkSizes {
        /// Night 0 of the dataset.
        dir0: PathBuf,
        /// Night 1 of the dataset.
        dir1: PathBuf,
        /// Average chunk sizes in KiB (min = avg/4, max = avg*4).
        #[arg(long, value_delimiter = ',', default_value = "256,512,1024,2048")]
        avg: Vec<u32>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write the JSON to this file.
        #[arg(long)]
        json_out: Option<PathBuf>,
        /// Where to create the temporary repositories (default: the dataset's parent).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// Ingest and read-back throughput per core with the default chunker, vs the bare pipeline.
    Throughput {
        /// The dataset.
        dir: PathBuf,
        /// Which file classes to measure, each into a fresh repository.
        #[arg(long, value_delimiter = ',', default_value = "text,db,random,all")]
        classes: Vec<String>,
        /// Ingest and read back this many times (fresh repository each); the median is shown.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Skip the bare-pipeline baseline.
        #[arg(long)]
        no_bare: bool,
        /// Skip reading back.
        #[arg(long)]
        no_read: bool,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write the JSON to this file.
        #[arg(long)]
        json_out: Option<PathBuf>,
        /// Where to create the temporary repositories (default: the dataset's parent).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// Index file growth per chunk: stores many tiny distinct chunks, committing
    /// every --per-commit, and prints index bytes per chunk as it grows.
    IndexCost {
        /// Distinct chunks to store.
        #[arg(long, default_value_t = 400_000)]
        chunks: u64,
        /// Store::commit every this many chunks (a 64 MiB pack of 256 KiB chunks is 256).
        #[arg(long, default_value_t = 256)]
        per_commit: u64,
        /// Where to create the temporary repository.
        #[arg(long, default_value = "/var/tmp")]
        work_dir: PathBuf,
    },
}

// ------------------------------------------------------------------ timing

#[derive(Clone, Copy)]
struct Mark {
    wall: Instant,
    cpu: Duration,
}

fn cpu_now() -> Duration {
    // SAFETY: getrusage fills the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn thread_cpu_now() -> Duration {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime fills the struct we hand it.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Mark {
    fn now() -> Mark {
        Mark {
            wall: Instant::now(),
            cpu: cpu_now(),
        }
    }
    /// (wall seconds, cpu seconds) since this mark.
    fn since(&self) -> (f64, f64) {
        (
            self.wall.elapsed().as_secs_f64(),
            (cpu_now() - self.cpu).as_secs_f64(),
        )
    }
}

fn rate(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        0.0
    } else {
        bytes as f64 / MIB / secs
    }
}

// ------------------------------------------------------------------ dataset

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
enum Class {
    Text,
    Db,
    Random,
    Dup,
    Other,
}

const CLASS_NAMES: [&str; 5] = ["text", "db", "random", "dup", "other"];

fn classify(rel: &Path) -> Class {
    match rel.components().next().and_then(|c| c.as_os_str().to_str()) {
        Some("src" | "logs" | "etc") => Class::Text,
        Some("db") => Class::Db,
        Some("media") => Class::Random,
        Some("dup") => Class::Dup,
        _ => Class::Other,
    }
}

struct Entry {
    path: PathBuf,
    class: Class,
    len: u64,
}

/// Every regular file under `root` in sorted path order, dotfiles skipped.
fn files(root: &Path) -> Vec<Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry"))
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = e.path();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                walk(root, &path, out);
            } else if ft.is_file() {
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                out.push(Entry {
                    class: classify(&rel),
                    len: e.metadata().expect("stat").len(),
                    path,
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// Disk usage (allocated blocks) of a tree, like `du -s`.
fn du(path: &Path) -> u64 {
    let md = std::fs::symlink_metadata(path).expect("stat");
    let mut total = md.blocks() * 512;
    if md.is_dir() {
        for e in std::fs::read_dir(path).expect("read_dir") {
            total += du(&e.expect("entry").path());
        }
    }
    total
}

fn changed_bytes(dir1: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir1.join(".gen-dataset.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["changed"]["1"]["total"].as_u64()
}

// ------------------------------------------------------------------ repos

fn secret() -> Secret {
    Secret::Passphrase(Zeroizing::new(PASSPHRASE.to_owned()))
}

fn create_repo(path: &Path, chunker: ChunkerParams) {
    std::fs::create_dir_all(path).expect("mkdir repo");
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(path));
    init(
        disk,
        InitOptions {
            id: RepoId::random(),
            secret: Some((secret(), SlotKind::Passphrase)),
            label: "bench".into(),
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            chunker,
            pack_size: PACK_TARGET_SIZE,
        },
    )
    .expect("init");
}

fn open_repo(path: &Path) -> Repo {
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(path));
    LockedRepo::open(disk, "bench repository")
        .expect("open")
        .unlock(Some(&secret()))
        .expect("unlock")
}

fn params(avg_kib: u32) -> ChunkerParams {
    let avg = avg_kib << 10;
    ChunkerParams {
        min_size: avg / 4,
        avg_size: avg,
        max_size: avg * 4,
    }
}

/// What one ingest session did.
struct Session {
    bytes_in: u64,
    files: usize,
    chunks_in: u64,
    chunks_new: u64,
    /// Sealed bytes appended to packs (store counter).
    bytes_written: u64,
    /// Plaintext bytes of chunks not seen before this session.
    new_raw: u64,
    /// The same, by the class of the file that brought the chunk.
    new_raw_by_class: [u64; 5],
    wall: f64,
    cpu: f64,
    /// Every file's chunks, in order.
    recipes: Vec<Vec<(ChunkId, u32)>>,
}

/// Opens the repository, ingests `entries`, commits and drops it; all timed.
fn ingest_session(repo_dir: &Path, entries: &[&Entry], known: &mut HashSet<ChunkId>) -> Session {
    let mark = Mark::now();
    let repo = open_repo(repo_dir);
    let mut recipes = Vec::with_capacity(entries.len());
    let mut new_raw = 0u64;
    let mut new_raw_by_class = [0u64; 5];
    for e in entries {
        let f = File::open(&e.path).unwrap_or_else(|err| panic!("{}: {err}", e.path.display()));
        let recipe = repo
            .ingest(f)
            .unwrap_or_else(|err| panic!("ingest {}: {err}", e.path.display()));
        for (id, len) in &recipe {
            if known.insert(*id) {
                new_raw += *len as u64;
                new_raw_by_class[e.class as usize] += *len as u64;
            }
        }
        recipes.push(recipe);
    }
    repo.store().commit().expect("commit");
    let c = &repo.store().counters;
    let (bytes_in, chunks_in, chunks_new, bytes_written) = (
        c.bytes_in.load(Ordering::Relaxed),
        c.chunks_in.load(Ordering::Relaxed),
        c.chunks_new.load(Ordering::Relaxed),
        c.bytes_written.load(Ordering::Relaxed),
    );
    drop(repo);
    let (wall, cpu) = mark.since();
    Session {
        bytes_in,
        files: entries.len(),
        chunks_in,
        chunks_new,
        bytes_written,
        new_raw,
        new_raw_by_class,
        wall,
        cpu,
        recipes,
    }
}

/// Opens the repository and reads every chunk of every recipe back
/// (`Store::get` checks each chunk's id); returns (bytes, wall, cpu).
fn read_session(repo_dir: &Path, recipes: &[Vec<(ChunkId, u32)>]) -> (u64, f64, f64) {
    let mark = Mark::now();
    let repo = open_repo(repo_dir);
    let mut bytes = 0u64;
    for recipe in recipes {
        for (id, len) in recipe {
            let v = repo.store().get(id).expect("get");
            assert_eq!(v.as_slice().len(), *len as usize, "chunk length");
            bytes += *len as u64;
        }
    }
    drop(repo);
    let (wall, cpu) = mark.since();
    (bytes, wall, cpu)
}

fn work_dir_for(dataset: &Path, given: &Option<PathBuf>) -> PathBuf {
    given.clone().unwrap_or_else(|| {
        std::fs::canonicalize(dataset)
            .expect("dataset path")
            .parent()
            .expect("dataset has a parent")
            .to_path_buf()
    })
}

// ------------------------------------------------------------------ chunk-sizes

fn chunk_sizes(dir0: &Path, dir1: &Path, avgs: &[u32], work: &Path) -> Value {
    let f0 = files(dir0);
    let f1 = files(dir1);
    let changed = changed_bytes(dir1);
    let total0: u64 = f0.iter().map(|e| e.len).sum();
    eprintln!(
        "night 0: {} files, {:.1} MiB; night 1: {} files; changed by the generator: {}",
        f0.len(),
        total0 as f64 / MIB,
        f1.len(),
        changed.map_or("?".into(), |c| format!("{:.2} MiB", c as f64 / MIB))
    );
    let mut rows = Vec::new();
    for &avg in avgs {
        let p = params(avg);
        p.validate().unwrap_or_else(|e| panic!("--avg {avg}: {e}"));
        let tmp = tempfile::Builder::new()
            .prefix(".store-bench-")
            .tempdir_in(work)
            .expect("temp dir");
        let repo_dir = tmp.path().join("repo");
        create_repo(&repo_dir, p);
        let mut known = HashSet::new();
        eprintln!("avg {avg} KiB: night 0 ...");
        let s0 = ingest_session(&repo_dir, &f0.iter().collect::<Vec<_>>(), &mut known);
        let du0 = du(&repo_dir);
        eprintln!("avg {avg} KiB: night 1 ...");
        let s1 = ingest_session(&repo_dir, &f1.iter().collect::<Vec<_>>(), &mut known);
        let du1 = du(&repo_dir);
        let repo = open_repo(&repo_dir);
        let st = strata::store::stats::stats(&repo).expect("stats");
        drop(repo);
        let du_final = du(&repo_dir);
        let chunks = st.chunks.max(1) as f64;
        let toc = st.pack_file_bytes.saturating_sub(st.stored_bytes);
        let row = json!({
            "avg_kib": avg,
            "min_kib": p.min_size >> 10,
            "max_kib": p.max_size >> 10,
            "chunks": st.chunks,
            "chunk_bytes": st.chunk_bytes,
            "stored_bytes": st.stored_bytes,
            "compression_ratio": st.compression_ratio,
            "packs": st.packs + st.open_packs,
            "pack_file_bytes": st.pack_file_bytes,
            "index_bytes": st.index_bytes,
            "index_bytes_per_chunk": st.index_bytes as f64 / chunks,
            "toc_bytes_per_chunk": toc as f64 / chunks,
            "overhead_bytes_per_chunk": (st.index_bytes + toc) as f64 / chunks,
            "repo_du_bytes": du_final,
            "night0": {
                "bytes_in": s0.bytes_in, "files": s0.files, "chunks_in": s0.chunks_in,
                "chunks_new": s0.chunks_new, "sealed_bytes_written": s0.bytes_written,
                "wall_s": s0.wall, "cpu_s": s0.cpu,
                "mib_s_wall": rate(s0.bytes_in, s0.wall), "mib_s_cpu": rate(s0.bytes_in, s0.cpu),
                "repo_du_bytes": du0,
            },
            "night1": {
                "bytes_in": s1.bytes_in, "files": s1.files, "chunks_in": s1.chunks_in,
                "chunks_new": s1.chunks_new, "sealed_bytes_written": s1.bytes_written,
                "new_raw_bytes": s1.new_raw,
                "new_raw_bytes_by_class": CLASS_NAMES.iter().zip(s1.new_raw_by_class).map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "changed_bytes_generator": changed,
                "wall_s": s1.wall, "cpu_s": s1.cpu,
                "mib_s_wall": rate(s1.bytes_in, s1.wall), "mib_s_cpu": rate(s1.bytes_in, s1.cpu),
                "repo_growth_bytes": du1.saturating_sub(du0),
            },
        });
        eprintln!("{row}");
        rows.push(row);
        drop(tmp);
    }
    json!({"dataset0": dir0, "dataset1": dir1, "changed_bytes_generator": changed, "rows": rows})
}

fn print_chunk_sizes(v: &Value) {
    let mib = |x: &Value| x.as_f64().unwrap_or(0.0) / MIB;
    println!("chunk-size trade-off (min = avg/4, max = avg*4; encrypted repo; night 0 then night 1 into one repo)");
    if let Some(c) = v["changed_bytes_generator"].as_u64() {
        println!(
            "nightly change as written by gen-dataset: {:.2} MiB",
            c as f64 / MIB
        );
    }
    println!(
        "{:>8} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9}",
        "avg KiB",
        "chunks",
        "n1 new",
        "n1 sealed",
        "n1 new",
        "n1 repo",
        "index",
        "idx B/",
        "toc B/",
        "repo du",
        "n0 MiB/s",
        "n0 MiB/s",
        "n1 MiB/s"
    );
    println!(
        "{:>8} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9}",
        "",
        "(total)",
        "chunks",
        "MiB",
        "raw MiB",
        "grow MiB",
        "MiB",
        "chunk",
        "chunk",
        "MiB",
        "wall",
        "cpu",
        "wall"
    );
    for r in v["rows"].as_array().into_iter().flatten() {
        println!(
            "{:>8} {:>9} {:>10} {:>10.2} {:>10.2} {:>10.2} {:>9.2} {:>9.1} {:>9.1} {:>10.1} {:>9.1} {:>9.1} {:>9.1}",
            r["avg_kib"].as_u64().unwrap_or(0),
            r["chunks"].as_u64().unwrap_or(0),
            r["night1"]["chunks_new"].as_u64().unwrap_or(0),
            mib(&r["night1"]["sealed_bytes_written"]),
            mib(&r["night1"]["new_raw_bytes"]),
            mib(&r["night1"]["repo_growth_bytes"]),
            mib(&r["index_bytes"]),
            r["index_bytes_per_chunk"].as_f64().unwrap_or(0.0),
            r["toc_bytes_per_chunk"].as_f64().unwrap_or(0.0),
            mib(&r["repo_du_bytes"]),
            r["night0"]["mib_s_wall"].as_f64().unwrap_or(0.0),
            r["night0"]["mib_s_cpu"].as_f64().unwrap_or(0.0),
            r["night1"]["mib_s_wall"].as_f64().unwrap_or(0.0),
        );
    }
    println!();
    println!("night-1 new plaintext (MiB) by the class of the file that brought the chunk:");
    println!(
        "{:>8} {}",
        "avg KiB",
        CLASS_NAMES
            .iter()
            .map(|c| format!("{c:>9}"))
            .collect::<String>()
    );
    for r in v["rows"].as_array().into_iter().flatten() {
        println!(
            "{:>8} {}",
            r["avg_kib"].as_u64().unwrap_or(0),
            CLASS_NAMES
                .iter()
                .map(|c| format!("{:>9.2}", mib(&r["night1"]["new_raw_bytes_by_class"][*c])))
                .collect::<String>()
        );
    }
    println!("n1 sealed = sealed bytes appended to packs by the night-1 session (store counter);");
    println!(
        "n1 raw = plaintext of chunks night 0 did not have; n1 repo grow = du growth over night 1;"
    );
    println!("idx/toc B/chunk = index file bytes and pack bytes outside chunk objects (TOCs, trailers, headers) per chunk.");
}

// ------------------------------------------------------------------ throughput

/// Thread CPU seconds of the bare pipeline's steps on 1 MiB blocks.
struct Bare {
    bytes: u64,
    sealed: u64,
    encode: f64,
    decode: f64,
    codec_encode: f64,
    codec_decode: f64,
    chunker: f64,
    hash: f64,
    lz4: f64,
    aead: f64,
}

/// BLAKE3 keyed hash + lz4_flex compress + AES-256-GCM-SIV seal of 1 MiB
/// blocks, no store; then the reverse (open, decompress, hash). Also the
/// same blocks through strata's ChunkCodec, and the keyed chunker alone.
/// Thread CPU time of the computation only (file reads excluded).
fn bare(entries: &[&Entry]) -> Bare {
    let id_key: [u8; 32] = rand::random();
    let aead_key: [u8; 32] = rand::random();
    let aead = Aes256GcmSiv::new(&aead_key.into());
    let ad = [7u8; 64];
    let codec = ChunkCodec::new(
        id_key,
        Sealer::new(Suite::Aes256GcmSiv, RepoId::random(), &aead_key),
        4 << 20,
    );
    let chunker = Arc::new(Chunker::new(ChunkerParams::default(), &id_key));
    let mut b = Bare {
        bytes: 0,
        sealed: 0,
        encode: 0.0,
        decode: 0.0,
        codec_encode: 0.0,
        codec_decode: 0.0,
        chunker: 0.0,
        hash: 0.0,
        lz4: 0.0,
        aead: 0.0,
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut sink = 0u64;
    for e in entries {
        let mut f = File::open(&e.path).expect("open");
        let mut stream = chunker.stream();
        loop {
            let mut n = 0;
            while n < buf.len() {
                let k = f.read(&mut buf[n..]).expect("read");
                if k == 0 {
                    break;
                }
                n += k;
            }
            if n == 0 {
                break;
            }
            let block = &buf[..n];
            b.bytes += n as u64;

            // Encode: hash, compress, seal (same 1/16 rule as the codec).
            let t0 = thread_cpu_now();
            let id = blake3::keyed_hash(&id_key, block);
            let t1 = thread_cpu_now();
            let compressed = lz4_flex::compress_prepend_size(block);
            let t2 = thread_cpu_now();
            let is_lz4 = compressed.len() + n / 16 < n;
            let payload: &[u8] = if is_lz4 { &compressed } else { block };
            let mut sealed = Vec::with_capacity(payload.len() + 1 + 12 + 16);
            let nonce: [u8; 12] = rand::random();
            sealed.extend_from_slice(&nonce);
            sealed.extend_from_slice(payload);
            let tag = aead
                .encrypt_inout_detached(&Nonce::from(nonce), &ad, (&mut sealed[12..]).into())
                .expect("seal");
            sealed.extend_from_slice(&tag);
            let t3 = thread_cpu_now();
            b.hash += (t1 - t0).as_secs_f64();
            b.lz4 += (t2 - t1).as_secs_f64();
            b.aead += (t3 - t2).as_secs_f64();
            b.encode += (t3 - t0).as_secs_f64();
            b.sealed += sealed.len() as u64;

            // Decode: open in place, decompress, hash, compare.
            let t0 = thread_cpu_now();
            let tag_at = sealed.len() - 16;
            let tag = Tag::try_from(&sealed[tag_at..]).expect("tag");
            let (head, _) = sealed.split_at_mut(tag_at);
            aead.decrypt_inout_detached(&Nonce::from(nonce), &ad, (&mut head[12..]).into(), &tag)
                .expect("open");
            let plain = &head[12..];
            let data = if is_lz4 {
                lz4_flex::decompress_size_prepended(plain).expect("lz4")
            } else {
                plain.to_vec()
            };
            assert!(blake3::keyed_hash(&id_key, &data) == id);
            b.decode += (thread_cpu_now() - t0).as_secs_f64();

            // strata's codec on the same block.
            let t0 = thread_cpu_now();
            let cid = codec.id(block);
            let obj = codec.encode(&cid, block);
            let t1 = thread_cpu_now();
            let back = codec.decode(&cid, &obj).expect("codec decode");
            let t2 = thread_cpu_now();
            sink += back.as_slice().len() as u64;
            b.codec_encode += (t1 - t0).as_secs_f64();
            b.codec_decode += (t2 - t1).as_secs_f64();

            // The chunker alone.
            let t0 = thread_cpu_now();
            stream.push(block, |c| sink += c.len() as u64);
            b.chunker += (thread_cpu_now() - t0).as_secs_f64();
        }
        let t0 = thread_cpu_now();
        stream.finish(|c| sink += c.len() as u64);
        b.chunker += (thread_cpu_now() - t0).as_secs_f64();
    }
    assert_eq!(sink, 2 * b.bytes);
    b
}

fn throughput(
    dir: &Path,
    classes: &[String],
    repeat: usize,
    no_bare: bool,
    no_read: bool,
    work: &Path,
) -> Value {
    let all = files(dir);
    let mut rows = Vec::new();
    for name in classes {
        let pick: Vec<&Entry> = match name.as_str() {
            "text" => all.iter().filter(|e| e.class == Class::Text).collect(),
            "db" => all.iter().filter(|e| e.class == Class::Db).collect(),
            "random" => all.iter().filter(|e| e.class == Class::Random).collect(),
            "dup" => all.iter().filter(|e| e.class == Class::Dup).collect(),
            "all" => all.iter().collect(),
            other => panic!("unknown class {other} (text, db, random, dup, all)"),
        };
        let total: u64 = pick.iter().map(|e| e.len).sum();
        eprintln!(
            "{name}: {} files, {:.1} MiB: ingest ...",
            pick.len(),
            total as f64 / MIB
        );
        // Each repetition ingests into a fresh repository and reads it back;
        // the median by CPU time is reported, every sample is in the JSON.
        let mut ingests = Vec::new();
        let mut reads = Vec::new();
        let mut last = None;
        for rep in 0..repeat.max(1) {
            let tmp = tempfile::Builder::new()
                .prefix(".store-bench-")
                .tempdir_in(work)
                .expect("temp dir");
            let repo_dir = tmp.path().join("repo");
            create_repo(&repo_dir, ChunkerParams::default());
            let s = ingest_session(&repo_dir, &pick, &mut HashSet::new());
            ingests.push((s.wall, s.cpu));
            if !no_read {
                eprintln!("{name}: read back ({}/{repeat}) ...", rep + 1);
                let (bytes, wall, cpu) = read_session(&repo_dir, &s.recipes);
                assert_eq!(bytes, s.bytes_in, "read back all bytes");
                reads.push((wall, cpu));
            }
            last = Some(s);
        }
        let s = last.expect("one repetition");
        let median = |v: &mut Vec<(f64, f64)>| {
            v.sort_by(|a, b| a.1.total_cmp(&b.1));
            v[v.len() / 2]
        };
        let samples = |v: &[(f64, f64)]| v.iter().map(|(w, c)| json!([w, c])).collect::<Vec<_>>();
        let (wall, cpu) = median(&mut ingests);
        let mut row = json!({
            "class": name,
            "files": pick.len(),
            "bytes": s.bytes_in,
            "chunks_in": s.chunks_in,
            "chunks_new": s.chunks_new,
            "sealed_bytes_written": s.bytes_written,
            "ingest": {"wall_s": wall, "cpu_s": cpu,
                "mib_s_wall": rate(s.bytes_in, wall), "mib_s_per_core": rate(s.bytes_in, cpu),
                "samples_wall_cpu": samples(&ingests)},
        });
        if !no_read {
            let (wall, cpu) = median(&mut reads);
            row["read"] = json!({"bytes": s.bytes_in, "wall_s": wall, "cpu_s": cpu,
                "mib_s_wall": rate(s.bytes_in, wall), "mib_s_per_core": rate(s.bytes_in, cpu),
                "samples_wall_cpu": samples(&reads)});
        }
        if !no_bare {
            eprintln!("{name}: bare pipeline ...");
            let b = bare(&pick);
            row["bare"] = json!({
                "bytes": b.bytes, "sealed_bytes": b.sealed,
                "encode_cpu_s": b.encode, "decode_cpu_s": b.decode,
                "encode_mib_s_per_core": rate(b.bytes, b.encode),
                "decode_mib_s_per_core": rate(b.bytes, b.decode),
                "hash_mib_s": rate(b.bytes, b.hash), "lz4_mib_s": rate(b.bytes, b.lz4),
                "aead_mib_s": rate(b.bytes, b.aead),
                "codec_encode_mib_s_per_core": rate(b.bytes, b.codec_encode),
                "codec_decode_mib_s_per_core": rate(b.bytes, b.codec_decode),
                "chunker_mib_s_per_core": rate(b.bytes, b.chunker),
            });
            let ing = row["ingest"]["mib_s_per_core"].as_f64().unwrap_or(0.0);
            let enc = rate(b.bytes, b.encode);
            row["ingest"]["fraction_of_bare"] = json!(ing / enc);
            if !no_read {
                let rd = row["read"]["mib_s_per_core"].as_f64().unwrap_or(0.0);
                row["read"]["fraction_of_bare"] = json!(rd / rate(b.bytes, b.decode));
            }
        }
        eprintln!("{row}");
        rows.push(row);
    }
    json!({"dataset": dir, "chunker": {"min": ChunkerParams::default().min_size, "avg": ChunkerParams::default().avg_size, "max": ChunkerParams::default().max_size}, "rows": rows})
}

fn print_throughput(v: &Value) {
    let f = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    println!("throughput, default chunker 256K/1M/4M, encrypted repo, MiB/s of plaintext (per core = bytes / CPU s of the process)");
    println!(
        "{:>7} {:>9} {:>7} | {:>8} {:>8} {:>6} | {:>8} {:>8} {:>6} | {:>8} {:>8} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7}",
        "class", "MiB", "sealed", "ingest", "ingest", "of", "read", "read", "of", "bare", "bare", "hash", "lz4", "aead", "chunker", "codec", "codec"
    );
    println!(
        "{:>7} {:>9} {:>7} | {:>8} {:>8} {:>6} | {:>8} {:>8} {:>6} | {:>8} {:>8} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7}",
        "", "", "ratio", "wall", "/core", "bare", "wall", "/core", "bare", "enc", "dec", "", "", "", "", "enc", "dec"
    );
    for r in v["rows"].as_array().into_iter().flatten() {
        let bytes = f(&r["bytes"]);
        println!(
            "{:>7} {:>9.1} {:>7.3} | {:>8.1} {:>8.1} {:>6.2} | {:>8.1} {:>8.1} {:>6.2} | {:>8.1} {:>8.1} | {:>7.0} {:>7.0} {:>7.0} {:>7.0} | {:>7.1} {:>7.1}",
            r["class"].as_str().unwrap_or("?"),
            bytes / MIB,
            f(&r["sealed_bytes_written"]) / bytes,
            f(&r["ingest"]["mib_s_wall"]),
            f(&r["ingest"]["mib_s_per_core"]),
            f(&r["ingest"]["fraction_of_bare"]),
            f(&r["read"]["mib_s_wall"]),
            f(&r["read"]["mib_s_per_core"]),
            f(&r["read"]["fraction_of_bare"]),
            f(&r["bare"]["encode_mib_s_per_core"]),
            f(&r["bare"]["decode_mib_s_per_core"]),
            f(&r["bare"]["hash_mib_s"]),
            f(&r["bare"]["lz4_mib_s"]),
            f(&r["bare"]["aead_mib_s"]),
            f(&r["bare"]["chunker_mib_s_per_core"]),
            f(&r["bare"]["codec_encode_mib_s_per_core"]),
            f(&r["bare"]["codec_decode_mib_s_per_core"]),
        );
    }
    println!("bare enc = keyed BLAKE3 + lz4_flex + AES-256-GCM-SIV seal of 1 MiB blocks (thread CPU, reads excluded);");
    println!("bare dec = open + decompress + hash; hash/lz4/aead = each step alone; chunker = keyed FastCDC alone;");
    println!("codec = strata's ChunkCodec encode/decode on the same blocks; 'of bare' = store per-core / bare per-core.");
    println!("ingest includes reading the files, chunking, index lookups, pack writes, fsyncs, commit and drop;");
    println!("wall rates include waiting for the disk (files or packs the page cache no longer holds) and for a busy CPU.");
}

fn index_cost(chunks: u64, per_commit: u64, work: &Path) {
    let tmp = tempfile::Builder::new()
        .prefix(".store-bench-")
        .tempdir_in(work)
        .expect("temp dir");
    let repo_dir = tmp.path().join("repo");
    create_repo(&repo_dir, ChunkerParams::default());
    let repo = open_repo(&repo_dir);
    let index_len = || {
        std::fs::metadata(repo_dir.join(strata::store::format::INDEX_FILE))
            .expect("index")
            .len()
    };
    let mut points = Vec::new();
    let mark = Mark::now();
    let step = (chunks / 10).max(1);
    for i in 0..chunks {
        let mut data = [0u8; 64];
        data[..8].copy_from_slice(&i.to_le_bytes());
        repo.store().put(&data).expect("put");
        if (i + 1) % per_commit == 0 {
            repo.store().commit().expect("commit");
        }
        if (i + 1) % step == 0 {
            repo.store().commit().expect("commit");
            points.push((i + 1, index_len()));
            let (wall, _) = mark.since();
            println!(
                "{:>9} chunks  index {:>12} bytes  {:>7.1} B/chunk  ({wall:.1} s)",
                i + 1,
                index_len(),
                index_len() as f64 / (i + 1) as f64
            );
        }
    }
    drop(repo);
    // redb grows its file by doubling, so bytes per chunk saw-tooths: the
    // minimum (just before a growth) is the space rows really use.
    let per: Vec<f64> = points.iter().map(|p| p.1 as f64 / p.0 as f64).collect();
    println!(
        "index file bytes per chunk: min {:.1} (rows fill the file), mean {:.1}, max {:.1} (just after redb doubled it)",
        per.iter().cloned().fold(f64::INFINITY, f64::min),
        per.iter().sum::<f64>() / per.len() as f64,
        per.iter().cloned().fold(0.0, f64::max)
    );
}

fn emit(v: &Value, json_flag: bool, json_out: &Option<PathBuf>, table: fn(&Value)) {
    if let Some(p) = json_out {
        std::fs::write(p, serde_json::to_string_pretty(v).expect("json") + "\n")
            .expect("write json");
    }
    if json_flag {
        println!("{}", serde_json::to_string_pretty(v).expect("json"));
    } else {
        table(v);
    }
}

fn main() {
    match Cli::parse().cmd {
        Cmd::ChunkSizes {
            dir0,
            dir1,
            avg,
            json,
            json_out,
            work_dir,
        } => {
            let work = work_dir_for(&dir0, &work_dir);
            let v = chunk_sizes(&dir0, &dir1, &avg, &work);
            emit(&v, json, &json_out, print_chunk_sizes);
        }
        Cmd::IndexCost {
            chunks,
            per_commit,
            work_dir,
        } => index_cost(chunks, per_commit, &work_dir),
        Cmd::Throughput {
            dir,
            classes,
            repeat,
            no_bare,
            no_read,
            json,
            json_out,
            work_dir,
        } => {
            let work = work_dir_for(&dir, &work_dir);
            let v = throughput(&dir, &classes, repeat, no_bare, no_read, &work);
            emit(&v, json, &json_out, print_throughput);
        }
    }
}
