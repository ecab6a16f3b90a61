//! Mount inode numbers: what each number the kernel sees stands for.
//!
//! The mount root is 1 (FUSE's root); head inodes keep their numbers (all
//! below 2^40), except the head's root, which appears as [`HEAD_INO`];
//! snapshot inodes are [`snapshot_ino`]`(seq, head inode)`, so hard links
//! share an inode inside one snapshot and never across snapshots; the fixed
//! directories and the symlinks use the highest snapshot number, which no
//! snapshot reaches.

use crate::tree::snapshot::{snapshot_ino, SNAPSHOT_INO_BITS};
use crate::tree::types::InodeNo;

/// The mount root.
pub const ROOT_INO: u64 = 1;
const VIRTUAL: u64 = ((1 << (64 - SNAPSHOT_INO_BITS)) - 1) << SNAPSHOT_INO_BITS;
/// `head/`.
pub const HEAD_INO: u64 = VIRTUAL | 1;
/// `snapshots/`.
pub const SNAPSHOTS_INO: u64 = VIRTUAL | 2;
/// The first symlink in `snapshots/` (`latest`; labels follow).
const LINK_INO: u64 = VIRTUAL | 16;

/// What a mount inode number stands for. The namespace's API takes and
/// returns these; only the FUSE adapter sees the raw numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// The mount root.
    Root,
    /// `snapshots/`.
    Snapshots,
    /// A symlink in `snapshots/` (`latest` or a label), by link number.
    Link(u64),
    /// An inode of the head (its root is `head/`).
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
    /// `head/`.
    pub const HEAD: Node = Node::Head(InodeNo::ROOT);

    /// The node behind mount inode `ino`.
    pub fn of(ino: u64) -> Node {
        match ino {
            ROOT_INO => Node::Root,
            HEAD_INO => Node::HEAD,
            SNAPSHOTS_INO => Node::Snapshots,
            i if i >= LINK_INO => Node::Link(i - LINK_INO),
            i if i >> SNAPSHOT_INO_BITS == 0 => Node::Head(InodeNo(i)),
            i => Node::Snap {
                seq: i >> SNAPSHOT_INO_BITS,
                ino: i & ((1 << SNAPSHOT_INO_BITS) - 1),
            },
        }
    }

    /// The root directory of snapshot `seq`.
    pub fn snapshot_root(seq: u64) -> Node {
        Node::Snap {
            seq,
            ino: InodeNo::ROOT.0,
        }
    }

    /// Its mount inode number.
    pub fn ino(self) -> u64 {
        match self {
            Node::Root => ROOT_INO,
            Node::Snapshots => SNAPSHOTS_INO,
            Node::Link(n) => LINK_INO + n,
            Node::HEAD => HEAD_INO,
            Node::Head(i) => i.0,
            Node::Snap { seq, ino } => snapshot_ino(seq, ino),
        }
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
            Node::HEAD,
            Node::Head(InodeNo(2)),
            Node::Head(InodeNo((1 << SNAPSHOT_INO_BITS) - 1)),
            Node::snapshot_root(1),
            Node::Snap { seq: 3, ino: 99 },
        ] {
            assert_eq!(Node::of(node.ino()), node, "{node:?}");
        }
        assert_eq!(Node::of(ROOT_INO), Node::Root);
        assert_ne!(HEAD_INO, ROOT_INO);
    }
}
