//! The head's redb tables and their sealed values.
//!
//! | table          | key                               | value (sealed)            |
//! |----------------|-----------------------------------|---------------------------|
//! | head_inodes    | inode u64                         | [`InodeRecord`]           |
//! | head_dirents   | (parent u64, name hash [16])      | [`DirentRecord`]          |
//! | head_parents   | (child u64, parent u64, hash [16])| ()                        |
//! | head_xattrs    | (inode u64, name hash [16])       | [`XattrRecord`]           |
//! | head_extents   | (inode u64, offset u64)           | [`ExtentRecord`]          |
//! | head_meta      | name                              | u64                       |
//! | head_unloaded  | directory inode u64               | ()                        |
//! | snapshots      | sequence number u64               | snapshot record           |
//! | snapshot_runs  | sequence number u64               | a backup run's record     |
//! | snapshot_holds | (sequence u64, revision u64)      | a hold or its release     |
//! | snapshot_tombstones | sequence number u64          | a forgotten snapshot      |
//! | head_leftovers | "marker"                          | a failed run's leftovers  |
//! | drills         | drill number u64                  | a restore drill's record  |
//! | audit          | record number u64 (0: the head)   | an audit record           |
//! | catalog_dirs   | record number u64                 | a directory's versions    |
//! | catalog_paths  | directory path hash [16]          | record number u64 (plain) |
//! | catalog_tip    | "tip"                             | the newest snapshot taken in |
//!
//! Name hashes are keyed BLAKE3 of (parent, name), so the table order and
//! keys reveal nothing about names; a listing resumes from the last hash it
//! returned, never by skipping entries.

use redb::{ReadableTable, Table, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::store::crypto::Sealer;
use crate::store::format::Kind;
use crate::tree::classify::Facts;
use crate::tree::types::{Fault, FileKind, FsError, Meta};

/// Inode table.
pub const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("head_inodes");
/// Directory entries.
pub const DIRENTS: TableDefinition<(u64, [u8; 16]), &[u8]> = TableDefinition::new("head_dirents");
/// Parents of every inode (several for hard links).
pub const PARENTS: TableDefinition<(u64, u64, [u8; 16]), ()> = TableDefinition::new("head_parents");
/// Extended attributes.
pub const XATTRS: TableDefinition<(u64, [u8; 16]), &[u8]> = TableDefinition::new("head_xattrs");
/// File content: which chunk holds the bytes starting at each offset.
pub const EXTENTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("head_extents");
/// Snapshot records by sequence number.
pub const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");
/// Backup-run records (status, hook outcomes) by snapshot sequence number.
pub const RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshot_runs");
/// Legal holds placed and released, by (snapshot sequence number,
/// revision); a snapshot's newest revision says whether it is held.
pub const HOLDS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("snapshot_holds");
/// Forgotten snapshots by sequence number: their links in the hash chain.
pub const TOMBSTONES: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshot_tombstones");
/// The audit log: records by number, from 1; row 0 holds its head.
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Restore drills by number, from 1.
pub const DRILLS: TableDefinition<u64, &[u8]> = TableDefinition::new("drills");
/// The catalog: one record per directory path that any snapshot held
/// (see `tree::catalog`).
pub const CATALOG_DIRS: TableDefinition<u64, &[u8]> = TableDefinition::new("catalog_dirs");
/// The catalog's lookup: keyed hash of a directory path -> its record.
pub const CATALOG_PATHS: TableDefinition<[u8; 16], u64> = TableDefinition::new("catalog_paths");
/// The catalog's tip (one row): how far it has caught up.
pub const CATALOG_TIP: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog_tip");
/// Directories a reset left unloaded: their entries are still only in the
/// snapshot tree their `clean_tree` names (see `Write::load`). Roots for
/// garbage collection while they last.
pub const UNLOADED: TableDefinition<u64, ()> = TableDefinition::new("head_unloaded");
/// A failed run's leftovers in the head (one row, see `leftovers`).
pub const LEFTOVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("head_leftovers");
/// Counters (next inode number, ...).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("head_meta");

/// What the head keeps per inode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeRecord {
    /// Kind, permissions, owner, size, times.
    pub meta: Meta,
    /// Symlink target.
    pub target: Vec<u8>,
    /// A directory's tree id as of the last snapshot, cleared when anything
    /// below it changes.
    pub clean_tree: Option<[u8; 32]>,
    /// What a file's first bytes told tier classification, when the head
    /// classified its content. Stored after the fields above, in postcard
    /// of its own, so records without it read as they always did.
    #[serde(skip)]
    pub facts: Option<Facts>,
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirentRecord {
    /// The name.
    pub name: Vec<u8>,
    /// Its inode.
    pub ino: u64,
    /// Its kind, for readdir without reading the inode.
    pub kind: FileKind,
}

/// An extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XattrRecord {
    /// The name, e.g. `user.comment` or `system.posix_acl_access`.
    pub name: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// A run of file content held by one chunk. Offsets not covered by an extent
/// are holes (zeros).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtentRecord {
    /// The chunk.
    pub chunk: [u8; 32],
    /// Its length.
    pub len: u32,
}

/// Seals a record as the value of row `key` of a table of `kind`.
pub fn seal<T: Serialize>(sealer: &Sealer, kind: Kind, key: &[u8], value: &T) -> Vec<u8> {
    let plain = postcard::to_allocvec(value).expect("records serialize");
    sealer.seal(kind, key, &plain)
}

/// Opens a sealed record of row `key`.
pub fn open<T: DeserializeOwned>(
    sealer: &Sealer,
    kind: Kind,
    key: &[u8],
    sealed: &[u8],
) -> Result<T, FsError> {
    let plain = open_plain(sealer, kind, key, sealed)?;
    postcard::from_bytes(&plain)
        .map_err(|e| FsError::Corrupt(Fault::caused(format!("head row {kind:?}"), e)))
}

/// The plaintext of a sealed record of row `key`.
fn open_plain(sealer: &Sealer, kind: Kind, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, FsError> {
    sealer.open(kind, key, sealed).map_err(|e| {
        FsError::Corrupt(Fault::caused(
            format!(
                "head row {kind:?}/{}",
                hex::encode(&key[..key.len().min(8)])
            ),
            e,
        ))
    })
}

/// Row-key bytes of the tables, the context their values are sealed to.
pub fn key_u64(a: u64) -> [u8; 8] {
    a.to_le_bytes()
}

/// Row key of a (u64, hash) table.
pub fn key_hash(a: u64, h: &[u8; 16]) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&a.to_le_bytes());
    k[8..].copy_from_slice(h);
    k
}

/// Row key of a (u64, u64) table.
pub fn key_pair(a: u64, b: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_le_bytes());
    k[8..].copy_from_slice(&b.to_le_bytes());
    k
}

/// Reads and opens one inode.
pub fn get_inode(
    t: &impl ReadableTable<u64, &'static [u8]>,
    sealer: &Sealer,
    ino: u64,
) -> Result<Option<InodeRecord>, FsError> {
    let Some(v) = t.get(ino).map_err(db)? else {
        return Ok(None);
    };
    let plain = open_plain(sealer, Kind::HeadInode, &key_u64(ino), v.value())?;
    let corrupt = |e| FsError::Corrupt(Fault::caused("head row HeadInode", e));
    let (mut rec, rest): (InodeRecord, _) = postcard::take_from_bytes(&plain).map_err(corrupt)?;
    if !rest.is_empty() {
        rec.facts = Some(postcard::from_bytes(rest).map_err(corrupt)?);
    }
    Ok(Some(rec))
}

/// Seals and writes one inode; returns the sealed length.
pub fn put_inode(
    t: &mut Table<u64, &'static [u8]>,
    sealer: &Sealer,
    ino: u64,
    rec: &InodeRecord,
) -> Result<usize, FsError> {
    let mut plain = postcard::to_allocvec(rec).expect("records serialize");
    if let Some(facts) = &rec.facts {
        plain.extend(postcard::to_allocvec(facts).expect("facts serialize"));
    }
    let v = sealer.seal(Kind::HeadInode, &key_u64(ino), &plain);
    t.insert(ino, v.as_slice()).map_err(db)?;
    Ok(v.len())
}

/// Maps a redb error: the index failing under the head is an I/O error.
pub fn db(e: impl Into<redb::Error>) -> FsError {
    FsError::Io(Fault::caused("index", e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::types::Timestamp;

    /// Pins the postcard encoding of an inode record: a change here changes
    /// every repository's head.
    #[test]
    fn golden_inode_record_encoding() {
        let t = Timestamp { secs: -1, nanos: 7 };
        let meta = Meta {
            kind: FileKind::Symlink,
            perm: 0o644,
            uid: 1000,
            gid: 100,
            nlink: 1,
            size: 3,
            atime: t,
            mtime: t,
            ctime: t,
            btime: t,
            rdev: 0,
        };
        let rec = InodeRecord {
            meta,
            target: b"a/b".to_vec(),
            clean_tree: None,
            facts: None,
        };
        let bytes = postcard::to_allocvec(&rec).unwrap();
        assert_eq!(hex::encode(&bytes), GOLDEN);
        assert_eq!(postcard::from_bytes::<InodeRecord>(&bytes).unwrap(), rec);
    }

    const GOLDEN: &str = "02a403e80764010301070107010701070003612f6200";
}
