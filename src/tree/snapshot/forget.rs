//! Forgetting snapshots, and the hash chain that survives it.
//!
//! Forgetting removes a snapshot's row and its run record and leaves a
//! tombstone in its place: the snapshot's sequence number, record id, the
//! `prev` its record carried, its time and label, and who forgot it when
//! and why. A tombstone is stored as an object in the packs and as a row of
//! the `snapshot_tombstones` table, so an index rebuilt from packs does not
//! bring the snapshot back, and the chain of records and tombstones stays
//! verifiable after the records themselves are gone: every sequence number
//! from 1 to the newest appears exactly once, and every link's `prev` is
//! the id of the link before it.
//!
//! Holds and the retention lock are checked here, in the transaction that
//! removes the row, so no caller can get around them.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::store::crypto::Sealer;
use crate::store::format::Kind;
use crate::store::id::ChunkId;
use crate::store::retention_lock::RetentionLock;
use crate::tree::head::records;
use crate::tree::head::txn::{Reader, Write};
use crate::tree::objects::{SnapshotRecord, SnapshotRow};
use crate::tree::snapshot::{holds, Snapshots};
use crate::tree::types::{Caller, FsError, Timestamp};

/// What remains of a forgotten snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The snapshot's sequence number.
    pub seq: u64,
    /// Id of its record object.
    pub snapshot: [u8; 32],
    /// The `prev` its record carried.
    pub prev: Option<[u8; 32]>,
    /// When the snapshot was taken.
    pub time: Timestamp,
    /// Its label.
    pub label: Option<String>,
    /// When it was forgotten.
    pub forgotten: Timestamp,
    /// Who forgot it: uid, gid, pid.
    pub caller: (u32, u32, u32),
    /// Why (the policy's rules, or "by name").
    pub reason: String,
}

impl Tombstone {
    /// The forgotten snapshot's directory name.
    pub fn name(&self) -> String {
        SnapshotRecord::name_at(self.time)
    }
}

/// One link of the chain: a snapshot still kept, or a tombstone.
struct Link {
    seq: u64,
    id: [u8; 32],
    prev: Option<[u8; 32]>,
}

/// The newest link of the chain in `w`: (sequence number, record id, time),
/// whether that snapshot is kept or forgotten. A new snapshot chains to it
/// and is named after a later second.
pub(super) fn newest_link(w: &Write<'_>) -> Result<Option<(u64, [u8; 32], Timestamp)>, FsError> {
    let kept = match w.snapshots()?.last().map_err(records::db)? {
        Some((k, v)) => {
            let row = SnapshotRow::open(w.sealer(), k.value(), v.value())?;
            Some((row.record.seq, row.id, row.record.time))
        }
        None => None,
    };
    let forgotten = match w.tombstones()?.last().map_err(records::db)? {
        Some((k, v)) => {
            let t = open_tombstone(w.sealer(), k.value(), v.value())?;
            Some((t.seq, t.snapshot, t.time))
        }
        None => None,
    };
    Ok(kept.into_iter().chain(forgotten).max_by_key(|l| l.0))
}

fn open_tombstone(sealer: &Sealer, seq: u64, v: &[u8]) -> Result<Tombstone, FsError> {
    records::open(sealer, Kind::IndexSnapshotTombstone, &seq.to_le_bytes(), v)
}

/// Refuses to forget `row` while it is held or inside the repository's
/// retention lock.
fn protect(w: &Write<'_>, row: &SnapshotRow, lock: &RetentionLock) -> Result<(), FsError> {
    if holds::last_event(w, row.record.seq)?.is_some_and(|e| e.held) {
        return Err(FsError::Busy("the snapshot is under a legal hold"));
    }
    let until = lock.until(row.record.time.secs, row.record.label.as_deref());
    if until.is_some_and(|until| Timestamp::now().secs < until) {
        return Err(FsError::Busy("the snapshot is inside its retention lock"));
    }
    Ok(())
}

impl Snapshots<'_> {
    /// Forgets the snapshots `seqs` in one durable transaction, leaving a
    /// tombstone for each; all or none. Refused with [`FsError::NotFound`]
    /// for an unknown number and [`FsError::Busy`] for a snapshot under a
    /// legal hold or inside the repository's retention lock.
    pub fn forget(
        &self,
        caller: Caller,
        seqs: &[u64],
        reason: &str,
    ) -> Result<Vec<Tombstone>, FsError> {
        let _op = caller.span("forget");
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let head = self.head;
        let store = head.repo().store();
        let lock = head.repo().retention_lock();
        let serial = head.serial();
        let stones = serial.transact(|w| {
            let mut stones = Vec::new();
            for &seq in seqs {
                let v = w
                    .snapshots()?
                    .get(seq)
                    .map_err(records::db)?
                    .ok_or(FsError::NotFound)?
                    .value()
                    .to_vec();
                let row = SnapshotRow::open(w.sealer(), seq, &v)?;
                protect(w, &row, &lock)?;
                let stone = Tombstone {
                    seq,
                    snapshot: row.id,
                    prev: row.record.prev,
                    time: row.record.time,
                    label: row.record.label.clone(),
                    forgotten: Timestamp::now(),
                    caller: (caller.uid, caller.gid, caller.pid),
                    reason: reason.to_owned(),
                };
                let bytes = postcard::to_allocvec(&stone).expect("tombstone serializes");
                store.put_object(Kind::SnapshotTombstone, &bytes)?;
                let sealed = records::seal(
                    w.sealer(),
                    Kind::IndexSnapshotTombstone,
                    &seq.to_le_bytes(),
                    &stone,
                );
                w.tombstones_mut()?
                    .insert(seq, sealed.as_slice())
                    .map_err(records::db)?;
                w.snapshots_mut()?.remove(seq).map_err(records::db)?;
                w.runs_mut()?.remove(seq).map_err(records::db)?;
                stones.push(stone);
            }
            Ok(stones)
        })?;
        serial.commit()?;
        drop(serial);
        // Queries skip what no kept snapshot holds, so this only saves
        // space; a failure leaves the catalog correct.
        if let Err(e) = crate::tree::catalog::Catalog::of(head).compact() {
            tracing::warn!(error = %e, "compacting the catalog after forgetting failed");
        }
        for s in &stones {
            tracing::info!(
                seq = s.seq,
                snapshot = %s.name(),
                uid = caller.uid,
                pid = caller.pid,
                reason = %s.reason,
                "snapshot forgotten"
            );
        }
        Ok(stones)
    }

    /// Every forgotten snapshot, oldest first.
    pub fn tombstones(&self) -> Result<Vec<Tombstone>, FsError> {
        let r = self.head.rtx()?;
        let mut out = Vec::new();
        for row in r.tombstones()?.iter().map_err(records::db)? {
            let (k, v) = row.map_err(records::db)?;
            out.push(open_tombstone(r.sealer(), k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Checks the hash chain of snapshot records and tombstones: sequence
    /// numbers 1 to the newest each once, every `prev` the id of the link
    /// before. Returns the problems.
    pub fn verify_chain(&self) -> Result<Vec<String>, FsError> {
        let kept = self.list()?.into_iter().map(|r| Link {
            seq: r.record.seq,
            id: r.id,
            prev: r.record.prev,
        });
        let forgotten = self.tombstones()?.into_iter().map(|t| Link {
            seq: t.seq,
            id: t.snapshot,
            prev: t.prev,
        });
        Ok(chain_problems(kept.chain(forgotten).collect()))
    }
}

/// The problems of a chain of links in any order.
fn chain_problems(mut links: Vec<Link>) -> Vec<String> {
    links.sort_by_key(|l| l.seq);
    let mut errors = Vec::new();
    let mut before: Option<&Link> = None;
    for l in &links {
        if before.is_some_and(|b| b.seq == l.seq) {
            errors.push(format!(
                "snapshot {}: both kept and forgotten, or recorded twice",
                l.seq
            ));
            continue;
        }
        let expected = before.map_or(1, |b| b.seq + 1);
        if l.seq != expected {
            errors.push(format!(
                "snapshot chain: snapshot(s) {expected} to {} are missing, neither kept nor forgotten",
                l.seq - 1
            ));
        } else if l.prev != before.map(|b| b.id) {
            let id = |p: Option<[u8; 32]>| p.map_or("nothing".into(), |p| ChunkId(p).to_string());
            errors.push(format!(
                "snapshot {}: its record chains to {} instead of the snapshot before it ({})",
                l.seq,
                id(l.prev),
                id(before.map(|b| b.id)),
            ));
        }
        before = Some(l);
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(seq: u64, prev: Option<u64>) -> Link {
        Link {
            seq,
            id: [seq as u8; 32],
            prev: prev.map(|p| [p as u8; 32]),
        }
    }

    #[test]
    fn an_intact_chain_in_any_order_has_no_problems() {
        assert!(chain_problems(vec![]).is_empty());
        let chain = vec![link(3, Some(2)), link(1, None), link(2, Some(1))];
        assert!(chain_problems(chain).is_empty());
    }

    #[test]
    fn a_missing_a_doubled_a_reordered_or_a_first_link_that_chains_is_found() {
        let missing = chain_problems(vec![link(1, None), link(4, Some(3))]);
        assert_eq!(missing.len(), 1);
        assert!(
            missing[0].contains("snapshot(s) 2 to 3 are missing"),
            "{missing:?}"
        );
        let twice = chain_problems(vec![link(1, None), link(1, None)]);
        assert!(
            twice[0].contains("snapshot 1: both kept and forgotten"),
            "{twice:?}"
        );
        let wrong = chain_problems(vec![link(1, None), link(2, Some(7))]);
        assert!(
            wrong[0].contains("snapshot 2: its record chains to"),
            "{wrong:?}"
        );
        let no_start = chain_problems(vec![link(2, Some(1))]);
        assert!(
            no_start[0].contains("snapshot(s) 1 to 1 are missing"),
            "{no_start:?}"
        );
        let first_chains = chain_problems(vec![link(1, Some(9))]);
        assert_eq!(first_chains.len(), 1, "{first_chains:?}");
    }
}
