//! A replica's side of replication: the snapshots and tombstones of its
//! source, added one link at a time in the source's order, so a replica's
//! chain is always a prefix of its source's chain.
//!
//! A link is accepted only as the next one: its sequence number follows
//! the newest link here and its record chains to it. Anything else means
//! the two chains differ, and the replica is left as it is.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::format::Kind;
use crate::store::id::ChunkId;
use crate::tree::head::records;
use crate::tree::head::txn::{Reader, Write};
use crate::tree::objects::SnapshotRow;
use crate::tree::record::RunRecord;
use crate::tree::snapshot::forget::{newest_link, Tombstone};
use crate::tree::snapshot::holds::{hold_key, HoldEvent};
use crate::tree::snapshot::runs::put_run;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::FsError;

/// One link of a snapshot chain: a kept snapshot or a tombstone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ChainLink {
    /// Sequence number.
    pub seq: u64,
    /// Id of the snapshot's record object.
    #[serde(serialize_with = "hex_id")]
    pub id: [u8; 32],
    /// Whether the snapshot is kept (else only its tombstone is).
    pub kept: bool,
}

fn hex_id<S: serde::Serializer>(id: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ChunkId(*id).to_string())
}

impl Snapshots<'_> {
    /// The chain: every kept snapshot and every tombstone, by number.
    pub fn chain(&self) -> Result<Vec<ChainLink>, FsError> {
        let mut links: BTreeMap<u64, ChainLink> = BTreeMap::new();
        for t in self.tombstones()? {
            links.insert(
                t.seq,
                ChainLink {
                    seq: t.seq,
                    id: t.snapshot,
                    kept: false,
                },
            );
        }
        for r in self.list()? {
            links.insert(
                r.record.seq,
                ChainLink {
                    seq: r.record.seq,
                    id: r.id,
                    kept: true,
                },
            );
        }
        Ok(links.into_values().collect())
    }

    /// Every hold and release, oldest first by snapshot.
    pub fn all_hold_events(&self) -> Result<Vec<HoldEvent>, FsError> {
        self.hold_events(0..=u64::MAX)
    }

    /// Adds snapshot `row` received from the source, with its run record
    /// and hold events, durably. Every object its trees refer to, and its
    /// record object, must be stored here already.
    pub fn receive(
        &self,
        row: &SnapshotRow,
        run: Option<&RunRecord>,
        holds: &[HoldEvent],
    ) -> Result<(), FsError> {
        let store = self.head.repo().store();
        if !store.has(&ChunkId(row.id))? {
            return Err(FsError::Invalid(
                "a snapshot is received only after its record object",
            ));
        }
        let seq = row.record.seq;
        let serial = self.head.serial();
        serial.transact(|w| {
            next_link(w, seq, row.record.prev)?;
            let v = row.seal(w.sealer(), seq);
            w.snapshots_mut()?
                .insert(seq, v.as_slice())
                .map_err(records::db)?;
            if let Some(run) = run {
                put_run(w, store, &row.id, seq, run)?;
            }
            w.set_counter("snapshot_seq", seq)?;
            add_holds(w, self, holds)
        })?;
        serial.commit()
    }

    /// Adds the tombstone of a snapshot the source forgot before this
    /// replica received it, durably.
    pub fn receive_tombstone(&self, t: &Tombstone) -> Result<(), FsError> {
        let store = self.head.repo().store();
        let serial = self.head.serial();
        serial.transact(|w| {
            next_link(w, t.seq, t.prev)?;
            let bytes = postcard::to_allocvec(t).expect("tombstone serializes");
            store.put_object(Kind::SnapshotTombstone, &bytes)?;
            let v = records::seal(
                w.sealer(),
                Kind::IndexSnapshotTombstone,
                &t.seq.to_le_bytes(),
                t,
            );
            w.tombstones_mut()?
                .insert(t.seq, v.as_slice())
                .map_err(records::db)?;
            w.set_counter("snapshot_seq", t.seq)
        })?;
        serial.commit()
    }

    /// Adds the source's hold events this replica lacks (placed or released
    /// after the snapshot arrived), durably; returns how many.
    pub fn receive_holds(&self, holds: &[HoldEvent]) -> Result<usize, FsError> {
        let have: std::collections::HashSet<(u64, u64)> = self
            .all_hold_events()?
            .iter()
            .map(|e| (e.seq, e.revision))
            .collect();
        let kept: std::collections::HashSet<u64> =
            self.list()?.iter().map(|r| r.record.seq).collect();
        let new: Vec<HoldEvent> = holds
            .iter()
            .filter(|e| kept.contains(&e.seq) && !have.contains(&(e.seq, e.revision)))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(0);
        }
        let serial = self.head.serial();
        serial.transact(|w| add_holds(w, self, &new))?;
        serial.commit()?;
        Ok(new.len())
    }
}

impl Snapshots<'_> {
    /// Records that this replica was brought up to date at `secs` (since
    /// the epoch), durably.
    pub fn mark_replicated(&self, secs: u64) -> Result<(), FsError> {
        let serial = self.head.serial();
        serial.transact(|w| w.set_counter("replicated_at", secs))?;
        serial.commit()
    }

    /// When this replica was last brought up to date, if ever.
    pub fn replicated_at(&self) -> Result<Option<u64>, FsError> {
        let at = self
            .head
            .serial()
            .transact(|w| w.counter("replicated_at"))?;
        Ok((at > 0).then_some(at))
    }
}

/// Refuses a link that is not the next one of the chain in `w`.
fn next_link(w: &Write<'_>, seq: u64, prev: Option<[u8; 32]>) -> Result<(), FsError> {
    let newest = newest_link(w)?;
    let follows = match newest {
        None => seq == 1 && prev.is_none(),
        Some((last, id, _)) => seq == last + 1 && prev == Some(id),
    };
    if follows {
        Ok(())
    } else {
        Err(FsError::Invalid(
            "the snapshot does not follow this replica's newest one: the chains differ",
        ))
    }
}

fn add_holds(w: &mut Write<'_>, snaps: &Snapshots<'_>, holds: &[HoldEvent]) -> Result<(), FsError> {
    let store = snaps.head.repo().store();
    for e in holds {
        let bytes = postcard::to_allocvec(e).expect("hold event serializes");
        store.put_object(Kind::SnapshotHold, &bytes)?;
        let v = records::seal(
            w.sealer(),
            Kind::IndexSnapshotHold,
            &hold_key(e.seq, e.revision),
            e,
        );
        w.holds_mut()?
            .insert((e.seq, e.revision), v.as_slice())
            .map_err(records::db)?;
    }
    Ok(())
}
