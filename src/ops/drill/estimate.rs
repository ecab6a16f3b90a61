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
//!   device, fifo), from a uniform sample of each (5 %, at least 32),
//!   read (and created) one after another as the drill does, each after
//!   its directory (untimed), as in the drill, which has just been there.
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
//!   own time. Its variance is `Σ_h N_h²·(1 − n_h/N_h)·s_h²/n_h`; while
//!   the standard error is over 2 % of W, the sample doubles, the new
//!   blocks going to the groups in proportion to `N_h·s_h` (Neyman's
//!   allocation), until it is under, or has read 12 % of the bytes, or
//!   four rounds. The estimate says its 95 % margin (`margin_pct`).
//!   Each drawn block is read after a lead-in, untimed: the 2 MiB (at most
//!   32 files) before it, so that it starts as warm as in the drill, which
//!   has just read them. Blocks, not single files, because a drill reads neighbours
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

use rand::seq::{IndexedRandom, SliceRandom};
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
/// The standard error over the estimate a sample stops at: ±4 % at 95 %.
const PRECISION: f64 = 0.02;
/// Most share of the bytes a sample reads before it stops, precise or not.
const BUDGET: f64 = 0.12;
/// Most rounds of sampling (each doubles the sample).
const PASSES: usize = 4;

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
    /// The sampling error of the prediction: half the width of its 95 %
    /// confidence interval, in percent of it.
    pub margin_pct: f64,
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
/// bytes read, what its time is scaled by (the bytes of a large file over
/// those read; else 1); and its lead-in, read untimed first.
struct Pick {
    files: Vec<(usize, Option<Vec<usize>>)>,
    bytes: u64,
    scale: f64,
    lead: Vec<(usize, Vec<usize>)>,
}

/// Content read just before a sampled block, untimed, so that the block
/// starts as warm as in the drill, which has just read what precedes it:
/// read-ahead running, the packs' neighbouring pages in memory. Without
/// it each block pays a cold start the drill pays once (the estimate was
/// 1.3 to 1.4 times the drill).
const LEAD_BYTES: u64 = 2 << 20;
/// Most files in a lead-in.
const LEAD_FILES: usize = 32;

/// The lead-in of a read that starts at extent `first` of content file
/// `contents[k]`: the extents before it, back to [`LEAD_BYTES`] or
/// [`LEAD_FILES`] files, in reading order.
fn lead_in(plan: &Plan, contents: &[usize], k: usize, first: usize) -> Vec<(usize, Vec<usize>)> {
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut file = Some((k, first));
    while let Some((k, end)) = file {
        if bytes >= LEAD_BYTES || out.len() >= LEAD_FILES {
            break;
        }
        let extents = &plan.items[contents[k]].entry.extents;
        let mut take = Vec::new();
        for e in (0..end.min(extents.len())).rev() {
            if bytes >= LEAD_BYTES {
                break;
            }
            bytes += u64::from(extents[e].2);
            take.push(e);
        }
        if !take.is_empty() {
            take.reverse();
            out.push((contents[k], take));
        }
        file = k.checked_sub(1).map(|k| (k, usize::MAX));
    }
    out.reverse();
    out
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
fn pick(plan: &Plan, contents: &[usize], block: &Block, rng: &mut impl rand::Rng) -> Pick {
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
            lead: lead_in(plan, contents, position(contents, files[0]), first),
            files: vec![(files[0], Some(part))],
            bytes: read,
            scale: block.bytes as f64 / read.max(1) as f64,
        };
    }
    Pick {
        lead: files
            .first()
            .map(|&i| lead_in(plan, contents, position(contents, i), 0))
            .unwrap_or_default(),
        files: files.into_iter().map(|i| (i, None)).collect(),
        bytes: block.bytes,
        scale: 1.0,
    }
}

/// Where plan entry `i` is among the content files.
fn position(contents: &[usize], i: usize) -> usize {
    contents.binary_search(&i).unwrap_or_else(|k| k)
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
    let mut sampled_files = 0u64;
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
            .choose_multiple(rng, share_entries(all.len()))
            .copied()
            .collect();
        // Each after its directory, untimed: the drill has just been there
        // (parents come first), so the way to it is known.
        let mut secs = 0.0;
        for &i in &picked {
            if let Some(parent) = items[i].parent {
                run.warm_meta(parent);
            }
            let clock = Instant::now();
            each(i);
            secs += clock.elapsed().as_secs_f64();
        }
        if picked.is_empty() {
            0.0
        } else {
            secs / picked.len() as f64
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
    let contents = plan.contents();
    let mut by_size: BTreeMap<u32, Vec<&Block>> = BTreeMap::new();
    for b in &blocks {
        by_size
            .entry(64 - b.bytes.leading_zeros())
            .or_default()
            .push(b);
    }
    // Each group in a random order: a sample is a prefix, grown as needed.
    let groups: Vec<Vec<&Block>> = by_size
        .into_values()
        .map(|mut g| {
            g.shuffle(&mut rng);
            g
        })
        .collect();
    let mut sample = Sample::new(&groups);
    let mut want: Vec<usize> = groups.iter().map(|g| share(g.len())).collect();
    let mut sampled_block_bytes = 0u64;
    for _ in 0..PASSES {
        let mut picks = Vec::new();
        for (h, g) in groups.iter().enumerate() {
            for block in &g[sample.taken(h)..want[h]] {
                picks.push((h, pick(plan, &contents, block, &mut rng)));
            }
        }
        if picks.is_empty() {
            break;
        }
        sampled_block_bytes += picks.iter().map(|(_, p)| p.bytes).sum::<u64>();
        sampled_files += picks.iter().map(|(_, p)| p.files.len() as u64).sum::<u64>();
        for (h, y) in time_picks(&run, picks) {
            sample.add(h, y);
        }
        let precise = sample.relative_error() <= PRECISION;
        if precise || sampled_block_bytes as f64 > BUDGET * plan.bytes as f64 {
            break;
        }
        want = sample.more();
    }
    let (work_secs, work_var) = sample.total();
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
    let busy = run.readers.min(plan.files.max(1) as usize) as f64;
    let files_secs = work_secs / busy;
    let predicted_secs = dirs_secs + others_secs + files_secs + flush_secs;
    let (problems, _, _) = run.problems.take();
    Ok(Estimate {
        snapshot_name: snapshot_name.to_owned(),
        path: plan.path.clone(),
        restore: spec.to.is_some(),
        readers: run.readers as u32,
        predicted_secs,
        margin_pct: if predicted_secs > 0.0 {
            1.96 * work_var.sqrt() / busy / predicted_secs * 100.0
        } else {
            0.0
        },
        rto_secs: spec.rto_secs,
        files: plan.files,
        dirs: plan.dirs,
        others: plan.others,
        bytes: plan.bytes,
        sampled_files,
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

/// How many of `n` directories or other entries a sample takes: they
/// are cheap, and their mean is noisy.
fn share_entries(n: usize) -> usize {
    n.min(((n as f64 * 0.05).ceil() as usize).max(32))
}

/// Reads `picks` on the run's readers, the largest first (so the sample
/// does not end on one big block), each after its lead-in; returns each
/// one's group and its time scaled to its block.
fn time_picks(run: &Run<'_>, mut picks: Vec<(usize, Pick)>) -> Vec<(usize, f64)> {
    picks.sort_by_key(|(_, p)| std::cmp::Reverse(p.bytes));
    let next = AtomicUsize::new(0);
    let timed = Mutex::new(Vec::with_capacity(picks.len()));
    std::thread::scope(|s| {
        for _ in 0..run.readers.min(picks.len()).max(1) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some((h, p)) = picks.get(k) else { break };
                for (i, part) in &p.lead {
                    run.warm(*i, part);
                }
                let t = Instant::now();
                for (i, part) in &p.files {
                    run.restore_file(*i, part.as_deref());
                }
                let y = t.elapsed().as_secs_f64() * p.scale;
                timed.locked().push((*h, y));
            });
        }
    });
    timed.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Times of the sampled blocks, by group (stratum), and the estimate of
/// the time of all blocks they give.
struct Sample {
    /// Blocks in each group.
    sizes: Vec<usize>,
    /// The sampled blocks' times, by group.
    times: Vec<Vec<f64>>,
}

impl Sample {
    fn new(groups: &[Vec<&Block>]) -> Sample {
        Sample {
            sizes: groups.iter().map(Vec::len).collect(),
            times: vec![Vec::new(); groups.len()],
        }
    }

    fn taken(&self, h: usize) -> usize {
        self.times[h].len()
    }

    fn add(&mut self, h: usize, y: f64) {
        self.times[h].push(y);
    }

    /// Group `h`'s mean and sample variance.
    fn moments(&self, h: usize) -> (f64, f64) {
        let ys = &self.times[h];
        let n = ys.len() as f64;
        if ys.is_empty() {
            return (0.0, 0.0);
        }
        let mean = ys.iter().sum::<f64>() / n;
        let var = if ys.len() < 2 {
            0.0
        } else {
            ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / (n - 1.0)
        };
        (mean, var)
    }

    /// The estimated time of all blocks, and its variance:
    /// `Σ N_h·ȳ_h` and `Σ N_h²·(1 − n_h/N_h)·s_h²/n_h`.
    fn total(&self) -> (f64, f64) {
        let mut total = 0.0;
        let mut var = 0.0;
        for (h, &big_n) in self.sizes.iter().enumerate() {
            let n = self.taken(h);
            if n == 0 {
                continue;
            }
            let (mean, s2) = self.moments(h);
            let big_n = big_n as f64;
            total += big_n * mean;
            var += big_n * big_n * (1.0 - n as f64 / big_n) * s2 / n as f64;
        }
        (total, var)
    }

    /// The standard error over the estimate.
    fn relative_error(&self) -> f64 {
        let (total, var) = self.total();
        if total > 0.0 {
            var.sqrt() / total
        } else {
            0.0
        }
    }

    /// The next sample sizes: twice as many blocks in all, the new ones
    /// where they cut the error most (in proportion to `N_h·s_h`, Neyman's
    /// allocation), never more than a group has.
    fn more(&self) -> Vec<usize> {
        let spread: Vec<f64> = (0..self.sizes.len())
            .map(|h| self.sizes[h] as f64 * self.moments(h).1.sqrt())
            .collect();
        let all: f64 = spread.iter().sum();
        let extra = self.times.iter().map(Vec::len).sum::<usize>() as f64;
        (0..self.sizes.len())
            .map(|h| {
                let add = if all > 0.0 {
                    (extra * spread[h] / all).ceil() as usize
                } else {
                    0
                };
                (self.taken(h) + add).min(self.sizes[h])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stratified_total_and_its_error_follow_the_textbook() {
        let mut s = Sample {
            sizes: vec![100, 4],
            times: vec![Vec::new(), Vec::new()],
        };
        for y in [1.0, 3.0] {
            s.add(0, y);
        }
        for y in [10.0, 10.0, 10.0, 10.0] {
            s.add(1, y);
        }
        // 100·2 + 4·10; the second group is read whole: no error from it.
        let (total, var) = s.total();
        assert!((total - 240.0).abs() < 1e-9);
        // 100²·(1 − 2/100)·2/2
        assert!((var - 9_800.0).abs() < 1e-6, "{var}");
        assert!((s.relative_error() - 9_800f64.sqrt() / 240.0).abs() < 1e-12);
        // The next round doubles the sample, all of it where the spread is.
        assert_eq!(s.more(), vec![2 + 6, 4]);
    }

    #[test]
    fn a_sample_takes_one_in_a_hundred_and_at_least_two() {
        assert_eq!(share(0), 0);
        assert_eq!(share(1), 1);
        assert_eq!(share(5), 2);
        assert_eq!(share(250), 3);
        assert_eq!(share(10_000), 100);
    }
}
