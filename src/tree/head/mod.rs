//! The head: the mutable POSIX tree that backups are written into.
//!
//! [`Head`] is the filesystem type the mount translates FUSE requests to; it
//! has no FUSE types and every test can drive it directly. Inodes, directory
//! entries, extended attributes and file extents live in redb tables
//! ([`records`]); file bytes go through the chunk store ([`content`]).
//!
//! Durability: every operation commits its own transaction without forcing
//! it to disk. [`Head::commit`] (called by fsync, by snapshots, and on the
//! cadence of [`cadence`]: every [`COMMIT_INTERVAL`] or [`COMMIT_BYTES`]
//! written, from a committer thread in the daemon) syncs the packs and commits durably, which also
//! makes every earlier head transaction durable. A crash loses at most the
//! operations since the last durable commit, and never leaves the index
//! pointing at bytes that are not on disk.

pub mod acl;
pub mod cadence;
pub mod content;
pub mod leftovers;
pub mod records;
pub mod reset;
pub mod txn;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{ReadableTable, ReadableTableMetadata};

pub use crate::tree::types::*;
use acl::Acl;
use records::{DirentRecord, InodeRecord, XattrRecord};
use txn::{Read, Reader, Write};

use crate::store::crypto::Sealer;
use crate::store::repo::Repo;
use crate::sys::sync::Recover;
use crate::tree::objects::{SnapshotRow, Tree};
use crate::tree::reader::ChunkReader;

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
    /// Index key and value bytes written by the last operation (a create
    /// costs a few hundred, whatever the directory's size).
    pub last_txn_index_bytes: AtomicU64,
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
    files: Mutex<HashMap<InodeNo, Arc<Mutex<content::FileState>>>>,
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
            .map_err(|e| FsError::Io(e.to_string()))?;
        let id = repo
            .config()
            .repo_id()
            .map_err(|e| FsError::Io(e.to_string()))?;
        let head = Head {
            sealer: Sealer::new(suite, id, &keys.index),
            name_key: keys.name,
            repo,
            files: Mutex::new(HashMap::new()),
            open_counts: Mutex::new(HashMap::new()),
            reader: ChunkReader::default(),
            commit_lock: Mutex::new(()),
            cadence: cadence::Cadence::default(),
            counters: HeadCounters::default(),
            lazy: AtomicBool::new(false),
        };
        head.transact(|w| {
            w.create_tables()?;
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
        Read::begin(
            self.repo.store().index().database(),
            &self.sealer,
            &self.name_key,
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
        let (out, bytes) = txn::write(db, &self.sealer, &self.name_key, &self.lazy, &trees, f)?;
        self.counters
            .last_txn_index_bytes
            .store(bytes, Ordering::Relaxed);
        Ok(out)
    }

    /// Makes everything acknowledged so far durable: packs synced, then one
    /// durable index commit that carries every earlier head transaction.
    pub fn commit(&self) -> Result<(), FsError> {
        self.checkpoint_open_files();
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
        // Lock order: a file state before the map, never the reverse.
        let state = self.files.locked().get(&ino).cloned();
        if let Some(state) = state {
            // A state lost to a panic was marked incomplete; `rec` stands.
            if let Ok(st) = self.lock_state(&state) {
                st.overlay_attr(&mut attr);
            }
        }
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

    /// Creates a node of `kind` named `name` in `parent`, owned by the
    /// caller (group from a setgid parent), with `perm` less `umask`.
    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        kind: FileKind,
        perm: u32,
        umask: u32,
        rdev: u64,
        target: &[u8],
    ) -> Result<Attr, FsError> {
        let (ino, rec) = self.transact(|w| {
            w.load(parent)?;
            let mut dir = w.get(parent)?;
            if dir.meta.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            if w.dirent(parent, name)?.is_some() {
                return Err(FsError::Exists);
            }
            let now = Timestamp::now();
            let setgid_dir = dir.meta.perm & libc::S_ISGID != 0;
            // A default ACL on the directory replaces the umask.
            let default_acl = match (kind, w.xattr(parent, acl::DEFAULT)?) {
                (FileKind::Symlink, _) | (_, None) => None,
                (_, Some(x)) => Some(Acl::parse(&x.value)?),
            };
            let (mut perm, access_acl) = match &default_acl {
                Some(default) => {
                    let (access, bits) = default.inherit(perm & 0o7777);
                    (bits, (!access.is_minimal()).then_some(access))
                }
                None => (perm & 0o7777 & !(umask & 0o777), None),
            };
            if kind == FileKind::Dir && setgid_dir {
                perm |= libc::S_ISGID;
            }
            let ino = w.next_ino()?;
            if let Some(access) = access_acl {
                w.set_xattr(
                    ino,
                    &XattrRecord {
                        name: acl::ACCESS.to_vec(),
                        value: access.encode(),
                    },
                )?;
            }
            if let (FileKind::Dir, Some(default)) = (kind, &default_acl) {
                w.set_xattr(
                    ino,
                    &XattrRecord {
                        name: acl::DEFAULT.to_vec(),
                        value: default.encode(),
                    },
                )?;
            }
            let meta = Meta {
                kind,
                perm,
                uid: caller.uid,
                gid: if setgid_dir { dir.meta.gid } else { caller.gid },
                nlink: if kind == FileKind::Dir { 2 } else { 1 },
                size: if kind == FileKind::Symlink {
                    target.len() as u64
                } else {
                    0
                },
                atime: now,
                mtime: now,
                ctime: now,
                btime: now,
                rdev,
            };
            let rec = InodeRecord {
                meta,
                target: target.to_vec(),
                clean_tree: None,
            };
            w.put(ino, &rec)?;
            w.link(
                parent,
                name,
                &DirentRecord {
                    name: name.as_bytes().to_vec(),
                    ino: ino.0,
                    kind,
                },
            )?;
            if kind == FileKind::Dir {
                dir.meta.nlink += 1;
            }
            dir.meta.mtime = now;
            dir.meta.ctime = now;
            w.put(parent, &dir)?;
            w.dirty_chain(parent)?;
            Ok((ino, rec))
        })?;
        Ok(self.attr_of(ino, &rec))
    }

    /// Creates a regular file.
    pub fn create(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        perm: u32,
        umask: u32,
    ) -> Result<Attr, FsError> {
        let _op = caller.span("create");
        self.create_node(caller, parent, name, FileKind::File, perm, umask, 0, &[])
    }

    /// Creates a directory.
    pub fn mkdir(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        perm: u32,
        umask: u32,
    ) -> Result<Attr, FsError> {
        let _op = caller.span("mkdir");
        self.create_node(caller, parent, name, FileKind::Dir, perm, umask, 0, &[])
    }

    /// Creates a device node, fifo, socket or regular file from a full st_mode.
    pub fn mknod(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        mode: u32,
        umask: u32,
        rdev: u64,
    ) -> Result<Attr, FsError> {
        let _op = caller.span("mknod");
        let kind = FileKind::from_mode(mode).ok_or(FsError::Invalid("unknown file type"))?;
        if matches!(kind, FileKind::Dir | FileKind::Symlink) {
            return Err(FsError::Invalid(
                "mknod cannot make directories or symlinks",
            ));
        }
        self.create_node(caller, parent, name, kind, mode, umask, rdev, &[])
    }

    /// Creates a symbolic link.
    pub fn symlink(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        target: &[u8],
    ) -> Result<Attr, FsError> {
        let _op = caller.span("symlink");
        if target.is_empty() || target.len() > 4096 {
            return Err(FsError::Invalid("symlink target must be 1..4096 bytes"));
        }
        self.create_node(caller, parent, name, FileKind::Symlink, 0o777, 0, 0, target)
    }

    /// Adds a hard link `newparent/newname` to `ino`.
    pub fn link(
        &self,
        caller: Caller,
        ino: InodeNo,
        newparent: InodeNo,
        newname: &FileName,
    ) -> Result<Attr, FsError> {
        let _op = caller.span("link");
        let rec = self.transact(|w| {
            let mut rec = w.get(ino)?;
            if rec.meta.kind == FileKind::Dir {
                return Err(FsError::Invalid(
                    "hard links to directories are not allowed",
                ));
            }
            if rec.meta.nlink >= 65_000 {
                return Err(FsError::TooManyLinks);
            }
            w.load(newparent)?;
            let mut dir = w.get(newparent)?;
            if dir.meta.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            if w.dirent(newparent, newname)?.is_some() {
                return Err(FsError::Exists);
            }
            let now = Timestamp::now();
            rec.meta.nlink += 1;
            rec.meta.ctime = now;
            w.put(ino, &rec)?;
            w.link(
                newparent,
                newname,
                &DirentRecord {
                    name: newname.as_bytes().to_vec(),
                    ino: ino.0,
                    kind: rec.meta.kind,
                },
            )?;
            dir.meta.mtime = now;
            dir.meta.ctime = now;
            w.put(newparent, &dir)?;
            w.dirty_parents(ino)?;
            Ok(rec)
        })?;
        Ok(self.attr_of(ino, &rec))
    }

    /// Removes a non-directory entry.
    pub fn unlink(&self, caller: Caller, parent: InodeNo, name: &FileName) -> Result<(), FsError> {
        let _op = caller.span("unlink");
        let open = self.open_counts.locked().clone();
        let (child, gone) = self.transact(|w| {
            w.load(parent)?;
            let entry = w.dirent(parent, name)?.ok_or(FsError::NotFound)?;
            if entry.kind == FileKind::Dir {
                return Err(FsError::IsDir);
            }
            let child = InodeNo(entry.ino);
            w.dirty_parents(child)?;
            w.unlink(parent, name, child)?;
            touch_dir(w, parent)?;
            Ok((
                child,
                drop_link(w, child, open.get(&child).copied().unwrap_or(0) > 0)?,
            ))
        })?;
        if gone {
            self.files.locked().remove(&child);
        }
        Ok(())
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, caller: Caller, parent: InodeNo, name: &FileName) -> Result<(), FsError> {
        let _op = caller.span("rmdir");
        self.transact(|w| {
            w.load(parent)?;
            let entry = w.dirent(parent, name)?.ok_or(FsError::NotFound)?;
            if entry.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            let child = InodeNo(entry.ino);
            w.load(child)?;
            if !w.is_empty_dir(child)? {
                return Err(FsError::NotEmpty);
            }
            w.dirty_chain(parent)?;
            w.unlink(parent, name, child)?;
            let mut dir = w.get(parent)?;
            dir.meta.nlink -= 1;
            w.put(parent, &dir)?;
            touch_dir(w, parent)?;
            w.delete_inode(child)
        })
    }

    /// Renames `parent/name` to `newparent/newname`.
    pub fn rename(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        newparent: InodeNo,
        newname: &FileName,
        mode: RenameMode,
    ) -> Result<(), FsError> {
        let _op = caller.span("rename");
        let open = self.open_counts.locked().clone();
        let mut replaced_gone = None;
        let result = self.transact(|w| {
            w.load(parent)?;
            w.load(newparent)?;
            let src = w.dirent(parent, name)?.ok_or(FsError::NotFound)?;
            if w.get(newparent)?.meta.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            let dst = w.dirent(newparent, newname)?;
            if parent == newparent && name == newname {
                return match (mode, dst) {
                    (RenameMode::NoReplace, Some(_)) => Err(FsError::Exists),
                    _ => Ok(()),
                };
            }
            // Checked in the order Linux checks them.
            if mode == RenameMode::NoReplace && dst.is_some() {
                return Err(FsError::Exists);
            }
            if src.kind == FileKind::Dir && is_ancestor(w, InodeNo(src.ino), newparent)? {
                return Err(FsError::Loop);
            }
            if let Some(dst) = &dst {
                if dst.ino == src.ino {
                    // Two names of one inode: rename(2) does nothing.
                    return Ok(());
                }
            }
            w.dirty_chain(parent)?;
            w.dirty_chain(newparent)?;
            match (mode, dst) {
                (RenameMode::Exchange, None) => Err(FsError::NotFound),
                (RenameMode::Exchange, Some(dst)) => {
                    if InodeNo(dst.ino) != parent
                        && dst.kind == FileKind::Dir
                        && is_ancestor(w, InodeNo(dst.ino), parent)?
                    {
                        return Err(FsError::Loop);
                    }
                    w.unlink(parent, name, InodeNo(src.ino))?;
                    w.unlink(newparent, newname, InodeNo(dst.ino))?;
                    w.link(
                        parent,
                        name,
                        &DirentRecord {
                            name: name.as_bytes().to_vec(),
                            ..dst.clone()
                        },
                    )?;
                    w.link(
                        newparent,
                        newname,
                        &DirentRecord {
                            name: newname.as_bytes().to_vec(),
                            ..src.clone()
                        },
                    )?;
                    let moved_dirs =
                        (src.kind == FileKind::Dir) as i64 - (dst.kind == FileKind::Dir) as i64;
                    adjust_nlink(w, parent, -moved_dirs)?;
                    adjust_nlink(w, newparent, moved_dirs)?;
                    touch(w, InodeNo(src.ino))?;
                    touch(w, InodeNo(dst.ino))?;
                    touch_dir(w, parent)?;
                    touch_dir(w, newparent)
                }
                (RenameMode::NoReplace, Some(_)) => Err(FsError::Exists),
                (_, dst) => {
                    if let Some(dst) = dst {
                        match (src.kind == FileKind::Dir, dst.kind == FileKind::Dir) {
                            (true, false) => return Err(FsError::NotDir),
                            (false, true) => return Err(FsError::IsDir),
                            (true, true) => {
                                w.load(InodeNo(dst.ino))?;
                                if !w.is_empty_dir(InodeNo(dst.ino))? {
                                    return Err(FsError::NotEmpty);
                                }
                                w.unlink(newparent, newname, InodeNo(dst.ino))?;
                                adjust_nlink(w, newparent, -1)?;
                                w.delete_inode(InodeNo(dst.ino))?;
                            }
                            (false, false) => {
                                let child = InodeNo(dst.ino);
                                w.dirty_parents(child)?;
                                w.unlink(newparent, newname, child)?;
                                if drop_link(w, child, open.get(&child).copied().unwrap_or(0) > 0)?
                                {
                                    replaced_gone = Some(child);
                                }
                            }
                        }
                    }
                    w.unlink(parent, name, InodeNo(src.ino))?;
                    w.link(
                        newparent,
                        newname,
                        &DirentRecord {
                            name: newname.as_bytes().to_vec(),
                            ..src.clone()
                        },
                    )?;
                    if src.kind == FileKind::Dir && parent != newparent {
                        adjust_nlink(w, parent, -1)?;
                        adjust_nlink(w, newparent, 1)?;
                    }
                    touch(w, InodeNo(src.ino))?;
                    touch_dir(w, parent)?;
                    touch_dir(w, newparent)
                }
            }
        });
        if let Some(gone) = replaced_gone {
            self.files.locked().remove(&gone);
        }
        result
    }

    /// Changes attributes; a size change truncates or extends with a hole.
    pub fn setattr(&self, caller: Caller, ino: InodeNo, set: &SetAttr) -> Result<Attr, FsError> {
        let _op = caller.span("setattr");
        if let Some(size) = set.size {
            if self.rtx()?.get(ino)?.meta.kind != FileKind::File {
                return Err(FsError::Invalid("only regular files have a size to set"));
            }
            self.truncate(ino, size)?;
        }
        let rec = self.transact(|w| {
            let mut rec = w.get(ino)?;
            let now = Timestamp::now();
            if let Some(perm) = set.perm {
                rec.meta.perm = perm & 0o7777;
                // Keep the access ACL in step: its mask (or group) follows the group bits.
                if let Some(x) = w.xattr(ino, acl::ACCESS)? {
                    let mut access = Acl::parse(&x.value)?;
                    access.chmod(rec.meta.perm);
                    w.set_xattr(
                        ino,
                        &XattrRecord {
                            name: x.name,
                            value: access.encode(),
                        },
                    )?;
                }
            }
            if let Some(uid) = set.uid {
                rec.meta.uid = uid;
            }
            if let Some(gid) = set.gid {
                rec.meta.gid = gid;
            }
            // As Linux does: a new owner (of any non-directory), or a
            // truncate by someone other than root, takes setuid (and
            // executable setgid) off, unless the same call sets the mode.
            let owner = set.uid.is_some() || set.gid.is_some();
            let truncate = set.size.is_some() && caller.uid != 0;
            let kills = (owner && rec.meta.kind != FileKind::Dir)
                || (truncate && rec.meta.kind == FileKind::File);
            if kills && set.perm.is_none() {
                rec.meta.perm = without_setid(rec.meta.perm);
            }
            if let Some(t) = set.atime {
                rec.meta.atime = t;
            }
            if let Some(t) = set.mtime {
                rec.meta.mtime = t;
            }
            rec.meta.ctime = now;
            w.put(ino, &rec)?;
            w.dirty_parents(ino)?;
            Ok(rec)
        })?;
        // An explicit mtime (utimensat after a copy) wins over the pending write's.
        let state = self.files.locked().get(&ino).cloned();
        if let Some(state) = state {
            self.lock_state(&state)?.attrs_set(set);
        }
        Ok(self.attr_of(ino, &rec))
    }

    /// Takes setuid and executable setgid off a file before a write by
    /// someone other than its owner's privileges allow (the kernel asks,
    /// with FUSE's kill-suid write flag).
    pub fn kill_setid(&self, caller: Caller, ino: InodeNo) -> Result<(), FsError> {
        let attr = self.getattr(caller, ino)?;
        if attr.kind != FileKind::File || without_setid(attr.perm) == attr.perm {
            return Ok(());
        }
        let set = SetAttr {
            perm: Some(without_setid(attr.perm)),
            ..SetAttr::default()
        };
        self.setattr(caller, ino, &set).map(|_| ())
    }

    /// Sets extended attribute `name`. With `create` it must not exist, with
    /// `replace` it must.
    pub fn setxattr(
        &self,
        caller: Caller,
        ino: InodeNo,
        name: &[u8],
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> Result<(), FsError> {
        let _op = caller.span("setxattr");
        if name.is_empty() || name.len() > 255 {
            return Err(FsError::Invalid("xattr name must be 1..255 bytes"));
        }
        if value.len() > XATTR_MAX {
            return Err(FsError::TooLarge);
        }
        self.transact(|w| {
            let mut rec = w.get(ino)?;
            let exists = w.xattr(ino, name)?.is_some();
            if create && exists {
                return Err(FsError::Exists);
            }
            if replace && !exists {
                return Err(FsError::NoAttr);
            }
            let stored = if name == acl::ACCESS {
                // The mode follows the access ACL; one that says no more
                // than the mode is not kept.
                let access = Acl::parse(value)?;
                rec.meta.perm = (rec.meta.perm & 0o7000) | access.mode_bits();
                !access.is_minimal()
            } else if name == acl::DEFAULT {
                if rec.meta.kind != FileKind::Dir {
                    return Err(FsError::PermissionDenied);
                }
                Acl::parse(value)?;
                true
            } else {
                true
            };
            if stored {
                w.set_xattr(
                    ino,
                    &XattrRecord {
                        name: name.to_vec(),
                        value: value.to_vec(),
                    },
                )?;
            } else {
                w.remove_xattr(ino, name)?;
            }
            rec.meta.ctime = Timestamp::now();
            w.put(ino, &rec)?;
            w.dirty_parents(ino)
        })
    }

    /// An extended attribute's value.
    pub fn getxattr(&self, caller: Caller, ino: InodeNo, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let _op = caller.span("getxattr");
        let r = self.rtx()?;
        r.get(ino)?;
        Ok(r.xattr(ino, name)?.ok_or(FsError::NoAttr)?.value)
    }

    /// Names of all extended attributes, sorted.
    pub fn listxattr(&self, caller: Caller, ino: InodeNo) -> Result<Vec<Vec<u8>>, FsError> {
        let _op = caller.span("listxattr");
        let r = self.rtx()?;
        r.get(ino)?;
        Ok(r.xattrs(ino)?.into_iter().map(|x| x.name).collect())
    }

    /// Removes an extended attribute.
    pub fn removexattr(&self, caller: Caller, ino: InodeNo, name: &[u8]) -> Result<(), FsError> {
        let _op = caller.span("removexattr");
        self.transact(|w| {
            let mut rec = w.get(ino)?;
            if !w.remove_xattr(ino, name)? {
                return Err(FsError::NoAttr);
            }
            rec.meta.ctime = Timestamp::now();
            w.put(ino, &rec)?;
            w.dirty_parents(ino)
        })
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
        let table = r.snapshots()?;
        let last: Option<SnapshotRow> = match table.last().map_err(records::db)? {
            Some((k, v)) => Some(records::open(
                r.sealer(),
                crate::store::format::Kind::IndexSnapshot,
                &k.value().to_le_bytes(),
                v.value(),
            )?),
            None => None,
        };
        let last = last.map(|row| row.record.stats).unwrap_or_default();
        Ok(HeadStats {
            inodes: r.inode_count()?,
            snapshots: table.len().map_err(records::db)?,
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
        *self.open_counts.locked().entry(ino).or_insert(0) += 1;
        Ok(attr)
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

/// Updates a directory's mtime and ctime.
fn touch_dir(w: &mut Write<'_>, dir: InodeNo) -> Result<(), FsError> {
    let mut rec = w.get(dir)?;
    let now = Timestamp::now();
    rec.meta.mtime = now;
    rec.meta.ctime = now;
    w.put(dir, &rec)
}

/// Updates an inode's ctime.
fn touch(w: &mut Write<'_>, ino: InodeNo) -> Result<(), FsError> {
    let mut rec = w.get(ino)?;
    rec.meta.ctime = Timestamp::now();
    w.put(ino, &rec)
}

fn adjust_nlink(w: &mut Write<'_>, dir: InodeNo, by: i64) -> Result<(), FsError> {
    if by != 0 {
        let mut rec = w.get(dir)?;
        rec.meta.nlink = (rec.meta.nlink as i64 + by) as u32;
        w.put(dir, &rec)?;
    }
    Ok(())
}

/// Drops one link of `child`; at zero links the inode goes, or becomes an
/// orphan while it is open. Returns whether it went.
fn drop_link(w: &mut Write<'_>, child: InodeNo, is_open: bool) -> Result<bool, FsError> {
    let mut rec = w.get(child)?;
    rec.meta.nlink = rec.meta.nlink.saturating_sub(1);
    rec.meta.ctime = Timestamp::now();
    if rec.meta.nlink > 0 {
        w.put(child, &rec)?;
        return Ok(false);
    }
    if is_open {
        w.put(child, &rec)?;
        w.add_orphan(child)?;
        return Ok(false);
    }
    w.delete_inode(child)?;
    Ok(true)
}

/// Whether `ancestor` is `dir` or one of its ancestors.
fn is_ancestor(w: &Write<'_>, ancestor: InodeNo, dir: InodeNo) -> Result<bool, FsError> {
    let mut d = dir;
    loop {
        if d == ancestor {
            return Ok(true);
        }
        match w.parents(d)?.first() {
            Some((p, _)) if p.0 != 0 => d = *p,
            _ => return Ok(false),
        }
    }
}

/// `perm` without setuid, and without setgid when group-executable (a
/// setgid bit without group execute marks mandatory locking, not privilege).
fn without_setid(perm: u32) -> u32 {
    let mut p = perm & !libc::S_ISUID;
    if p & libc::S_IXGRP != 0 {
        p &= !libc::S_ISGID;
    }
    p
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
