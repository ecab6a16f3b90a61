//! `strata repair packs --from NAME`: the finished packs of a repository
//! that are missing or damaged, brought back object by object from a
//! replica (the same objects under the same ids, packed its own way).
//!
//! Safety, in the order things happen:
//!
//! 1. Every finished pack the index knows is read: its table of contents,
//!    and every object an index row points at, opened and hashed. A pack
//!    that does not open, whose table does not read, or that holds an
//!    object that does not verify is bad.
//! 2. Every object of a bad pack is stored again: fetched from the replica
//!    and checked there against its id ([`Store::get_sealed`]: the seal
//!    opened, the plaintext hashed), or, where the replica lacks it but the
//!    local copy reads intact, copied from that copy. An audit record,
//!    which replicas do not hold (each keeps its own log), is sealed again
//!    from the index's audit row, which holds the same bytes.
//! 3. The copies go into new packs, synced before the one durable index
//!    commit ([`Store::commit_dropping`]) that moves their rows and drops
//!    the bad packs every object of which was stored again; only then are
//!    those files deleted. A crash before the commit leaves the repository
//!    as it was (the new packs were never recorded; the next open removes
//!    them), a crash after it leaves doomed files that nothing refers to,
//!    deleted at the next open.
//!
//! A bad pack with an object found nowhere is kept, and so are the rows of
//! what could not be recovered: nothing that still reads is given up.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::store::chunks::{Sealed, Store, StoreError};
use crate::store::format::Kind;
use crate::store::id::{ChunkId, PackId};
use crate::store::index::{Doom, Location, PackState};
use crate::tree::audit::Audit;
use crate::tree::head::Head;

/// What a pack repair did.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct PackRepairReport {
    /// Finished packs read.
    pub packs_checked: u64,
    /// Objects read and verified.
    pub objects_checked: u64,
    /// The bad packs, with what was wrong.
    pub bad_packs: Vec<String>,
    /// Objects fetched from the replica.
    pub objects_fetched: u64,
    /// Their sealed bytes.
    pub bytes_fetched: u64,
    /// Audit records stored again from the index's audit rows (replicas
    /// keep logs of their own, not the source's).
    #[serde(default)]
    pub objects_from_log: u64,
    /// Intact objects of bad packs copied from where they were.
    pub objects_kept: u64,
    /// Bad packs replaced (deleted after their objects were stored again).
    pub packs_replaced: u64,
    /// Objects found intact neither here nor in the replica.
    pub unrecoverable: Vec<String>,
}

impl PackRepairReport {
    /// Whether everything bad was repaired.
    pub fn complete(&self) -> bool {
        self.unrecoverable.is_empty()
    }
}

/// The kinds an object in a pack can be, for one whose table of contents
/// is lost: the seal names its kind, so only the right one opens.
const PACKED_KINDS: [Kind; 7] = [
    Kind::Chunk,
    Kind::Tree,
    Kind::Snapshot,
    Kind::SnapshotRun,
    Kind::SnapshotHold,
    Kind::SnapshotTombstone,
    Kind::Drill,
];

/// Repairs the bad finished packs of `head`'s repository from `replica`.
pub fn repair_packs(head: &Head, replica: &Head) -> Result<PackRepairReport, StoreError> {
    let store = head.repo().store();
    let mut report = PackRepairReport::default();
    let mut rows: HashMap<PackId, Vec<(ChunkId, Location)>> = HashMap::new();
    for (id, loc) in store.index().chunks()? {
        rows.entry(loc.pack).or_default().push((id, loc));
    }
    let mut doom = Doom::default();
    let mut log = None;
    for (pack, record) in store.pack_records() {
        if record.state != PackState::Finished {
            continue;
        }
        report.packs_checked += 1;
        let objects = rows.remove(&pack).unwrap_or_default();
        let (kinds, why) = match store.pack_contents(pack) {
            Ok(toc) => (
                Some(
                    toc.into_iter()
                        .map(|e| (e.id, e.kind))
                        .collect::<HashMap<_, _>>(),
                ),
                None,
            ),
            Err(e) => (None, Some(e.to_string())),
        };
        let mut damaged = Vec::new();
        let mut intact = Vec::new();
        for (id, _) in &objects {
            let kind = kinds.as_ref().and_then(|k| k.get(id)).copied();
            report.objects_checked += 1;
            match kind.map(|k| store.get_sealed(k, id)) {
                Some(Ok(sealed)) => intact.push(sealed),
                _ => damaged.push((*id, kind)),
            }
        }
        let Some(why) = why.or_else(|| {
            (!damaged.is_empty()).then(|| format!("{} object(s) do not verify", damaged.len()))
        }) else {
            continue;
        };
        tracing::warn!(%pack, %why, "bad pack");
        report.bad_packs.push(format!("{pack}: {why}"));
        let mut whole = true;
        for (id, kind) in damaged {
            match fetch(replica.repo().store(), &id, kind) {
                Some(sealed) => {
                    report.objects_fetched += 1;
                    report.bytes_fetched += sealed.bytes.len() as u64;
                    store.copy_object(sealed.kind, id, &sealed.bytes, sealed.raw_len)?;
                }
                // Audit records are not copied to replicas (each keeps its
                // own log); the index's rows still hold every one.
                None if log
                    .get_or_insert_with(|| audit_objects(head))
                    .contains_key(&id) =>
                {
                    let body = &log.as_ref().expect("just filled")[&id];
                    let sealed = store.codec().encode_object(Kind::Audit, &id, body);
                    store.copy_object(Kind::Audit, id, &sealed, body.len() as u32)?;
                    report.objects_from_log += 1;
                }
                None => {
                    whole = false;
                    report
                        .unrecoverable
                        .push(format!("object {id} of pack {pack}"));
                }
            }
        }
        for sealed in intact {
            report.objects_kept += 1;
            store.copy_object(sealed.kind, sealed.id, &sealed.bytes, sealed.raw_len)?;
        }
        if whole {
            doom.packs.insert(pack);
        }
    }
    report.packs_replaced = doom.packs.len() as u64;
    store.commit_dropping(&doom)?;
    Ok(report)
}

/// The audit records of `head`'s log by object id.
fn audit_objects(head: &Head) -> HashMap<ChunkId, Vec<u8>> {
    let codec = head.repo().store().codec();
    Audit::of(head)
        .bodies()
        .unwrap_or_default()
        .into_iter()
        .map(|body| (codec.object_id(Kind::Audit, &body), body))
        .collect()
}

/// Object `id` from the replica, verified, trying every packed kind when
/// its own is not known.
fn fetch(replica: &Store, id: &ChunkId, kind: Option<Kind>) -> Option<Sealed> {
    let kinds: &[Kind] = match &kind {
        Some(k) => std::slice::from_ref(k),
        None => &PACKED_KINDS,
    };
    kinds.iter().find_map(|k| replica.get_sealed(*k, id).ok())
}
