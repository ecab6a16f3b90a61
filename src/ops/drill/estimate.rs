//! `strata drill --estimate`: the time a drill will take, predicted from
//! a sample, read the way the drill reads (same source, same readers, the
//! same cold start, into the same target filesystem).
//!
//! The model. A drill's time is the sum of what each entry costs, plus the
//! final flush: directories and other entries one after another, files on
//! R readers at once. So:
//!
//! ```text
//! T = D·d + O·o + W/e + F
//! ```
//!
//! - `d`, `o`: the mean time of a directory and of another entry (symlink,
//!   device, fifo), from a uniform sample of each, read (and created) one
//!   after another as the drill does.
//! - `W`: the time all files would take on one reader, estimated by
//!   stratified sampling: files are grouped by size (powers of two), and
//!   from each group of N_h files n_h are drawn uniformly (1 % of them, at
//!   least 2); `W = Σ_h N_h / n_h · Σ_{i in sample h} t_i` is an unbiased
//!   estimate of the sum of every file's time whatever the mix of sizes,
//!   and each group's per-file cost (lookup, open, attributes, create) is
//!   in its own times. A file larger than 8 MiB is sampled by chunks: its
//!   extents are drawn uniformly until 8 MiB, and its time scaled by its
//!   bytes over the bytes read.
//! - `e`: the readers' effective parallelism, the sample's summed file
//!   times over its wall time with R readers.
//! - `F`: the final flush of a restore, the sample's flush scaled by all
//!   bytes over the bytes the sample wrote.
//!
//! The sample's own files are written flat into the target (and removed);
//! nothing is recorded.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};

use super::check::Compare;
use super::plan::Plan;
use super::source::Source;
use super::{target, DrillError, DrillSpec, Problems, Run};
use crate::sys::sync::Recover;
use crate::tree::head::Head;
use crate::tree::types::FileKind;

/// Share of each group sampled.
const FRACTION: f64 = 0.01;
/// Fewest entries sampled from a group (all when it has fewer).
const LEAST: usize = 2;
/// A file larger than this is sampled by chunks, about this many bytes.
const BIG: u64 = 8 << 20;

/// A predicted drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The snapshot's directory name.
    pub snapshot_name: String,
    /// The path inside it.
    pub path: String,
    /// Whether it predicts a restore (else a discard).
    pub restore: bool,
    /// Readers.
    pub readers: u32,
    /// The predicted time of the drill's timed part, seconds.
    pub predicted_secs: f64,
    /// The objective, seconds.
    pub rto_secs: Option<f64>,
    /// Files, directories, other entries and bytes of the whole drill.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Other entries.
    pub others: u64,
    /// Bytes.
    pub bytes: u64,
    /// Files sampled (whole or by chunks).
    pub sampled_files: u64,
    /// Bytes the sample read.
    pub sampled_bytes: u64,
    /// Seconds the estimate took.
    pub took_secs: f64,
    /// The parts of the prediction, seconds: directories, other entries,
    /// files, the final flush.
    pub dirs_secs: f64,
    /// Other entries.
    pub others_secs: f64,
    /// Files, on the readers.
    pub files_secs: f64,
    /// The final flush.
    pub flush_secs: f64,
    /// The readers' effective parallelism in the sample.
    pub parallelism: f64,
    /// What went wrong reading the sample (an estimate of a drill that
    /// would fail).
    pub problems: Vec<String>,
}

/// One sampled file: its index, the extents read (`None`: all), and what
/// its time stands for (its group's weight times its bytes over those read).
struct Pick {
    i: usize,
    part: Option<Vec<usize>>,
    weight: f64,
}

/// Predicts drill `spec` of `plan` (of snapshot `snapshot_name`) read
/// through `source`.
pub fn estimate(
    head: &Head,
    snapshot_name: &str,
    spec: &DrillSpec,
    plan: &Plan,
    source: &dyn Source,
) -> Result<Estimate, DrillError> {
    let started = Instant::now();
    let made = spec.to.as_ref().is_some_and(|to| !to.exists());
    let base = match &spec.to {
        Some(to) => {
            target::prepare(to, FileKind::Dir, Path::new(""))?;
            Some(to.clone())
        }
        None => None,
    };
    let run = Run {
        head,
        plan,
        source,
        base: base.as_deref(),
        readers: spec.readers.max(1) as usize,
        problems: Problems::default(),
        files_done: AtomicU64::new(0),
        bytes_done: AtomicU64::new(0),
        compare: Compare {
            owners: base.is_none() || target::is_root(),
        },
        flat: true,
    };
    head.reader().forget_decoded();
    let mut rng = rand::rng();
    let items = &plan.items;
    let kind = |i: usize| items[i].entry.meta.kind;

    // Directories and other entries, one after another.
    let dirs: Vec<usize> = (0..items.len())
        .filter(|&i| kind(i) == FileKind::Dir)
        .collect();
    let others: Vec<usize> = (0..items.len())
        .filter(|&i| !matches!(kind(i), FileKind::Dir | FileKind::File))
        .collect();
    let mean = |all: &[usize], each: &dyn Fn(usize), rng: &mut rand::rngs::ThreadRng| {
        let picked: Vec<usize> = all
            .choose_multiple(rng, share(all.len()))
            .copied()
            .collect();
        let clock = Instant::now();
        for &i in &picked {
            each(i);
        }
        if picked.is_empty() {
            0.0
        } else {
            clock.elapsed().as_secs_f64() / picked.len() as f64
        }
    };
    let dir_each = |i: usize| {
        let Some(seen) = run.read_meta(i) else { return };
        if let Some(base) = run.base {
            let dest = run.dest(base, i);
            if let Err(e) =
                target::mkdir(&dest).and_then(|()| target::apply(&dest, &seen.attr, &seen.xattrs))
            {
                run.problem(i, format!("cannot be created: {e}"));
            }
        }
    };
    let dir_secs = mean(&dirs, &dir_each, &mut rng);
    let other_secs = mean(&others, &|i| run.restore_special(i), &mut rng);

    // Files: stratified by size, on the readers.
    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for i in plan.contents() {
        let size = items[i].entry.meta.size;
        groups.entry(64 - size.leading_zeros()).or_default().push(i);
    }
    let mut picks = Vec::new();
    for group in groups.values() {
        let n = share(group.len());
        let weight = group.len() as f64 / n as f64;
        for &i in group.choose_multiple(&mut rng, n) {
            let extents = &items[i].entry.extents;
            let all: u64 = extents.iter().map(|e| u64::from(e.2)).sum();
            if all <= BIG {
                picks.push(Pick {
                    i,
                    part: None,
                    weight,
                });
                continue;
            }
            let mut order: Vec<usize> = (0..extents.len()).collect();
            order.shuffle(&mut rng);
            let mut part = Vec::new();
            let mut read = 0u64;
            for k in order {
                if read >= BIG {
                    break;
                }
                read += u64::from(extents[k].2);
                part.push(k);
            }
            part.sort_unstable();
            picks.push(Pick {
                i,
                part: Some(part),
                weight: weight * all as f64 / read as f64,
            });
        }
    }
    // The largest first, as a drill's readers would meet them anywhere in
    // the tree; so the sample's end is not one big file on one reader.
    picks.sort_by_key(|p| std::cmp::Reverse(items[p.i].entry.meta.size));
    let next = AtomicUsize::new(0);
    let summed = Mutex::new((0.0f64, 0.0f64));
    let clock = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..run.readers.min(picks.len()).max(1) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = picks.get(k) else { break };
                let t = Instant::now();
                run.restore_file(p.i, p.part.as_deref());
                let t = t.elapsed().as_secs_f64();
                let mut sum = summed.locked();
                sum.0 += t;
                sum.1 += t * p.weight;
            });
        }
    });
    let wall = clock.elapsed().as_secs_f64();
    let (sample_secs, work_secs) = *summed.locked();
    let parallelism = if wall > 0.0 && sample_secs > 0.0 {
        sample_secs / wall
    } else {
        1.0
    };
    let sampled_bytes = run.bytes_done.load(Ordering::Relaxed);
    let flush_secs = match run.base {
        Some(base) if sampled_bytes > 0 => {
            let clock = Instant::now();
            let _ = target::sync(base);
            clock.elapsed().as_secs_f64() * plan.bytes as f64 / sampled_bytes as f64
        }
        _ => 0.0,
    };
    // The sample's files go; the target is as it was.
    if let Some(to) = &spec.to {
        if made {
            let _ = std::fs::remove_dir_all(to);
        } else if let Ok(entries) = std::fs::read_dir(to) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() && !p.is_symlink() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
    let dirs_secs = dir_secs * plan.dirs as f64;
    let others_secs = other_secs * others.len() as f64;
    let files_secs = work_secs / parallelism;
    let (problems, _) = run.problems.take();
    Ok(Estimate {
        snapshot_name: snapshot_name.to_owned(),
        path: plan.path.clone(),
        restore: spec.to.is_some(),
        readers: run.readers as u32,
        predicted_secs: dirs_secs + others_secs + files_secs + flush_secs,
        rto_secs: spec.rto_secs,
        files: plan.files,
        dirs: plan.dirs,
        others: plan.others,
        bytes: plan.bytes,
        sampled_files: picks.len() as u64,
        sampled_bytes,
        took_secs: started.elapsed().as_secs_f64(),
        dirs_secs,
        others_secs,
        files_secs,
        flush_secs,
        parallelism,
        problems,
    })
}

/// How many of `n` a sample takes.
fn share(n: usize) -> usize {
    n.min(((n as f64 * FRACTION).ceil() as usize).max(LEAST))
}
