//! `head/`: the head's own inodes, read-write, under their own numbers.

use std::sync::Arc;

use crate::tree::head::Head;
use crate::tree::namespace::view::{Access, DirReply, Listed, View};
use crate::tree::namespace::Node;
use crate::tree::types::{Attr, Caller, FileName, FsError, InodeNo, OpenMode};

/// The head as `head/` shows it.
#[derive(Clone)]
pub(super) struct HeadView {
    pub(super) head: Arc<Head>,
    pub(super) access: Access,
}

impl HeadView {
    /// A head attribute as the mount shows it: the root under `head/`'s
    /// number, and never writable by others when they may enter the mount.
    pub(super) fn shown(&self, mut attr: Attr) -> Attr {
        if attr.ino == InodeNo::ROOT && self.access.allow_other {
            attr.perm &= !0o002;
        }
        attr.ino = InodeNo(Node::Head(attr.ino).ino());
        attr
    }
}

/// The head inode of a node this view was given.
fn inode(node: Node) -> InodeNo {
    match node {
        Node::Head(i) => i,
        other => unreachable!("head/ was asked about {other:?}"),
    }
}

impl View for HeadView {
    fn getattr(&self, caller: Caller, node: Node) -> Result<Attr, FsError> {
        Ok(self.shown(self.head.getattr(caller, inode(node))?))
    }

    fn lookup(&self, caller: Caller, dir: Node, name: &[u8]) -> Result<Attr, FsError> {
        let attr = self
            .head
            .lookup(caller, inode(dir), &FileName::new(name)?)?;
        Ok(self.shown(attr))
    }

    fn readdir(
        &self,
        caller: Caller,
        dir: Node,
        cursor: u64,
        plus: bool,
        reply: &mut dyn DirReply,
    ) -> Result<(), FsError> {
        for e in self.head.readdir(caller, inode(dir), cursor)? {
            let attr = if plus {
                Some(self.shown(self.head.getattr(caller, e.ino)?))
            } else {
                None
            };
            let listed = Listed {
                name: e.name.as_bytes().to_vec(),
                node: Node::Head(e.ino),
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

    fn readlink(&self, caller: Caller, node: Node) -> Result<Vec<u8>, FsError> {
        self.head.readlink(caller, inode(node))
    }

    fn getxattr(&self, caller: Caller, node: Node, name: &[u8]) -> Result<Vec<u8>, FsError> {
        self.head.getxattr(caller, inode(node), name)
    }

    fn listxattr(&self, caller: Caller, node: Node) -> Result<Vec<Vec<u8>>, FsError> {
        self.head.listxattr(caller, inode(node))
    }

    fn open(&self, caller: Caller, node: Node, mode: OpenMode) -> Result<Attr, FsError> {
        Ok(self.shown(self.head.open(caller, inode(node), mode)?))
    }

    fn read(&self, caller: Caller, node: Node, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        self.head.read(caller, inode(node), offset, size)
    }
}
