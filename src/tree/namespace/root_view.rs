//! The mount root: `head/` and `snapshots/`, nothing else.

use crate::tree::namespace::head_view::HeadView;
use crate::tree::namespace::view::{list_fixed, DirReply, View, Virtual};
use crate::tree::namespace::Node;
use crate::tree::types::{Attr, Caller, FileKind, FsError};

const HEAD_DIR: &[u8] = b"head";
/// The name of `snapshots/` in the mount root.
pub const SNAPSHOTS_DIR: &[u8] = b"snapshots";

/// The mount root.
pub(super) struct RootView {
    pub(super) head: HeadView,
    pub(super) virt: Virtual,
}

impl View for RootView {
    fn getattr(&self, _caller: Caller, node: Node) -> Result<Attr, FsError> {
        Ok(self.virt.dir(node))
    }

    fn lookup(&self, caller: Caller, _dir: Node, name: &[u8]) -> Result<Attr, FsError> {
        match name {
            HEAD_DIR => self.head.getattr(caller, Node::HEAD),
            SNAPSHOTS_DIR => Ok(self.virt.dir(Node::Snapshots)),
            _ => Err(FsError::NotFound),
        }
    }

    fn readdir(
        &self,
        caller: Caller,
        dir: Node,
        cursor: u64,
        plus: bool,
        reply: &mut dyn DirReply,
    ) -> Result<(), FsError> {
        let entries = vec![
            (HEAD_DIR.to_vec(), Node::HEAD, FileKind::Dir),
            (SNAPSHOTS_DIR.to_vec(), Node::Snapshots, FileKind::Dir),
        ];
        list_fixed(self, caller, dir, entries, cursor, plus, reply)
    }
}
