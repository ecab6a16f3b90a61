//! Two snapshot trees compared, in O(changed): trees are content-addressed,
//! so a pair of directories with equal tree ids is equal all the way down
//! and is skipped without being read. A directory only one side has is
//! walked whole (every entry below it is added or removed: that is the
//! change).
//!
//! One walker serves `strata diff` and the catalog's update, so what the
//! catalog records as a new version is exactly what `diff` calls a change.

use serde::{Deserialize, Serialize};

use crate::store::chunks::Store;
use crate::tree::objects::{Tree, TreeEntry};
use crate::tree::types::{FileKind, FsError};

/// An attribute that differs between two versions of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    /// File, directory, symlink, ...
    Kind,
    /// A file's bytes (its content digest, which covers its size).
    Content,
    /// Permission bits.
    Mode,
    /// Owner or group.
    Owner,
    /// Modification time. Access and change times are not compared: the
    /// first moves on every read, the second on every other change.
    Times,
    /// Extended attributes (so ACLs).
    Xattrs,
    /// A symlink's target.
    Target,
}

impl Attribute {
    /// The name used in text and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Attribute::Kind => "kind",
            Attribute::Content => "content",
            Attribute::Mode => "mode",
            Attribute::Owner => "owner",
            Attribute::Times => "times",
            Attribute::Xattrs => "xattrs",
            Attribute::Target => "target",
        }
    }
}

/// What differs between two versions of one entry; empty when nothing
/// `diff` reports does (a directory whose contents changed but not its
/// own attributes, a file whose only access time moved).
pub fn attributes(old: &TreeEntry, new: &TreeEntry) -> Vec<Attribute> {
    let (a, b) = (&old.meta, &new.meta);
    let mut out = Vec::new();
    if a.kind != b.kind {
        out.push(Attribute::Kind);
    }
    if a.kind == FileKind::File && b.kind == FileKind::File && old.digest != new.digest {
        out.push(Attribute::Content);
    }
    if a.perm != b.perm {
        out.push(Attribute::Mode);
    }
    if a.uid != b.uid || a.gid != b.gid {
        out.push(Attribute::Owner);
    }
    if a.mtime != b.mtime {
        out.push(Attribute::Times);
    }
    if old.xattrs != new.xattrs {
        out.push(Attribute::Xattrs);
    }
    if old.target != new.target {
        out.push(Attribute::Target);
    }
    out
}

/// An entry present on both sides whose attributes differ.
#[derive(Clone, Debug)]
pub struct Changed {
    /// The entry in the old tree.
    pub old: TreeEntry,
    /// The entry in the new tree.
    pub new: TreeEntry,
    /// What differs (never empty).
    pub what: Vec<Attribute>,
}

/// The changes inside one directory.
#[derive(Clone, Debug, Default)]
pub struct DirChange {
    /// The directory's path from the snapshot's root: "/" or "/a/b".
    pub path: Vec<u8>,
    /// Entries only the new tree has.
    pub added: Vec<TreeEntry>,
    /// Entries only the old tree has.
    pub removed: Vec<TreeEntry>,
    /// Entries both have, with different attributes.
    pub changed: Vec<Changed>,
}

impl DirChange {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Notes entry `a` becoming `b` (one name in both trees), if anything
    /// about it changed.
    fn compare(&mut self, a: &TreeEntry, b: &TreeEntry) {
        let what = attributes(a, b);
        if !what.is_empty() {
            self.changed.push(Changed {
                old: a.clone(),
                new: b.clone(),
                what,
            });
        }
    }
}

/// `dir/name`, where the root is "/".
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if !dir.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// A walk over two trees; counts what it read.
pub struct Walker<'s> {
    store: &'s Store,
    /// Tree objects read so far.
    pub trees_read: u64,
}

impl<'s> Walker<'s> {
    /// A walker reading trees from `store`.
    pub fn new(store: &'s Store) -> Walker<'s> {
        Walker {
            store,
            trees_read: 0,
        }
    }

    fn load(&mut self, id: Option<&[u8; 32]>) -> Result<Vec<TreeEntry>, FsError> {
        match id {
            None => Ok(Vec::new()),
            Some(id) => {
                self.trees_read += 1;
                Ok(Tree::load(self.store, id)?.entries)
            }
        }
    }

    /// Calls `visit` for every directory below `path` (itself included)
    /// whose entries differ between tree `old` and tree `new` (`None`: an
    /// empty directory), parents before children, children in name order.
    pub fn walk(
        &mut self,
        path: &[u8],
        old: Option<&[u8; 32]>,
        new: Option<&[u8; 32]>,
        visit: &mut dyn FnMut(DirChange) -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        if old == new {
            return Ok(());
        }
        let (olds, news) = (self.load(old)?, self.load(new)?);
        let mut change = DirChange {
            path: path.to_vec(),
            ..DirChange::default()
        };
        let mut below = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < olds.len() || j < news.len() {
            let order = match (olds.get(i), news.get(j)) {
                (Some(a), Some(b)) => a.name.cmp(&b.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let a = &olds[i];
                    if let Some(s) = a.subtree {
                        below.push((join(path, &a.name), Some(s), None));
                    }
                    change.removed.push(a.clone());
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let b = &news[j];
                    if let Some(s) = b.subtree {
                        below.push((join(path, &b.name), None, Some(s)));
                    }
                    change.added.push(b.clone());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (a, b) = (&olds[i], &news[j]);
                    change.compare(a, b);
                    if a.subtree != b.subtree {
                        below.push((join(path, &a.name), a.subtree, b.subtree));
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        if !change.is_empty() {
            visit(change)?;
        }
        for (p, a, b) in below {
            self.walk(&p, a.as_ref(), b.as_ref(), visit)?;
        }
        Ok(())
    }

    /// The entry at `path` ("/a/b") below the root tree `root`, if there
    /// is one.
    pub fn resolve(
        &mut self,
        root: Option<&[u8; 32]>,
        path: &[u8],
    ) -> Result<Option<TreeEntry>, FsError> {
        let mut tree = root.copied();
        let mut found = None;
        for name in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let Some(t) = tree else {
                return Ok(None);
            };
            let entries = self.load(Some(&t))?;
            let Ok(k) = entries.binary_search_by(|e| e.name.as_slice().cmp(name)) else {
                return Ok(None);
            };
            tree = entries[k].subtree;
            found = Some(entries[k].clone());
        }
        Ok(found)
    }

    /// [`Walker::walk`] restricted to `path` ("/a/b" or "/"): the entry
    /// itself (reported in its parent's [`DirChange`]) and, for a
    /// directory, everything below it. `None` when neither tree has it.
    pub fn walk_path(
        &mut self,
        old_root: Option<&[u8; 32]>,
        new_root: Option<&[u8; 32]>,
        path: &[u8],
        visit: &mut dyn FnMut(DirChange) -> Result<(), FsError>,
    ) -> Result<Option<()>, FsError> {
        let trimmed: Vec<u8> = path.strip_suffix(b"/").unwrap_or(path).to_vec();
        if trimmed.is_empty() {
            return self.walk(b"/", old_root, new_root, visit).map(Some);
        }
        let a = self.resolve(old_root, &trimmed)?;
        let b = self.resolve(new_root, &trimmed)?;
        let cut = trimmed.iter().rposition(|&c| c == b'/').unwrap_or(0);
        let parent = if cut == 0 {
            b"/".to_vec()
        } else {
            trimmed[..cut].to_vec()
        };
        let mut change = DirChange {
            path: parent,
            ..DirChange::default()
        };
        match (&a, &b) {
            (None, None) => return Ok(None),
            (Some(a), None) => change.removed.push(a.clone()),
            (None, Some(b)) => change.added.push(b.clone()),
            (Some(a), Some(b)) => change.compare(a, b),
        }
        if !change.is_empty() {
            visit(change)?;
        }
        let sub = |e: &Option<TreeEntry>| e.as_ref().and_then(|e| e.subtree);
        self.walk(&trimmed, sub(&a).as_ref(), sub(&b).as_ref(), visit)?;
        Ok(Some(()))
    }
}
