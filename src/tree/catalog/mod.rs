//! The catalog: every path of every snapshot, searchable without reading
//! a snapshot tree (`strata find`, `strata versions`).
//!
//! It lives in the head's redb database, sealed like every other row
//! ([`record`]): per directory path one record holds the versions of the
//! directory's entries, each a run of snapshots `first..=last` over which
//! the entry's attributes and content stayed equal; a path present
//! unchanged in a hundred snapshots is one version. A lookup table maps a
//! keyed hash of the directory path to its record.
//!
//! **Updating.** The tip names the newest snapshot taken in. For each
//! newer snapshot, oldest first and each in its own write transaction
//! (with the tip moved in the same one, so a crash never leaves half a
//! snapshot), the tip's root is diffed against the snapshot's
//! ([`crate::tree::diff`]); only the directories on the diff are
//! rewritten: a removed or changed entry's open version is closed at the
//! tip, an added or changed one opens a version at the new snapshot. So
//! the cost of a snapshot stays O(changed). The update runs right after a
//! snapshot is taken and again before every query, so a crash between the
//! two, snapshots received by a replica, or a repository older than the
//! catalog all just catch up.
//!
//! **Forgotten snapshots.** A version whose range holds no kept snapshot is
//! dead; queries count only kept snapshots, so correctness never depends
//! on compaction. Forgetting compacts: dead closed versions are dropped,
//! empty records deleted (an open version is kept even when dead: the next
//! update needs it to close or continue it). The tip's snapshot may be
//! forgotten; prune keeps the tip's trees (they are a root of its mark,
//! see `snapshot::live`) until the next snapshot moves the tip.

pub mod query;
pub mod record;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use redb::ReadableTable;

use crate::store::chunks::Store;
use crate::tree::diff::{DirChange, Walker};
use crate::tree::head::records::db;
use crate::tree::head::txn::Write;
use crate::tree::head::Head;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{Caller, FsError};
use record::{broken, delete_dir, get_dir, put_dir, set_tip, tip, DirRecord, Tip, Version};

/// What one update cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cost {
    /// Snapshots taken in.
    pub snapshots: u64,
    /// Records written.
    pub records: u64,
    /// Trees read.
    pub trees: u64,
}

/// The catalog's size, for `strata stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CatalogStats {
    /// Directory records.
    pub records: u64,
    /// Versions they hold.
    pub versions: u64,
    /// Sealed bytes of the records, keys and lookup rows (redb's own
    /// overhead not included).
    pub bytes: u64,
    /// The newest snapshot taken in.
    pub tip: Option<u64>,
}

/// The catalog of one head's snapshots.
#[derive(Clone, Copy)]
pub struct Catalog<'h> {
    head: &'h Head,
}

impl<'h> Catalog<'h> {
    /// The catalog of `head`.
    pub fn of(head: &'h Head) -> Catalog<'h> {
        Catalog { head }
    }

    /// The newest snapshot taken in, if any.
    pub fn tip(&self) -> Result<Option<Tip>, FsError> {
        tip(&self.head.rtx()?)
    }

    /// Counts records, versions and bytes (reads every record).
    pub fn stats(&self) -> Result<CatalogStats, FsError> {
        let r = self.head.rtx()?;
        let mut out = CatalogStats {
            tip: tip(&r)?.map(|t| t.seq),
            ..CatalogStats::default()
        };
        for row in r.catalog_dirs()?.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let rec = record::open_dir(&r, k.value(), v.value())?;
            out.records += 1;
            out.versions += rec.versions.len() as u64;
            // The record's key and value, and its lookup row.
            out.bytes += 8 + v.value().len() as u64 + 16 + 8;
        }
        Ok(out)
    }

    /// Takes in every snapshot newer than the tip, oldest first.
    pub fn catch_up(&self) -> Result<Cost, FsError> {
        let from = self.tip()?.map_or(0, |t| t.seq);
        let store = self.head.repo().store();
        let mut total = Cost::default();
        for row in Snapshots::of(self.head).list()? {
            let seq = row.record.seq;
            let Some(root) = row.record.root.subtree.filter(|_| seq > from) else {
                continue;
            };
            let cost = self.head.transact(|w| {
                let tip = tip(w)?;
                // Another update (a query beside a snapshot) may have
                // taken it in since the tip was read.
                if tip.is_some_and(|t| t.seq >= seq) {
                    return Ok(Cost::default());
                }
                take_in(w, store, tip, seq, root)
            })?;
            if cost.snapshots > 0 {
                let c = &self.head.counters;
                c.last_catalog_records
                    .store(cost.records, Ordering::Relaxed);
                c.last_catalog_trees.store(cost.trees, Ordering::Relaxed);
            }
            total.snapshots += cost.snapshots;
            total.records += cost.records;
            total.trees += cost.trees;
        }
        Ok(total)
    }

    /// Drops the catalog and builds it again from the snapshot trees,
    /// oldest first, the way snapshots are taken in (`strata repair
    /// catalog`). A crash part way leaves a catalog that the next update
    /// finishes.
    pub fn rebuild(&self, caller: Caller) -> Result<Cost, FsError> {
        let _op = caller.span("repair_catalog");
        self.head.transact(|w| w.clear_catalog())?;
        let cost = self.catch_up()?;
        self.head.commit()?;
        tracing::info!(
            snapshots = cost.snapshots,
            records = cost.records,
            uid = caller.uid,
            pid = caller.pid,
            "catalog rebuilt"
        );
        Ok(cost)
    }

    /// Drops the versions no kept snapshot holds any more, and the records
    /// left empty; returns how many versions went. Reads every record:
    /// forgetting is rare and already costs a transaction.
    pub fn compact(&self) -> Result<u64, FsError> {
        let kept: Vec<u64> = Snapshots::of(self.head)
            .list()?
            .iter()
            .map(|r| r.record.seq)
            .collect();
        self.head.transact(|w| {
            let mut rows = Vec::new();
            for row in w.catalog_dirs_ref()?.iter().map_err(db)? {
                let (k, v) = row.map_err(db)?;
                rows.push((k.value(), v.value().to_vec()));
            }
            let mut dropped = 0;
            for (number, sealed) in rows {
                let mut rec = record::open_dir(w, number, &sealed)?;
                let before = rec.versions.len();
                rec.versions
                    .retain(|v| v.last.is_none() || holds_kept(&kept, v.first, v.last));
                if rec.versions.len() == before {
                    continue;
                }
                dropped += (before - rec.versions.len()) as u64;
                if rec.versions.is_empty() {
                    delete_dir(w, number, &rec.path)?;
                } else {
                    put_dir(w, Some(number), &rec)?;
                }
            }
            Ok(dropped)
        })
    }
}

/// Whether a kept snapshot (`kept` sorted) lies in `first..=last` (open:
/// no end).
pub fn holds_kept(kept: &[u64], first: u64, last: Option<u64>) -> bool {
    let lo = kept.partition_point(|&s| s < first);
    kept.get(lo)
        .is_some_and(|&s| last.is_none_or(|last| s <= last))
}

/// Takes snapshot `seq` (root tree `root`) in after `tip`.
fn take_in(
    w: &mut Write<'_>,
    store: &Store,
    tip: Option<Tip>,
    seq: u64,
    root: [u8; 32],
) -> Result<Cost, FsError> {
    let mut walker = Walker::new(store);
    let mut records = 0;
    let closing = tip.map(|t| t.seq);
    walker.walk(
        b"/",
        tip.as_ref().map(|t| &t.root),
        Some(&root),
        &mut |change| {
            if update_dir(w, change, closing, seq)? {
                records += 1;
            }
            Ok(())
        },
    )?;
    set_tip(w, &Tip { seq, root })?;
    Ok(Cost {
        snapshots: 1,
        records,
        trees: walker.trees_read,
    })
}

/// Applies one directory's changes; whether its record was written.
fn update_dir(
    w: &mut Write<'_>,
    change: DirChange,
    closing: Option<u64>,
    seq: u64,
) -> Result<bool, FsError> {
    let (number, mut rec) = match get_dir(w, &change.path)? {
        Some((n, rec)) => (Some(n), rec),
        None => (
            None,
            DirRecord {
                path: change.path.clone(),
                versions: Vec::new(),
            },
        ),
    };
    let mut open: HashMap<Vec<u8>, usize> = rec
        .versions
        .iter()
        .enumerate()
        .filter(|(_, v)| v.last.is_none())
        .map(|(i, v)| (v.name.clone(), i))
        .collect();
    let mut dirty = false;
    for e in &change.removed {
        close(&mut open, &mut rec, &e.name, closing)?;
        dirty = true;
    }
    for c in &change.changed {
        let v = Version::of(&c.new, seq);
        let Some(&i) = open.get(&c.new.name) else {
            return Err(broken(
                "a directory record has no open version of a changed entry".into(),
            ));
        };
        if !rec.versions[i].same(&v) {
            close(&mut open, &mut rec, &c.new.name, closing)?;
            rec.versions.push(v);
            dirty = true;
        }
    }
    for e in &change.added {
        rec.versions.push(Version::of(e, seq));
        dirty = true;
    }
    if dirty {
        rec.versions
            .sort_by(|a, b| (&a.name, a.first).cmp(&(&b.name, b.first)));
        put_dir(w, number, &rec)?;
    }
    Ok(dirty)
}

/// Closes the open version of `name` at snapshot `closing`.
fn close(
    open: &mut HashMap<Vec<u8>, usize>,
    rec: &mut DirRecord,
    name: &[u8],
    closing: Option<u64>,
) -> Result<(), FsError> {
    let (Some(i), Some(at)) = (open.remove(name), closing) else {
        return Err(broken(
            "a directory record has no open version of an entry the snapshot before held".into(),
        ));
    };
    rec.versions[i].last = Some(at);
    Ok(())
}
