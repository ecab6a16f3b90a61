//! `strata replicate`: copies a repository's snapshots to a replica, a
//! complete repository with the same key (local, or in a bucket).
//!
//! Objects move sealed, as they are, after being checked against their id
//! on the way out; the replica packs them its own way. The order is what
//! keeps a replica consistent and a copy resumable:
//!
//! 1. The chains are compared first ([`compare`]); a replica whose chain is
//!    not a prefix of the source's is refused before anything is written.
//! 2. The source's links the replica lacks are sent oldest first. For a
//!    snapshot, its trees are walked depth first and every object is
//!    stored after the objects below it; a tree the replica holds is not
//!    walked, since everything below it was stored before it.
//! 3. The replica commits durably every [`COMMIT_BYTES`] sent, and once
//!    more before the snapshot's row is added, in a transaction of its own
//!    ([`Snapshots::receive`]). A kill at any point leaves a replica whose
//!    chain is a prefix of the source's, and objects committed before it
//!    are not sent again: at most [`COMMIT_BYTES`] are.

pub mod repair;
pub mod replicas;
pub mod target;
pub mod verify;

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use crate::policy::throttle::Throttle;
use crate::store::chunks::{Sealed, StoreError};
use crate::store::format::Kind;
use crate::store::id::ChunkId;
use crate::store::repo::RepoError;
use crate::tree::head::Head;
use crate::tree::objects::{SnapshotRow, Tree};
use crate::tree::snapshot::receive::ChainLink;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::FsError;

pub use replicas::{by_source, to_replicas, Done, ReplicaFailed};
pub use target::OpenError;
pub use verify::{compare, Comparison};

/// Bytes sent between two durable commits of the replica: what a kill can
/// make the next run send again.
pub const COMMIT_BYTES: u64 = 16 << 20;

/// Chunks read at once by the threads of one replication.
const SLICE: usize = 64;

/// Why a replication stopped. The replica holds every link committed
/// before, and is a prefix of the source either way.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    /// The chains differ: the replica is left as it is.
    #[error("the replica has diverged from its source at snapshot {seq}: {why}; it is left as it is — replicate to a new, empty replica, or remove this one if it is not needed")]
    Diverged {
        /// The first number where they differ.
        seq: u64,
        /// How.
        why: String,
    },
    /// An object of the source does not verify.
    #[error("object {id} of the source is damaged, so snapshot {seq} cannot be sent ({source}); run `strata check --read-data` on the source")]
    Damaged {
        /// The object.
        id: ChunkId,
        /// The snapshot being sent.
        seq: u64,
        /// What the read said.
        source: StoreError,
    },
    /// The replica's retention lock could not be raised to the source's.
    #[error("raising the replica's retention lock to the source's: {0}")]
    Lock(#[source] RepoError),
    /// Reading the source or writing the replica failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Reading the source or writing the replica failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one replication did.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct ReplicateReport {
    /// Snapshots sent, by number.
    pub snapshots_sent: Vec<u64>,
    /// Tombstones sent (snapshots the source forgot before the replica got them).
    pub tombstones_sent: u64,
    /// Hold events sent.
    pub holds_sent: u64,
    /// Objects stored in the replica.
    pub objects_sent: u64,
    /// Their sealed bytes: what went to the replica.
    pub bytes_sent: u64,
    /// Objects the replica had already (a resumed or incremental run).
    pub objects_present: u64,
    /// Trees read from the source.
    pub trees_read: u64,
    /// The newest link of the replica's chain afterwards.
    pub newest: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// How far a replication is.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicateProgress {
    /// The snapshot being sent.
    pub seq: u64,
    /// Snapshots still to send after it.
    pub left: u64,
    /// Bytes sent so far.
    pub bytes_sent: u64,
}

/// Where the progress of several replications goes, by replica name.
pub type Tell<'a> = &'a (dyn Fn(&str, &ReplicateProgress) + Sync);

/// What a replication reports to and is held back by.
#[derive(Default, Clone, Copy)]
pub struct ReplicateContext<'a> {
    /// The replica's bandwidth limit.
    pub throttle: Option<&'a Throttle>,
    /// Called as it goes.
    pub progress: Option<&'a (dyn Fn(&ReplicateProgress) + Sync)>,
}

/// Brings `replica` up to `source`: every link it lacks, in order, and the
/// source's hold events; raises its retention lock to the source's.
pub fn replicate(
    source: &Head,
    replica: &Head,
    cx: ReplicateContext<'_>,
) -> Result<ReplicateReport, ReplicateError> {
    let started = Instant::now();
    let from = Snapshots::of(source);
    let to = Snapshots::of(replica);
    let source_chain = from.chain()?;
    let cmp = compare(&source_chain, &to.chain()?);
    if let Some(d) = cmp.diverged {
        return Err(ReplicateError::Diverged {
            seq: d.seq,
            why: d.why,
        });
    }
    let lock = replica
        .repo()
        .retention_lock()
        .raised_to(&source.repo().retention_lock());
    replica
        .repo()
        .raise_retention_lock(&lock)
        .map_err(ReplicateError::Lock)?;
    let rows: HashMap<u64, SnapshotRow> = from
        .list()?
        .into_iter()
        .map(|r| (r.record.seq, r))
        .collect();
    let stones: HashMap<u64, _> = from.tombstones()?.into_iter().map(|t| (t.seq, t)).collect();
    let runs = from.runs()?;
    let holds = from.all_hold_events()?;
    let mut send = Sender {
        source,
        replica,
        cx,
        report: ReplicateReport::default(),
        uncommitted: 0,
    };
    let missing: Vec<&ChainLink> = source_chain
        .iter()
        .filter(|l| cmp.missing.contains(&l.seq))
        .collect();
    for (i, link) in missing.iter().enumerate() {
        if let Some(p) = cx.progress {
            p(&ReplicateProgress {
                seq: link.seq,
                left: (missing.len() - i - 1) as u64,
                bytes_sent: send.report.bytes_sent,
            });
        }
        match (rows.get(&link.seq), stones.get(&link.seq)) {
            (Some(row), _) => {
                send.snapshot(row)?;
                let its_holds: Vec<_> = holds
                    .iter()
                    .filter(|e| e.seq == link.seq)
                    .cloned()
                    .collect();
                to.receive(row, runs.get(&link.seq), &its_holds)?;
                send.uncommitted = 0;
                send.report.holds_sent += its_holds.len() as u64;
                send.report.snapshots_sent.push(link.seq);
            }
            (None, Some(t)) => {
                to.receive_tombstone(t)?;
                send.report.tombstones_sent += 1;
            }
            // Forgotten while we read: sent next time.
            (None, None) => break,
        }
        finish_remote_pack(replica)?;
    }
    send.report.holds_sent += to.receive_holds(&holds)? as u64;
    finish_remote_pack(replica)?;
    let mut report = send.report;
    report.newest = to.chain()?.last().map_or(0, |l| l.seq);
    report.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        snapshots = report.snapshots_sent.len(),
        bytes = report.bytes_sent,
        newest = report.newest,
        "replicated"
    );
    Ok(report)
}

/// A replica in a bucket gets its open pack finished after each link, so
/// the bucket alone holds every snapshot received (packs are uploaded
/// only when finished).
fn finish_remote_pack(replica: &Head) -> Result<(), StoreError> {
    let store = replica.repo().store();
    if store.backend().is_remote() {
        store.flush_pack()?;
    }
    Ok(())
}

/// One replication's copying state.
struct Sender<'a> {
    source: &'a Head,
    replica: &'a Head,
    cx: ReplicateContext<'a>,
    report: ReplicateReport,
    uncommitted: u64,
}

impl Sender<'_> {
    /// Stores everything snapshot `row` refers to, then its record.
    fn snapshot(&mut self, row: &SnapshotRow) -> Result<(), ReplicateError> {
        let seq = row.record.seq;
        // Depth first; a tree is stored when popped the second time, after
        // everything below it.
        let mut stack: Vec<([u8; 32], bool)> = row
            .record
            .root
            .subtree
            .map(|t| (t, false))
            .into_iter()
            .collect();
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                self.copy(Kind::Tree, ChunkId(id), seq)?;
                continue;
            }
            if self.has(&ChunkId(id))? {
                self.report.objects_present += 1;
                continue;
            }
            let tree = Tree::load(self.source.repo().store(), &id)?;
            self.report.trees_read += 1;
            stack.push((id, true));
            let chunks: Vec<ChunkId> = tree
                .entries
                .iter()
                .flat_map(|e| e.extents.iter().map(|(_, chunk, _)| ChunkId(*chunk)))
                .collect();
            self.copy_chunks(&chunks, seq)?;
            stack.extend(
                tree.entries
                    .iter()
                    .filter_map(|e| e.subtree)
                    .map(|t| (t, false)),
            );
        }
        self.copy(Kind::Snapshot, ChunkId(row.id), seq)?;
        self.replica.commit()?;
        Ok(())
    }

    fn has(&self, id: &ChunkId) -> Result<bool, StoreError> {
        self.replica.repo().store().has(id)
    }

    /// Object `id` of the source, sealed and checked, unless the replica
    /// has it.
    fn fetch(&self, kind: Kind, id: ChunkId, seq: u64) -> Result<Option<Sealed>, ReplicateError> {
        if self.has(&id)? {
            return Ok(None);
        }
        match self.source.repo().store().get_sealed(kind, &id) {
            Ok(s) => Ok(Some(s)),
            Err(
                source @ (StoreError::Corrupt { .. }
                | StoreError::Pack(_)
                | StoreError::NotFound(_)),
            ) => Err(ReplicateError::Damaged { id, seq, source }),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores object `id` in the replica unless it is there.
    fn copy(&mut self, kind: Kind, id: ChunkId, seq: u64) -> Result<(), ReplicateError> {
        let fetched = self.fetch(kind, id, seq)?;
        self.store(fetched)
    }

    /// Stores the chunks `ids` the replica lacks: read and checked by
    /// several threads at once (opening, decompressing and hashing is most
    /// of the work), stored in order, [`SLICE`] at a time so that commits
    /// keep to [`COMMIT_BYTES`].
    fn copy_chunks(&mut self, ids: &[ChunkId], seq: u64) -> Result<(), ReplicateError> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        for slice in ids.chunks(SLICE) {
            let fetched: Vec<Result<Option<Sealed>, ReplicateError>> =
                if workers < 2 || slice.len() < 8 {
                    slice
                        .iter()
                        .map(|id| self.fetch(Kind::Chunk, *id, seq))
                        .collect()
                } else {
                    let this = &*self;
                    std::thread::scope(|s| {
                        let parts: Vec<_> = slice
                            .chunks(slice.len().div_ceil(workers))
                            .map(|part| {
                                s.spawn(move || {
                                    part.iter()
                                        .map(|id| this.fetch(Kind::Chunk, *id, seq))
                                        .collect::<Vec<_>>()
                                })
                            })
                            .collect();
                        parts
                            .into_iter()
                            .flat_map(|t| t.join().expect("a replication reader panicked"))
                            .collect()
                    })
                };
            for f in fetched {
                self.store(f?)?;
            }
        }
        Ok(())
    }

    /// Stores `fetched` in the replica (counted as present when `None`);
    /// commits every [`COMMIT_BYTES`].
    fn store(&mut self, fetched: Option<Sealed>) -> Result<(), ReplicateError> {
        let Some(sealed) = fetched else {
            self.report.objects_present += 1;
            return Ok(());
        };
        let len = sealed.bytes.len() as u64;
        if let Some(t) = self.cx.throttle {
            t.wait(len);
        }
        if self.replica.repo().store().put_sealed(&sealed)? {
            self.report.objects_sent += 1;
            self.report.bytes_sent += len;
            self.uncommitted += len;
        } else {
            self.report.objects_present += 1;
        }
        if self.uncommitted >= COMMIT_BYTES {
            self.replica.commit()?;
            self.uncommitted = 0;
        }
        Ok(())
    }
}
