//! Transactions over the head's tables: one write transaction per
//! operation, committed without forcing it to disk (the store's next
//! durable commit carries it; see [`super::Head::commit`]).

use std::cell::OnceCell;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{
    Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};

use super::records::*;
use super::xattr_owners::XattrOwners;
use crate::store::crypto::Sealer;
use crate::store::format::Kind;
use crate::store::id::ChunkId;
use crate::tree::objects::{SnapshotRow, Tree};
use crate::tree::types::{Fault, FileKind, FileName, FsError, InodeNo};

/// The keyed hash that stands for `name` in directory `parent`.
pub fn name_hash(key: &[u8; 32], parent: u64, name: &[u8]) -> [u8; 16] {
    keyed_name(key, b"d", parent, name)
}

/// The keyed hash that stands for xattr `name` of inode `ino`.
pub fn xattr_hash(key: &[u8; 32], ino: u64, name: &[u8]) -> [u8; 16] {
    keyed_name(key, b"x", ino, name)
}

/// 16 bytes of keyed BLAKE3 over `domain | owner (u64 LE) | name`.
fn keyed_name(key: &[u8; 32], domain: &[u8; 1], owner: u64, name: &[u8]) -> [u8; 16] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(domain);
    h.update(&owner.to_le_bytes());
    h.update(name);
    h.finalize().as_bytes()[..16].try_into().expect("16 bytes")
}

/// Opens one `head_extents` row as (offset, chunk, length).
fn extent_row(
    sealer: &Sealer,
    ino: InodeNo,
    off: u64,
    sealed: &[u8],
) -> Result<(u64, ChunkId, u32), FsError> {
    let e: ExtentRecord = open(sealer, Kind::HeadExtent, &key_pair(ino.0, off), sealed)?;
    Ok((off, ChunkId(e.chunk), e.len))
}

/// Read access shared by read and write transactions.
pub trait Reader {
    /// The sealer of head values.
    fn sealer(&self) -> &Sealer;
    /// The name-hash key.
    fn name_key(&self) -> &[u8; 32];
    /// An inode, if it exists.
    fn inode(&self, ino: InodeNo) -> Result<Option<InodeRecord>, FsError>;
    /// The entry `name` of directory `parent`.
    fn dirent(&self, parent: InodeNo, name: &FileName) -> Result<Option<DirentRecord>, FsError>;
    /// Entries of `parent` whose hash is after `after` (or from the start), at most `limit`.
    fn dirents_after(
        &self,
        parent: InodeNo,
        after: Option<[u8; 16]>,
        limit: usize,
    ) -> Result<Vec<([u8; 16], DirentRecord)>, FsError>;
    /// Parents of `ino` (several for a hard-linked file).
    fn parents(&self, ino: InodeNo) -> Result<Vec<(InodeNo, [u8; 16])>, FsError>;
    /// Extended attributes of `ino`.
    fn xattrs(&self, ino: InodeNo) -> Result<Vec<XattrRecord>, FsError>;
    /// One extended attribute.
    fn xattr(&self, ino: InodeNo, name: &[u8]) -> Result<Option<XattrRecord>, FsError>;
    /// Extents of `ino` that overlap `from..to` (one that starts before
    /// `from` and reaches past it included): O(log n + k).
    fn extents(
        &self,
        ino: InodeNo,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, ChunkId, u32)>, FsError>;

    /// An inode that must exist.
    fn get(&self, ino: InodeNo) -> Result<InodeRecord, FsError> {
        self.inode(ino)?.ok_or(FsError::NotFound)
    }
}

macro_rules! reader_impl {
    ($t:ty) => {
        impl $t {
            /// Fails with [`FsError::Unloaded`] while `dir` still stands for
            /// a snapshot tree (after a reset): its entries are not in the
            /// tables yet, and reading them there would find none.
            fn check_loaded(&self, dir: InodeNo) -> Result<(), FsError> {
                if self.lazy && self.unloaded_t()?.get(dir.0).map_err(db)?.is_some() {
                    return Err(FsError::Unloaded(dir));
                }
                Ok(())
            }
        }

        impl Reader for $t {
            fn sealer(&self) -> &Sealer {
                self.sealer
            }
            fn name_key(&self) -> &[u8; 32] {
                self.name_key
            }
            fn inode(&self, ino: InodeNo) -> Result<Option<InodeRecord>, FsError> {
                get_inode(self.inodes_t()?, self.sealer, ino.0)
            }
            fn dirent(
                &self,
                parent: InodeNo,
                name: &FileName,
            ) -> Result<Option<DirentRecord>, FsError> {
                self.check_loaded(parent)?;
                let h = name_hash(self.name_key, parent.0, name.as_bytes());
                match self.dirents_t()?.get((parent.0, h)).map_err(db)? {
                    None => Ok(None),
                    Some(v) => open(
                        self.sealer,
                        Kind::HeadDirent,
                        &key_hash(parent.0, &h),
                        v.value(),
                    )
                    .map(Some),
                }
            }
            fn dirents_after(
                &self,
                parent: InodeNo,
                after: Option<[u8; 16]>,
                limit: usize,
            ) -> Result<Vec<([u8; 16], DirentRecord)>, FsError> {
                self.check_loaded(parent)?;
                let start = (parent.0, after.unwrap_or([0; 16]));
                let mut out = Vec::new();
                for row in self
                    .dirents_t()?
                    .range(start..=(parent.0, [0xff; 16]))
                    .map_err(db)?
                {
                    let (k, v) = row.map_err(db)?;
                    let (_, h) = k.value();
                    if Some(h) == after {
                        continue;
                    }
                    out.push((
                        h,
                        open(
                            self.sealer,
                            Kind::HeadDirent,
                            &key_hash(parent.0, &h),
                            v.value(),
                        )?,
                    ));
                    if out.len() >= limit {
                        break;
                    }
                }
                Ok(out)
            }
            fn parents(&self, ino: InodeNo) -> Result<Vec<(InodeNo, [u8; 16])>, FsError> {
                let mut out = Vec::new();
                for row in self
                    .parents_t()?
                    .range((ino.0, 0, [0; 16])..=(ino.0, u64::MAX, [0xff; 16]))
                    .map_err(db)?
                {
                    let (k, _) = row.map_err(db)?;
                    let (_, p, h) = k.value();
                    out.push((InodeNo(p), h));
                }
                Ok(out)
            }
            fn xattrs(&self, ino: InodeNo) -> Result<Vec<XattrRecord>, FsError> {
                let mut out = Vec::new();
                if !self.owners.may_have(ino) {
                    return Ok(out);
                }
                for row in self
                    .xattrs_t()?
                    .range((ino.0, [0; 16])..=(ino.0, [0xff; 16]))
                    .map_err(db)?
                {
                    let (k, v) = row.map_err(db)?;
                    let (_, h) = k.value();
                    out.push(open(
                        self.sealer,
                        Kind::HeadXattr,
                        &key_hash(ino.0, &h),
                        v.value(),
                    )?);
                }
                out.sort_by(|a: &XattrRecord, b| a.name.cmp(&b.name));
                Ok(out)
            }
            fn xattr(&self, ino: InodeNo, name: &[u8]) -> Result<Option<XattrRecord>, FsError> {
                if !self.owners.may_have(ino) {
                    return Ok(None);
                }
                let h = xattr_hash(self.name_key, ino.0, name);
                match self.xattrs_t()?.get((ino.0, h)).map_err(db)? {
                    None => Ok(None),
                    Some(v) => open(
                        self.sealer,
                        Kind::HeadXattr,
                        &key_hash(ino.0, &h),
                        v.value(),
                    )
                    .map(Some),
                }
            }
            fn extents(
                &self,
                ino: InodeNo,
                from: u64,
                to: u64,
            ) -> Result<Vec<(u64, ChunkId, u32)>, FsError> {
                let mut out = Vec::new();
                // The extent that starts at or before `from` may reach past it.
                if let Some(row) = self
                    .extents_t()?
                    .range((ino.0, 0)..=(ino.0, from))
                    .map_err(db)?
                    .next_back()
                {
                    let (k, v) = row.map_err(db)?;
                    let extent = extent_row(self.sealer, ino, k.value().1, v.value())?;
                    if extent.0 + extent.2 as u64 > from {
                        out.push(extent);
                    }
                }
                if from < u64::MAX && from + 1 < to {
                    for row in self
                        .extents_t()?
                        .range((ino.0, from + 1)..(ino.0, to))
                        .map_err(db)?
                    {
                        let (k, v) = row.map_err(db)?;
                        out.push(extent_row(self.sealer, ino, k.value().1, v.value())?);
                    }
                }
                Ok(out)
            }
        }
    };
}

/// Key of a directory entry or an xattr: (owner inode, keyed name hash).
type NameKey = (u64, [u8; 16]);
/// Key of a parent link: (child, parent, keyed name hash).
type ParentKey = (u64, u64, [u8; 16]);
/// A sealed value.
type Sealed = &'static [u8];

/// Opens a table the first time it is asked for: most operations touch
/// one or two of the seven, and every open table costs at commit.
fn lazy<T>(
    cell: &OnceCell<T>,
    open: impl FnOnce() -> Result<T, redb::TableError>,
) -> Result<&T, FsError> {
    if cell.get().is_none() {
        let table = open().map_err(db_err)?;
        let _ = cell.set(table);
    }
    Ok(cell.get().expect("just opened"))
}

/// A read transaction and the tables it has opened.
pub struct Read<'a> {
    sealer: &'a Sealer,
    name_key: &'a [u8; 32],
    owners: &'a XattrOwners,
    tx: redb::ReadTransaction,
    /// Whether some directory may be unloaded (see [`Write::load`]).
    lazy: bool,
    unloaded: OnceCell<ReadOnlyTable<u64, ()>>,
    inodes: OnceCell<ReadOnlyTable<u64, Sealed>>,
    dirents: OnceCell<ReadOnlyTable<NameKey, Sealed>>,
    parents: OnceCell<ReadOnlyTable<ParentKey, ()>>,
    xattrs: OnceCell<ReadOnlyTable<NameKey, Sealed>>,
    extents: OnceCell<ReadOnlyTable<(u64, u64), Sealed>>,
    snapshots: OnceCell<ReadOnlyTable<u64, Sealed>>,
    runs: OnceCell<ReadOnlyTable<u64, Sealed>>,
    holds: OnceCell<ReadOnlyTable<(u64, u64), Sealed>>,
    tombstones: OnceCell<ReadOnlyTable<u64, Sealed>>,
    drills: OnceCell<ReadOnlyTable<u64, Sealed>>,
    audit: OnceCell<ReadOnlyTable<u64, Sealed>>,
    catalog_dirs: OnceCell<ReadOnlyTable<u64, Sealed>>,
    catalog_paths: OnceCell<ReadOnlyTable<[u8; 16], u64>>,
    catalog_tip: OnceCell<ReadOnlyTable<&'static str, Sealed>>,
}

impl<'a> Read<'a> {
    /// Begins a read transaction. `lazy` is read after it began, so a
    /// transaction that sees a reset's tables also sees its flag.
    pub fn begin(
        db: &redb::Database,
        sealer: &'a Sealer,
        name_key: &'a [u8; 32],
        owners: &'a XattrOwners,
        lazy: &AtomicBool,
    ) -> Result<Read<'a>, FsError> {
        let tx = db.begin_read().map_err(db_err)?;
        Ok(Read {
            sealer,
            name_key,
            owners,
            tx,
            lazy: lazy.load(Ordering::SeqCst),
            unloaded: OnceCell::new(),
            inodes: OnceCell::new(),
            dirents: OnceCell::new(),
            parents: OnceCell::new(),
            xattrs: OnceCell::new(),
            extents: OnceCell::new(),
            snapshots: OnceCell::new(),
            runs: OnceCell::new(),
            holds: OnceCell::new(),
            tombstones: OnceCell::new(),
            drills: OnceCell::new(),
            audit: OnceCell::new(),
            catalog_dirs: OnceCell::new(),
            catalog_paths: OnceCell::new(),
            catalog_tip: OnceCell::new(),
        })
    }

    fn unloaded_t(&self) -> Result<&ReadOnlyTable<u64, ()>, FsError> {
        lazy(&self.unloaded, || self.tx.open_table(UNLOADED))
    }

    fn inodes_t(&self) -> Result<&ReadOnlyTable<u64, Sealed>, FsError> {
        lazy(&self.inodes, || self.tx.open_table(INODES))
    }

    fn dirents_t(&self) -> Result<&ReadOnlyTable<NameKey, Sealed>, FsError> {
        lazy(&self.dirents, || self.tx.open_table(DIRENTS))
    }

    fn parents_t(&self) -> Result<&ReadOnlyTable<ParentKey, ()>, FsError> {
        lazy(&self.parents, || self.tx.open_table(PARENTS))
    }

    fn xattrs_t(&self) -> Result<&ReadOnlyTable<NameKey, Sealed>, FsError> {
        lazy(&self.xattrs, || self.tx.open_table(XATTRS))
    }

    fn extents_t(&self) -> Result<&ReadOnlyTable<(u64, u64), Sealed>, FsError> {
        lazy(&self.extents, || self.tx.open_table(EXTENTS))
    }

    /// Snapshot records.
    pub fn snapshots(&self) -> Result<&ReadOnlyTable<u64, Sealed>, FsError> {
        lazy(&self.snapshots, || self.tx.open_table(SNAPSHOTS))
    }

    /// Backup-run records of snapshots.
    pub fn runs(&self) -> Result<&ReadOnlyTable<u64, Sealed>, FsError> {
        lazy(&self.runs, || self.tx.open_table(RUNS))
    }

    /// Legal holds of snapshots, every revision.
    pub fn holds(&self) -> Result<&ReadOnlyTable<(u64, u64), Sealed>, FsError> {
        lazy(&self.holds, || self.tx.open_table(HOLDS))
    }

    /// Forgotten snapshots' links in the hash chain.
    pub fn tombstones(&self) -> Result<&ReadOnlyTable<u64, Sealed>, FsError> {
        lazy(&self.tombstones, || self.tx.open_table(TOMBSTONES))
    }

    /// Restore drills; `None` in a repository that never had one (the
    /// table came with drills, after the repository's first transaction).
    pub fn drills(&self) -> Result<Option<&ReadOnlyTable<u64, Sealed>>, FsError> {
        optional(&self.tx, &self.drills, DRILLS)
    }

    /// The audit log; `None` in a repository that never wrote a record
    /// (the table came with the log).
    pub fn audit(&self) -> Result<Option<&ReadOnlyTable<u64, Sealed>>, FsError> {
        optional(&self.tx, &self.audit, AUDIT)
    }

    /// The catalog's directory records.
    pub fn catalog_dirs(&self) -> Result<&ReadOnlyTable<u64, Sealed>, FsError> {
        lazy(&self.catalog_dirs, || self.tx.open_table(CATALOG_DIRS))
    }

    /// The catalog's path lookup.
    pub fn catalog_paths(&self) -> Result<&ReadOnlyTable<[u8; 16], u64>, FsError> {
        lazy(&self.catalog_paths, || self.tx.open_table(CATALOG_PATHS))
    }

    /// The catalog's tip.
    pub fn catalog_tip(&self) -> Result<&ReadOnlyTable<&'static str, Sealed>, FsError> {
        lazy(&self.catalog_tip, || self.tx.open_table(CATALOG_TIP))
    }

    /// What the head's rows refer to in the packs, for garbage collection:
    /// every chunk of every file's extents, and every directory's clean
    /// tree (which an unloaded directory's entries live in only).
    pub fn references(&self) -> Result<(Vec<ChunkId>, Vec<[u8; 32]>), FsError> {
        let mut chunks = Vec::new();
        for row in self.extents_t()?.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let (ino, off) = k.value();
            chunks.push(extent_row(self.sealer, InodeNo(ino), off, v.value())?.1);
        }
        let mut trees = Vec::new();
        for row in self.inodes_t()?.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let rec: InodeRecord =
                open(self.sealer, Kind::HeadInode, &key_u64(k.value()), v.value())?;
            trees.extend(rec.clean_tree);
        }
        Ok((chunks, trees))
    }
}

fn db_err(e: impl Into<redb::Error>) -> FsError {
    db(e)
}

reader_impl!(Read<'_>);

impl Read<'_> {
    /// Number of inodes in the head.
    pub fn inode_count(&self) -> Result<u64, FsError> {
        use redb::ReadableTableMetadata;
        self.inodes_t()?.len().map_err(db)
    }

    /// The newest snapshot's row, if any.
    pub fn last_snapshot(&self) -> Result<Option<SnapshotRow>, FsError> {
        let last = self.snapshots()?.last().map_err(db)?;
        last.map(|(k, v)| SnapshotRow::open(self.sealer, k.value(), v.value()))
            .transpose()
    }
}

/// A write transaction and the tables it has opened.
pub struct Write<'a> {
    sealer: &'a Sealer,
    name_key: &'a [u8; 32],
    owners: &'a XattrOwners,
    tx: &'a WriteTransaction,
    /// Whether some directory may be unloaded, and where their trees are.
    lazy: bool,
    trees: Trees<'a>,
    unloaded: OnceCell<Table<'a, u64, ()>>,
    inodes: OnceCell<Table<'a, u64, Sealed>>,
    dirents: OnceCell<Table<'a, NameKey, Sealed>>,
    parents: OnceCell<Table<'a, ParentKey, ()>>,
    xattrs: OnceCell<Table<'a, NameKey, Sealed>>,
    extents: OnceCell<Table<'a, (u64, u64), Sealed>>,
    meta: OnceCell<Table<'a, &'static str, u64>>,
    snapshots: OnceCell<Table<'a, u64, Sealed>>,
    runs: OnceCell<Table<'a, u64, Sealed>>,
    holds: OnceCell<Table<'a, (u64, u64), Sealed>>,
    tombstones: OnceCell<Table<'a, u64, Sealed>>,
    drills: OnceCell<Table<'a, u64, Sealed>>,
    audit: OnceCell<Table<'a, u64, Sealed>>,
    catalog_dirs: OnceCell<Table<'a, u64, Sealed>>,
    catalog_paths: OnceCell<Table<'a, [u8; 16], u64>>,
    catalog_tip: OnceCell<Table<'a, &'static str, Sealed>>,
    /// Key and value bytes this transaction wrote, for the cost counters.
    pub bytes_written: u64,
}

reader_impl!(Write<'_>);

/// Reads the snapshot tree an unloaded directory stands for.
pub type Trees<'a> = &'a dyn Fn(&[u8; 32]) -> Result<Tree, FsError>;

/// Runs `f` in one write transaction, committed without durability.
/// `lazy` says whether a reset may have left directories unloaded (read
/// once the transaction began: writers are serialized, so a reset that
/// committed before is seen with its flag); `trees` loads them.
pub fn write<T>(
    db: &redb::Database,
    sealer: &Sealer,
    name_key: &[u8; 32],
    owners: &XattrOwners,
    lazy: &AtomicBool,
    trees: Trees<'_>,
    f: impl FnOnce(&mut Write<'_>) -> Result<T, FsError>,
) -> Result<(T, u64), FsError> {
    let mut tx: WriteTransaction = db.begin_write().map_err(db_err)?;
    tx.set_durability(Durability::None).map_err(db_err)?;
    let out = {
        let mut w = Write {
            sealer,
            name_key,
            owners,
            tx: &tx,
            lazy: lazy.load(Ordering::SeqCst),
            trees,
            unloaded: OnceCell::new(),
            inodes: OnceCell::new(),
            dirents: OnceCell::new(),
            parents: OnceCell::new(),
            xattrs: OnceCell::new(),
            extents: OnceCell::new(),
            meta: OnceCell::new(),
            snapshots: OnceCell::new(),
            runs: OnceCell::new(),
            holds: OnceCell::new(),
            tombstones: OnceCell::new(),
            drills: OnceCell::new(),
            audit: OnceCell::new(),
            catalog_dirs: OnceCell::new(),
            catalog_paths: OnceCell::new(),
            catalog_tip: OnceCell::new(),
            bytes_written: 0,
        };
        let out = f(&mut w)?;
        (out, w.bytes_written)
    };
    tx.commit().map_err(db_err)?;
    Ok(out)
}

/// A table that later versions added: `None` until its first row is written.
fn optional<'c>(
    tx: &redb::ReadTransaction,
    cell: &'c OnceCell<ReadOnlyTable<u64, Sealed>>,
    def: TableDefinition<u64, Sealed>,
) -> Result<Option<&'c ReadOnlyTable<u64, Sealed>>, FsError> {
    if cell.get().is_none() {
        match tx.open_table(def) {
            Ok(t) => {
                let _ = cell.set(t);
            }
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        }
    }
    Ok(cell.get())
}

/// Read and mutable accessors of a write transaction's lazily opened tables.
macro_rules! write_tables {
    ($($name:ident, $getter:ident, $name_mut:ident, $def:ident: $k:ty => $v:ty;)*) => {
        impl<'a> Write<'a> {
            $(
                fn $getter(&self) -> Result<&Table<'a, $k, $v>, FsError> {
                    lazy(&self.$name, || self.tx.open_table($def))
                }

                fn $name_mut(&mut self) -> Result<&mut Table<'a, $k, $v>, FsError> {
                    self.$getter()?;
                    Ok(self.$name.get_mut().expect("just opened"))
                }
            )*
        }
    };
}

write_tables! {
    unloaded, unloaded_t, unloaded_mut, UNLOADED: u64 => ();
    inodes, inodes_t, inodes_mut, INODES: u64 => Sealed;
    dirents, dirents_t, dirents_mut, DIRENTS: NameKey => Sealed;
    parents, parents_t, parents_mut, PARENTS: ParentKey => ();
    xattrs, xattrs_t, xattrs_mut, XATTRS: NameKey => Sealed;
    extents, extents_t, extents_mut, EXTENTS: (u64, u64) => Sealed;
    meta, meta_t, meta_mut, META: &'static str => u64;
    snapshots, snapshots_t, snapshots_mut_inner, SNAPSHOTS: u64 => Sealed;
    runs, runs_t, runs_mut_inner, RUNS: u64 => Sealed;
    holds, holds_t, holds_mut_inner, HOLDS: (u64, u64) => Sealed;
    tombstones, tombstones_t, tombstones_mut_inner, TOMBSTONES: u64 => Sealed;
    drills, drills_t, drills_mut_inner, DRILLS: u64 => Sealed;
    audit, audit_t, audit_mut_inner, AUDIT: u64 => Sealed;
    catalog_dirs, catalog_dirs_t, catalog_dirs_mut_inner, CATALOG_DIRS: u64 => Sealed;
    catalog_paths, catalog_paths_t, catalog_paths_mut_inner, CATALOG_PATHS: [u8; 16] => u64;
    catalog_tip, catalog_tip_t, catalog_tip_mut_inner, CATALOG_TIP: &'static str => Sealed;
}

impl<'a> Write<'a> {
    /// Writes an inode.
    pub fn put(&mut self, ino: InodeNo, rec: &InodeRecord) -> Result<(), FsError> {
        self.bytes_written += 8 + {
            let sealer = self.sealer;
            put_inode(self.inodes_mut()?, sealer, ino.0, rec)?
        } as u64;
        Ok(())
    }

    /// Marks every inode that has a row in the xattr table, for a head
    /// being opened.
    pub fn load_xattr_owners(&self) -> Result<(), FsError> {
        let mut inos = Vec::new();
        for row in self.xattrs_t()?.iter().map_err(db)? {
            let ino = row.map_err(db)?.0.value().0;
            if inos.last() != Some(&ino) {
                inos.push(ino);
            }
        }
        self.owners.extend(inos);
        Ok(())
    }

    /// Deletes an inode with its xattrs and extents.
    pub fn delete_inode(&mut self, ino: InodeNo) -> Result<(), FsError> {
        self.inodes_mut()?.remove(ino.0).map_err(db)?;
        self.xattrs_mut()?
            .retain_in((ino.0, [0; 16])..=(ino.0, [0xff; 16]), |_, _| false)
            .map_err(db)?;
        self.extents_mut()?
            .retain_in((ino.0, 0)..=(ino.0, u64::MAX), |_, _| false)
            .map_err(db)?;
        Ok(())
    }

    /// Adds entry `name` -> `rec` to `parent`, and the parent link.
    pub fn link(
        &mut self,
        parent: InodeNo,
        name: &FileName,
        rec: &DirentRecord,
    ) -> Result<(), FsError> {
        let h = name_hash(self.name_key, parent.0, name.as_bytes());
        let v = seal(self.sealer, Kind::HeadDirent, &key_hash(parent.0, &h), rec);
        self.dirents_mut()?
            .insert((parent.0, h), v.as_slice())
            .map_err(db)?;
        self.parents_mut()?
            .insert((rec.ino, parent.0, h), ())
            .map_err(db)?;
        Ok(())
    }

    /// Removes entry `name` (pointing at `child`) from `parent`.
    pub fn unlink(
        &mut self,
        parent: InodeNo,
        name: &FileName,
        child: InodeNo,
    ) -> Result<(), FsError> {
        let h = name_hash(self.name_key, parent.0, name.as_bytes());
        self.dirents_mut()?.remove((parent.0, h)).map_err(db)?;
        self.parents_mut()?
            .remove((child.0, parent.0, h))
            .map_err(db)?;
        Ok(())
    }

    /// Sets or replaces an xattr.
    pub fn set_xattr(&mut self, ino: InodeNo, rec: &XattrRecord) -> Result<(), FsError> {
        self.owners.add(ino);
        let h = xattr_hash(self.name_key, ino.0, &rec.name);
        let v = seal(self.sealer, Kind::HeadXattr, &key_hash(ino.0, &h), rec);
        self.xattrs_mut()?
            .insert((ino.0, h), v.as_slice())
            .map_err(db)?;
        self.bytes_written += 24 + v.len() as u64;
        Ok(())
    }

    /// Removes an xattr; whether it existed.
    pub fn remove_xattr(&mut self, ino: InodeNo, name: &[u8]) -> Result<bool, FsError> {
        let h = xattr_hash(self.name_key, ino.0, name);
        Ok(self.xattrs_mut()?.remove((ino.0, h)).map_err(db)?.is_some())
    }

    /// Records that bytes `off..off+len` of `ino` are chunk `chunk`.
    pub fn put_extent(
        &mut self,
        ino: InodeNo,
        off: u64,
        chunk: ChunkId,
        len: u32,
    ) -> Result<(), FsError> {
        let v = seal(
            self.sealer,
            Kind::HeadExtent,
            &key_pair(ino.0, off),
            &ExtentRecord {
                chunk: chunk.0,
                len,
            },
        );
        self.extents_mut()?
            .insert((ino.0, off), v.as_slice())
            .map_err(db)?;
        Ok(())
    }

    /// Forgets every extent of `ino` that starts at or after `from`.
    pub fn drop_extents_from(&mut self, ino: InodeNo, from: u64) -> Result<(), FsError> {
        self.extents_mut()?
            .retain_in((ino.0, from)..=(ino.0, u64::MAX), |_, _| false)
            .map_err(db)?;
        Ok(())
    }

    /// Forgets the extents of `ino` that start in `from..to`.
    pub fn drop_extents_between(
        &mut self,
        ino: InodeNo,
        from: u64,
        to: u64,
    ) -> Result<(), FsError> {
        if to > from {
            self.extents_mut()?
                .retain_in((ino.0, from)..(ino.0, to), |_, _| false)
                .map_err(db)?;
        }
        Ok(())
    }

    /// Draws the next inode number.
    pub fn next_ino(&mut self) -> Result<InodeNo, FsError> {
        let next = self
            .meta_t()?
            .get("next_ino")
            .map_err(db)?
            .map_or(2, |v| v.value());
        self.meta_mut()?.insert("next_ino", next + 1).map_err(db)?;
        Ok(InodeNo(next))
    }

    /// Reads a counter.
    pub fn counter(&self, name: &'static str) -> Result<u64, FsError> {
        Ok(self
            .meta_t()?
            .get(name)
            .map_err(db)?
            .map_or(0, |v| v.value()))
    }

    /// Sets a counter.
    pub fn set_counter(&mut self, name: &'static str, value: u64) -> Result<(), FsError> {
        self.meta_mut()?.insert(name, value).map_err(db)?;
        Ok(())
    }

    /// Marks `ino` as unlinked but still open; removed at release or next open.
    pub fn add_orphan(&mut self, ino: InodeNo) -> Result<(), FsError> {
        self.parents_mut()?
            .insert((ino.0, 0, [0; 16]), ())
            .map_err(db)?;
        Ok(())
    }

    /// Clears the orphan mark.
    pub fn remove_orphan(&mut self, ino: InodeNo) -> Result<(), FsError> {
        self.parents_mut()?
            .remove((ino.0, 0, [0; 16]))
            .map_err(db)?;
        Ok(())
    }

    /// Whether `dir` has no entries.
    pub fn is_empty_dir(&self, dir: InodeNo) -> Result<bool, FsError> {
        self.check_loaded(dir)?;
        Ok(self
            .dirents_t()?
            .range((dir.0, [0; 16])..=(dir.0, [0xff; 16]))
            .map_err(db)?
            .next()
            .is_none())
    }

    /// Clears the clean-tree id of `dir` and every ancestor still marked
    /// clean: something below them changed, the next snapshot serializes
    /// them. Stops at the first ancestor already dirty (all above it are).
    pub fn dirty_chain(&mut self, dir: InodeNo) -> Result<(), FsError> {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            let Some(mut rec) = self.inode(d)? else {
                continue;
            };
            if rec.clean_tree.is_none() {
                continue;
            }
            rec.clean_tree = None;
            self.put(d, &rec)?;
            for (p, _) in self.parents(d)? {
                if p.0 != 0 {
                    stack.push(p);
                }
            }
        }
        Ok(())
    }

    /// Dirties the directories that list `ino` (all of them, for hard links).
    /// A hard-linked file some of whose directories are still unloaded
    /// loads them all first: nothing says where its other names are, and
    /// each of those directories' trees holds the file's old metadata.
    pub fn dirty_parents(&mut self, ino: InodeNo) -> Result<(), FsError> {
        if self.lazy {
            if let Some(rec) = self.inode(ino)? {
                let known = self.parents(ino)?.iter().filter(|(p, _)| p.0 != 0).count();
                if rec.meta.kind != FileKind::Dir && rec.meta.nlink as usize > known {
                    self.load_all()?;
                }
            }
        }
        for (p, _) in self.parents(ino)? {
            if p.0 != 0 {
                self.dirty_chain(p)?;
            }
        }
        Ok(())
    }

    /// Creates every table that does not exist yet (a new repository's
    /// first transaction), so that read transactions find them all.
    pub fn create_tables(&mut self) -> Result<(), FsError> {
        self.unloaded_t()?;
        self.inodes_t()?;
        self.dirents_t()?;
        self.parents_t()?;
        self.xattrs_t()?;
        self.extents_t()?;
        self.meta_t()?;
        self.snapshots_t()?;
        self.runs_t()?;
        self.holds_t()?;
        self.tombstones_t()?;
        self.drills_t()?;
        self.audit_t()?;
        self.catalog_dirs_t()?;
        self.catalog_paths_t()?;
        self.catalog_tip_t()?;
        Ok(())
    }

    /// Snapshot records.
    pub fn snapshots(&self) -> Result<&Table<'a, u64, Sealed>, FsError> {
        self.snapshots_t()
    }

    /// Snapshot records, to change.
    pub fn snapshots_mut(&mut self) -> Result<&mut Table<'a, u64, Sealed>, FsError> {
        self.snapshots_mut_inner()
    }

    /// Backup-run records, to change.
    pub fn runs_mut(&mut self) -> Result<&mut Table<'a, u64, Sealed>, FsError> {
        self.runs_mut_inner()
    }

    /// Legal holds, every revision.
    pub fn holds(&self) -> Result<&Table<'a, (u64, u64), Sealed>, FsError> {
        self.holds_t()
    }

    /// Legal holds, to add a revision.
    pub fn holds_mut(&mut self) -> Result<&mut Table<'a, (u64, u64), Sealed>, FsError> {
        self.holds_mut_inner()
    }

    /// Forgotten snapshots' links in the hash chain.
    pub fn tombstones(&self) -> Result<&Table<'a, u64, Sealed>, FsError> {
        self.tombstones_t()
    }

    /// Forgotten snapshots, to add one.
    pub fn tombstones_mut(&mut self) -> Result<&mut Table<'a, u64, Sealed>, FsError> {
        self.tombstones_mut_inner()
    }

    /// The audit log.
    pub fn audit(&self) -> Result<&Table<'a, u64, Sealed>, FsError> {
        self.audit_t()
    }

    /// The audit log, to append to.
    pub fn audit_mut(&mut self) -> Result<&mut Table<'a, u64, Sealed>, FsError> {
        self.audit_mut_inner()
    }

    /// Restore drills, to add one.
    pub fn drills_mut(&mut self) -> Result<&mut Table<'a, u64, Sealed>, FsError> {
        self.drills_mut_inner()
    }

    /// The catalog's directory records.
    pub fn catalog_dirs_ref(&self) -> Result<&Table<'a, u64, Sealed>, FsError> {
        self.catalog_dirs_t()
    }

    /// The catalog's path lookup.
    pub fn catalog_paths_ref(&self) -> Result<&Table<'a, [u8; 16], u64>, FsError> {
        self.catalog_paths_t()
    }

    /// The catalog's tip.
    pub fn catalog_tip_ref(&self) -> Result<&Table<'a, &'static str, Sealed>, FsError> {
        self.catalog_tip_t()
    }

    /// Empties the catalog's tables (`strata repair catalog`).
    pub fn clear_catalog(&mut self) -> Result<(), FsError> {
        self.catalog_dirs_mut()?.retain(|_, _| false).map_err(db)?;
        self.catalog_paths_mut()?.retain(|_, _| false).map_err(db)?;
        self.catalog_tip_mut()?.retain(|_, _| false).map_err(db)?;
        self.set_counter("catalog_dir_seq", 0)
    }

    /// The catalog's directory records, to change.
    pub fn catalog_dirs_mut(&mut self) -> Result<&mut Table<'a, u64, Sealed>, FsError> {
        self.catalog_dirs_mut_inner()
    }

    /// The catalog's path lookup, to change.
    pub fn catalog_paths_mut(&mut self) -> Result<&mut Table<'a, [u8; 16], u64>, FsError> {
        self.catalog_paths_mut_inner()
    }

    /// The catalog's tip, to change.
    pub fn catalog_tip_mut(&mut self) -> Result<&mut Table<'a, &'static str, Sealed>, FsError> {
        self.catalog_tip_mut_inner()
    }

    /// Inodes marked as orphans.
    pub fn orphans(&self) -> Result<Vec<InodeNo>, FsError> {
        // Orphan marks are parent rows with parent 0; scan is fine: they are few
        // and only read at open.
        let mut out = Vec::new();
        for row in self.parents_t()?.iter().map_err(db)? {
            let (k, _) = row.map_err(db)?;
            let (child, p, _) = k.value();
            if p == 0 {
                out.push(InodeNo(child));
            }
        }
        Ok(out)
    }
}

/// Directories a reset left unloaded: the head points at a snapshot's tree
/// and copies a directory's entries into its tables only when something
/// first needs them, so a reset costs the same for ten files as for ten
/// million. An unloaded directory is clean (its `clean_tree` is the tree
/// it stands for), so a snapshot reuses that tree as it is.
impl Write<'_> {
    /// Loads `dir` if a reset left it unloaded.
    pub fn load(&mut self, dir: InodeNo) -> Result<(), FsError> {
        if self.lazy && self.unloaded_t()?.get(dir.0).map_err(db)?.is_some() {
            self.load_dir(dir)?;
        }
        Ok(())
    }

    /// Loads every unloaded directory (each load may add its subdirectories).
    pub fn load_all(&mut self) -> Result<(), FsError> {
        loop {
            let next = self
                .unloaded_t()?
                .first()
                .map_err(db)?
                .map(|(k, _)| k.value());
            match next {
                Some(dir) => self.load_dir(InodeNo(dir))?,
                None => return Ok(()),
            }
        }
    }

    /// Whether some directory is still unloaded.
    pub fn any_unloaded(&self) -> Result<bool, FsError> {
        Ok(self.unloaded_t()?.first().map_err(db)?.is_some())
    }

    /// Copies the entries of unloaded directory `dir` from its tree: each
    /// child's inode (unless a hard link already brought it), xattrs and
    /// extents, subdirectories unloaded in turn.
    fn load_dir(&mut self, dir: InodeNo) -> Result<(), FsError> {
        let id = self.get(dir)?.clean_tree.ok_or_else(|| {
            FsError::Corrupt(Fault::new(format!(
                "unloaded directory {} has no tree",
                dir.0
            )))
        })?;
        let tree = (self.trees)(&id)?;
        self.unloaded_mut()?.remove(dir.0).map_err(db)?;
        for e in tree.entries {
            let ino = InodeNo(e.ino);
            let name = FileName::new(&e.name)?;
            let kind = e.meta.kind;
            if self.inode(ino)?.is_none() {
                if kind == FileKind::Dir && e.subtree.is_none() {
                    return Err(FsError::Corrupt(Fault::new(format!(
                        "directory {} in tree {} has no subtree",
                        e.ino,
                        ChunkId(id)
                    ))));
                }
                let rec = InodeRecord {
                    meta: e.meta,
                    target: e.target,
                    clean_tree: e.subtree,
                    facts: None,
                };
                self.put(ino, &rec)?;
                for (name, value) in e.xattrs {
                    self.set_xattr(ino, &XattrRecord { name, value })?;
                }
                for (off, chunk, len) in e.extents {
                    self.put_extent(ino, off, ChunkId(chunk), len)?;
                }
                if kind == FileKind::Dir {
                    self.unloaded_mut()?.insert(ino.0, ()).map_err(db)?;
                }
            }
            let entry = DirentRecord {
                name: e.name,
                ino: e.ino,
                kind,
            };
            self.link(dir, &name, &entry)?;
        }
        Ok(())
    }

    /// Empties the head's tables of inodes, entries, parents, xattrs and
    /// extents and makes `root` the head's root, unloaded, standing for
    /// tree `subtree`. Freeing the old tables' pages is redb's work per
    /// page; no row is read or decoded.
    pub fn reset_to_tree(
        &mut self,
        root: &InodeRecord,
        xattrs: Vec<XattrRecord>,
    ) -> Result<(), FsError> {
        let opened = self.unloaded.get().is_some()
            || self.inodes.get().is_some()
            || self.dirents.get().is_some()
            || self.parents.get().is_some()
            || self.xattrs.get().is_some()
            || self.extents.get().is_some();
        if opened {
            return Err(FsError::Io(Fault::new(
                "reset: the head's tables were opened before they were emptied",
            )));
        }
        self.tx.delete_table(UNLOADED).map_err(db_err)?;
        self.tx.delete_table(INODES).map_err(db_err)?;
        self.tx.delete_table(DIRENTS).map_err(db_err)?;
        self.tx.delete_table(PARENTS).map_err(db_err)?;
        self.tx.delete_table(XATTRS).map_err(db_err)?;
        self.tx.delete_table(EXTENTS).map_err(db_err)?;
        self.create_tables()?;
        if root.meta.kind != FileKind::Dir || root.clean_tree.is_none() {
            return Err(FsError::Corrupt(Fault::new(
                "a snapshot's root is not a directory tree",
            )));
        }
        self.put(InodeNo::ROOT, root)?;
        for x in xattrs {
            self.set_xattr(InodeNo::ROOT, &x)?;
        }
        self.unloaded_mut()?
            .insert(InodeNo::ROOT.0, ())
            .map_err(db)?;
        self.lazy = true;
        // head/ no longer holds a failed run's leftovers: the marker goes
        // in the same transaction, so no crash separates the two.
        super::leftovers::clear(self.tx)
    }
}
