//! Snapshots: immutable Merkle trees of the head, like git and restic.
//!
//! A snapshot is a record (time, label, root, the previous record's id)
//! stored as an object in a pack and as a row of the `snapshots` table. The
//! root names a tree object; a tree lists a directory's entries with their
//! attributes, xattrs, file extents and a content digest, and names its
//! subdirectories' trees ([`crate::tree::objects`]). Every head directory
//! remembers its tree id from the last snapshot until something below it
//! changes, so a snapshot serializes only changed directories and their
//! ancestors.
//!
//! The whole tree is built in one write transaction of the index, so no
//! change can slip between a directory's serialization and its clean mark;
//! the record and trees become durable together with the durable commit
//! that [`Snapshots::take`] makes before returning, under the head's commit
//! serialization ([`Head::serial`]).
//!
//! A sibling of the head, not part of it: [`Snapshots`] works through the
//! head's public API and its transactions.

pub mod drills;
pub mod forget;
pub mod holds;
pub mod live;
pub mod receive;
pub mod runs;
pub mod scrub;

use std::collections::BTreeMap;

use redb::ReadableTable;

use crate::store::format::Kind;
use crate::store::id::ChunkId;
use crate::tree::head::records::{self, InodeRecord};
use crate::tree::head::txn::{Reader, Write};
use crate::tree::head::Head;
use crate::tree::objects::{
    content_digest, SnapshotRecord, SnapshotRow, SnapshotStats, Tree, TreeEntry,
};
use crate::tree::record::RunRecord;
use crate::tree::types::{Caller, Fault, FileKind, FsError, InodeNo, Timestamp};
use runs::{put_run, StoredRun};

/// Bits of a snapshot inode number that hold the head inode number.
pub const SNAPSHOT_INO_BITS: u32 = 40;

/// The inode number under which head inode `ino` appears in snapshot `seq`:
/// unique across snapshots, shared by hard links within one.
pub fn snapshot_ino(seq: u64, ino: u64) -> u64 {
    (seq << SNAPSHOT_INO_BITS) | (ino & ((1 << SNAPSHOT_INO_BITS) - 1))
}

/// What a reset did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ResetOutcome {
    /// The snapshot head/ now holds.
    pub seq: u64,
    /// Its directory name.
    pub name: String,
    /// Inodes the head held before, now discarded (unless the snapshot
    /// has them too).
    pub discarded_inodes: u64,
}

/// The snapshots of one head: taking, listing, reading, verifying them,
/// their run records, and resetting the head to one.
#[derive(Clone, Copy)]
pub struct Snapshots<'h> {
    head: &'h Head,
}

impl<'h> Snapshots<'h> {
    /// The snapshots of `head`.
    pub fn of(head: &'h Head) -> Snapshots<'h> {
        Snapshots { head }
    }

    /// Takes a snapshot of the head: flushes pending writes, serializes the
    /// changed directories, records the snapshot and makes it durable.
    pub fn take(&self, caller: Caller, label: Option<&str>) -> Result<SnapshotRecord, FsError> {
        self.take_run(caller, label, None)
    }

    /// Takes a snapshot as [`Snapshots::take`] does, stored together with
    /// the record of the backup run that made it (in one transaction, so
    /// `latest` never points at it before its status is known).
    pub fn take_run(
        &self,
        caller: Caller,
        label: Option<&str>,
        run: Option<&RunRecord>,
    ) -> Result<SnapshotRecord, FsError> {
        let _op = caller.span("snapshot");
        let head = self.head;
        head.flush_all(caller)?;
        let serial = head.serial();
        // A snapshot's directory name is its time to the second: a second
        // snapshot within one second of the newest (kept or forgotten)
        // waits for the next, so names never collide, are never reused,
        // and always tell the truth.
        if let Some((_, _, time)) = serial.transact(|w| forget::newest_link(w))? {
            wait_past_second(time.secs);
        }
        let store = head.repo().store();
        let id_key = head.repo().keys().id;
        let record = serial.transact(|w| {
            let mut stats = SnapshotStats::default();
            let root_rec = w.get(InodeNo::ROOT)?;
            let subtree = build_tree(head, w, InodeNo::ROOT, &root_rec, &mut stats)?;
            let mut root = entry_of(w, &id_key, b"", InodeNo::ROOT, &root_rec)?;
            root.subtree = Some(subtree);
            // Sequence numbers come from a counter, so a forgotten
            // snapshot's number is never given again; `prev` chains to the
            // newest link, kept or forgotten.
            let seq = w.counter("snapshot_seq")? + 1;
            w.set_counter("snapshot_seq", seq)?;
            let prev = forget::newest_link(w)?.map(|(_, id, _)| id);
            let record = SnapshotRecord {
                seq,
                time: Timestamp::now(),
                label: label.map(str::to_owned),
                root,
                prev,
                caller: (caller.uid, caller.gid, caller.pid),
                stats,
                audit: Some(crate::tree::audit::head(w)?),
            };
            let bytes = record.encode();
            let (id, _) = store.put_object(Kind::Snapshot, &bytes)?;
            let row = SnapshotRow {
                id: id.0,
                record: record.clone(),
            };
            let v = row.seal(w.sealer(), seq);
            w.snapshots_mut()?
                .insert(seq, v.as_slice())
                .map_err(records::db)?;
            if let Some(run) = run {
                put_run(w, store, &id.0, seq, run)?;
            }
            Ok(record)
        })?;
        serial.commit()?;
        // A bucket's snapshot is in the bucket once taken: the open pack,
        // which holds its new trees and its record, is finished and sent.
        if store.backend().is_remote() {
            store.flush_pack()?;
        }
        head.counters.last_snapshot_dirs.store(
            record.stats.dirs_serialized,
            std::sync::atomic::Ordering::Relaxed,
        );
        drop(serial);
        // The snapshot stands whatever happens here: a catalog that did
        // not catch up now does before its next query.
        if let Err(e) = crate::tree::catalog::Catalog::of(head).catch_up() {
            tracing::warn!(seq = record.seq, error = %e, "the catalog did not take the snapshot in; the next query will");
        }
        Ok(record)
    }

    /// All snapshots, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotRow>, FsError> {
        let r = self.head.rtx()?;
        let mut out = Vec::new();
        for row in r.snapshots()?.iter().map_err(records::db)? {
            let (k, v) = row.map_err(records::db)?;
            out.push(SnapshotRow::open(r.sealer(), k.value(), v.value())?);
        }
        Ok(out)
    }

    /// The newest snapshot, if any.
    pub fn last(&self) -> Result<Option<SnapshotRow>, FsError> {
        self.head.rtx()?.last_snapshot()
    }

    /// One snapshot by sequence number.
    pub fn by_seq(&self, seq: u64) -> Result<SnapshotRow, FsError> {
        let r = self.head.rtx()?;
        let v = r
            .snapshots()?
            .get(seq)
            .map_err(records::db)?
            .ok_or(FsError::NotFound)?;
        SnapshotRow::open(r.sealer(), seq, v.value())
    }

    /// Checks the snapshot chain ([`Snapshots::verify_chain`]) and every
    /// snapshot's structure: its record is indexed, every tree below its
    /// root opens, every chunk a file refers to is indexed, and every
    /// file's content digest matches its extents. Returns the problems.
    pub fn verify(&self, caller: Caller) -> Result<Vec<String>, FsError> {
        let _op = caller.span("verify_snapshots");
        let mut errors = self.verify_chain()?;
        let index = self.head.repo().store().index();
        let indexed = |id: &[u8; 32]| {
            index
                .chunk(&ChunkId(*id))
                .map(|l| l.is_some())
                .map_err(|e| FsError::Io(Fault::of(e)))
        };
        let id_key = self.head.repo().keys().id;
        let mut seen = std::collections::HashSet::new();
        for row in self.list()? {
            let seq = row.record.seq;
            if !indexed(&row.id)? {
                errors.push(format!(
                    "snapshot {seq}: its record {} is not in the index",
                    ChunkId(row.id)
                ));
            }
            let Some(root) = row.record.root.subtree else {
                errors.push(format!("snapshot {seq}: the record names no root tree"));
                continue;
            };
            let mut stack = vec![root];
            while let Some(t) = stack.pop() {
                if !seen.insert(t) {
                    continue;
                }
                let tree = match Tree::load(self.head.repo().store(), &t) {
                    Ok(tree) => tree,
                    Err(e) => {
                        errors.push(format!("snapshot {seq}: tree {}: {e}", ChunkId(t)));
                        continue;
                    }
                };
                for e in tree.entries {
                    stack.extend(e.subtree);
                    for (_, chunk, _) in &e.extents {
                        if !indexed(chunk)? {
                            errors.push(format!(
                                "snapshot {seq}: chunk {} of inode {} is not in the index",
                                ChunkId(*chunk),
                                e.ino
                            ));
                        }
                    }
                    if e.meta.kind == FileKind::File
                        && content_digest(&id_key, e.meta.size, &e.extents) != e.digest
                    {
                        errors.push(format!("snapshot {seq}: inode {}: the content digest does not match the extents", e.ino));
                    }
                }
            }
        }
        Ok(errors)
    }

    /// Reads bytes of a file in a snapshot.
    pub fn read_file(
        &self,
        caller: Caller,
        entry: &TreeEntry,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, FsError> {
        let _op = caller.span("read_snapshot_file");
        let end = offset.saturating_add(size as u64).min(entry.meta.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let first = entry
            .extents
            .partition_point(|&(o, _, l)| o.saturating_add(l as u64) <= offset);
        for &(o, chunk, l) in &entry.extents[first..] {
            if o >= end {
                break;
            }
            let data = self
                .head
                .reader()
                .chunk(self.head.repo().store(), &ChunkId(chunk))?;
            if data.as_slice().len() != l as usize {
                return Err(FsError::Corrupt(Fault::new(format!(
                    "chunk {} is not the length its tree says",
                    ChunkId(chunk)
                ))));
            }
            let a = offset.max(o);
            let b = end.min(o + l as u64);
            out[(a - offset) as usize..(b - offset) as usize]
                .copy_from_slice(&data.as_slice()[(a - o) as usize..(b - o) as usize]);
        }
        Ok(out)
    }

    /// Replaces the run record of snapshot `seq` with a newer revision
    /// (after validation), durably.
    pub fn set_run(&self, caller: Caller, seq: u64, run: &RunRecord) -> Result<(), FsError> {
        let _op = caller.span("set_run");
        let row = self.by_seq(seq)?;
        if let Some(old) = self.runs()?.get(&seq) {
            if old.run != run.run || old.revision >= run.revision {
                return Err(FsError::Invalid(
                    "a run record replaces only an older revision of the same run",
                ));
            }
        }
        let store = self.head.repo().store();
        self.head
            .transact(|w| put_run(w, store, &row.id, seq, run))?;
        self.head.commit()
    }

    /// Run records by snapshot sequence number (snapshots taken outside a
    /// backup run have none).
    pub fn runs(&self) -> Result<BTreeMap<u64, RunRecord>, FsError> {
        let r = self.head.rtx()?;
        let mut out = BTreeMap::new();
        for row in r.runs()?.iter().map_err(records::db)? {
            let (k, v) = row.map_err(records::db)?;
            let stored: StoredRun = records::open(
                r.sealer(),
                Kind::IndexSnapshotRun,
                &k.value().to_le_bytes(),
                v.value(),
            )?;
            out.insert(k.value(), stored.run);
        }
        Ok(out)
    }

    /// Makes head/ snapshot `seq`'s tree, discarding everything written
    /// since (`strata head reset`); durable when it returns. Refused with
    /// [`FsError::Busy`] while a file in head/ is open; see [`Head::reset_to`].
    pub fn reset_head(&self, caller: Caller, seq: u64) -> Result<ResetOutcome, FsError> {
        let row = self.by_seq(seq)?;
        let discarded_inodes = self.head.reset_to(caller, &row.record.root)?;
        tracing::info!(
            seq,
            snapshot = %row.record.name(),
            discarded_inodes,
            uid = caller.uid,
            pid = caller.pid,
            "head reset to a snapshot"
        );
        Ok(ResetOutcome {
            seq,
            name: row.record.name(),
            discarded_inodes,
        })
    }
}

/// Sleeps until the wall clock is past second `secs`.
fn wait_past_second(secs: i64) {
    loop {
        let now = Timestamp::now();
        if now.secs > secs {
            return;
        }
        let left = 1_000_000_000 - u64::from(now.nanos);
        std::thread::sleep(std::time::Duration::from_nanos(left.max(1_000_000)));
    }
}

fn entry_of(
    w: &Write<'_>,
    id_key: &[u8; 32],
    name: &[u8],
    ino: InodeNo,
    rec: &InodeRecord,
) -> Result<TreeEntry, FsError> {
    let extents: Vec<(u64, [u8; 32], u32)> = if rec.meta.kind == FileKind::File {
        w.extents(ino, 0, rec.meta.size)?
            .into_iter()
            .filter(|&(o, _, _)| o < rec.meta.size)
            .map(|(o, c, l)| (o, c.0, l))
            .collect()
    } else {
        Vec::new()
    };
    Ok(TreeEntry {
        name: name.to_vec(),
        ino: ino.0,
        meta: rec.meta.clone(),
        target: rec.target.clone(),
        xattrs: w
            .xattrs(ino)?
            .into_iter()
            .map(|x| (x.name, x.value))
            .collect(),
        subtree: None,
        digest: if rec.meta.kind == FileKind::File {
            content_digest(id_key, rec.meta.size, &extents)
        } else {
            [0; 32]
        },
        extents,
    })
}

/// Serializes directory `dir` (and its changed subdirectories), marks it
/// clean, and returns its tree id.
fn build_tree(
    head: &Head,
    w: &mut Write<'_>,
    dir: InodeNo,
    rec: &InodeRecord,
    stats: &mut SnapshotStats,
) -> Result<[u8; 32], FsError> {
    if let Some(id) = rec.clean_tree {
        stats.dirs_reused += 1;
        return Ok(id);
    }
    let id_key = head.repo().keys().id;
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let batch = w.dirents_after(dir, after, 1024)?;
        let Some(&(last, _)) = batch.last() else {
            break;
        };
        after = Some(last);
        for (_, d) in batch {
            let child = InodeNo(d.ino);
            let child_rec = w.get(child)?;
            let mut entry = entry_of(w, &id_key, &d.name, child, &child_rec)?;
            if child_rec.meta.kind == FileKind::Dir {
                entry.subtree = Some(build_tree(head, w, child, &child_rec, stats)?);
            }
            entries.push(entry);
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let bytes = postcard::to_allocvec(&Tree { entries }).expect("tree serializes");
    let (id, _) = head.repo().store().put_object(Kind::Tree, &bytes)?;
    let mut rec = w.get(dir)?;
    rec.clean_tree = Some(id.0);
    w.put(dir, &rec)?;
    stats.dirs_serialized += 1;
    Ok(id.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_inode_numbers_encode_the_snapshot() {
        assert_ne!(
            snapshot_ino(1, 42),
            snapshot_ino(2, 42),
            "one file in two snapshots is not a hard link"
        );
        assert_eq!(snapshot_ino(3, 42) >> SNAPSHOT_INO_BITS, 3);
        assert_eq!(snapshot_ino(3, 42) & ((1 << SNAPSHOT_INO_BITS) - 1), 42);
    }
}
