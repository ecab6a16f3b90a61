//! The tree a mount shows: the head read-write under `head/`, every
//! snapshot read-only under `snapshots/<UTC time>/`, and `latest` and label
//! symlinks beside them.
//!
//! Each part is a [`View`](view::View) over its own nodes ([`Node`], the
//! typed mount inode numbers): the root (`root_view`), `head/`
//! (`head_view`) and `snapshots/` (`snapshots_view`). [`Namespace`] picks
//! the view for a request that reads, and sends every change to the head,
//! after checking that the node is in `head/` (anything else is EROFS).

mod head_view;
mod node;
mod root_view;
mod snapshots_view;
mod view;

use std::sync::Arc;

use crate::tree::head::Head;
use crate::tree::objects::{SnapshotRecord, SnapshotRow};
use crate::tree::record::RunRecord;
use crate::tree::types::{
    Attr, Caller, FileName, FsError, FsStats, InodeNo, OpenMode, RenameMode, SetAttr, Timestamp,
};

use head_view::HeadView;
pub use node::{Node, HEAD_INO, ROOT_INO, SNAPSHOTS_INO};
use root_view::RootView;
pub use root_view::SNAPSHOTS_DIR;
use snapshots_view::SnapshotsView;
pub use snapshots_view::{check_label, may_be_latest, LATEST};
pub use view::{Access, DirReply, Listed};
use view::{View, Virtual};

/// The mount's tree over one head.
pub struct Namespace {
    head: Arc<Head>,
    root: RootView,
    heads: HeadView,
    snapshots: SnapshotsView,
}

impl Namespace {
    /// The tree of `head` as a mount shows it.
    pub fn new(head: Head, access: Access) -> Result<Namespace, FsError> {
        let head = Arc::new(head);
        let virt = Virtual {
            access,
            born: Timestamp::now(),
        };
        let heads = HeadView {
            head: head.clone(),
            access,
        };
        Ok(Namespace {
            root: RootView {
                head: heads.clone(),
                virt,
            },
            snapshots: SnapshotsView::new(head.clone(), virt)?,
            heads,
            head,
        })
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The view that answers for `node`.
    fn view(&self, node: Node) -> &dyn View {
        match node {
            Node::Root => &self.root,
            Node::Head(_) => &self.heads,
            Node::Snapshots | Node::Link(_) | Node::Snap { .. } => &self.snapshots,
        }
    }

    /// Re-reads the snapshot list (after a snapshot was taken or removed).
    pub fn reload(&self) -> Result<(), FsError> {
        self.snapshots.reload()
    }

    /// Takes a snapshot, labelled `label`, and shows it.
    pub fn snapshot(&self, caller: Caller, label: Option<&str>) -> Result<SnapshotRecord, FsError> {
        self.snapshots.take(caller, label, None)
    }

    /// Takes a snapshot for a backup run, stored with its run record.
    pub fn snapshot_run(
        &self,
        caller: Caller,
        label: Option<&str>,
        run: Option<&RunRecord>,
    ) -> Result<SnapshotRecord, FsError> {
        self.snapshots.take(caller, label, run)
    }

    /// Replaces the run record of snapshot `seq` (after validation):
    /// `latest` and the label may move.
    pub fn set_run(&self, caller: Caller, seq: u64, run: &RunRecord) -> Result<(), FsError> {
        self.snapshots.set_run(caller, seq, run)
    }

    /// The run record of snapshot `seq`, if a backup run took it.
    pub fn run(&self, seq: u64) -> Option<RunRecord> {
        self.snapshots.run(seq)
    }

    /// The snapshots, oldest first.
    pub fn snapshots(&self) -> Vec<SnapshotRow> {
        self.snapshots.rows()
    }

    /// The directory name of snapshot `seq`.
    pub fn snapshot_name(&self, seq: u64) -> Option<String> {
        self.snapshots.name(seq)
    }

    /// The node of symlink `name` in `snapshots/` (`latest` or a label).
    pub fn snapshots_link(&self, name: &str) -> Node {
        self.snapshots.link(name)
    }

    /// Attributes of `node`. Every [`Attr`] the namespace returns carries
    /// the mount inode number ([`Node::ino`]) in its `ino`.
    pub fn getattr(&self, caller: Caller, node: Node) -> Result<Attr, FsError> {
        self.view(node).getattr(caller, node)
    }

    /// Looks up `name` in `dir`. For snapshot inodes this counts as one
    /// kernel reference, released by [`Namespace::forget`].
    pub fn lookup(&self, caller: Caller, dir: Node, name: &[u8]) -> Result<Attr, FsError> {
        self.view(dir).lookup(caller, dir, name)
    }

    /// The kernel dropped `n` references to `node`.
    pub fn forget(&self, node: Node, n: u64) {
        self.view(node).forget(node, n)
    }

    /// Lists `dir` from `cursor` (0 = the start) into `reply`, until it
    /// is full. With `plus`, every entry carries its attributes and, once
    /// `reply` took it, counts as a lookup: an entry that did not fit is
    /// not remembered, as the kernel holds no reference to it.
    pub fn readdir(
        &self,
        caller: Caller,
        dir: Node,
        cursor: u64,
        plus: bool,
        reply: &mut dyn DirReply,
    ) -> Result<(), FsError> {
        self.view(dir).readdir(caller, dir, cursor, plus, reply)
    }

    /// A symlink's target.
    pub fn readlink(&self, caller: Caller, node: Node) -> Result<Vec<u8>, FsError> {
        self.view(node).readlink(caller, node)
    }

    /// An extended attribute's value.
    pub fn getxattr(&self, caller: Caller, node: Node, name: &[u8]) -> Result<Vec<u8>, FsError> {
        self.view(node).getxattr(caller, node, name)
    }

    /// Extended attribute names.
    pub fn listxattr(&self, caller: Caller, node: Node) -> Result<Vec<Vec<u8>>, FsError> {
        self.view(node).listxattr(caller, node)
    }

    /// Opens a file; anything outside `head/` only for reading.
    pub fn open(&self, caller: Caller, node: Node, mode: OpenMode) -> Result<Attr, FsError> {
        self.view(node).open(caller, node, mode)
    }

    /// Reads file bytes.
    pub fn read(
        &self,
        caller: Caller,
        node: Node,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, FsError> {
        self.view(node).read(caller, node, offset, size)
    }

    /// Creates a regular file and opens it for writing, in one call (the
    /// kernel's FUSE_CREATE).
    pub fn create_open(
        &self,
        caller: Caller,
        parent: Node,
        name: &[u8],
        perm: u32,
        umask: u32,
    ) -> Result<Attr, FsError> {
        let (dir, name) = self.in_head(parent, name)?;
        let attr = self.head.create_open(caller, dir, &name, perm, umask)?;
        Ok(self.heads.shown(attr))
    }

    /// Creates a directory; in `snapshots/`, takes a snapshot labelled
    /// `name` and answers with its directory.
    pub fn mkdir(
        &self,
        caller: Caller,
        parent: Node,
        name: &[u8],
        perm: u32,
        umask: u32,
    ) -> Result<Attr, FsError> {
        if parent == Node::Snapshots {
            return self.snapshots.mkdir(caller, name);
        }
        let (dir, name) = self.in_head(parent, name)?;
        Ok(self
            .heads
            .shown(self.head.mkdir(caller, dir, &name, perm, umask)?))
    }

    /// Creates a device node, fifo, socket or regular file.
    pub fn mknod(
        &self,
        caller: Caller,
        parent: Node,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u64,
    ) -> Result<Attr, FsError> {
        let (dir, name) = self.in_head(parent, name)?;
        let attr = self.head.mknod(caller, dir, &name, mode, umask, rdev)?;
        Ok(self.heads.shown(attr))
    }

    /// Creates a symbolic link.
    pub fn symlink(
        &self,
        caller: Caller,
        parent: Node,
        name: &[u8],
        target: &[u8],
    ) -> Result<Attr, FsError> {
        let (dir, name) = self.in_head(parent, name)?;
        Ok(self
            .heads
            .shown(self.head.symlink(caller, dir, &name, target)?))
    }

    /// Adds a hard link.
    pub fn link(
        &self,
        caller: Caller,
        node: Node,
        newparent: Node,
        newname: &[u8],
    ) -> Result<Attr, FsError> {
        let ino = self.writable(node)?;
        let (dir, name) = self.in_head(newparent, newname)?;
        Ok(self.heads.shown(self.head.link(caller, ino, dir, &name)?))
    }

    /// Removes a non-directory.
    pub fn unlink(&self, caller: Caller, parent: Node, name: &[u8]) -> Result<(), FsError> {
        let (dir, name) = self.in_head(parent, name)?;
        self.head.unlink(caller, dir, &name)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, caller: Caller, parent: Node, name: &[u8]) -> Result<(), FsError> {
        let (dir, name) = self.in_head(parent, name)?;
        self.head.rmdir(caller, dir, &name)
    }

    /// Renames within the head.
    pub fn rename(
        &self,
        caller: Caller,
        parent: Node,
        name: &[u8],
        newparent: Node,
        newname: &[u8],
        mode: RenameMode,
    ) -> Result<(), FsError> {
        let (from, name) = self.in_head(parent, name)?;
        let (to, newname) = self.in_head(newparent, newname)?;
        self.head.rename(caller, from, &name, to, &newname, mode)
    }

    /// Changes attributes.
    pub fn setattr(&self, caller: Caller, node: Node, set: &SetAttr) -> Result<Attr, FsError> {
        let ino = self.writable(node)?;
        Ok(self.heads.shown(self.head.setattr(caller, ino, set)?))
    }

    /// Sets an extended attribute (`create`: XATTR_CREATE, `replace`: XATTR_REPLACE).
    pub fn setxattr(
        &self,
        caller: Caller,
        node: Node,
        name: &[u8],
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> Result<(), FsError> {
        let ino = self.writable(node)?;
        self.head
            .setxattr(caller, ino, name, value, create, replace)
    }

    /// Removes an extended attribute.
    pub fn removexattr(&self, caller: Caller, node: Node, name: &[u8]) -> Result<(), FsError> {
        self.head.removexattr(caller, self.writable(node)?, name)
    }

    /// Writes file bytes; `kill_setid` when the kernel says the writer's
    /// write must take setuid/setgid off first.
    pub fn write(
        &self,
        caller: Caller,
        node: Node,
        offset: u64,
        data: &[u8],
        kill_setid: bool,
    ) -> Result<usize, FsError> {
        let ino = self.writable(node)?;
        if kill_setid {
            self.head.kill_setid(caller, ino)?;
        }
        self.head.write(caller, ino, offset, data)
    }

    /// Releases an open file.
    pub fn release(&self, caller: Caller, node: Node) -> Result<(), FsError> {
        match node {
            Node::Head(i) => self.head.release(caller, i),
            _ => Ok(()),
        }
    }

    /// Finishes a file's pending writes (close).
    pub fn flush(&self, caller: Caller, node: Node) -> Result<(), FsError> {
        match node {
            Node::Head(i) => self.head.flush(caller, i),
            _ => Ok(()),
        }
    }

    /// Makes a file durable.
    pub fn fsync(&self, caller: Caller, node: Node) -> Result<(), FsError> {
        match node {
            Node::Head(i) => self.head.fsync(caller, i),
            _ => Ok(()),
        }
    }

    /// Filesystem statistics.
    pub fn statfs(&self, caller: Caller) -> Result<FsStats, FsError> {
        self.head.statfs(caller)
    }

    /// Runs one read-ahead worker until [`Namespace::shutdown`].
    pub fn run_prefetcher(&self) {
        self.head.reader().run_worker(self.head.repo().store());
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

    /// The head inode behind `node`, or EROFS: only the head takes
    /// changes, and not after the store failed to write or sync (until a
    /// restart and `strata check`).
    fn writable(&self, node: Node) -> Result<InodeNo, FsError> {
        match node {
            Node::Head(_) if self.head.repo().store().is_read_only() => Err(FsError::ReadOnly),
            Node::Head(i) => Ok(i),
            _ => Err(FsError::ReadOnly),
        }
    }

    /// The head directory and the checked name of an entry a change makes
    /// or removes.
    fn in_head(&self, parent: Node, name: &[u8]) -> Result<(InodeNo, FileName), FsError> {
        Ok((self.writable(parent)?, FileName::new(name)?))
    }
}
