//! Which inodes may have extended attributes, kept in memory.
//!
//! Most files have none, yet the kernel asks for `security.capability` on
//! a file's first write, `ls -l` asks for two ACLs per entry, and create
//! and chmod look for ACLs too. An inode not in the set has no attributes,
//! so those are answered without reading the index.
//!
//! The set is a superset: an inode is added before its first attribute row
//! is written (in the same write transaction, which readers cannot see
//! until it commits) and never removed, so a reader never misses a row.
//! A removed attribute or a deleted inode only costs a read. Inode numbers
//! are handed out in order, so a compressed bitmap stays small even when
//! every file carries a label.

use std::sync::RwLock;

use roaring::RoaringTreemap;

use crate::tree::types::InodeNo;

/// The inodes that may have extended attributes.
#[derive(Default)]
pub struct XattrOwners(RwLock<RoaringTreemap>);

impl XattrOwners {
    /// Whether `ino` may have extended attributes (false: it has none).
    pub fn may_have(&self, ino: InodeNo) -> bool {
        self.0.read().expect("xattr owners").contains(ino.0)
    }

    /// Marks `ino` as possibly having extended attributes.
    pub fn add(&self, ino: InodeNo) {
        if !self.may_have(ino) {
            self.0.write().expect("xattr owners").insert(ino.0);
        }
    }

    /// Marks every inode of `inos`.
    pub fn extend(&self, inos: impl IntoIterator<Item = u64>) {
        self.0.write().expect("xattr owners").extend(inos);
    }
}
