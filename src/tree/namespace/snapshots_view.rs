//! `snapshots/`: one read-only directory per snapshot, named by its UTC
//! time, and the `latest` and label symlinks beside them.
//!
//! The kernel names a snapshot inode only after a lookup or readdirplus
//! returned it, so the entries it may ask about are kept, with the
//! kernel's lookup count, until it forgets them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use crate::store::id::ChunkId;
use crate::sys::runlock;
use crate::sys::sync::{Recover, RecoverRw};
use crate::tree::audit::{Audit, Entry};
use crate::tree::head::Head;
use crate::tree::namespace::view::{list_fixed, DirReply, Listed, View, Virtual};
use crate::tree::namespace::Node;
use crate::tree::objects::{SnapshotRecord, SnapshotRow, Tree, TreeEntry};
use crate::tree::record::RunRecord;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{Attr, Caller, Fault, FileKind, FsError, InodeNo, OpenMode};

/// The name of the symlink to the newest snapshot.
pub const LATEST: &str = "latest";
/// Directory trees kept decoded for browsing.
const TREE_CACHE: usize = 256;
/// How far ahead of a reader chunks are decoded, within a file and
/// across the next files of its directory.
const READ_AHEAD: u64 = 8 << 20;

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

/// The snapshots of one head, as the mount shows them.
pub(super) struct SnapshotsView {
    head: Arc<Head>,
    virt: Virtual,
    listing: RwLock<Listing>,
    /// Symlink numbers by name, stable for the life of the mount.
    link_numbers: Mutex<Vec<String>>,
    /// By mount inode number.
    known: Mutex<HashMap<u64, Known>>,
    trees: Mutex<TreeCache>,
    /// (user, snapshot) pairs that opened a file since the mount: the
    /// first open of each is audited, not every read.
    readers: Mutex<HashSet<(u32, u64)>>,
}

impl SnapshotsView {
    /// The snapshots of `head`, listed.
    pub(super) fn new(head: Arc<Head>, virt: Virtual) -> Result<SnapshotsView, FsError> {
        let view = SnapshotsView {
            head,
            virt,
            listing: RwLock::new(Listing::default()),
            link_numbers: Mutex::new(vec![LATEST.to_owned()]),
            known: Mutex::new(HashMap::new()),
            trees: Mutex::new((HashMap::new(), VecDeque::new())),
            readers: Mutex::new(HashSet::new()),
        };
        view.reload()?;
        Ok(view)
    }

    /// Re-reads the snapshot list (after a snapshot was taken or removed).
    pub(super) fn reload(&self) -> Result<(), FsError> {
        let snapshots = Snapshots::of(&self.head);
        let mut l = Listing {
            runs: snapshots.runs()?.into_iter().collect(),
            ..Listing::default()
        };
        for row in snapshots.list()? {
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

    /// Takes a snapshot for a backup run (or none), labelled `label`, and
    /// shows it.
    pub(super) fn take(
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

    /// Replaces the run record of snapshot `seq`: `latest` and the label may move.
    pub(super) fn set_run(&self, caller: Caller, seq: u64, run: &RunRecord) -> Result<(), FsError> {
        Snapshots::of(&self.head).set_run(caller, seq, run)?;
        self.reload()
    }

    /// The run record of snapshot `seq`, if a backup run took it.
    pub(super) fn run(&self, seq: u64) -> Option<RunRecord> {
        self.listing.read_locked().runs.get(&seq).cloned()
    }

    /// The snapshots, oldest first.
    pub(super) fn rows(&self) -> Vec<SnapshotRow> {
        let l = self.listing.read_locked();
        let mut rows: Vec<SnapshotRow> = l.by_name.values().cloned().collect();
        rows.sort_by_key(|r| r.record.seq);
        rows
    }

    /// The directory name of snapshot `seq`.
    pub(super) fn name(&self, seq: u64) -> Option<String> {
        self.listing.read_locked().names.get(&seq).cloned()
    }

    /// A mkdir in `snapshots/`: takes a snapshot labelled `name` and
    /// answers with its directory.
    pub(super) fn mkdir(&self, caller: Caller, name: &[u8]) -> Result<Attr, FsError> {
        let label =
            std::str::from_utf8(name).map_err(|_| FsError::Invalid("a snapshot label is ASCII"))?;
        self.refuse_during_a_run()?;
        let rec = self.take(caller, Some(label), None)?;
        // Logged as `strata snapshot create` is (daemon/control.rs).
        tracing::info!(
            seq = rec.seq,
            uid = caller.uid,
            pid = caller.pid,
            label,
            by = "mkdir",
            "snapshot taken"
        );
        // Recorded as a control request is (daemon/audit.rs), from here:
        // the daemon sees only a mkdir.
        let mut details = serde_json::Map::new();
        details.insert("label".into(), label.into());
        details.insert("seq".into(), rec.seq.into());
        details.insert("name".into(), rec.name().into());
        self.audit(caller, "snapshot_create", details, false);
        Ok(snap_attr(rec.seq, &rec.root))
    }

    /// Records what `caller` did through the mount. What was done stands
    /// whether or not the record could be written; the log says if not.
    fn audit(
        &self,
        caller: Caller,
        op: &str,
        details: serde_json::Map<String, serde_json::Value>,
        read: bool,
    ) {
        let entry = Entry {
            op: op.into(),
            via: "fuse".into(),
            details,
            failed: None,
            changed_nothing: read,
        };
        if let Err(e) = Audit::of(&self.head).record(caller, entry) {
            tracing::error!(op, uid = caller.uid, error = %e, "an audit record could not be written");
        }
    }

    /// A snapshot by mkdir while a backup run is in progress would hold its
    /// copy half-done: refused, as `strata snapshot create` refuses it
    /// (which has `--force`; a mkdir has no way to say it).
    fn refuse_during_a_run(&self) -> Result<(), FsError> {
        let id = &self.head.repo().config().instance();
        let lock = runlock::path(&crate::sys::mountpoint::runtime_dir(), id);
        match runlock::running(&lock) {
            Ok(None) => Ok(()),
            Ok(Some(holder)) => {
                tracing::warn!(%holder, "snapshot by mkdir refused: a backup run is in progress");
                Err(FsError::Busy("a backup run is in progress"))
            }
            Err(e) => Err(FsError::Io(Fault::caused("reading the run lock", e))),
        }
    }

    /// The node of symlink `name` in `snapshots/`.
    pub(super) fn link(&self, name: &str) -> Node {
        Node::Link(self.link_number(name))
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

    fn link_attr(&self, name: &str, n: u64) -> Result<Attr, FsError> {
        let l = self.listing.read_locked();
        let target = l.links.get(name).ok_or(FsError::NotFound)?;
        Ok(self
            .virt
            .link(Node::Link(n), target, l.by_name[target].record.time))
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
            .get(&Node::Snap { seq, ino }.ino())
            .map(|k| k.entry.clone())
            .ok_or(FsError::NotFound)
    }

    fn remember(&self, seq: u64, entry: &TreeEntry, place: ([u8; 32], usize)) {
        let mut known = self.known.locked();
        known
            .entry(
                Node::Snap {
                    seq,
                    ino: entry.ino,
                }
                .ino(),
            )
            .or_insert_with(|| Known {
                entry: Arc::new(entry.clone()),
                lookups: 0,
                place,
            })
            .lookups += 1;
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
                .get(
                    &Node::Snap {
                        seq,
                        ino: entry.ino,
                    }
                    .ino(),
                )
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

impl View for SnapshotsView {
    fn getattr(&self, _caller: Caller, node: Node) -> Result<Attr, FsError> {
        match node {
            Node::Link(n) => self.link_attr(&self.link_name(n)?, n),
            Node::Snap { seq, ino } => Ok(snap_attr(seq, self.entry(seq, ino)?.as_ref())),
            _ => Ok(self.virt.dir(node)),
        }
    }

    fn lookup(&self, _caller: Caller, dir: Node, name: &[u8]) -> Result<Attr, FsError> {
        match dir {
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
            Node::Link(_) => Err(FsError::NotDir),
            _ => {
                let name = std::str::from_utf8(name).map_err(|_| FsError::NotFound)?;
                let l = self.listing.read_locked();
                if let Some(row) = l.by_name.get(name) {
                    return Ok(snap_attr(row.record.seq, &row.record.root));
                }
                if l.links.contains_key(name) {
                    drop(l);
                    return self.link_attr(name, self.link_number(name));
                }
                Err(FsError::NotFound)
            }
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
        match dir {
            Node::Snap { seq, ino } => {
                let d = self.entry(seq, ino)?;
                let tree = self.tree_of(&d)?;
                let id = d.subtree.expect("a directory");
                for (i, e) in tree.entries.iter().enumerate().skip(cursor as usize) {
                    let listed = Listed {
                        name: e.name.clone(),
                        node: Node::Snap { seq, ino: e.ino },
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
            Node::Link(_) => Err(FsError::NotDir),
            _ => {
                let l = self.listing.read_locked();
                let mut entries: Vec<(Vec<u8>, Node, FileKind)> = l
                    .by_name
                    .iter()
                    .map(|(name, row)| {
                        let root = Node::snapshot_root(row.record.seq);
                        (name.as_bytes().to_vec(), root, FileKind::Dir)
                    })
                    .collect();
                let links: Vec<String> = l.links.keys().cloned().collect();
                drop(l);
                for name in links {
                    let node = self.link(&name);
                    entries.push((name.into_bytes(), node, FileKind::Symlink));
                }
                list_fixed(self, caller, dir, entries, cursor, plus, reply)
            }
        }
    }

    fn readlink(&self, _caller: Caller, node: Node) -> Result<Vec<u8>, FsError> {
        match node {
            Node::Link(n) => {
                let name = self.link_name(n)?;
                let l = self.listing.read_locked();
                let target = l.links.get(&name).ok_or(FsError::NotFound)?;
                Ok(target.as_bytes().to_vec())
            }
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

    fn getxattr(&self, _caller: Caller, node: Node, name: &[u8]) -> Result<Vec<u8>, FsError> {
        match node {
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

    fn listxattr(&self, _caller: Caller, node: Node) -> Result<Vec<Vec<u8>>, FsError> {
        match node {
            Node::Snap { seq, ino } => {
                let e = self.entry(seq, ino)?;
                Ok(e.xattrs.iter().map(|(n, _)| n.clone()).collect())
            }
            _ => Ok(Vec::new()),
        }
    }

    fn open(&self, caller: Caller, node: Node, mode: OpenMode) -> Result<Attr, FsError> {
        if mode != OpenMode::Read {
            return Err(FsError::ReadOnly);
        }
        match node {
            Node::Snap { seq, ino } => {
                let e = self.entry(seq, ino)?;
                if e.meta.kind == FileKind::File {
                    self.read_ahead(seq, &e, 0);
                    if self.readers.locked().insert((caller.uid, seq)) {
                        let mut details = serde_json::Map::new();
                        details.insert("seq".into(), seq.into());
                        if let Some(name) = self.name(seq) {
                            details.insert("name".into(), name.into());
                        }
                        self.audit(caller, "snapshot_read", details, true);
                    }
                }
                Ok(snap_attr(seq, &e))
            }
            _ => self.getattr(caller, node),
        }
    }

    fn read(&self, caller: Caller, node: Node, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let Node::Snap { seq, ino } = node else {
            return Err(FsError::IsDir);
        };
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

    fn forget(&self, node: Node, n: u64) {
        let mut known = self.known.locked();
        if let Some(k) = known.get_mut(&node.ino()) {
            k.lookups = k.lookups.saturating_sub(n);
            if k.lookups == 0 {
                known.remove(&node.ino());
            }
        }
    }
}

/// The attributes of a snapshot entry; blocks count stored extents, so
/// holes show as holes.
fn snap_attr(seq: u64, e: &TreeEntry) -> Attr {
    let mut attr = Attr::new(InodeNo(Node::Snap { seq, ino: e.ino }.ino()), &e.meta);
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
