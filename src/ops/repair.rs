//! `strata repair index`: rebuild index.redb from the packs alone.
//!
//! Finished packs are read through their trailer chain; open packs are cut
//! back to their last intact checkpoint (what a crash left after it is an
//! uncommitted tail). The new index is built beside the old one and renamed
//! over it only when complete, so an interrupted repair changes nothing.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::store::chunks::{open_any_pack, open_pack_path, StoreError};
use crate::store::crypto::codec::ChunkCodec;
use crate::store::crypto::slot::Secret;
use crate::store::crypto::Sealer;
use crate::store::format::Kind;
use crate::store::format::{INDEX_FILE, OPEN_DIR, PACKS_DIR};
use crate::store::id::{ChunkId, PackId};
use crate::store::index::{Index, IndexError, Location, PackRecord, PackState};
use crate::store::io::backend::PackBackend;
use crate::store::io::Disk;
use crate::store::pack;
use crate::store::repo::{LockedRepo, RepoError};
use crate::tree::audit::{chain_hash, make, sealed_rows, AuditRecord, Entry, LOST};
use crate::tree::objects::AuditAnchor;

/// What a rebuild found.
#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// Finished packs indexed.
    pub finished_packs: u64,
    /// Open packs indexed.
    pub open_packs: u64,
    /// Chunks indexed.
    pub chunks: u64,
    /// Bytes cut from torn pack tails.
    pub tail_bytes_cut: u64,
    /// Packs that could not be read, with the reason; their chunks are not indexed.
    pub damaged_packs: Vec<String>,
    /// Whether the head and the snapshot list were carried over from the
    /// old index (it opened); otherwise the snapshots were recovered from
    /// their records in the packs and the head starts empty.
    pub head_preserved: bool,
    /// Snapshot records recovered from packs.
    pub snapshots_recovered: u64,
}

/// Why a finished pack is left out of a rebuilt index; the report keeps
/// the text.
#[derive(Debug, thiserror::Error)]
enum DamagedPack {
    /// It does not open, or its length cannot be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Its table of contents does not read.
    #[error(transparent)]
    Toc(#[from] pack::PackError),
    /// It ends without a final checkpoint.
    #[error("last checkpoint is not marked final")]
    NotFinal,
}

fn io_err(op: &'static str, path: &str) -> impl FnOnce(std::io::Error) -> RepoError {
    let path = path.to_owned();
    move |source| RepoError::Io { op, path, source }
}

/// Every finished pack (from the backend) and every pack under `open/`.
pub fn list_packs(
    disk: &dyn Disk,
    backend: &dyn PackBackend,
) -> Result<(Vec<PackId>, Vec<PackId>), RepoError> {
    let finished = backend.list().map_err(io_err("list", PACKS_DIR))?;
    let open = list_or_empty(disk, OPEN_DIR)?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    Ok((finished, open))
}

/// Names in `dir`; a missing directory holds nothing (copies of a
/// repository, e.g. through git or some sync tools, drop empty directories).
pub fn list_or_empty(disk: &dyn Disk, dir: &str) -> Result<Vec<String>, RepoError> {
    match disk.list(dir) {
        Ok(names) => Ok(names),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("list", dir)(e)),
    }
}

/// Rebuilds the index of a repository from its packs alone (`strata
/// repair index`; a bucket's from the bucket), with the key `secret` opens.
pub fn repair_index(repo: &LockedRepo, secret: Option<&Secret>) -> Result<RepairReport, RepoError> {
    let keys = repo.unlock_without_index(secret)?;
    let codec = keys.codec()?;
    let backend = crate::store::io::pack_backend(repo.disk());
    rebuild_index(repo.disk().as_ref(), backend.as_ref(), &codec, || {
        keys.index_sealer()
    })
}

/// Rebuilds the index; `index_sealer` is called once the old index (if any)
/// has been opened, which takes the repository lock.
pub fn rebuild_index(
    disk: &dyn Disk,
    backend: &dyn PackBackend,
    codec: &ChunkCodec,
    index_sealer: impl Fn() -> Result<Sealer, RepoError>,
) -> Result<RepairReport, RepoError> {
    let blob_sealer = codec.sealer();
    // Hold the old index open (if it opens) so no other process uses the
    // repository while we replace it.
    let _old = if disk.exists(INDEX_FILE) {
        match Index::open(
            disk.index_backend(INDEX_FILE)
                .map_err(io_err("open", INDEX_FILE))?,
            index_sealer()?,
        ) {
            Ok(index) => Some(index),
            Err(IndexError::Locked) => return Err(IndexError::Locked.into()),
            Err(e) => {
                tracing::warn!(error = %e, "old index does not open; replacing it");
                None
            }
        }
    } else {
        None
    };
    let tmp = format!("{INDEX_FILE}.rebuild");
    if disk.exists(&tmp) {
        disk.remove(&tmp).map_err(io_err("remove", &tmp))?;
    }
    let mut report = RepairReport::default();
    let mut chunks: HashMap<ChunkId, Location> = HashMap::new();
    let mut packs = Vec::new();
    let (finished, open) = list_packs(disk, backend)?;
    let mut snapshot_objects = Vec::new();
    let mut add = |id: PackId, entries: Vec<pack::TocEntry>| {
        for e in entries.into_iter() {
            if matches!(
                e.kind,
                Kind::Snapshot
                    | Kind::SnapshotRun
                    | Kind::SnapshotHold
                    | Kind::SnapshotTombstone
                    | Kind::Drill
                    | Kind::Audit
            ) {
                snapshot_objects.push((id, e));
            }
            chunks.entry(e.id).or_insert(Location {
                pack: id,
                offset: e.offset,
                len: e.len,
                raw_len: e.raw_len,
            });
        }
    };
    for id in finished {
        let result = backend.open(id).map_err(DamagedPack::from).and_then(|f| {
            let len = f.len()?;
            let (entries, done) = pack::read_toc(f.as_ref(), blob_sealer, id, len)?;
            if !done {
                return Err(DamagedPack::NotFinal);
            }
            Ok((entries, len))
        });
        match result {
            Ok((entries, len)) => {
                add(id, entries);
                packs.push((
                    id,
                    PackRecord {
                        state: PackState::Finished,
                        len,
                    },
                ));
                report.finished_packs += 1;
            }
            Err(e) => report.damaged_packs.push(format!("{id}: {e}")),
        }
    }
    for id in open {
        let path = open_pack_path(id);
        let f = disk.open(&path, false).map_err(io_err("open", &path))?;
        let len = f.len().map_err(io_err("stat", &path))?;
        match pack::find_last_checkpoint(f.as_ref(), blob_sealer, id) {
            Ok(Some(end)) => {
                if end < len {
                    f.set_len(end).map_err(io_err("truncate", &path))?;
                    f.sync().map_err(io_err("sync", &path))?;
                    report.tail_bytes_cut += len - end;
                }
                let (entries, _) =
                    pack::read_toc(f.as_ref(), blob_sealer, id, end).map_err(StoreError::from)?;
                add(id, entries);
                packs.push((
                    id,
                    PackRecord {
                        state: PackState::Open,
                        len: end,
                    },
                ));
                report.open_packs += 1;
            }
            // No checkpoint: nothing in it was ever acknowledged.
            Ok(None) => {}
            Err(e) => report.damaged_packs.push(format!("{id}: {e}")),
        }
    }
    report.chunks = chunks.len() as u64;
    let rows: Vec<_> = chunks.into_iter().collect();
    {
        let index = Index::open(
            disk.index_backend(&tmp).map_err(io_err("create", &tmp))?,
            index_sealer()?,
        )?;
        for batch in rows.chunks(50_000) {
            index.commit(batch, &[])?;
        }
        index.commit(&[], &packs)?;
        match &_old {
            Some(old) => {
                copy_layer_tables(old.database(), index.database())?;
                report.head_preserved = true;
            }
            None => {
                report.snapshots_recovered = recover_snapshots(
                    disk,
                    backend,
                    codec,
                    &index_sealer()?,
                    &snapshot_objects,
                    index.database(),
                )?;
            }
        }
    }
    drop(_old);
    disk.rename(&tmp, INDEX_FILE)
        .map_err(io_err("rename", &tmp))?;
    disk.sync_dir("").map_err(io_err("sync", "."))?;
    Ok(report)
}

fn db_err(e: impl Into<redb::Error>) -> RepoError {
    RepoError::Index(crate::store::index::db_err(e))
}

/// Copies the head's tables and the snapshot list, row by row (values stay
/// sealed: they are bound to their keys, not to the file).
fn copy_layer_tables(from: &redb::Database, to: &redb::Database) -> Result<(), RepoError> {
    use crate::tree::head::records::{
        AUDIT, DIRENTS, DRILLS, EXTENTS, HOLDS, INODES, LEFTOVERS, META, PARENTS, RUNS, SNAPSHOTS,
        TOMBSTONES, UNLOADED, XATTRS,
    };
    use redb::{ReadableDatabase, ReadableTable};
    let rt = from.begin_read().map_err(db_err)?;
    let wt = to.begin_write().map_err(db_err)?;
    macro_rules! copy {
        ($def:expr) => {
            if let Ok(src) = rt.open_table($def) {
                let mut dst = wt.open_table($def).map_err(db_err)?;
                for row in src.iter().map_err(db_err)? {
                    let (k, v) = row.map_err(db_err)?;
                    dst.insert(k.value(), v.value()).map_err(db_err)?;
                }
            }
        };
    }
    copy!(INODES);
    copy!(DIRENTS);
    copy!(PARENTS);
    copy!(XATTRS);
    copy!(EXTENTS);
    copy!(META);
    copy!(SNAPSHOTS);
    copy!(RUNS);
    copy!(HOLDS);
    copy!(TOMBSTONES);
    copy!(DRILLS);
    // As it is: a repair must not make a tampered log look intact.
    copy!(AUDIT);
    copy!(UNLOADED);
    copy!(LEFTOVERS);
    wt.commit().map_err(db_err)
}

/// Re-indexes snapshot records found in packs, with the newest revision
/// of each one's backup-run record, every legal-hold event, every
/// tombstone and every drill; a record with a tombstone stays forgotten.
/// Returns how many snapshots.
fn recover_snapshots(
    disk: &dyn Disk,
    backend: &dyn PackBackend,
    codec: &ChunkCodec,
    index_sealer: &Sealer,
    objects: &[(PackId, pack::TocEntry)],
    to: &redb::Database,
) -> Result<u64, RepoError> {
    use crate::tree::head::records::{
        seal, AUDIT, DRILLS, HOLDS, META, RUNS, SNAPSHOTS, TOMBSTONES,
    };
    use crate::tree::objects::{SnapshotRecord, SnapshotRow};
    use crate::tree::snapshot::drills::DrillRecord;
    use crate::tree::snapshot::forget::Tombstone;
    use crate::tree::snapshot::holds::{hold_key, HoldEvent};
    use crate::tree::snapshot::runs::StoredRun;
    let mut rows = Vec::new();
    let mut runs: HashMap<u64, StoredRun> = HashMap::new();
    let mut holds: Vec<HoldEvent> = Vec::new();
    let mut tombstones: HashMap<u64, Tombstone> = HashMap::new();
    let mut drills: Vec<DrillRecord> = Vec::new();
    let mut audit: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    for (pack_id, e) in objects {
        let name = pack_id.to_string();
        let file = open_any_pack(disk, backend, *pack_id).map_err(io_err("open pack", &name))?;
        let sealed = pack::read_object(file.as_ref(), *pack_id, e.offset, e.len)
            .map_err(StoreError::from)?;
        let Ok(plain) =
            codec.decode_object(e.kind, &e.id, &sealed, crate::store::format::MAX_OBJECT_LEN)
        else {
            tracing::warn!(object = %e.id.short(), "snapshot record does not verify; skipped");
            continue;
        };
        if e.kind == Kind::SnapshotTombstone {
            if let Ok(t) = postcard::from_bytes::<Tombstone>(plain.as_slice()) {
                tombstones.insert(t.seq, t);
            }
            continue;
        }
        if e.kind == Kind::Audit {
            if let Ok(r) = AuditRecord::decode(plain.as_slice()) {
                audit
                    .entry(r.n)
                    .or_default()
                    .push(plain.as_slice().to_vec());
            }
            continue;
        }
        if e.kind == Kind::Drill {
            if let Ok(d) = DrillRecord::decode(plain.as_slice()) {
                drills.push(d);
            }
            continue;
        }
        if e.kind == Kind::SnapshotHold {
            if let Ok(hold) = postcard::from_bytes::<HoldEvent>(plain.as_slice()) {
                holds.push(hold);
            }
            continue;
        }
        if e.kind == Kind::SnapshotRun {
            if let Ok(run) = postcard::from_bytes::<StoredRun>(plain.as_slice()) {
                let newer = runs
                    .get(&run.seq)
                    .is_none_or(|old| old.run.revision < run.run.revision);
                if newer {
                    runs.insert(run.seq, run);
                }
            }
            continue;
        }
        let Ok(record) = SnapshotRecord::decode(plain.as_slice()) else {
            continue;
        };
        rows.push(SnapshotRow { id: e.id.0, record });
    }
    let forgotten =
        |seq: u64, id: &[u8; 32]| tombstones.get(&seq).is_some_and(|t| t.snapshot == *id);
    rows.retain(|r| !forgotten(r.record.seq, &r.id));
    let wt = to.begin_write().map_err(db_err)?;
    {
        let mut table = wt.open_table(SNAPSHOTS).map_err(db_err)?;
        for row in &rows {
            let seq = row.record.seq;
            let v = row.seal(index_sealer, seq);
            table.insert(seq, v.as_slice()).map_err(db_err)?;
        }
        let mut run_table = wt.open_table(RUNS).map_err(db_err)?;
        for row in &rows {
            let seq = row.record.seq;
            if let Some(run) = runs.get(&seq).filter(|r| r.snapshot == row.id) {
                let v = seal(
                    index_sealer,
                    Kind::IndexSnapshotRun,
                    &seq.to_le_bytes(),
                    run,
                );
                run_table.insert(seq, v.as_slice()).map_err(db_err)?;
            }
        }
        let mut hold_table = wt.open_table(HOLDS).map_err(db_err)?;
        for hold in &holds {
            let of_row = rows
                .iter()
                .any(|r| r.record.seq == hold.seq && r.id == hold.snapshot);
            if of_row || forgotten(hold.seq, &hold.snapshot) {
                let key = hold_key(hold.seq, hold.revision);
                let v = seal(index_sealer, Kind::IndexSnapshotHold, &key, hold);
                hold_table
                    .insert((hold.seq, hold.revision), v.as_slice())
                    .map_err(db_err)?;
            }
        }
        let mut tombstone_table = wt.open_table(TOMBSTONES).map_err(db_err)?;
        for t in tombstones.values() {
            let v = seal(
                index_sealer,
                Kind::IndexSnapshotTombstone,
                &t.seq.to_le_bytes(),
                t,
            );
            tombstone_table
                .insert(t.seq, v.as_slice())
                .map_err(db_err)?;
        }
        let mut drill_table = wt.open_table(DRILLS).map_err(db_err)?;
        for d in &drills {
            let v = seal(
                index_sealer,
                Kind::IndexDrill,
                &d.number.to_le_bytes(),
                &d.encode(),
            );
            drill_table.insert(d.number, v.as_slice()).map_err(db_err)?;
        }
        let mut audit_table = wt.open_table(AUDIT).map_err(db_err)?;
        let chain = audit_chain(audit);
        for (n, body) in &chain {
            for (k, v) in sealed_rows(index_sealer, *n, body) {
                audit_table.insert(k, v.as_slice()).map_err(db_err)?;
            }
        }
        let anchored = rows.iter().filter_map(|r| r.record.audit.map(|a| a.n));
        let (n, body) = repaired(&chain, anchored);
        for (k, v) in sealed_rows(index_sealer, n, &body) {
            audit_table.insert(k, v.as_slice()).map_err(db_err)?;
        }
        let max = rows
            .iter()
            .map(|r| r.record.seq)
            .chain(tombstones.keys().copied())
            .max()
            .unwrap_or(0);
        wt.open_table(META)
            .map_err(db_err)?
            .insert("snapshot_seq", max)
            .map_err(db_err)?;
        let drills_max = drills.iter().map(|d| d.number).max().unwrap_or(0);
        wt.open_table(META)
            .map_err(db_err)?
            .insert("drill_seq", drills_max)
            .map_err(db_err)?;
    }
    wt.commit().map_err(db_err)?;
    Ok(rows.len() as u64)
}

/// The record a rebuild from packs appends to the log it recovered: who
/// repaired, and which numbers the packs did not hold (the records of
/// failed requests live in the index only; so may a snapshot's anchor
/// name one), so `strata audit verify` tells them from removed ones.
fn repaired(chain: &[(u64, Vec<u8>)], anchored: impl Iterator<Item = u64>) -> (u64, Vec<u8>) {
    let found: std::collections::BTreeSet<u64> = chain.iter().map(|(n, _)| *n).collect();
    let last = found
        .last()
        .copied()
        .unwrap_or(0)
        .max(anchored.max().unwrap_or(0));
    let lost: Vec<u64> = (1..=last).filter(|n| !found.contains(n)).collect();
    let mut details = serde_json::Map::new();
    details.insert(LOST.into(), lost.into());
    // Records after this one, if any, were of operations that changed
    // nothing: nothing in the packs tells how many.
    details.insert("packs_end".into(), last.into());
    let entry = Entry {
        op: "repair_index".into(),
        via: "repository".into(),
        details,
        failed: None,
        changed_nothing: false,
    };
    // The chain goes on from the last record recovered.
    let prev = chain.last().map_or([0; 32], |(_, b)| chain_hash(b));
    // SAFETY: getuid, getgid cannot fail.
    let caller = unsafe {
        crate::tree::types::Caller {
            uid: libc::getuid(),
            gid: libc::getgid(),
            pid: std::process::id(),
        }
    };
    let (record, body) = make(
        AuditAnchor {
            n: last,
            hash: prev,
        },
        caller,
        entry,
    );
    (record.n, body)
}

/// The audit log as the packs hold it, by number: where one number has
/// several records (a log rewritten by someone holding the key leaves the
/// originals in the packs), the one that names its predecessor's hash, so
/// `strata audit verify` judges the chain the log was written as.
fn audit_chain(found: BTreeMap<u64, Vec<Vec<u8>>>) -> Vec<(u64, Vec<u8>)> {
    let mut prev = [0u8; 32];
    let mut out = Vec::new();
    for (n, mut bodies) in found {
        let follows =
            |b: &Vec<u8>| AuditRecord::decode(b).is_ok_and(|r| r.prev == hex::encode(prev));
        let pick = bodies.iter().position(follows).unwrap_or(0);
        let body = bodies.swap_remove(pick);
        prev = chain_hash(&body);
        out.push((n, body));
    }
    out
}
