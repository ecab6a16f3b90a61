//! What a drill restores: every entry below a path of a snapshot, read
//! from the snapshot's trees, in an order that puts each directory before
//! what it holds. The trees are the truth the drill checks against.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::store::chunks::Store;
use crate::tree::objects::{SnapshotRow, Tree, TreeEntry};
use crate::tree::types::{FileKind, FsError};

/// One entry to restore.
#[derive(Debug)]
pub struct Item {
    /// Its path below the drill's root ("" for the root itself).
    pub rel: PathBuf,
    /// The directory it is in, by index; `None` for the root.
    pub parent: Option<usize>,
    /// What the snapshot holds.
    pub entry: TreeEntry,
    /// For the second and later names of a hard-linked file: the index of
    /// its first name, which carries the content.
    pub link_of: Option<usize>,
}

/// Every entry below a snapshot path, parents first.
#[derive(Debug)]
pub struct Plan {
    /// The snapshot's sequence number.
    pub seq: u64,
    /// The path inside the snapshot, normalized ("/" or "/a/b").
    pub path: String,
    /// The entries; the first is the path itself.
    pub items: Vec<Item>,
    /// Regular files (each hard-linked file once).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, devices, fifos, sockets, and further names of hard links.
    pub others: u64,
    /// Bytes of file content (each hard-linked file once).
    pub bytes: u64,
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The path leaves the snapshot ("..").
    #[error("{0:?} is not a path inside the snapshot: \"..\" is not allowed")]
    Outside(String),
    /// Nothing at the path.
    #[error("the snapshot has nothing at {0:?}")]
    NoPath(String),
    /// A component of the path is not a directory.
    #[error("{0:?} in the snapshot is not a directory")]
    NotADir(String),
    /// A tree does not read.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A tree holds what no restore may create: a name that is empty,
    /// has a '/', is "." or "..", or comes twice; a subtree below
    /// anything but a directory.
    #[error("the snapshot's tree below {0:?} is malformed ({1}); run `strata check`")]
    Malformed(String, &'static str),
}

impl Plan {
    /// The plan of `path` (inside the snapshot; "/" or empty for all of it)
    /// in snapshot `row`.
    pub fn of(store: &Store, row: &SnapshotRow, path: &str) -> Result<Plan, PlanError> {
        let mut entry = row.record.root.clone();
        let mut walked = String::new();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if part == ".." {
                return Err(PlanError::Outside(path.to_owned()));
            }
            let Some(sub) = entry.subtree else {
                return Err(PlanError::NotADir(slash(&walked)));
            };
            walked.push('/');
            walked.push_str(part);
            let tree = Tree::load(store, &sub)?;
            let i = tree
                .entries
                .binary_search_by(|e| e.name.as_slice().cmp(part.as_bytes()))
                .map_err(|_| PlanError::NoPath(walked.clone()))?;
            entry = tree.entries.into_iter().nth(i).expect("found");
        }
        let mut plan = Plan {
            seq: row.record.seq,
            path: slash(&walked),
            items: vec![Item {
                rel: PathBuf::new(),
                parent: None,
                entry,
                link_of: None,
            }],
            files: 0,
            dirs: 0,
            others: 0,
            bytes: 0,
        };
        let mut first_name: HashMap<u64, usize> = HashMap::new();
        let mut i = 0;
        while i < plan.items.len() {
            let item = &plan.items[i];
            let meta = &item.entry.meta;
            match meta.kind {
                FileKind::File => match first_name.get(&item.entry.ino) {
                    Some(&first) if meta.nlink > 1 => {
                        plan.items[i].link_of = Some(first);
                        plan.others += 1;
                    }
                    _ => {
                        first_name.insert(item.entry.ino, i);
                        plan.files += 1;
                        plan.bytes += meta.size;
                    }
                },
                FileKind::Dir => plan.dirs += 1,
                _ => plan.others += 1,
            }
            let is_dir = plan.items[i].entry.meta.kind == FileKind::Dir;
            if let Some(sub) = plan.items[i].entry.subtree {
                let rel = plan.items[i].rel.clone();
                let shown = || format!("{}/{}", plan.path.trim_end_matches('/'), rel.display());
                if !is_dir {
                    return Err(PlanError::Malformed(
                        shown(),
                        "a subtree below a non-directory",
                    ));
                }
                let tree = Tree::load(store, &sub)?;
                for (k, e) in tree.entries.iter().enumerate() {
                    let name = e.name.as_slice();
                    if name.is_empty()
                        || name == b"."
                        || name == b".."
                        || name.contains(&b'/')
                        || name.contains(&0)
                    {
                        return Err(PlanError::Malformed(
                            shown(),
                            "an entry's name cannot be created",
                        ));
                    }
                    if k > 0 && tree.entries[k - 1].name.as_slice() >= name {
                        return Err(PlanError::Malformed(
                            shown(),
                            "entries out of order or named twice",
                        ));
                    }
                }
                for e in tree.entries {
                    plan.items.push(Item {
                        rel: rel.join(OsStr::from_bytes(&e.name)),
                        parent: Some(i),
                        entry: e,
                        link_of: None,
                    });
                }
            }
            i += 1;
        }
        Ok(plan)
    }

    /// The name the root has where it is restored: its own name in the
    /// snapshot ("" for the snapshot's root).
    pub fn root_name(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.items[0].entry.name))
    }

    /// The indexes of the files that carry content, in plan order.
    pub fn contents(&self) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| {
                let it = &self.items[i];
                it.entry.meta.kind == FileKind::File && it.link_of.is_none()
            })
            .collect()
    }
}

fn slash(walked: &str) -> String {
    if walked.is_empty() {
        "/".to_owned()
    } else {
        walked.to_owned()
    }
}
