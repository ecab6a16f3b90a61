//! The catalog's rows: one sealed [`DirRecord`] per directory path, found
//! by a keyed hash of the path, and the sealed [`Tip`].

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::store::format::Kind;
use crate::tree::head::records::{self, db};
use crate::tree::head::txn::{Read, Reader, Write};
use crate::tree::objects::TreeEntry;
use crate::tree::types::{FileKind, FsError, Timestamp};

/// The newest snapshot the catalog has taken in: the next update diffs
/// its root against each newer snapshot's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    /// Its sequence number.
    pub seq: u64,
    /// Its root tree.
    pub root: [u8; 32],
}

/// What a version's content is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// A file's content digest.
    Digest([u8; 32]),
    /// A directory: its contents are versioned under its own path, so a
    /// change below it is no new version of it.
    Subtree,
    /// A symlink's target.
    Target(Vec<u8>),
    /// A device, fifo or socket: nothing beyond the attributes.
    Nothing,
}

/// One version of an entry: attributes that stayed equal over the
/// snapshots `first..=last`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The entry's name in its directory.
    pub name: Vec<u8>,
    /// Kind.
    pub kind: FileKind,
    /// Size.
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits.
    pub perm: u32,
    /// Content.
    pub content: Content,
    /// Sequence number of the first snapshot that holds it.
    pub first: u64,
    /// Of the last; `None` while the newest snapshot taken in holds it.
    pub last: Option<u64>,
}

impl Version {
    /// The version `e` starts at snapshot `first`.
    pub fn of(e: &TreeEntry, first: u64) -> Version {
        Version {
            name: e.name.clone(),
            kind: e.meta.kind,
            // A directory's size says nothing a user searches for, and
            // `diff` does not compare it.
            size: if e.meta.kind == FileKind::Dir {
                0
            } else {
                e.meta.size
            },
            mtime: e.meta.mtime,
            uid: e.meta.uid,
            gid: e.meta.gid,
            perm: e.meta.perm,
            content: match e.meta.kind {
                FileKind::File => Content::Digest(e.digest),
                FileKind::Dir => Content::Subtree,
                FileKind::Symlink => Content::Target(e.target.clone()),
                _ => Content::Nothing,
            },
            first,
            last: None,
        }
    }

    /// Whether `self` and `other` are one version: everything but the
    /// snapshot range is equal.
    pub fn same(&self, other: &Version) -> bool {
        (
            &self.name,
            self.kind,
            self.size,
            self.mtime,
            self.uid,
            self.gid,
            self.perm,
            &self.content,
        ) == (
            &other.name,
            other.kind,
            other.size,
            other.mtime,
            other.uid,
            other.gid,
            other.perm,
            &other.content,
        )
    }
}

/// A directory path and every version of every entry it ever held,
/// sorted by (name, first).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirRecord {
    /// "/" or "/a/b".
    pub path: Vec<u8>,
    /// The versions.
    pub versions: Vec<Version>,
}

/// The keyed hash that stands for directory `path`: the table's keys
/// reveal only which rows are for the same path.
pub fn path_hash(name_key: &[u8; 32], path: &[u8]) -> [u8; 16] {
    let mut h = blake3::Hasher::new_keyed(name_key);
    h.update(b"c");
    h.update(path);
    h.finalize().as_bytes()[..16].try_into().expect("16 bytes")
}

const TIP_KEY: &str = "tip";

/// The catalog's tip, if it has taken in any snapshot.
pub fn tip(r: &impl TipSource) -> Result<Option<Tip>, FsError> {
    r.tip_row()
}

/// Where a tip is read from: a read or a write transaction.
pub trait TipSource {
    /// The tip row, opened.
    fn tip_row(&self) -> Result<Option<Tip>, FsError>;
}

impl TipSource for Read<'_> {
    fn tip_row(&self) -> Result<Option<Tip>, FsError> {
        match self.catalog_tip()?.get(TIP_KEY).map_err(db)? {
            None => Ok(None),
            Some(v) => records::open(
                self.sealer(),
                Kind::IndexCatalogTip,
                TIP_KEY.as_bytes(),
                v.value(),
            )
            .map(Some),
        }
    }
}

impl TipSource for Write<'_> {
    fn tip_row(&self) -> Result<Option<Tip>, FsError> {
        let v = self
            .catalog_tip_ref()?
            .get(TIP_KEY)
            .map_err(db)?
            .map(|v| v.value().to_vec());
        v.map(|v| records::open(self.sealer(), Kind::IndexCatalogTip, TIP_KEY.as_bytes(), &v))
            .transpose()
    }
}

/// Moves the tip.
pub fn set_tip(w: &mut Write<'_>, tip: &Tip) -> Result<(), FsError> {
    let v = records::seal(w.sealer(), Kind::IndexCatalogTip, TIP_KEY.as_bytes(), tip);
    w.catalog_tip_mut()?
        .insert(TIP_KEY, v.as_slice())
        .map_err(db)?;
    Ok(())
}

/// Opens record `number`.
pub fn open_dir(r: &impl Reader, number: u64, sealed: &[u8]) -> Result<DirRecord, FsError> {
    records::open(
        r.sealer(),
        Kind::IndexCatalogDir,
        &number.to_le_bytes(),
        sealed,
    )
}

/// The record of directory `path` and its number, if the catalog has one.
pub fn get_dir(w: &Write<'_>, path: &[u8]) -> Result<Option<(u64, DirRecord)>, FsError> {
    let hash = path_hash(w.name_key(), path);
    let Some(number) = w
        .catalog_paths_ref()?
        .get(hash)
        .map_err(db)?
        .map(|v| v.value())
    else {
        return Ok(None);
    };
    let sealed = w
        .catalog_dirs_ref()?
        .get(number)
        .map_err(db)?
        .map(|v| v.value().to_vec())
        .ok_or_else(|| broken(format!("catalog record {number} is missing")))?;
    Ok(Some((number, open_dir(w, number, &sealed)?)))
}

/// Writes `rec` as record `number` (a new number when `None`); returns the
/// sealed length.
pub fn put_dir(w: &mut Write<'_>, number: Option<u64>, rec: &DirRecord) -> Result<u64, FsError> {
    let number = match number {
        Some(n) => n,
        None => {
            let n = w.counter("catalog_dir_seq")? + 1;
            w.set_counter("catalog_dir_seq", n)?;
            let hash = path_hash(w.name_key(), &rec.path);
            w.catalog_paths_mut()?.insert(hash, n).map_err(db)?;
            n
        }
    };
    let v = records::seal(
        w.sealer(),
        Kind::IndexCatalogDir,
        &number.to_le_bytes(),
        rec,
    );
    w.catalog_dirs_mut()?
        .insert(number, v.as_slice())
        .map_err(db)?;
    w.bytes_written += 8 + v.len() as u64;
    Ok(v.len() as u64)
}

/// Deletes record `number` of `path`.
pub fn delete_dir(w: &mut Write<'_>, number: u64, path: &[u8]) -> Result<(), FsError> {
    let hash = path_hash(w.name_key(), path);
    w.catalog_paths_mut()?.remove(hash).map_err(db)?;
    w.catalog_dirs_mut()?.remove(number).map_err(db)?;
    Ok(())
}

/// An inconsistent catalog: the error says how to rebuild it.
pub fn broken(what: String) -> FsError {
    FsError::Corrupt(crate::tree::types::Fault::new(format!(
        "the catalog is inconsistent ({what}); rebuild it with `strata repair catalog`"
    )))
}
