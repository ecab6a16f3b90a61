//! What each part of the mount (the root, `head/`, `snapshots/`) answers:
//! the requests that read. Changes go to the head alone.

use crate::tree::namespace::Node;
use crate::tree::types::{Attr, Caller, FileKind, FsError, InodeNo, Meta, OpenMode, Timestamp};

/// One part of the mount, answering for its own nodes. The namespace
/// picks the view by node, so a view is only asked about its own.
pub(super) trait View {
    /// Attributes of `node`.
    fn getattr(&self, caller: Caller, node: Node) -> Result<Attr, FsError>;

    /// Looks up `name` in `dir`; the kernel then holds a reference to it.
    fn lookup(&self, caller: Caller, dir: Node, name: &[u8]) -> Result<Attr, FsError>;

    /// Lists `dir` from `cursor` into `reply`, until it is full.
    fn readdir(
        &self,
        caller: Caller,
        dir: Node,
        cursor: u64,
        plus: bool,
        reply: &mut dyn DirReply,
    ) -> Result<(), FsError>;

    /// A symlink's target.
    fn readlink(&self, _caller: Caller, _node: Node) -> Result<Vec<u8>, FsError> {
        Err(FsError::Invalid("not a symbolic link"))
    }

    /// An extended attribute's value.
    fn getxattr(&self, _caller: Caller, _node: Node, _name: &[u8]) -> Result<Vec<u8>, FsError> {
        Err(FsError::NoAttr)
    }

    /// Extended attribute names.
    fn listxattr(&self, _caller: Caller, _node: Node) -> Result<Vec<Vec<u8>>, FsError> {
        Ok(Vec::new())
    }

    /// Opens `node`; only the head opens for writing.
    fn open(&self, caller: Caller, node: Node, mode: OpenMode) -> Result<Attr, FsError> {
        if mode != OpenMode::Read {
            return Err(FsError::ReadOnly);
        }
        self.getattr(caller, node)
    }

    /// Reads file bytes.
    fn read(
        &self,
        _caller: Caller,
        _node: Node,
        _offset: u64,
        _size: u32,
    ) -> Result<Vec<u8>, FsError> {
        Err(FsError::IsDir)
    }

    /// The kernel dropped `n` references to `node`.
    fn forget(&self, _node: Node, _n: u64) {}
}

/// One entry of a listing, with its attributes when asked for (readdirplus).
#[derive(Clone, Debug)]
pub struct Listed {
    /// Name.
    pub name: Vec<u8>,
    /// What it is in the mount.
    pub node: Node,
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

/// Lists a directory whose entries are known up front (the root,
/// `snapshots/`): entry `i` resumes at `i + 1`, and with `plus` each
/// entry's attributes come from the view's own lookup.
pub(super) fn list_fixed(
    view: &dyn View,
    caller: Caller,
    dir: Node,
    entries: Vec<(Vec<u8>, Node, FileKind)>,
    cursor: u64,
    plus: bool,
    reply: &mut dyn DirReply,
) -> Result<(), FsError> {
    for (i, (name, node, kind)) in entries.into_iter().enumerate().skip(cursor as usize) {
        let attr = if plus {
            Some(view.lookup(caller, dir, &name)?)
        } else {
            None
        };
        let listed = Listed {
            name,
            node,
            kind,
            cursor: i as u64 + 1,
            attr,
        };
        if !reply.add(listed) {
            break;
        }
    }
    Ok(())
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

/// The attributes of what the mount itself makes up: the root,
/// `snapshots/` and its symlinks, owned by the daemon's user.
#[derive(Clone, Copy, Debug)]
pub(super) struct Virtual {
    pub(super) access: Access,
    /// The mount's start: the times of its directories.
    pub(super) born: Timestamp,
}

impl Virtual {
    /// A directory the mount makes up.
    pub(super) fn dir(&self, node: Node) -> Attr {
        let (perm, gid) = match (self.access.reader_group, self.access.allow_other) {
            (_, true) => (0o755, self.access.reader_group.unwrap_or(0)),
            (Some(g), false) => (0o750, g),
            (None, false) => (0o700, 0),
        };
        let meta = Meta {
            nlink: 2,
            ..self.meta(FileKind::Dir, perm, gid, self.born)
        };
        Attr::new(InodeNo(node.ino()), &meta)
    }

    /// A symlink in `snapshots/` to a directory named `target`, taken at `time`.
    pub(super) fn link(&self, node: Node, target: &str, time: Timestamp) -> Attr {
        let gid = self.access.reader_group.unwrap_or(0);
        let meta = Meta {
            size: target.len() as u64,
            ..self.meta(FileKind::Symlink, 0o777, gid, time)
        };
        Attr::new(InodeNo(node.ino()), &meta)
    }

    fn meta(&self, kind: FileKind, perm: u32, gid: u32, time: Timestamp) -> Meta {
        Meta {
            kind,
            perm,
            uid: self.access.owner,
            gid,
            nlink: 1,
            size: 0,
            atime: time,
            mtime: time,
            ctime: time,
            btime: time,
            rdev: 0,
        }
    }
}
