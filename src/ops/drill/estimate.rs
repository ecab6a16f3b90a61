//! `strata drill --estimate`: the time a drill will take, predicted from
//! a sample, read the way the drill reads (same source, same readers, the
//! same cold start, into the same target filesystem).
//!
//! The model. A drill's time is the sum of what each entry costs, plus the
//! final flush: directories and other entries one after another, files on
//! R readers at once. So:
//!
//! ```text
//! T = D·d + O·o + W/R + F
//! ```
//!
//! - `d`, `o`: the mean time of a directory and of another entry (symlink,
//!   device, fifo), from a uniform sample of each, read (and created) one
//!   after another as the drill does.
//! - `W`: the time all files take, summed over the readers, estimated by
//!   stratified cluster sampling. The files, in the order a drill reads
//!   them, are cut into blocks of neighbours (at most 256 files or 16 MiB;
//!   a larger file is a block alone); blocks are grouped by their bytes
//!   (powers of two), and from each group of N_h blocks n_h are drawn
//!   uniformly (1 %, at least 2). Each drawn block is read whole by one
//!   reader, R at a time, as the drill would, and timed:
//!   `W = Σ_h N_h / n_h · Σ_{b in sample h} t_b` is an unbiased estimate
//!   of the summed time of all blocks, whatever the mix of sizes, with
//!   each block's per-file costs (lookup, open, attributes, create) in its
//!   own time. Blocks, not single files, because a drill reads neighbours
//!   from neighbouring places in the packs: scattered files would each
//!   pay a cold seek the drill does not (single files overestimated a
//!   drill 3 to 5 times). A block of one file over 8 MiB reads a run of
//!   neighbouring extents of about 8 MiB from a random place, its time
//!   scaled by the file's bytes over those read.
//! - `R`: the readers: while all of them are busy, R readers spend R
//!   seconds of their own time per second, and a drill's readers are busy
//!   but at its very end.
//! - `F`: the final flush of a restore, the sample's flush scaled by all
//!   bytes over the bytes the sample wrote.
//!
//! The sample's own files are written flat into the target (and removed);
//! nothing is recorded.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};

use super::plan::Plan;
use super::source::Source;
use super::{target, DrillError, DrillSpec, Run};
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
    /// What went wrong reading the sample (an estimate of a drill that
    /// would fail).
    pub problems: Vec<String>,
}

/// Neighbouring files in the order a drill reads them: a block of
/// [`BLOCK_FILES`] files or [`BLOCK_BYTES`], or one larger file alone.
/// Blocks, not single files, are sampled: a drill reads its files in tree
/// order, neighbours from neighbouring places in the packs, and a sample
/// of scattered files would pay a cold seek for each.
struct Block {
    /// Indexes of its files in the plan.
    files: std::ops::Range<usize>,
    /// Bytes of content.
    bytes: u64,
}

/// Most files in a block.
const BLOCK_FILES: usize = 256;
/// Most bytes in a block of several files.
const BLOCK_BYTES: u64 = 16 << 20;

/// A sampled block: its files with the extents read (`None`: all), the
/// bytes read, and what its time stands for (its group's weight, times
/// the bytes of a large file over those read).
struct Pick {
    files: Vec<(usize, Option<Vec<usize>>)>,
    bytes: u64,
    weight: f64,
}

/// The blocks of `plan`'s files with content, in order.
fn blocks(plan: &Plan) -> Vec<Block> {
    let contents = plan.contents();
    let size = |k: usize| -> u64 {
        plan.items[contents[k]]
            .entry
            .extents
            .iter()
            .map(|e| u64::from(e.2))
            .sum()
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for k in 0..contents.len() {
        let b = size(k);
        let full = k > start && (k - start >= BLOCK_FILES || bytes + b > BLOCK_BYTES);
        if full {
            out.push(Block {
                files: start..k,
                bytes,
            });
            start = k;
            bytes = 0;
        }
        bytes += b;
    }
    if start < contents.len() {
        out.push(Block {
            files: start..contents.len(),
            bytes,
        });
    }
    // Ranges index `contents`; make them plan indexes.
    out.into_iter()
        .map(|b| Block {
            files: contents[b.files.start]..contents[b.files.end - 1] + 1,
            bytes: b.bytes,
        })
        .collect()
}

/// What of `block` the sample reads: all of it, or of a single file over
/// [`BIG`] a run of neighbouring extents of about [`BIG`] bytes from a
/// random place, its time scaled by the file's bytes over those.
fn pick(plan: &Plan, block: &Block, weight: f64, rng: &mut impl rand::Rng) -> Pick {
    let is_content = |i: usize| {
        let it = &plan.items[i];
        it.entry.meta.kind == FileKind::File && it.link_of.is_none()
    };
    let files: Vec<usize> = block.files.clone().filter(|&i| is_content(i)).collect();
    if files.len() == 1 && block.bytes > BIG {
        let extents = &plan.items[files[0]].entry.extents;
        let lens: Vec<u64> = extents.iter().map(|e| u64::from(e.2)).collect();
        // The run starts at a random extent that leaves room for BIG bytes.
        let mut tail = 0u64;
        let mut last_start = extents.len();
        while last_start > 0 && tail < BIG {
            last_start -= 1;
            tail += lens[last_start];
        }
        let first = rng.random_range(0..=last_start);
        let mut part = Vec::new();
        let mut read = 0u64;
        for (k, len) in lens.iter().enumerate().skip(first) {
            if read >= BIG {
                break;
            }
            read += len;
            part.push(k);
        }
        return Pick {
            files: vec![(files[0], Some(part))],
            bytes: read,
            weight: weight * block.bytes as f64 / read.max(1) as f64,
        };
    }
    Pick {
        files: files.into_iter().map(|i| (i, None)).collect(),
        bytes: block.bytes,
        weight,
    }
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
    let run = Run::new(head, plan, source, base.as_deref(), spec.readers, true);
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

    // Files: runs of neighbouring files (blocks), stratified by size, on
    // the readers.
    let blocks = blocks(plan);
    let mut groups: BTreeMap<u32, Vec<&Block>> = BTreeMap::new();
    for b in &blocks {
        groups
            .entry(64 - b.bytes.leading_zeros())
            .or_default()
            .push(b);
    }
    let mut picks = Vec::new();
    for group in groups.values() {
        let n = share(group.len());
        let weight = group.len() as f64 / n as f64;
        for &block in group.choose_multiple(&mut rng, n) {
            picks.push(pick(plan, block, weight, &mut rng));
        }
    }
    // The largest first, so the sample does not end on one big block.
    picks.sort_by_key(|p| std::cmp::Reverse(p.bytes));
    let next = AtomicUsize::new(0);
    let summed = Mutex::new((0.0f64, 0.0f64));
    std::thread::scope(|s| {
        for _ in 0..run.readers.min(picks.len()).max(1) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = picks.get(k) else { break };
                let t = Instant::now();
                for (i, part) in &p.files {
                    run.restore_file(*i, part.as_deref());
                }
                let t = t.elapsed().as_secs_f64();
                let mut sum = summed.locked();
                sum.0 += t;
                sum.1 += t * p.weight;
            });
        }
    });
    let (_, work_secs) = *summed.locked();
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
    // While every reader is busy, R readers do R seconds of (their own,
    // measured) time per second; a drill's readers are busy but at its
    // very end, so its files take the work over R.
    let files_secs = work_secs / run.readers.min(plan.files.max(1) as usize) as f64;
    let (problems, _, _) = run.problems.take();
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
        sampled_files: picks.iter().map(|p| p.files.len() as u64).sum(),
        sampled_bytes,
        took_secs: started.elapsed().as_secs_f64(),
        dirs_secs,
        others_secs,
        files_secs,
        flush_secs,
        problems,
    })
}

/// How many of `n` a sample takes.
fn share(n: usize) -> usize {
    n.min(((n as f64 * FRACTION).ceil() as usize).max(LEAST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_takes_one_in_a_hundred_and_at_least_two() {
        assert_eq!(share(0), 0);
        assert_eq!(share(1), 1);
        assert_eq!(share(5), 2);
        assert_eq!(share(250), 3);
        assert_eq!(share(10_000), 100);
    }
}
