//! What the trees still need from the packs: the mark of garbage
//! collection.
//!
//! Roots are every kept snapshot (its record and trees), and the head: its
//! files' extents and its directories' clean trees (a directory reset
//! left unloaded has its entries only there; a clean tree may belong to a
//! forgotten snapshot and is reused by the next one), and the catalog's
//! tip (the next catalog update diffs against it). Every tree below a
//! root is read, so a tree that cannot be read stops the mark: garbage
//! collection must never decide from a partial picture.

use std::collections::HashSet;

use crate::store::id::ChunkId;
use crate::tree::objects::Tree;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{Fault, FsError};

/// The objects the trees refer to.
#[derive(Debug, Default)]
pub struct Live {
    /// Chunks, trees and snapshot records, by id.
    pub ids: HashSet<ChunkId>,
    /// How many trees were read.
    pub trees: u64,
}

impl Snapshots<'_> {
    /// Marks every object reachable from the kept snapshots and the head.
    /// Fails, naming the tree, when a tree below a root cannot be read.
    pub fn live(&self) -> Result<Live, FsError> {
        let mut live = Live::default();
        self.mark_since(&mut live, 0)?;
        Ok(live)
    }

    /// Adds to `live` what the head refers to now and what the snapshots
    /// taken after snapshot `after` refer to, reading only trees `live`
    /// does not hold yet (so it costs what changed since).
    pub fn mark_since(&self, live: &mut Live, after: u64) -> Result<(), FsError> {
        let mut stack = Vec::new();
        for row in self.list()?.into_iter().filter(|r| r.record.seq > after) {
            live.ids.insert(ChunkId(row.id));
            stack.extend(row.record.root.subtree);
        }
        let r = self.head.rtx()?;
        let (chunks, trees) = r.references()?;
        live.ids.extend(chunks);
        stack.extend(trees);
        // The catalog's next update diffs against its tip's trees, whose
        // snapshot may be forgotten.
        stack.extend(crate::tree::catalog::record::tip(&r)?.map(|t| t.root));
        let store = self.head.repo().store();
        while let Some(id) = stack.pop() {
            if !live.ids.insert(ChunkId(id)) {
                continue;
            }
            let tree = Tree::load(store, &id).map_err(|e| {
                FsError::Corrupt(Fault::new(format!(
                    "tree {} cannot be read ({e}), so what is still in use cannot be known",
                    ChunkId(id)
                )))
            })?;
            live.trees += 1;
            for e in tree.entries {
                stack.extend(e.subtree);
                live.ids
                    .extend(e.extents.iter().map(|(_, chunk, _)| ChunkId(*chunk)));
            }
        }
        Ok(())
    }
}
