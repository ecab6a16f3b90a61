//! `strata prune`: garbage collection. Deletes the packs that hold nothing
//! still in use and repacks the partly used ones, restic's way.
//!
//! Safety, in the order things happen:
//!
//! 1. The mark ([`Snapshots::live`]) reads every tree below every kept
//!    snapshot and the head; a tree it cannot read stops prune before
//!    anything changes. Records of runs, holds, tombstones and drills are
//!    always kept: they are small, and an index rebuilt from packs needs
//!    them.
//! 2. A copy of an object is in use only where the index points: a second
//!    copy elsewhere is garbage.
//! 3. Every object still in use in a pack to be repacked is read and
//!    verified against its id, then copied into new packs.
//! 4. One durable index commit ([`Store::commit_dropping`]) records the
//!    new packs (synced before it), moves the copied objects' rows to
//!    them, drops the rows of the garbage and the doomed packs, and lists
//!    those packs as doomed. Only after it are their files deleted; a crash
//!    before it leaves the repository as it was (the new packs were never
//!    recorded, and the next open removes them), a crash after it leaves
//!    doomed files that nothing refers to, deleted at the next open.
//!
//! While the repository is mounted, writes go on. A write that stores an
//! object the index already has takes a new reference to it without
//! storing it (deduplication), so the garbage found by the mark could gain
//! a reference before it is deleted. Hence, before anything is copied:
//!
//! 5. The garbage of the packs to drop is published to the store
//!    ([`Store::doom_objects`]): from then on a write of one of those
//!    objects stores a fresh copy instead of deduplicating.
//! 6. Every open file's pending state is flushed ([`Head::flush_all`]),
//!    which waits for every write in progress (each hands its chunks to
//!    the write pipeline under its file's lock, where they wait to be
//!    recorded), waits for the pipeline to store them (its dedup look-ups
//!    included), and records every chunk a file's state holds, and the
//!    head's commit lock is
//!    taken, which waits for a snapshot in progress. A reference taken by
//!    deduplication before step 5 is now in the head's rows or in a
//!    snapshot taken since the mark; both are marked again
//!    ([`Snapshots::mark_since`], reading only trees not yet marked), and a
//!    pack whose garbage turned out to be in use is left alone.
//!
//! After that no reference to the remaining garbage can appear: writes
//! store fresh copies, whose rows the commit of step 4 writes after
//! removing the doomed ones. A read that looked an object up just before
//! its pack was deleted reads it again where the index now says.
//!
//! Inside the daemon, prune keeps to the I/O settings writes keep to: each
//! copied object is admitted by the write throttle (and waits as long as
//! it says), the thread runs at `[throttle.io] class`, and the daemon's
//! cgroup (`[throttle.io]` weight and io.max) covers it as any other I/O.

use std::collections::HashSet;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::policy::throttle::Throttle;
use crate::store::chunks::StoreError;
use crate::store::format::{Kind, MAX_OBJECT_LEN};
use crate::store::id::{ChunkId, PackId};
use crate::store::index::{Doom, PackState};
use crate::store::pack::TocEntry;
use crate::tree::head::Head;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{Caller, FsError};

/// How much to repack.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneOptions {
    /// Repack until unused space is at most this percentage of the space in
    /// use (restic's `--max-unused`, 5 by default).
    pub max_unused_percent: f64,
    /// Copy at most this many bytes of objects in use while repacking.
    pub max_repack_bytes: Option<u64>,
    /// Report only.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> PruneOptions {
        PruneOptions {
            max_unused_percent: 5.0,
            max_repack_bytes: None,
            dry_run: false,
        }
    }
}

/// What prune keeps to and whom it tells how far it is, besides its
/// options.
#[derive(Clone, Copy, Default)]
pub struct PruneContext<'a> {
    /// The daemon's write throttle: copying keeps to its limits and its
    /// I/O class.
    pub throttle: Option<&'a Throttle>,
    /// Told how far prune is, at each phase and as it goes.
    pub progress: Option<&'a (dyn Fn(&PruneProgress) + Sync)>,
}

impl PruneContext<'_> {
    fn tell(&self, phase: &str, done: u64, total: u64) {
        if let Some(progress) = self.progress {
            progress(&PruneProgress {
                phase: phase.to_owned(),
                done,
                total,
            });
        }
    }
}

/// How far a prune is: `phase` is "mark" (reading the trees), "judge"
/// (packs read, of `total`), "copy" (bytes copied, of `total`) or
/// "commit".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneProgress {
    /// What it does.
    pub phase: String,
    /// How much of it is done.
    pub done: u64,
    /// Of how much; 0 when not known.
    pub total: u64,
}

/// What prune did, or in a dry run would do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Objects the snapshots and the head still use.
    pub live_objects: u64,
    /// Trees read to find them.
    pub trees_read: u64,
    /// Pack files before.
    pub packs_before: u64,
    /// Their bytes.
    pub bytes_before: u64,
    /// Packs deleted because nothing in them is used.
    pub packs_deleted: u64,
    /// Partly used packs whose used objects were copied, then deleted.
    pub packs_repacked: u64,
    /// Bytes of used objects copied.
    pub bytes_repacked: u64,
    /// Unused bytes left in packs not repacked.
    pub unused_bytes_left: u64,
    /// Pack files after.
    pub packs_after: u64,
    /// Their bytes.
    pub bytes_after: u64,
    /// `bytes_before - bytes_after`.
    pub bytes_freed: u64,
    /// How long it took.
    pub seconds: f64,
}

/// Why prune stopped; in every case before anything was deleted.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The store refuses writes since a failure.
    #[error("prune changed nothing: the repository's store refuses writes since a failure ({0}); see `strata status` and the log")]
    ReadOnly(String),
    /// Part of what is in use cannot be read.
    #[error("prune stopped before deleting anything: {0}; run `strata check --read-data`")]
    Mark(#[source] FsError),
    /// A pack's table of contents cannot be read.
    #[error("prune stopped before deleting anything: pack {pack} cannot be read; run `strata check --read-data`")]
    Pack {
        /// The pack.
        pack: PackId,
        /// Why.
        source: StoreError,
    },
    /// An object in use, to be copied, does not verify.
    #[error("prune stopped before deleting anything: object {id} in pack {pack} is still in use but damaged; run `strata check --read-data` (a damaged pack needs a replica or the original data)")]
    Damaged {
        /// The object.
        id: ChunkId,
        /// Its pack.
        pack: PackId,
    },
    /// Reading, copying or committing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the snapshots failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// One finished pack, judged.
struct Judged {
    id: PackId,
    /// Its file's length.
    len: u64,
    /// Its objects still in use, where the index points.
    used: Vec<TocEntry>,
    /// Sealed bytes of the others (headers and tables of contents are
    /// neither).
    unused: u64,
    /// The others the index points at: garbage, as far as the mark knows.
    garbage: Vec<ChunkId>,
    /// Every object in it.
    all: Vec<ChunkId>,
}

impl Judged {
    fn used_bytes(&self) -> u64 {
        self.used.iter().map(|e| e.len as u64).sum()
    }
}

/// Kinds kept whatever the mark says: the records an index rebuilt from
/// packs recovers runs, holds, tombstones, drills and the audit log from.
fn always_kept(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::SnapshotRun
            | Kind::SnapshotHold
            | Kind::SnapshotTombstone
            | Kind::Drill
            | Kind::Audit
    )
}

/// Collects the garbage of the repository `head` belongs to, on behalf of
/// `caller`; writes into the head may go on meanwhile.
pub fn prune(
    head: &Head,
    caller: Caller,
    opts: PruneOptions,
    cx: PruneContext,
) -> Result<PruneReport, PruneError> {
    let _op = caller.span("prune");
    let started = Instant::now();
    if let Some(class) = cx
        .throttle
        .and_then(|t| t.policy().io.and_then(|io| io.class))
    {
        if let Err(e) = class.apply_to_current_thread() {
            tracing::warn!(error = %e, %class, "[throttle.io] class cannot be applied; prune runs at the daemon's priority");
        }
    }
    let store = head.repo().store();
    if let Some(reason) = store.failed() {
        return Err(PruneError::ReadOnly(reason));
    }
    store.commit()?;
    // Only packs finished before the mark are judged: what was written
    // since is young, and most likely in use.
    let records = store.pack_records();
    let snapshots = Snapshots::of(head);
    let marked_after = snapshots.last()?.map_or(0, |r| r.record.seq);
    cx.tell("mark", 0, 0);
    let mut live = snapshots.live().map_err(PruneError::Mark)?;
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        live_objects: live.ids.len() as u64,
        trees_read: live.trees,
        ..PruneReport::default()
    };
    report.packs_before = records.len() as u64;
    report.bytes_before = records.values().map(|r| r.len).sum();
    let mut judged = Vec::new();
    let finished: Vec<_> = records
        .iter()
        .filter(|(_, r)| r.state == PackState::Finished)
        .collect();
    for (n, (&id, rec)) in finished.iter().enumerate() {
        cx.tell("judge", n as u64, finished.len() as u64);
        let entries = store
            .pack_contents(id)
            .map_err(|source| PruneError::Pack { pack: id, source })?;
        let all: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
        let indexed = store.index().locate(&all).map_err(StoreError::from)?;
        let mut used = Vec::new();
        let mut unused = 0;
        let mut garbage = Vec::new();
        for (e, loc) in entries.iter().zip(indexed) {
            let here = loc.is_some_and(|loc| loc.pack == id && loc.offset == e.offset);
            if here && (always_kept(e.kind) || live.ids.contains(&e.id)) {
                used.push(*e);
            } else {
                unused += e.len as u64;
                // A copy the index does not point at cannot be found by a
                // write or a read; only the indexed ones need dooming.
                if here {
                    garbage.push(e.id);
                }
            }
        }
        judged.push(Judged {
            id,
            len: rec.len,
            used,
            unused,
            garbage,
            all,
        });
    }
    let (mut empty, partly): (Vec<Judged>, Vec<Judged>) =
        judged.into_iter().partition(|j| j.used.is_empty());
    let mut repack = choose_repacks(partly, &opts, &mut report);
    let _undoom = Undoom(store);
    if !opts.dry_run {
        let doomed = |packs: &[&Judged]| -> HashSet<ChunkId> {
            packs
                .iter()
                .flat_map(|j| j.garbage.iter().copied())
                .collect()
        };
        store.doom_objects(doomed(&empty.iter().chain(&repack).collect::<Vec<_>>()));
        head.flush_all(caller)?;
        {
            let _snapshots_wait = head.serial();
            snapshots
                .mark_since(&mut live, marked_after)
                .map_err(PruneError::Mark)?;
        }
        let untouched = |j: &Judged| !j.garbage.iter().any(|id| live.ids.contains(id));
        empty.retain(untouched);
        let planned: u64 = repack.iter().map(|j| j.unused).sum();
        repack.retain(untouched);
        report.unused_bytes_left += planned - repack.iter().map(|j| j.unused).sum::<u64>();
        store.doom_objects(doomed(&empty.iter().chain(&repack).collect::<Vec<_>>()));
    }
    report.packs_deleted = empty.len() as u64;
    report.packs_repacked = repack.len() as u64;
    report.bytes_repacked = repack.iter().map(Judged::used_bytes).sum();
    if opts.dry_run {
        let freed: u64 = empty.iter().chain(&repack).map(|j| j.len).sum();
        report.packs_after = report.packs_before - report.packs_deleted - report.packs_repacked;
        report.bytes_after = report.bytes_before.saturating_sub(freed) + report.bytes_repacked;
    } else {
        let mut copied = 0;
        for j in &repack {
            copy_used(store, j, &cx, &mut copied, report.bytes_repacked)?;
        }
        cx.tell("commit", 0, 0);
        let doom = Doom {
            packs: empty.iter().chain(&repack).map(|j| j.id).collect(),
            chunks: empty
                .iter()
                .chain(&repack)
                .flat_map(|j| j.all.iter().copied())
                .collect(),
        };
        if !doom.packs.is_empty() {
            store.commit_dropping(&doom)?;
        }
        let after = store.pack_records();
        report.packs_after = after.len() as u64;
        report.bytes_after = after.values().map(|r| r.len).sum();
        tracing::info!(
            deleted = report.packs_deleted,
            repacked = report.packs_repacked,
            bytes_freed = report.bytes_before.saturating_sub(report.bytes_after),
            "prune finished"
        );
    }
    report.bytes_freed = report.bytes_before.saturating_sub(report.bytes_after);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Ends the dooming however prune ends (a commit that dropped the packs
/// has removed their rows, so nothing is left to protect).
struct Undoom<'a>(&'a crate::store::chunks::Store);

impl Drop for Undoom<'_> {
    fn drop(&mut self) {
        self.0.doom_objects(HashSet::new());
    }
}

/// The partly used packs to repack: most unused space first, until the
/// unused space left is within `max_unused_percent` of the space in use
/// (or the copy budget is spent). Counts what stays unused in `report`.
fn choose_repacks(
    mut partly: Vec<Judged>,
    opts: &PruneOptions,
    report: &mut PruneReport,
) -> Vec<Judged> {
    let used: u64 = partly.iter().map(Judged::used_bytes).sum();
    let mut unused: u64 = partly.iter().map(|j| j.unused).sum();
    let allowed = (used as f64 * opts.max_unused_percent / 100.0) as u64;
    partly.sort_by_key(|j| std::cmp::Reverse(j.unused));
    let mut budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
    let mut chosen = Vec::new();
    for j in partly {
        let cost = j.used_bytes();
        if unused > allowed && cost <= budget && j.unused > 0 {
            unused -= j.unused;
            budget -= cost;
            chosen.push(j);
        }
    }
    report.unused_bytes_left = unused;
    chosen
}

/// Sealed bytes verified at once while repacking: enough to keep every
/// core busy, little enough to hold in memory.
const VERIFY_WINDOW: u64 = 16 << 20;

/// Copies the used objects of pack `j` into new packs in their order (a
/// file's chunks stay together), each read and verified against its id
/// first (on every core, a window at a time) and admitted by the
/// throttle; `copied` counts the bytes, of `total`.
fn copy_used(
    store: &crate::store::chunks::Store,
    j: &Judged,
    cx: &PruneContext,
    copied: &mut u64,
    total: u64,
) -> Result<(), PruneError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rest = &j.used[..];
    while !rest.is_empty() {
        let mut bytes = 0;
        let n = rest
            .iter()
            .take_while(|e| {
                bytes += e.len as u64;
                bytes <= VERIFY_WINDOW
            })
            .count()
            .max(1);
        let (window, after) = rest.split_at(n);
        rest = after;
        let sealed = read_verified(store, j.id, window, cores)?;
        for (e, sealed) in window.iter().zip(sealed) {
            cx.tell("copy", *copied, total);
            if let Some(t) = cx.throttle {
                std::thread::sleep(t.admit(e.len as u64));
            }
            store.copy_object(e.kind, e.id, &sealed, e.raw_len)?;
            *copied += e.len as u64;
        }
    }
    Ok(())
}

/// The sealed bytes of `entries` of `pack`, in order, each verified
/// against its id; split over `threads`.
fn read_verified(
    store: &crate::store::chunks::Store,
    pack: PackId,
    entries: &[TocEntry],
    threads: usize,
) -> Result<Vec<Vec<u8>>, PruneError> {
    let one = |e: &TocEntry| -> Result<Vec<u8>, PruneError> {
        let sealed = store.read_object(pack, e.offset, e.len)?;
        store
            .codec()
            .decode_object(e.kind, &e.id, &sealed, MAX_OBJECT_LEN)
            .map_err(|_| PruneError::Damaged { id: e.id, pack })?;
        Ok(sealed)
    };
    let per_thread = entries.len().div_ceil(threads.max(1));
    std::thread::scope(|s| {
        let parts: Vec<_> = entries
            .chunks(per_thread)
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        for part in parts {
            out.extend(part.join().expect("verifying an object panicked")?);
        }
        Ok(out)
    })
}
