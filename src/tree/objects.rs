//! The objects snapshots are made of, as stored: trees (a directory's
//! entries with their attributes, xattrs, extents and content digest) and
//! snapshot records (time, label, root, the previous record's id).
//!
//! Below both the head (which loads a directory from its tree after a
//! reset) and the snapshot operations (which build and read them).

use serde::{Deserialize, Serialize};

use crate::store::chunks::Store;
use crate::store::crypto::Sealer;
use crate::store::format::Kind;
use crate::store::id::ChunkId;
use crate::tree::types::{Fault, FsError, Meta, Timestamp};

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
    /// The audit log's head when the snapshot was taken. Stored after the
    /// fields above (see [`SnapshotRecord::encode`]), so records written
    /// before the audit log existed still decode, and so it is inside the
    /// bytes the record's id, the chain and every replica vouch for.
    #[serde(skip)]
    pub audit: Option<AuditAnchor>,
}

/// Where the audit log stood: its newest record's number and chain hash
/// (number 0 and the zero hash for an empty log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAnchor {
    /// The newest record's number.
    pub n: u64,
    /// Its chain hash.
    pub hash: [u8; 32],
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
    /// The stored form: the fields in postcard, then the audit anchor, if
    /// any, in postcard after them.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = postcard::to_allocvec(self).expect("a record serializes");
        append_anchor(&mut bytes, self.audit.as_ref());
        bytes
    }

    /// A record from its stored form.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotRecord, postcard::Error> {
        let (mut record, rest): (SnapshotRecord, _) = postcard::take_from_bytes(bytes)?;
        record.audit = decode_anchor(rest)?;
        Ok(record)
    }

    /// The snapshot's directory name: its UTC time, ISO 8601, to the second.
    pub fn name(&self) -> String {
        SnapshotRecord::name_at(self.time)
    }

    /// The directory name of a snapshot taken at `time`.
    pub fn name_at(time: Timestamp) -> String {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(time.secs.max(0) as u64);
        humantime::format_rfc3339_seconds(t).to_string()
    }
}

fn append_anchor(bytes: &mut Vec<u8>, anchor: Option<&AuditAnchor>) {
    if let Some(a) = anchor {
        bytes.extend(postcard::to_allocvec(a).expect("an anchor serializes"));
    }
}

fn decode_anchor(rest: &[u8]) -> Result<Option<AuditAnchor>, postcard::Error> {
    if rest.is_empty() {
        return Ok(None);
    }
    postcard::from_bytes(rest).map(Some)
}

impl SnapshotRow {
    /// The row as the `snapshots` table holds it for `seq`: sealed, with
    /// the record's audit anchor after it (the record is the row's last
    /// field, so old rows decode as before).
    pub fn seal(&self, sealer: &Sealer, seq: u64) -> Vec<u8> {
        let mut plain = postcard::to_allocvec(self).expect("a row serializes");
        append_anchor(&mut plain, self.record.audit.as_ref());
        sealer.seal(Kind::IndexSnapshot, &seq.to_le_bytes(), &plain)
    }

    /// Opens the `snapshots` row of `seq`.
    pub fn open(sealer: &Sealer, seq: u64, sealed: &[u8]) -> Result<SnapshotRow, FsError> {
        let what = || format!("snapshot row {seq}");
        let plain = sealer
            .open(Kind::IndexSnapshot, &seq.to_le_bytes(), sealed)
            .map_err(|e| FsError::Corrupt(Fault::caused(what(), e)))?;
        let (mut row, rest): (SnapshotRow, _) = postcard::take_from_bytes(&plain)
            .map_err(|e| FsError::Corrupt(Fault::caused(what(), e)))?;
        row.record.audit =
            decode_anchor(rest).map_err(|e| FsError::Corrupt(Fault::caused(what(), e)))?;
        Ok(row)
    }
}

impl Tree {
    /// Reads tree object `id` from `store`.
    pub fn load(store: &Store, id: &[u8; 32]) -> Result<Tree, FsError> {
        let bytes = store.get_object(Kind::Tree, &ChunkId(*id))?;
        postcard::from_bytes(bytes.as_slice())
            .map_err(|e| FsError::Corrupt(Fault::caused(format!("tree {}", ChunkId(*id)), e)))
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
