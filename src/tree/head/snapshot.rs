//! Snapshots: immutable Merkle trees of the head, like git and restic.
//!
//! A snapshot is a record (time, label, root, the previous record's id)
//! stored as an object in a pack and as a row of the `snapshots` table. The
//! root names a tree object; a tree lists a directory's entries with their
//! attributes, xattrs, file extents and a content digest, and names its
//! subdirectories' trees. Every head directory remembers its tree id from
//! the last snapshot until something below it changes, so a snapshot
//! serializes only changed directories and their ancestors.
//!
//! The whole tree is built in one write transaction of the index, so no
//! change can slip between a directory's serialization and its clean mark;
//! the record and trees become durable together with the next durable
//! commit, which [`Head::snapshot`] makes before returning.

use serde::{Deserialize, Serialize};

use redb::ReadableTable;

use super::records::{self, InodeRecord};
use super::runs::put_run;
use super::txn::{Reader, Write};
use super::types::{Caller, FileKind, FsError, InodeNo, Meta, Timestamp};
use super::Head;
use crate::store::format::Kind;
use crate::store::id::ChunkId;
use crate::sys::sync::Recover;
use crate::tree::record::RunRecord;

/// Bits of a snapshot inode number that hold the head inode number.
pub const SNAPSHOT_INO_BITS: u32 = 40;

/// The inode number under which head inode `ino` appears in snapshot `seq`:
/// unique across snapshots, shared by hard links within one.
pub fn snapshot_ino(seq: u64, ino: u64) -> u64 {
    (seq << SNAPSHOT_INO_BITS) | (ino & ((1 << SNAPSHOT_INO_BITS) - 1))
}

/// One entry of a tree: everything a restore needs to recreate it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Name in its directory (empty for a snapshot's root).
    pub name: Vec<u8>,
    /// Head inode number at snapshot time; equal for hard links.
    pub ino: u64,
    /// Kind, permissions, owner, size, times.
    pub meta: Meta,
    /// Symlink target.
    pub target: Vec<u8>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A directory's tree.
    pub subtree: Option<[u8; 32]>,
    /// A file's content: (offset, chunk, length); gaps are holes.
    pub extents: Vec<(u64, [u8; 32], u32)>,
    /// Keyed digest of a file's size and extents, to verify a restore end to end.
    pub digest: [u8; 32],
}

/// A directory's entries, sorted by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// The entries.
    pub entries: Vec<TreeEntry>,
}

/// Counts of one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// Directories serialized (changed since the last snapshot).
    pub dirs_serialized: u64,
    /// Directories reused from the last snapshot.
    pub dirs_reused: u64,
}

/// A snapshot record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Sequence number, from 1; never reused.
    pub seq: u64,
    /// When it was taken (UTC).
    pub time: Timestamp,
    /// Optional label (e.g. "nightly").
    pub label: Option<String>,
    /// The root directory.
    pub root: TreeEntry,
    /// Id of the previous snapshot record: the records form a hash chain.
    pub prev: Option<[u8; 32]>,
    /// Who asked for it.
    pub caller: (u32, u32, u32),
    /// Counts.
    pub stats: SnapshotStats,
}

/// A stored record with its object id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRow {
    /// Id of the record object in the packs.
    pub id: [u8; 32],
    /// The record.
    pub record: SnapshotRecord,
}

impl SnapshotRecord {
    /// The snapshot's directory name: its UTC time, ISO 8601, to the second.
    pub fn name(&self) -> String {
        let t =
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.time.secs.max(0) as u64);
        humantime::format_rfc3339_seconds(t).to_string()
    }
}

impl Head {
    /// Takes a snapshot of the head: flushes pending writes, serializes the
    /// changed directories, records the snapshot and makes it durable.
    pub fn snapshot(&self, caller: Caller, label: Option<&str>) -> Result<SnapshotRecord, FsError> {
        self.snapshot_run(caller, label, None)
    }

    /// Takes a snapshot as [`Head::snapshot`] does, stored together with
    /// the record of the backup run that made it (in one transaction, so
    /// `latest` never points at it before its status is known).
    pub fn snapshot_run(
        &self,
        caller: Caller,
        label: Option<&str>,
        run: Option<&RunRecord>,
    ) -> Result<SnapshotRecord, FsError> {
        let _op = caller.span("snapshot");
        self.flush_all(caller)?;
        let _serial = self.commit_lock.locked();
        // A snapshot's directory name is its time to the second: a second
        // snapshot within one second waits for the next, so names never
        // collide and always tell the truth.
        if let Some(last) = self.last_snapshot()? {
            wait_past_second(last.record.time.secs);
        }
        let store = self.repo.store();
        let id_key = self.repo.keys().id;
        let record = self.wtx_no_commit(|w| {
            let mut stats = SnapshotStats::default();
            let root_rec = w.get(InodeNo::ROOT)?;
            let subtree = build_tree(self, w, InodeNo::ROOT, &root_rec, &mut stats)?;
            let mut root = entry_of(w, &id_key, b"", InodeNo::ROOT, &root_rec)?;
            root.subtree = Some(subtree);
            // Sequence numbers come from a counter, so a deleted snapshot's
            // number is never given again; `prev` chains to the newest record.
            let seq = w.counter("snapshot_seq")? + 1;
            w.set_counter("snapshot_seq", seq)?;
            let last = w
                .snapshots()?
                .last()
                .map_err(records::db)?
                .map(|(k, v)| (k.value(), v.value().to_vec()));
            let prev = match last {
                Some((n, v)) => Some(
                    records::open::<SnapshotRow>(
                        w.sealer(),
                        Kind::IndexSnapshot,
                        &n.to_le_bytes(),
                        &v,
                    )?
                    .id,
                ),
                None => None,
            };
            let record = SnapshotRecord {
                seq,
                time: Timestamp::now(),
                label: label.map(str::to_owned),
                root,
                prev,
                caller: (caller.uid, caller.gid, caller.pid),
                stats,
            };
            let bytes = postcard::to_allocvec(&record).expect("record serializes");
            let (id, _) = store.put_object(Kind::Snapshot, &bytes)?;
            let row = SnapshotRow {
                id: id.0,
                record: record.clone(),
            };
            let v = records::seal(w.sealer(), Kind::IndexSnapshot, &seq.to_le_bytes(), &row);
            w.snapshots_mut()?
                .insert(seq, v.as_slice())
                .map_err(records::db)?;
            if let Some(run) = run {
                put_run(w, store, &id.0, seq, run)?;
            }
            Ok(record)
        })?;
        self.commit_locked()?;
        self.counters.last_snapshot_dirs.store(
            record.stats.dirs_serialized,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(record)
    }

    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotRow>, FsError> {
        let r = self.rtx()?;
        let mut out = Vec::new();
        for row in r.snapshots()?.iter().map_err(records::db)? {
            let (k, v) = row.map_err(records::db)?;
            out.push(records::open(
                r.sealer(),
                Kind::IndexSnapshot,
                &k.value().to_le_bytes(),
                v.value(),
            )?);
        }
        Ok(out)
    }

    /// The newest snapshot, if any.
    pub fn last_snapshot(&self) -> Result<Option<SnapshotRow>, FsError> {
        let r = self.rtx()?;
        let last = r.snapshots()?.last().map_err(records::db)?;
        last.map(|(k, v)| {
            records::open(
                r.sealer(),
                Kind::IndexSnapshot,
                &k.value().to_le_bytes(),
                v.value(),
            )
        })
        .transpose()
    }

    /// One snapshot by sequence number.
    pub fn snapshot_by_seq(&self, seq: u64) -> Result<SnapshotRow, FsError> {
        let r = self.rtx()?;
        let v = r
            .snapshots()?
            .get(seq)
            .map_err(records::db)?
            .ok_or(FsError::NotFound)?;
        records::open(
            r.sealer(),
            Kind::IndexSnapshot,
            &seq.to_le_bytes(),
            v.value(),
        )
    }

    /// Deletes a snapshot's record (its objects stay until garbage
    /// collection exists). For tests; retention will be the only caller.
    pub fn delete_snapshot(&self, caller: Caller, seq: u64) -> Result<(), FsError> {
        let _op = caller.span("delete_snapshot");
        self.wtx(|w| {
            w.snapshots_mut()?
                .remove(seq)
                .map_err(records::db)?
                .ok_or(FsError::NotFound)?;
            w.runs_mut()?.remove(seq).map_err(records::db)?;
            Ok(())
        })?;
        self.commit()
    }

    /// Checks every snapshot's structure: its record is indexed, every tree
    /// below its root opens, every chunk a file refers to is indexed, and
    /// every file's content digest matches its extents. Returns the problems.
    pub fn verify_snapshots(&self, caller: Caller) -> Result<Vec<String>, FsError> {
        let _op = caller.span("verify_snapshots");
        let index = self.repo.store().index();
        let indexed = |id: &[u8; 32]| {
            index
                .chunk(&ChunkId(*id))
                .map(|l| l.is_some())
                .map_err(|e| FsError::Io(e.to_string()))
        };
        let id_key = self.repo.keys().id;
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for row in self.snapshots()? {
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
                let tree = match self.tree(&t) {
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

    /// Reads a tree object.
    pub fn tree(&self, id: &[u8; 32]) -> Result<Tree, FsError> {
        let bytes = self.repo.store().get_object(Kind::Tree, &ChunkId(*id))?;
        postcard::from_bytes(bytes.as_slice())
            .map_err(|e| FsError::Corrupt(format!("tree {}: {e}", ChunkId(*id))))
    }

    /// Reads bytes of a file in a snapshot.
    pub fn read_snapshot_file(
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
            let data = self.chunk(&ChunkId(chunk))?;
            if data.as_slice().len() != l as usize {
                return Err(FsError::Corrupt(format!(
                    "chunk {} is not the length its tree says",
                    ChunkId(chunk)
                )));
            }
            let a = offset.max(o);
            let b = end.min(o + l as u64);
            out[(a - offset) as usize..(b - offset) as usize]
                .copy_from_slice(&data.as_slice()[(a - o) as usize..(b - o) as usize]);
        }
        Ok(out)
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

/// The digest of a file's content: keyed BLAKE3 over its size and extents.
pub fn content_digest(id_key: &[u8; 32], size: u64, extents: &[(u64, [u8; 32], u32)]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(id_key);
    h.update(b"content");
    h.update(&size.to_le_bytes());
    for (o, c, l) in extents {
        h.update(&o.to_le_bytes());
        h.update(c);
        h.update(&l.to_le_bytes());
    }
    *h.finalize().as_bytes()
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
    let id_key = head.repo.keys().id;
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
    let (id, _) = head.repo.store().put_object(Kind::Tree, &bytes)?;
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
