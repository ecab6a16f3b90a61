//! `strata head reset --to SNAPSHOT`: head/ becomes a snapshot's tree in
//! one transaction, like `zfs rollback`, whatever the tree's size.
//!
//! The reset empties the head's tables and leaves the root *unloaded*: it
//! stands for the snapshot's root tree, and each directory's entries are
//! copied from its tree the first time an operation needs them
//! ([`super::txn::Write::load`]). Until then an unloaded directory is clean
//! with that tree as its `clean_tree`, so a snapshot taken right after a
//! reset reuses the whole tree and stores nothing.
//!
//! Why this is safe:
//! - Crash: the reset is one index transaction made durable before it
//!   returns; a crash before leaves the old head, after it the new one.
//!   Loading a directory is one transaction too.
//! - Concurrent writers: files open in head/ refuse the reset (their
//!   handles would point at inodes the reset removes); the open-handle
//!   map stays locked for the transaction, so none opens meanwhile.
//! - Reads racing the reset: a read transaction that meets an unloaded
//!   directory fails with [`FsError::Unloaded`] instead of reading it as
//!   empty, and the head loads it and tries again ([`Head::loading`]).
//! - Hard links: a file's other names may sit in directories not loaded
//!   yet, whose trees hold its old metadata; changing such a file loads
//!   every directory first (`Write::dirty_parents`), so none keeps a stale
//!   copy. That is the one case that costs the tree's size.
//! - Nothing is deleted from the store: the chunks and trees the head now
//!   names are the snapshot's, which keeps them.

use std::sync::atomic::Ordering;

use super::records::{InodeRecord, XattrRecord};
use super::Head;
use crate::sys::sync::Recover;
use crate::tree::objects::TreeEntry;
use crate::tree::types::{Caller, FsError};

impl Head {
    /// Makes head/ the tree `root` stands for (a snapshot's root entry),
    /// discarding everything written since; durable when it returns.
    /// Returns how many inodes the head held before. Refused with
    /// [`FsError::Busy`] while a file in head/ is open.
    pub fn reset_to(&self, caller: Caller, root: &TreeEntry) -> Result<u64, FsError> {
        let _op = caller.span("reset");
        let serial = self.serial();
        let open = self.open_counts.locked();
        if !open.is_empty() {
            return Err(FsError::Busy(
                "files in head/ are open; close them first (fuser -vm MOUNTPOINT shows which)",
            ));
        }
        let discarded_inodes = self.rtx()?.inode_count()?;
        let rec = InodeRecord {
            meta: root.meta.clone(),
            target: root.target.clone(),
            clean_tree: root.subtree,
            facts: None,
        };
        let xattrs = root
            .xattrs
            .iter()
            .map(|(name, value)| XattrRecord {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        serial.transact(|w| {
            w.reset_to_tree(&rec, xattrs)?;
            // Inside the transaction: a reader that sees the new tables
            // sees the flag too.
            self.lazy.store(true, Ordering::SeqCst);
            Ok(())
        })?;
        // Closed files' states hold nothing pending (release flushed them)
        // and name inodes that may be gone.
        self.content.clear();
        drop(open);
        serial.commit()?;
        Ok(discarded_inodes)
    }

    /// Runs `f`, a read that may meet a directory a reset left unloaded,
    /// loading that directory and running `f` again each time it does.
    pub(super) fn loading<T>(&self, f: impl Fn() -> Result<T, FsError>) -> Result<T, FsError> {
        loop {
            match f() {
                Err(FsError::Unloaded(dir)) => self.wtx_no_commit(|w| w.load(dir))?,
                other => return other,
            }
        }
    }
}
