//! Legal holds: a snapshot under a hold cannot be removed by anything.
//!
//! Each hold and each release is an event with its caller, time and
//! reason, stored as a row of the `snapshot_holds` table keyed by
//! (snapshot, revision) and also as an object in the packs, so an index
//! rebuilt from packs recovers every event. A snapshot's newest event says
//! whether it is held; the older ones are its history.

use std::collections::BTreeMap;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::store::format::Kind;
use crate::tree::head::records;
use crate::tree::head::txn::{Reader, Write};
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{Caller, FsError, Timestamp};

/// A hold placed on a snapshot, or released from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldEvent {
    /// Id of the snapshot record object.
    pub snapshot: [u8; 32],
    /// The snapshot's sequence number.
    pub seq: u64,
    /// 1 for the snapshot's first event, then one more each time.
    pub revision: u64,
    /// Placed (true) or released (false).
    pub held: bool,
    /// Why, as the caller gave it (a case number, a request).
    pub reason: String,
    /// Who: uid, gid, pid.
    pub caller: (u32, u32, u32),
    /// When.
    pub time: Timestamp,
}

/// The bytes a hold row's value is sealed to.
pub fn hold_key(seq: u64, revision: u64) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&seq.to_le_bytes());
    k[8..].copy_from_slice(&revision.to_le_bytes());
    k
}

/// The newest event of snapshot `seq` in `w`.
pub(super) fn last_event(w: &Write<'_>, seq: u64) -> Result<Option<HoldEvent>, FsError> {
    let Some(row) = w
        .holds()?
        .range((seq, 0)..=(seq, u64::MAX))
        .map_err(records::db)?
        .next_back()
    else {
        return Ok(None);
    };
    let (k, v) = row.map_err(records::db)?;
    let (seq, revision) = k.value();
    records::open(
        w.sealer(),
        Kind::IndexSnapshotHold,
        &hold_key(seq, revision),
        v.value(),
    )
    .map(Some)
}

impl Snapshots<'_> {
    /// Places a legal hold on snapshot `seq`, durably.
    pub fn hold(&self, caller: Caller, seq: u64, reason: &str) -> Result<HoldEvent, FsError> {
        self.set_hold(caller, seq, reason, true)
    }

    /// Releases the legal hold of snapshot `seq`, durably.
    pub fn release(&self, caller: Caller, seq: u64, reason: &str) -> Result<HoldEvent, FsError> {
        self.set_hold(caller, seq, reason, false)
    }

    fn set_hold(
        &self,
        caller: Caller,
        seq: u64,
        reason: &str,
        held: bool,
    ) -> Result<HoldEvent, FsError> {
        let _op = caller.span(if held { "hold" } else { "release" });
        if reason.trim().is_empty() {
            return Err(FsError::Invalid("a hold and a release each need a reason"));
        }
        let row = self.by_seq(seq)?;
        let store = self.head.repo().store();
        let event = self.head.transact(|w| {
            let last = last_event(w, seq)?;
            let now_held = last.as_ref().is_some_and(|e| e.held);
            if held && now_held {
                return Err(FsError::Invalid("the snapshot is already held"));
            }
            if !held && !now_held {
                return Err(FsError::Invalid("the snapshot is not held"));
            }
            let event = HoldEvent {
                snapshot: row.id,
                seq,
                revision: last.map_or(1, |e| e.revision + 1),
                held,
                reason: reason.to_owned(),
                caller: (caller.uid, caller.gid, caller.pid),
                time: Timestamp::now(),
            };
            let bytes = postcard::to_allocvec(&event).expect("hold event serializes");
            store.put_object(Kind::SnapshotHold, &bytes)?;
            let key = hold_key(seq, event.revision);
            let v = records::seal(w.sealer(), Kind::IndexSnapshotHold, &key, &event);
            w.holds_mut()?
                .insert((seq, event.revision), v.as_slice())
                .map_err(records::db)?;
            Ok(event)
        })?;
        self.head.commit()?;
        tracing::info!(
            seq,
            held,
            uid = caller.uid,
            pid = caller.pid,
            "legal hold {}",
            if held { "placed" } else { "released" }
        );
        Ok(event)
    }

    /// The snapshots under a legal hold, with the event that placed it.
    pub fn holds(&self) -> Result<BTreeMap<u64, HoldEvent>, FsError> {
        let mut current = BTreeMap::new();
        for e in self.hold_events(0..=u64::MAX)? {
            current.insert(e.seq, e);
        }
        current.retain(|_, e| e.held);
        Ok(current)
    }

    /// Every hold and release of snapshot `seq`, oldest first.
    pub fn hold_history(&self, seq: u64) -> Result<Vec<HoldEvent>, FsError> {
        self.hold_events(seq..=seq)
    }

    /// The events of the snapshots in `seqs`, by snapshot, oldest first.
    pub(super) fn hold_events(
        &self,
        seqs: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<HoldEvent>, FsError> {
        let r = self.head.rtx()?;
        let range = (*seqs.start(), 0)..=(*seqs.end(), u64::MAX);
        let mut out = Vec::new();
        for row in r.holds()?.range(range).map_err(records::db)? {
            let (k, v) = row.map_err(records::db)?;
            let (seq, revision) = k.value();
            out.push(records::open(
                r.sealer(),
                Kind::IndexSnapshotHold,
                &hold_key(seq, revision),
                v.value(),
            )?);
        }
        Ok(out)
    }
}
