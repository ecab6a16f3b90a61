//! The objects snapshots are made of, as stored: trees (a directory's
//! entries with their attributes, xattrs, extents and content digest) and
//! snapshot records (time, label, root, the previous record's id).
//!
//! Below both the head (which loads a directory from its tree after a
//! reset) and the snapshot operations (which build and read them).

use serde::{Deserialize, Serialize};

use crate::store::chunks::Store;
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
        SnapshotRecord::name_at(self.time)
    }

    /// The directory name of a snapshot taken at `time`.
    pub fn name_at(time: Timestamp) -> String {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(time.secs.max(0) as u64);
        humantime::format_rfc3339_seconds(t).to_string()
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
