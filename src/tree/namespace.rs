//! The tree a mount shows: the head read-write under `head/`, every
//! snapshot read-only under `snapshots/<UTC time>/`, and `latest` and label
//! symlinks beside them.
//!
//! Inode numbers seen through the mount: the mount root is 1 (FUSE's root);
//! head inodes keep their numbers (all below 2^40), except the head's root,
//! which appears as [`HEAD_INO`]; snapshot inodes are
//! [`snapshot_ino`]`(seq, head inode)`, so hard links share an inode inside
//! one snapshot and never across snapshots; the fixed directories and the
//! symlinks use the highest snapshot number, which no snapshot reaches.
//!
//! The kernel names a snapshot inode only after a lookup or readdirplus
//! returned it, so the entries it may ask about are kept, with the kernel's
//! lookup count, until it forgets them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use crate::store::id::ChunkId;
use crate::sys::runlock;
use crate::sys::sync::{Recover, RecoverRw};
use crate::tree::head::{
    Attr, Caller, FileKind, FileName, FsError, FsStats, Head, InodeNo, Meta, OpenMode, RenameMode,
    SetAttr, Timestamp,
};
use crate::tree::objects::{SnapshotRecord, SnapshotRow, Tree, TreeEntry};
use crate::tree::record::RunRecord;
use crate::tree::snapshot::Snapshots;
use crate::tree::snapshot::{snapshot_ino, SNAPSHOT_INO_BITS};

/// The mount root.
pub const ROOT_INO: u64 = 1;
const VIRTUAL: u64 = ((1 << (64 - SNAPSHOT_INO_BITS)) - 1) << SNAPSHOT_INO_BITS;
/// `head/`.
pub const HEAD_INO: u64 = VIRTUAL | 1;
/// `snapshots/`.
pub const SNAPSHOTS_INO: u64 = VIRTUAL | 2;
/// The first symlink in `snapshots/` (`latest`; labels follow).
const LINK_INO: u64 = VIRTUAL | 16;
/// The name of the symlink to the newest snapshot.
pub const LATEST: &str = "latest";
const HEAD_DIR: &[u8] = b"head";
const SNAPSHOTS_DIR: &[u8] = b"snapshots";
/// Directory trees kept decoded for browsing.
const TREE_CACHE: usize = 256;

/// What a mount inode number stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// The mount root.
    Root,
    /// `snapshots/`.
    Snapshots,
    /// A symlink in `snapshots/` (`latest` or a label), by link number.
    Link(u64),
    /// An inode of the head.
    Head(InodeNo),
    /// An inode of snapshot `seq`.
    Snap {
        /// Snapshot number.
        seq: u64,
        /// Its head inode number.
        ino: u64,
    },
}

impl Node {
    /// The node behind mount inode `ino`.
    pub fn of(ino: u64) -> Node {
        match ino {
            ROOT_INO => Node::Root,
            HEAD_INO => Node::Head(InodeNo::ROOT),
            SNAPSHOTS_INO => Node::Snapshots,
            i if i >= LINK_INO => Node::Link(i - LINK_INO),
            i if i >> SNAPSHOT_INO_BITS == 0 => Node::Head(InodeNo(i)),
            i => Node::Snap {
                seq: i >> SNAPSHOT_INO_BITS,
                ino: i & ((1 << SNAPSHOT_INO_BITS) - 1),
            },
        }
    }

    /// Its mount inode number.
    pub fn ino(self) -> u64 {
        match self {
            Node::Root => ROOT_INO,
            Node::Snapshots => SNAPSHOTS_INO,
            Node::Link(n) => LINK_INO + n,
            Node::Head(InodeNo::ROOT) => HEAD_INO,
            Node::Head(i) => i.0,
            Node::Snap { seq, ino } => snapshot_ino(seq, ino),
        }
    }
}

/// Who may see the mount.
#[derive(Clone, Copy, Debug, Default)]
pub struct Access {
    /// Owner of the mount root and `snapshots/` (the daemon's user).
    pub owner: u32,
    /// A group that may browse (root and `snapshots/` become 0750 to it).
    pub reader_group: Option<u32>,
    /// Other users may enter (root 0755); `head/` still never writable by them.
    pub allow_other: bool,
}

/// One entry of a listing, with its attributes when asked for (readdirplus).
#[derive(Clone, Debug)]
pub struct Listed {
    /// Name.
    pub name: Vec<u8>,
    /// Mount inode number.
    pub ino: u64,
    /// Kind.
    pub kind: FileKind,
    /// Where to resume after this entry.
    pub cursor: u64,
    /// Attributes (with `plus`); the kernel then holds a lookup on it.
    pub attr: Option<Attr>,
}

/// Where a listing goes: the kernel's reply buffer, which may fill.
pub trait DirReply {
    /// Adds `entry`; false when it did not fit, which ends the listing
    /// (the kernel asks again from the entry's cursor).
    fn add(&mut self, entry: Listed) -> bool;
}

/// A listing kept whole (engine callers and tests).
impl DirReply for Vec<Listed> {
    fn add(&mut self, entry: Listed) -> bool {
        self.push(entry);
        true
    }
}

/// The snapshots as `snapshots/` shows them.
#[derive(Default)]
struct Listing {
    /// By directory name (UTC time).
    by_name: BTreeMap<String, SnapshotRow>,
    /// Directory name by snapshot number.
    names: HashMap<u64, String>,
    /// Symlink name → the directory it points at; `latest` first.
    links: BTreeMap<String, String>,
    /// Backup-run records by snapshot number.
    runs: HashMap<u64, RunRecord>,
}

/// Decoded directory trees, oldest insertion evicted first.
type TreeCache = (HashMap<[u8; 32], Arc<Tree>>, VecDeque<[u8; 32]>);

/// A snapshot inode the kernel may still ask about.
struct Known {
    entry: Arc<TreeEntry>,
    lookups: u64,
    /// Its directory's tree and its index there, for reading ahead into
    /// the files after it.
    place: ([u8; 32], usize),
}

/// How far ahead of a reader chunks are decoded, within a file and
/// across the next files of its directory.
const READ_AHEAD: u64 = 8 << 20;

/// The mount's tree over one head.
pub struct Namespace {
    head: Head,
    access: Access,
    born: Timestamp,
    listing: RwLock<Listing>,
    /// Symlink numbers by name, stable for the life of the mount.
    link_numbers: Mutex<Vec<String>>,
    known: Mutex<HashMap<u64, Known>>,
    trees: Mutex<TreeCache>,
}

impl Namespace {
    /// The tree of `head` as a mount shows it.
    pub fn new(head: Head, access: Access) -> Result<Namespace, FsError> {
        let ns = Namespace {
            head,
            access,
            born: Timestamp::now(),
            listing: RwLock::new(Listing::default()),
            link_numbers: Mutex::new(vec![LATEST.to_owned()]),
            known: Mutex::new(HashMap::new()),
            trees: Mutex::new((HashMap::new(), VecDeque::new())),
        };
        ns.reload()?;
        Ok(ns)
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Re-reads the snapshot list (after a snapshot was taken or removed).
    pub fn reload(&self) -> Result<(), FsError> {
        let mut l = Listing {
            runs: Snapshots::of(&self.head).runs()?.into_iter().collect(),
            ..Listing::default()
        };
        for row in Snapshots::of(&self.head).list()? {
            let name = row.record.name();
            if may_be_latest(l.runs.get(&row.record.seq)) {
                l.links.insert(LATEST.to_owned(), name.clone());
                if let Some(label) = &row.record.label {
                    l.links.insert(label.clone(), name.clone());
                }
            }
            l.names.insert(row.record.seq, name.clone());
            l.by_name.insert(name, row);
        }
        *self.listing.write_locked() = l;
        Ok(())
    }

    /// Takes a snapshot, labelled `label`, and shows it.
    pub fn snapshot(&self, caller: Caller, label: Option<&str>) -> Result<SnapshotRecord, FsError> {
        self.snapshot_run(caller, label, None)
    }

    /// Takes a snapshot for a backup run, stored with its run record.
    pub fn snapshot_run(
        &self,
        caller: Caller,
        label: Option<&str>,
        run: Option<&RunRecord>,
    ) -> Result<SnapshotRecord, FsError> {
        if let Some(label) = label {
            check_label(label)?;
        }
        let rec = Snapshots::of(&self.head).take_run(caller, label, run)?;
        self.reload()?;
        Ok(rec)
    }

    /// Replaces the run record of snapshot `seq` (after validation):
    /// `latest` and the label may move.
    pub fn set_run(&self, caller: Caller, seq: u64, run: &RunRecord) -> Result<(), FsError> {
        Snapshots::of(&self.head).set_run(caller, seq, run)?;
        self.reload()
    }

    /// The run record of snapshot `seq`, if a backup run took it.
    pub fn run(&self, seq: u64) -> Option<RunRecord> {
        self.listing.read_locked().runs.get(&seq).cloned()
    }

    /// The snapshots, oldest first.
    pub fn snapshots(&self) -> Vec<SnapshotRow> {
        let l = self.listing.read_locked();
        let mut rows: Vec<SnapshotRow> = l.by_name.values().cloned().collect();
        rows.sort_by_key(|r| r.record.seq);
        rows
    }

    /// The directory name of snapshot `seq`.
    pub fn snapshot_name(&self, seq: u64) -> Option<String> {
        self.listing.read_locked().names.get(&seq).cloned()
    }

    /// Attributes of mount inode `ino`.
    pub fn getattr(&self, caller: Caller, ino: u64) -> Result<Attr, FsError> {
        match Node::of(ino) {
            Node::Root => Ok(self.dir_attr(ROOT_INO)),
            Node::Snapshots => Ok(self.dir_attr(SNAPSHOTS_INO)),
            Node::Link(n) => {
                let name = self.link_name(n)?;
                self.link_attr(&name, n)
            }
            Node::Head(i) => Ok(self.shown(self.head.getattr(caller, i)?)),
            Node::Snap { seq, ino } => Ok(snap_attr(seq, self.entry(seq, ino)?.as_ref())),
        }
    }

    /// Looks up `name` in `parent`. For snapshot inodes this counts as
    /// one kernel reference, released by [`Namespace::forget`].
    pub fn lookup(&self, caller: Caller, parent: u64, name: &[u8]) -> Result<Attr, FsError> {
        match Node::of(parent) {
            Node::Root => match name {
                HEAD_DIR => self.getattr(caller, HEAD_INO),
                SNAPSHOTS_DIR => Ok(self.dir_attr(SNAPSHOTS_INO)),
                _ => Err(FsError::NotFound),
            },
            Node::Snapshots => {
                let name = std::str::from_utf8(name).map_err(|_| FsError::NotFound)?;
                let l = self.listing.read_locked();
                if let Some(row) = l.by_name.get(name) {
                    return Ok(snap_attr(row.record.seq, &row.record.root));
                }
                if l.links.contains_key(name) {
                    drop(l);
                    let n = self.link_number(name);
                    return self.link_attr(name, n);
                }
                Err(FsError::NotFound)
            }
            Node::Link(_) => Err(FsError::NotDir),
            Node::Head(dir) => {
                Ok(self.shown(self.head.lookup(caller, dir, &FileName::new(name)?)?))
            }
            Node::Snap { seq, ino } => {
                let dir = self.entry(seq, ino)?;
                let tree = self.tree_of(&dir)?;
                let i = tree
                    .entries
                    .binary_search_by(|e| e.name.as_slice().cmp(name))
                    .map_err(|_| FsError::NotFound)?;
                let child = &tree.entries[i];
                self.remember(seq, child, (dir.subtree.expect("a directory"), i));
                Ok(snap_attr(seq, child))
            }
        }
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if let Node::Snap { .. } = Node::of(ino) {
            let mut known = self.known.locked();
            if let Some(k) = known.get_mut(&ino) {
                k.lookups = k.lookups.saturating_sub(n);
                if k.lookups == 0 {
                    known.remove(&ino);
                }
            }
        }
    }

    /// Lists `dir` from `cursor` (0 = the start) into `reply`, until it
    /// is full. With `plus`, every entry carries its attributes and, once
    /// `reply` took it, counts as a lookup: an entry that did not fit is
    /// not remembered, as the kernel holds no reference to it.
    pub fn readdir(
        &self,
        caller: Caller,
        dir: u64,
        cursor: u64,
        plus: bool,
        reply: &mut dyn DirReply,
    ) -> Result<(), FsError> {
        let fixed = |entries: Vec<(Vec<u8>, u64, FileKind)>,
                     reply: &mut dyn DirReply|
         -> Result<(), FsError> {
            for (i, (name, ino, kind)) in entries.into_iter().enumerate().skip(cursor as usize) {
                let attr = if plus {
                    Some(self.lookup(caller, dir, &name)?)
                } else {
                    None
                };
                let listed = Listed {
                    name,
                    ino,
                    kind,
                    cursor: i as u64 + 1,
                    attr,
                };
                if !reply.add(listed) {
                    break;
                }
            }
            Ok(())
        };
        match Node::of(dir) {
            Node::Root => fixed(
                vec![
                    (HEAD_DIR.to_vec(), HEAD_INO, FileKind::Dir),
                    (SNAPSHOTS_DIR.to_vec(), SNAPSHOTS_INO, FileKind::Dir),
                ],
                reply,
            ),
            Node::Snapshots => {
                let l = self.listing.read_locked();
                let mut entries: Vec<(Vec<u8>, u64, FileKind)> = l
                    .by_name
                    .iter()
                    .map(|(name, row)| {
                        (
                            name.as_bytes().to_vec(),
                            snapshot_ino(row.record.seq, InodeNo::ROOT.0),
                            FileKind::Dir,
                        )
                    })
                    .collect();
                let links: Vec<String> = l.links.keys().cloned().collect();
                drop(l);
                for name in links {
                    let n = self.link_number(&name);
                    entries.push((name.into_bytes(), LINK_INO + n, FileKind::Symlink));
                }
                fixed(entries, reply)
            }
            Node::Link(_) => Err(FsError::NotDir),
            Node::Head(d) => {
                for e in self.head.readdir(caller, d, cursor)? {
                    let attr = if plus {
                        Some(self.shown(self.head.getattr(caller, e.ino)?))
                    } else {
                        None
                    };
                    let listed = Listed {
                        name: e.name.as_bytes().to_vec(),
                        ino: Node::Head(e.ino).ino(),
                        kind: e.kind,
                        cursor: e.cursor,
                        attr,
                    };
                    if !reply.add(listed) {
                        break;
                    }
                }
                Ok(())
            }
            Node::Snap { seq, ino } => {
                let d = self.entry(seq, ino)?;
                let tree = self.tree_of(&d)?;
                let id = d.subtree.expect("a directory");
                for (i, e) in tree.entries.iter().enumerate().skip(cursor as usize) {
                    let listed = Listed {
                        name: e.name.clone(),
                        ino: snapshot_ino(seq, e.ino),
                        kind: e.meta.kind,
                        cursor: i as u64 + 1,
                        attr: plus.then(|| snap_attr(seq, e)),
                    };
                    if !reply.add(listed) {
                        break;
                    }
                    if plus {
                        self.remember(seq, e, (id, i));
                    }
                }
                Ok(())
            }
        }
    }

    /// Creates a regular file and opens it for writing, in one call (the
    /// kernel's FUSE_CREATE).
    pub fn create_open(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        perm: u32,
        umask: u32,
    ) -> Result<Attr, FsError> {
        let attr = self.head.create_open(
            caller,
            self.writable(parent)?,
            &FileName::new(name)?,
            perm,
            umask,
        )?;
        Ok(self.shown(attr))
    }

    /// A symlink's target.
    pub fn readlink(&self, caller: Caller, ino: u64) -> Result<Vec<u8>, FsError> {
        match Node::of(ino) {
            Node::Link(n) => {
                let name = self.link_name(n)?;
                let l = self.listing.read_locked();
                Ok(l.links
                    .get(&name)
                    .ok_or(FsError::NotFound)?
                    .as_bytes()
                    .to_vec())
            }
            Node::Head(i) => self.head.readlink(caller, i),
            Node::Snap { seq, ino } => {
                let e = self.entry(seq, ino)?;
                if e.meta.kind != FileKind::Symlink {
                    return Err(FsError::Invalid("not a symbolic link"));
                }
                Ok(e.target.clone())
            }
            _ => Err(FsError::Invalid("not a symbolic link")),
        }
    }

    /// Creates a directory; in `snapshots/`, takes a snapshot labelled
    /// `name` and answers with its directory.
    pub fn mkdir(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        perm: u32,
        umask: u32,
    ) -> Result<Attr, FsError> {
        if Node::of(parent) == Node::Snapshots {
            let label = std::str::from_utf8(name)
                .map_err(|_| FsError::Invalid("a snapshot label is ASCII"))?;
            self.refuse_during_a_run()?;
            let rec = self.snapshot(caller, Some(label))?;
            // Logged as `strata snapshot create` is (control.rs).
            tracing::info!(
                seq = rec.seq,
                uid = caller.uid,
                pid = caller.pid,
                label,
                by = "mkdir",
                "snapshot taken"
            );
            return Ok(snap_attr(rec.seq, &rec.root));
        }
        let attr = self.head.mkdir(
            caller,
            self.writable(parent)?,
            &FileName::new(name)?,
            perm,
            umask,
        )?;
        Ok(self.shown(attr))
    }

    /// A snapshot by mkdir while a backup run is in progress would hold its
    /// copy half-done: refused, as `strata snapshot create` refuses it
    /// (which has `--force`; a mkdir has no way to say it).
    fn refuse_during_a_run(&self) -> Result<(), FsError> {
        let id = &self.head.repo().config().id;
        let lock = runlock::path(&crate::sys::mountpoint::runtime_dir(), id);
        match runlock::running(&lock) {
            Ok(None) => Ok(()),
            Ok(Some(holder)) => {
                tracing::warn!(%holder, "snapshot by mkdir refused: a backup run is in progress");
                Err(FsError::Busy("a backup run is in progress"))
            }
            Err(e) => Err(FsError::Io(format!("reading the run lock: {e}"))),
        }
    }

    /// Creates a device node, fifo, socket or regular file.
    pub fn mknod(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u64,
    ) -> Result<Attr, FsError> {
        let attr = self.head.mknod(
            caller,
            self.writable(parent)?,
            &FileName::new(name)?,
            mode,
            umask,
            rdev,
        )?;
        Ok(self.shown(attr))
    }

    /// Creates a symbolic link.
    pub fn symlink(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        target: &[u8],
    ) -> Result<Attr, FsError> {
        let attr = self.head.symlink(
            caller,
            self.writable(parent)?,
            &FileName::new(name)?,
            target,
        )?;
        Ok(self.shown(attr))
    }

    /// Adds a hard link.
    pub fn link(
        &self,
        caller: Caller,
        ino: u64,
        newparent: u64,
        newname: &[u8],
    ) -> Result<Attr, FsError> {
        let attr = self.head.link(
            caller,
            self.writable(ino)?,
            self.writable(newparent)?,
            &FileName::new(newname)?,
        )?;
        Ok(self.shown(attr))
    }

    /// Removes a non-directory.
    pub fn unlink(&self, caller: Caller, parent: u64, name: &[u8]) -> Result<(), FsError> {
        self.head
            .unlink(caller, self.writable(parent)?, &FileName::new(name)?)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, caller: Caller, parent: u64, name: &[u8]) -> Result<(), FsError> {
        self.head
            .rmdir(caller, self.writable(parent)?, &FileName::new(name)?)
    }

    /// Renames within the head.
    pub fn rename(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        mode: RenameMode,
    ) -> Result<(), FsError> {
        self.head.rename(
            caller,
            self.writable(parent)?,
            &FileName::new(name)?,
            self.writable(newparent)?,
            &FileName::new(newname)?,
            mode,
        )
    }

    /// Changes attributes.
    pub fn setattr(&self, caller: Caller, ino: u64, set: &SetAttr) -> Result<Attr, FsError> {
        Ok(self.shown(self.head.setattr(caller, self.writable(ino)?, set)?))
    }

    /// Sets an extended attribute (`create`: XATTR_CREATE, `replace`: XATTR_REPLACE).
    pub fn setxattr(
        &self,
        caller: Caller,
        ino: u64,
        name: &[u8],
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> Result<(), FsError> {
        self.head
            .setxattr(caller, self.writable(ino)?, name, value, create, replace)
    }

    /// Removes an extended attribute.
    pub fn removexattr(&self, caller: Caller, ino: u64, name: &[u8]) -> Result<(), FsError> {
        self.head.removexattr(caller, self.writable(ino)?, name)
    }

    /// An extended attribute's value.
    pub fn getxattr(&self, caller: Caller, ino: u64, name: &[u8]) -> Result<Vec<u8>, FsError> {
        match Node::of(ino) {
            Node::Head(i) => self.head.getxattr(caller, i, name),
            Node::Snap { seq, ino } => {
                let e = self.entry(seq, ino)?;
                e.xattrs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or(FsError::NoAttr)
            }
            _ => Err(FsError::NoAttr),
        }
    }

    /// Extended attribute names.
    pub fn listxattr(&self, caller: Caller, ino: u64) -> Result<Vec<Vec<u8>>, FsError> {
        match Node::of(ino) {
            Node::Head(i) => self.head.listxattr(caller, i),
            Node::Snap { seq, ino } => Ok(self
                .entry(seq, ino)?
                .xattrs
                .iter()
                .map(|(n, _)| n.clone())
                .collect()),
            _ => Ok(Vec::new()),
        }
    }

    /// Opens a file.
    pub fn open(&self, caller: Caller, ino: u64, mode: OpenMode) -> Result<Attr, FsError> {
        match Node::of(ino) {
            Node::Head(i) => Ok(self.shown(self.head.open(caller, i, mode)?)),
            _ if mode != OpenMode::Read => Err(FsError::ReadOnly),
            Node::Snap { seq, ino } => {
                let e = self.entry(seq, ino)?;
                if e.meta.kind == FileKind::File {
                    self.read_ahead(seq, &e, 0);
                }
                Ok(snap_attr(seq, &e))
            }
            _ => self.getattr(caller, ino),
        }
    }

    /// Releases an open file.
    pub fn release(&self, caller: Caller, ino: u64) -> Result<(), FsError> {
        match Node::of(ino) {
            Node::Head(i) => self.head.release(caller, i),
            _ => Ok(()),
        }
    }

    /// Reads file bytes.
    pub fn read(
        &self,
        caller: Caller,
        ino: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, FsError> {
        match Node::of(ino) {
            Node::Head(i) => self.head.read(caller, i, offset, size),
            Node::Snap { seq, ino } => {
                let e = self.entry(seq, ino)?;
                if e.meta.kind != FileKind::File {
                    return Err(FsError::Invalid("not a regular file"));
                }
                self.read_ahead(seq, &e, offset.saturating_add(u64::from(size)));
                Snapshots::of(&self.head)
                    .read_file(caller, &e, offset, size)
                    .inspect_err(|err| {
                        tracing::error!(snapshot = seq, ino, error = %err, "snapshot read failed");
                    })
            }
            _ => Err(FsError::IsDir),
        }
    }

    /// Writes file bytes; `kill_setid` when the kernel says the writer's
    /// write must take setuid/setgid off first.
    pub fn write(
        &self,
        caller: Caller,
        ino: u64,
        offset: u64,
        data: &[u8],
        kill_setid: bool,
    ) -> Result<usize, FsError> {
        let ino = self.writable(ino)?;
        if kill_setid {
            self.head.kill_setid(caller, ino)?;
        }
        self.head.write(caller, ino, offset, data)
    }

    /// Finishes a file's pending writes (close).
    pub fn flush(&self, caller: Caller, ino: u64) -> Result<(), FsError> {
        match Node::of(ino) {
            Node::Head(i) => self.head.flush(caller, i),
            _ => Ok(()),
        }
    }

    /// Makes a file durable.
    pub fn fsync(&self, caller: Caller, ino: u64) -> Result<(), FsError> {
        match Node::of(ino) {
            Node::Head(i) => self.head.fsync(caller, i),
            _ => Ok(()),
        }
    }

    /// Filesystem statistics.
    pub fn statfs(&self, caller: Caller) -> Result<FsStats, FsError> {
        self.head.statfs(caller)
    }

    /// Stops the read-ahead workers and the committer, flushes every
    /// pending write, commits durably and lets pack writeback finish
    /// (before unmount).
    pub fn shutdown(&self) -> Result<(), FsError> {
        self.head.reader().stop();
        self.head.stop_committer();
        let committed = self
            .head
            .flush_all(Caller::ROOT)
            .and_then(|()| self.head.commit());
        self.head.repo().store().stop_writeback();
        committed
    }

    /// The head inode behind `ino`, or EROFS: only the head takes changes,
    /// and not after the store failed to write or sync (until a restart
    /// and `strata check`).
    fn writable(&self, ino: u64) -> Result<InodeNo, FsError> {
        match Node::of(ino) {
            Node::Head(_) if self.head.repo().store().is_read_only() => Err(FsError::ReadOnly),
            Node::Head(i) => Ok(i),
            _ => Err(FsError::ReadOnly),
        }
    }

    /// A head attribute as the mount shows it.
    fn shown(&self, mut attr: Attr) -> Attr {
        if attr.ino == InodeNo::ROOT && self.access.allow_other {
            attr.perm &= !0o002;
        }
        attr.ino = InodeNo(Node::Head(attr.ino).ino());
        attr
    }

    fn dir_attr(&self, ino: u64) -> Attr {
        let (perm, gid) = match (self.access.reader_group, self.access.allow_other) {
            (_, true) => (0o755, self.access.reader_group.unwrap_or(0)),
            (Some(g), false) => (0o750, g),
            (None, false) => (0o700, 0),
        };
        let meta = Meta {
            kind: FileKind::Dir,
            perm,
            uid: self.access.owner,
            gid,
            nlink: 2,
            size: 0,
            atime: self.born,
            mtime: self.born,
            ctime: self.born,
            btime: self.born,
            rdev: 0,
        };
        Attr::new(InodeNo(ino), &meta)
    }

    fn link_attr(&self, name: &str, n: u64) -> Result<Attr, FsError> {
        let l = self.listing.read_locked();
        let target = l.links.get(name).ok_or(FsError::NotFound)?;
        let row = &l.by_name[target];
        let t = row.record.time;
        let meta = Meta {
            kind: FileKind::Symlink,
            perm: 0o777,
            uid: self.access.owner,
            gid: self.access.reader_group.unwrap_or(0),
            nlink: 1,
            size: target.len() as u64,
            atime: t,
            mtime: t,
            ctime: t,
            btime: t,
            rdev: 0,
        };
        Ok(Attr::new(InodeNo(LINK_INO + n), &meta))
    }

    /// The inode number of symlink `name` in snapshots/.
    pub fn link_ino(&self, name: &str) -> u64 {
        LINK_INO + self.link_number(name)
    }

    fn link_number(&self, name: &str) -> u64 {
        let mut names = self.link_numbers.locked();
        match names.iter().position(|n| n == name) {
            Some(i) => i as u64,
            None => {
                names.push(name.to_owned());
                names.len() as u64 - 1
            }
        }
    }

    fn link_name(&self, n: u64) -> Result<String, FsError> {
        let names = self.link_numbers.locked();
        names.get(n as usize).cloned().ok_or(FsError::NotFound)
    }

    /// The tree entry of snapshot inode (seq, ino).
    fn entry(&self, seq: u64, ino: u64) -> Result<Arc<TreeEntry>, FsError> {
        if ino == InodeNo::ROOT.0 {
            let l = self.listing.read_locked();
            let name = l.names.get(&seq).ok_or(FsError::NotFound)?;
            return Ok(Arc::new(l.by_name[name].record.root.clone()));
        }
        let known = self.known.locked();
        known
            .get(&snapshot_ino(seq, ino))
            .map(|k| k.entry.clone())
            .ok_or(FsError::NotFound)
    }

    fn remember(&self, seq: u64, entry: &TreeEntry, place: ([u8; 32], usize)) {
        let mut known = self.known.locked();
        known
            .entry(snapshot_ino(seq, entry.ino))
            .or_insert_with(|| Known {
                entry: Arc::new(entry.clone()),
                lookups: 0,
                place,
            })
            .lookups += 1;
    }

    /// Runs one read-ahead worker until [`Namespace::shutdown`].
    pub fn run_prefetcher(&self) {
        self.head.reader().run_worker(self.head.repo().store());
    }

    /// Reads ahead of a reader of `entry` at `offset`: the rest of the file
    /// up to [`READ_AHEAD`], then the files after it in its directory.
    fn read_ahead(&self, seq: u64, entry: &TreeEntry, offset: u64) {
        let mut budget = READ_AHEAD;
        let mut ids = Vec::new();
        let take = |e: &TreeEntry, from: u64, budget: &mut u64, ids: &mut Vec<ChunkId>| {
            let first = e
                .extents
                .partition_point(|&(o, _, l)| o.saturating_add(u64::from(l)) <= from);
            for &(_, id, l) in &e.extents[first..] {
                if *budget == 0 {
                    return;
                }
                ids.push(ChunkId(id));
                *budget = budget.saturating_sub(u64::from(l));
            }
        };
        take(entry, offset, &mut budget, &mut ids);
        if budget > 0 {
            let place = self
                .known
                .locked()
                .get(&snapshot_ino(seq, entry.ino))
                .map(|k| k.place);
            let tree = place.and_then(|(dir, _)| self.trees.locked().0.get(&dir).cloned());
            if let (Some((_, at)), Some(tree)) = (place, tree) {
                for next in tree.entries.iter().skip(at + 1) {
                    if budget == 0 {
                        break;
                    }
                    if next.meta.kind == FileKind::File {
                        take(next, 0, &mut budget, &mut ids);
                    }
                }
            }
        }
        self.head.reader().prefetch(ids);
    }

    fn tree_of(&self, dir: &TreeEntry) -> Result<Arc<Tree>, FsError> {
        let id = dir.subtree.ok_or(FsError::NotDir)?;
        if let Some(t) = self.trees.locked().0.get(&id) {
            return Ok(t.clone());
        }
        let tree = Arc::new(Tree::load(self.head.repo().store(), &id)?);
        let mut cache = self.trees.locked();
        let (map, order) = &mut *cache;
        if map.insert(id, tree.clone()).is_none() {
            order.push_back(id);
            if order.len() > TREE_CACHE {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        Ok(tree)
    }
}

/// The attributes of a snapshot entry; blocks count stored extents, so
/// holes show as holes.
fn snap_attr(seq: u64, e: &TreeEntry) -> Attr {
    let mut attr = Attr::new(InodeNo(snapshot_ino(seq, e.ino)), &e.meta);
    if e.meta.kind == FileKind::File {
        attr.blocks_bytes = e.extents.iter().map(|&(_, _, l)| u64::from(l)).sum();
    }
    attr
}

/// Whether `latest` and labels may point at a snapshot with this run
/// record: one taken outside a backup run, or one its run allows.
pub fn may_be_latest(run: Option<&RunRecord>) -> bool {
    run.is_none_or(|r| r.latest)
}

/// A label names a symlink in `snapshots/`: letters, digits, '.', '_', '-',
/// starting with a letter (time names start with a digit), not `latest`.
pub fn check_label(label: &str) -> Result<(), FsError> {
    let ok = label.len() <= 64
        && label.starts_with(|c: char| c.is_ascii_alphabetic())
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && label != LATEST;
    if ok {
        Ok(())
    } else {
        Err(FsError::Invalid(
            "a snapshot label is 1-64 letters, digits, '.', '_' or '-', starts with a letter, and is not \"latest\"",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_numbers_round_trip() {
        for node in [
            Node::Root,
            Node::Snapshots,
            Node::Link(0),
            Node::Link(7),
            Node::Head(InodeNo::ROOT),
            Node::Head(InodeNo(2)),
            Node::Head(InodeNo((1 << SNAPSHOT_INO_BITS) - 1)),
            Node::Snap { seq: 1, ino: 1 },
            Node::Snap { seq: 3, ino: 99 },
        ] {
            assert_eq!(Node::of(node.ino()), node, "{node:?}");
        }
        assert_eq!(Node::of(ROOT_INO), Node::Root);
        assert_ne!(HEAD_INO, ROOT_INO);
    }

    #[test]
    fn labels_are_checked() {
        for good in ["nightly", "pre-upgrade.1", "a_b"] {
            assert!(check_label(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "latest",
            "2026-11-22T02:00:00Z",
            "a/b",
            "a b",
            "ä",
            &"x".repeat(65),
        ] {
            assert!(check_label(bad).is_err(), "{bad}");
        }
    }
}
