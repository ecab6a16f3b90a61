//! The head: the mutable POSIX tree that backups are written into.
//!
//! [`Head`] is the filesystem type the mount translates FUSE requests to; it
//! has no FUSE types and every test can drive it directly. Inodes, directory
//! entries, extended attributes and file extents live in redb tables
//! ([`records`], written through [`txn`]); file bytes go through the chunk
//! store ([`content`]). This file holds the head's life cycle, commits,
//! lookups, open and release; the namespace operations (create, link,
//! unlink, rename) are in `names.rs`, the attributes (setattr, xattrs,
//! ACLs) in `attrs.rs` (with `xattr_owners.rs`, which answers "no such
//! attribute" for most files from memory), a reset in [`reset`].
//!
//! Durability: every operation commits its own transaction without forcing
//! it to disk. [`Head::commit`] (called by fsync, by snapshots, and on the
//! cadence of [`cadence`]: every [`COMMIT_INTERVAL`] or [`COMMIT_BYTES`]
//! written, from a committer thread in the daemon) syncs the packs and commits durably, which also
//! makes every earlier head transaction durable. A crash loses at most the
//! operations since the last durable commit, and never leaves the index
//! pointing at bytes that are not on disk.

pub mod acl;
mod attrs;
pub mod cadence;
pub mod content;
pub mod leftovers;
mod names;
pub mod records;
pub mod reset;
mod tiering;
pub mod txn;
mod xattr_owners;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redb::ReadableTableMetadata;

use records::InodeRecord;
use txn::{Read, Reader, Write};

use crate::store::crypto::Sealer;
use crate::store::repo::Repo;
use crate::sys::sync::Recover;
use crate::tree::classify::Classify;
use crate::tree::objects::Tree;
use crate::tree::reader::ChunkReader;
use crate::tree::types::{
    Attr, Caller, DirEntry, Fault, FileKind, FileName, FsError, FsStats, InodeNo, Meta, OpenMode,
    SetAttr, Timestamp,
};

/// The longest time between durable commits of the head.
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// The most bytes written between durable commits of the head.
pub const COMMIT_BYTES: u64 = 64 << 20;
/// Largest extended attribute value (Linux's XATTR_SIZE_MAX).
pub const XATTR_MAX: usize = 64 << 10;
/// Entries returned by one [`Head::readdir`] call.
pub const READDIR_BATCH: usize = 256;

/// Counters that make the head's costs checkable (`strata stats --json`).
#[derive(Debug, Default)]
pub struct HeadCounters {
    /// Bytes held in staging (overwrites not yet re-chunked), now.
    pub staging_bytes: AtomicU64,
    /// Directories serialized by the last snapshot.
    pub last_snapshot_dirs: AtomicU64,
    /// Durable commits.
    pub durable_commits: AtomicU64,
    /// Of those, the committer thread's.
    pub background_commits: AtomicU64,
    /// Write transactions of the head (recording a stream's chunks in
    /// batches is checked by it).
    pub write_txns: AtomicU64,
    /// Read transactions of the filesystem calls (answering an absent
    /// xattr from memory is checked by it).
    pub read_txns: AtomicU64,
    /// Index key and value bytes written by the last operation (a create
    /// costs a few hundred, whatever the directory's size).
    pub last_txn_index_bytes: AtomicU64,
    /// Catalog records the last catalog update wrote (one snapshot taken
    /// in): the directories its diff touched, not the tree's size.
    pub last_catalog_records: AtomicU64,
    /// Trees the last catalog update read.
    pub last_catalog_trees: AtomicU64,
}

/// What `strata stats` shows of the head. The live counters (staging, last
/// operation) describe this process: from the daemon, `strata status`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HeadStats {
    /// Inodes in the head.
    pub inodes: u64,
    /// Snapshots.
    pub snapshots: u64,
    /// Directories the newest snapshot serialized.
    pub last_snapshot_dirs_serialized: u64,
    /// Directories the newest snapshot reused unchanged.
    pub last_snapshot_dirs_reused: u64,
    /// Bytes of overwrites held for re-chunking now.
    pub staging_bytes: u64,
    /// Index bytes written by the last operation.
    pub last_op_index_bytes: u64,
}

/// The mutable tree of one unlocked repository.
pub struct Head {
    repo: Repo,
    sealer: Sealer,
    name_key: [u8; 32],
    content: content::Content,
    open_counts: Mutex<HashMap<InodeNo, u32>>,
    reader: ChunkReader,
    /// Serializes durable commits with snapshots, so a snapshot's write
    /// transaction (which stores tree objects) never waits on a store
    /// commit that waits on it.
    commit_lock: Mutex<()>,
    /// When to commit durably.
    cadence: cadence::Cadence,
    /// Whether a reset may have left directories unloaded (see
    /// `reset.rs`): set by a reset or at open, never cleared while open.
    lazy: AtomicBool,
    /// Which inodes may have extended attributes.
    xattr_owners: xattr_owners::XattrOwners,
    /// Tier classification, when the host configures tiers ([`tiering`]).
    classifier: RwLock<Option<Arc<dyn Classify>>>,
    /// Its sample size (0: none), read by every write without a lock.
    sample: AtomicUsize,
    /// Cost counters.
    pub counters: HeadCounters,
}

/// A holder of the head's commit serialization ([`Head::serial`]).
pub struct Serial<'h> {
    head: &'h Head,
    _guard: std::sync::MutexGuard<'h, ()>,
}

impl Serial<'_> {
    /// Runs `f` in one write transaction that never triggers the
    /// durable-commit cadence.
    pub fn transact<T>(
        &self,
        f: impl FnOnce(&mut Write<'_>) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        self.head.wtx_no_commit(f)
    }

    /// Makes everything written so far durable.
    pub fn commit(&self) -> Result<(), FsError> {
        self.head.commit_locked()
    }
}

impl Drop for Head {
    fn drop(&mut self) {
        if let Err(e) = self.flush_all(Caller::ROOT).and_then(|_| self.commit()) {
            tracing::warn!(error = %e, "final head commit failed");
        }
        zeroize::Zeroize::zeroize(&mut self.name_key);
    }
}

impl Head {
    /// Opens the head of `repo`, creating the root directory of a new
    /// repository and removing files unlinked while open before a crash.
    pub fn new(repo: Repo) -> Result<Head, FsError> {
        let keys = repo.keys();
        let suite = repo
            .config()
            .suite()
            .map_err(|e| FsError::Io(Fault::of(e)))?;
        let id = repo
            .config()
            .repo_id()
            .map_err(|e| FsError::Io(Fault::of(e)))?;
        let head = Head {
            sealer: Sealer::new(suite, id, &keys.index),
            name_key: keys.name,
            repo,
            content: content::Content::default(),
            open_counts: Mutex::new(HashMap::new()),
            reader: ChunkReader::default(),
            commit_lock: Mutex::new(()),
            cadence: cadence::Cadence::default(),
            counters: HeadCounters::default(),
            lazy: AtomicBool::new(false),
            xattr_owners: Default::default(),
            classifier: RwLock::new(None),
            sample: AtomicUsize::new(0),
        };
        head.transact(|w| {
            w.create_tables()?;
            w.load_xattr_owners()?;
            if w.any_unloaded()? {
                head.lazy.store(true, Ordering::SeqCst);
            }
            if w.inode(InodeNo::ROOT)?.is_none() {
                let now = Timestamp::now();
                let meta = Meta {
                    kind: FileKind::Dir,
                    perm: 0o755,
                    uid: 0,
                    gid: 0,
                    nlink: 2,
                    size: 0,
                    atime: now,
                    mtime: now,
                    ctime: now,
                    btime: now,
                    rdev: 0,
                };
                let root = InodeRecord {
                    meta,
                    target: Vec::new(),
                    clean_tree: None,
                    facts: None,
                };
                w.put(InodeNo::ROOT, &root)?;
            }
            let orphans = w.orphans()?;
            for &orphan in &orphans {
                w.delete_inode(orphan)?;
                w.remove_orphan(orphan)?;
            }
            if !orphans.is_empty() {
                tracing::info!(
                    inodes = orphans.len(),
                    "recovery: removed files deleted while still open (an unclean shutdown)"
                );
            }
            Ok(())
        })?;
        head.commit()?;
        Ok(head)
    }

    /// The repository.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// The read path: decoded chunks and read-ahead, shared by reads of
    /// head/ and of snapshots.
    pub fn reader(&self) -> &ChunkReader {
        &self.reader
    }

    /// A read transaction over the head's tables, for walks outside the
    /// filesystem calls (`strata check` naming the files of damaged chunks).
    pub fn rtx(&self) -> Result<Read<'_>, FsError> {
        self.counters.read_txns.fetch_add(1, Ordering::Relaxed);
        Read::begin(
            self.repo.store().index().database(),
            &self.sealer,
            &self.name_key,
            &self.xattr_owners,
            &self.lazy,
        )
    }

    /// Runs `f` in one write transaction, committed at once but not
    /// durably (the cadence may then make it durable).
    pub(in crate::tree) fn transact<T>(
        &self,
        f: impl FnOnce(&mut Write<'_>) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let out = self.wtx_no_commit(f)?;
        self.maybe_commit(0)?;
        Ok(out)
    }

    /// A write transaction that never triggers the durable-commit cadence.
    fn wtx_no_commit<T>(
        &self,
        f: impl FnOnce(&mut Write<'_>) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let db = self.repo.store().index().database();
        let trees = |id: &[u8; 32]| Tree::load(self.repo.store(), id);
        let (out, bytes) = txn::write(
            db,
            &self.sealer,
            &self.name_key,
            &self.xattr_owners,
            &self.lazy,
            &trees,
            f,
        )?;
        self.counters
            .last_txn_index_bytes
            .store(bytes, Ordering::Relaxed);
        self.counters.write_txns.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Makes everything acknowledged so far durable: packs synced, then one
    /// durable index commit that carries every earlier head transaction.
    pub fn commit(&self) -> Result<(), FsError> {
        self.content.checkpoint_open_files(self);
        let _serial = self.commit_lock.locked();
        self.commit_locked()
    }

    /// Serializes the caller with durable commits until the guard drops:
    /// what it writes through [`Serial::transact`] and then commits with
    /// [`Serial::commit`] is durable as one, and no other commit runs in
    /// between (a snapshot, a reset).
    pub fn serial(&self) -> Serial<'_> {
        Serial {
            head: self,
            _guard: self.commit_lock.locked(),
        }
    }

    /// [`Head::commit`] for a caller that holds `commit_lock`.
    fn commit_locked(&self) -> Result<(), FsError> {
        self.cadence.committing();
        self.repo.store().commit()?;
        self.counters
            .durable_commits
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Changes the durable-commit cadence (default [`COMMIT_INTERVAL`],
    /// [`COMMIT_BYTES`]); tests that reason about exact crash states turn
    /// it off with `Duration::MAX, u64::MAX`.
    pub fn set_cadence(&mut self, interval: Duration, bytes: u64) {
        self.cadence.set_limits(interval, bytes);
    }

    /// Commits durably if the cadence says it is time and no committer
    /// thread does it ([`Head::run_committer`]).
    pub fn maybe_commit(&self, written: u64) -> Result<(), FsError> {
        if self.cadence.note(written) == cadence::Due::Here {
            self.commit()?;
        }
        Ok(())
    }

    fn attr_of(&self, ino: InodeNo, rec: &InodeRecord) -> Attr {
        let mut attr = Attr::new(ino, &rec.meta);
        self.content.overlay_attr(self, &mut attr);
        attr
    }

    /// The attributes of `ino`.
    pub fn getattr(&self, caller: Caller, ino: InodeNo) -> Result<Attr, FsError> {
        let _op = caller.span("getattr");
        let rec = self.rtx()?.get(ino)?;
        Ok(self.attr_of(ino, &rec))
    }

    /// Looks up `name` in directory `parent`.
    pub fn lookup(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
    ) -> Result<Attr, FsError> {
        let _op = caller.span("lookup");
        self.loading(|| {
            let r = self.rtx()?;
            if r.get(parent)?.meta.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            let entry = r.dirent(parent, name)?.ok_or(FsError::NotFound)?;
            let ino = InodeNo(entry.ino);
            Ok(self.attr_of(ino, &r.get(ino)?))
        })
    }

    /// Lists directory `dir` from `cursor` (0 = the start); every entry
    /// carries the cursor to resume after it. An empty result is the end.
    pub fn readdir(
        &self,
        caller: Caller,
        dir: InodeNo,
        cursor: u64,
    ) -> Result<Vec<DirEntry>, FsError> {
        let _op = caller.span("readdir");
        // The cursor is the first 8 bytes of the last name hash returned.
        let after = (cursor != 0).then(|| {
            let mut h = [0xffu8; 16];
            h[..8].copy_from_slice(&cursor.to_be_bytes());
            h
        });
        let rows = self.loading(|| {
            let r = self.rtx()?;
            if r.get(dir)?.meta.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            r.dirents_after(dir, after, READDIR_BATCH)
        })?;
        rows.into_iter()
            .map(|(h, d)| {
                Ok(DirEntry {
                    name: FileName::new(&d.name)?,
                    ino: InodeNo(d.ino),
                    kind: d.kind,
                    cursor: u64::from_be_bytes(h[..8].try_into().expect("8 bytes")).max(1),
                })
            })
            .collect()
    }

    /// Reads a symlink's target.
    pub fn readlink(&self, caller: Caller, ino: InodeNo) -> Result<Vec<u8>, FsError> {
        let _op = caller.span("readlink");
        let rec = self.rtx()?.get(ino)?;
        if rec.meta.kind != FileKind::Symlink {
            return Err(FsError::Invalid("not a symbolic link"));
        }
        Ok(rec.target)
    }

    /// Filesystem statistics.
    pub fn statfs(&self, caller: Caller) -> Result<FsStats, FsError> {
        let _op = caller.span("statfs");
        // Cheap enough for df: pack lengths are in memory, the inode count
        // is table metadata.
        let disk = self.repo.disk();
        let packs: u64 = self
            .repo
            .store()
            .pack_records()
            .values()
            .map(|r| r.len)
            .sum();
        let index = disk
            .open(crate::store::format::INDEX_FILE, false)
            .and_then(|f| f.len())
            .unwrap_or(0);
        Ok(FsStats {
            free_bytes: disk.available().unwrap_or(0),
            used_bytes: packs + index,
            inodes: self.rtx()?.inode_count()?,
        })
    }

    /// Counts and cost counters of the head, for `strata stats`.
    pub fn stats(&self) -> Result<HeadStats, FsError> {
        let r = self.rtx()?;
        let last = r
            .last_snapshot()?
            .map(|row| row.record.stats)
            .unwrap_or_default();
        Ok(HeadStats {
            inodes: r.inode_count()?,
            snapshots: r.snapshots()?.len().map_err(records::db)?,
            last_snapshot_dirs_serialized: last.dirs_serialized,
            last_snapshot_dirs_reused: last.dirs_reused,
            staging_bytes: self.counters.staging_bytes.load(Ordering::Relaxed),
            last_op_index_bytes: self.counters.last_txn_index_bytes.load(Ordering::Relaxed),
        })
    }

    /// Notes an open handle on `ino` (an unlinked file lives until the last
    /// is released). [`OpenMode::Truncate`] empties the file first, as
    /// open(2) with O_TRUNC does: size 0, mtime and ctime now, and setuid
    /// dropped when the caller is not root (a truncate by anyone else).
    pub fn open(&self, caller: Caller, ino: InodeNo, mode: OpenMode) -> Result<Attr, FsError> {
        let _op = caller.span("open");
        let attr = match mode {
            OpenMode::Truncate => {
                let set = SetAttr {
                    size: Some(0),
                    ..SetAttr::default()
                };
                self.setattr(caller, ino, &set)?
            }
            OpenMode::Read | OpenMode::Write => self.getattr(caller, ino)?,
        };
        self.note_open(ino);
        Ok(attr)
    }

    /// Counts one more open handle on `ino`.
    fn note_open(&self, ino: InodeNo) {
        *self.open_counts.locked().entry(ino).or_insert(0) += 1;
    }

    /// Releases a handle: finishes pending writes, and removes an unlinked
    /// file when its last handle goes.
    pub fn release(&self, caller: Caller, ino: InodeNo) -> Result<(), FsError> {
        let _op = caller.span("release");
        let last = {
            let mut counts = self.open_counts.locked();
            let n = counts.entry(ino).or_insert(1);
            *n = n.saturating_sub(1);
            let last = *n == 0;
            if last {
                counts.remove(&ino);
            }
            last
        };
        let flushed = self.flush(caller, ino);
        // Only a file unlinked while open needs a transaction here.
        let orphan = last && self.rtx()?.inode(ino)?.is_some_and(|r| r.meta.nlink == 0);
        if orphan {
            self.transact(|w| {
                if let Some(rec) = w.inode(ino)? {
                    if rec.meta.nlink == 0 {
                        w.delete_inode(ino)?;
                        w.remove_orphan(ino)?;
                    }
                }
                Ok(())
            })?;
        }
        flushed
    }
}

#[cfg(test)]
mod tests {
    /// The mount serves requests from several FUSE threads on one `Head`.
    #[test]
    fn head_is_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<super::Head>();
    }
}
