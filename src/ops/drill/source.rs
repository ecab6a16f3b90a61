//! Where a drill reads the snapshot: through the mount, by ordinary file
//! system calls as any restore does ([`MountSource`]), or, when nothing is
//! mounted, through the namespace the mount serves from ([`EngineSource`]):
//! the same lookups, attributes and reads with read-ahead, without the
//! kernel in between.

use std::collections::HashMap;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::plan::Plan;
use crate::sys::sync::Recover;
use crate::tree::namespace::{Namespace, Node};
use crate::tree::types::{Attr, Caller, FileKind, FsError, InodeNo, Timestamp};

/// What a drill reads entries through.
pub trait Source: Sync {
    /// "mount" or "repository", for the record.
    fn through(&self) -> &'static str;
    /// Entry `i` of `plan`.
    fn item<'a>(&'a self, plan: &'a Plan, i: usize) -> io::Result<Box<dyn SourceItem + 'a>>;
}

/// One entry, as a restore reads it.
pub trait SourceItem {
    /// Its attributes (lstat).
    fn stat(&self) -> io::Result<Attr>;
    /// A symlink's target.
    fn readlink(&self) -> io::Result<Vec<u8>>;
    /// Its extended attributes (ACLs among them), sorted by name.
    fn xattrs(&self) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Fills `buf` with the file's bytes at `offset`.
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

/// The snapshot as the mount shows it: `root` is the drill's path under
/// `MOUNTPOINT/snapshots/NAME`.
pub struct MountSource {
    /// Where the drill's root is.
    pub root: PathBuf,
}

impl Source for MountSource {
    fn through(&self) -> &'static str {
        "mount"
    }

    fn item<'a>(&'a self, plan: &'a Plan, i: usize) -> io::Result<Box<dyn SourceItem + 'a>> {
        let rel = &plan.items[i].rel;
        let path = if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        };
        Ok(Box::new(MountItem { path, file: None }))
    }
}

struct MountItem {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl SourceItem for MountItem {
    fn stat(&self) -> io::Result<Attr> {
        lstat(&self.path)
    }

    fn readlink(&self) -> io::Result<Vec<u8>> {
        Ok(std::fs::read_link(&self.path)?
            .into_os_string()
            .as_bytes()
            .to_vec())
    }

    fn xattrs(&self) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        xattrs_at(&self.path)
    }

    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.file.is_none() {
            let file = std::fs::File::open(&self.path)?;
            // Start cold: a restore after a disaster finds nothing of the
            // file in the kernel's cache, so neither may a drill.
            // SAFETY: a valid open descriptor; advice only.
            unsafe {
                libc::posix_fadvise(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    0,
                    0,
                    libc::POSIX_FADV_DONTNEED,
                )
            };
            self.file = Some(file);
        }
        self.file
            .as_ref()
            .expect("just opened")
            .read_exact_at(buf, offset)
    }
}

/// The attributes of `path` itself (lstat), as the engine gives them.
pub(super) fn lstat(path: &Path) -> io::Result<Attr> {
    let md = std::fs::symlink_metadata(path)?;
    let time = |secs: i64, nanos: i64| Timestamp {
        secs,
        nanos: nanos as u32,
    };
    Ok(Attr {
        ino: InodeNo(md.ino()),
        kind: FileKind::from_mode(md.mode())
            .ok_or_else(|| io::Error::other("unknown file type"))?,
        perm: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        nlink: md.nlink() as u32,
        size: md.size(),
        blocks_bytes: md.blocks() * 512,
        atime: time(md.atime(), md.atime_nsec()),
        mtime: time(md.mtime(), md.mtime_nsec()),
        ctime: time(md.ctime(), md.ctime_nsec()),
        btime: Timestamp::default(),
        rdev: md.rdev(),
    })
}

/// The extended attributes of `path` itself, sorted by name.
pub(super) fn xattrs_at(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in xattr::list(path)? {
        if let Some(value) = xattr::get(path, &name)? {
            out.push((name.as_bytes().to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// The snapshot as the namespace serves it, without a mount.
pub struct EngineSource<'n> {
    ns: &'n Namespace,
    caller: Caller,
    /// Directories looked up (and the drill root's ancestors): each holds
    /// one reference, given back when the source is dropped.
    dirs: Mutex<HashMap<usize, Node>>,
    ancestors: Vec<Node>,
    root: Node,
}

impl<'n> EngineSource<'n> {
    /// A source of `plan`'s snapshot in `ns`, read on behalf of `caller`.
    pub fn new(ns: &'n Namespace, caller: Caller, plan: &Plan) -> io::Result<EngineSource<'n>> {
        let mut node = Node::snapshot_root(plan.seq);
        let mut ancestors = Vec::new();
        for part in plan.path.split('/').filter(|p| !p.is_empty()) {
            let attr = ns.lookup(caller, node, part.as_bytes()).map_err(io_error)?;
            node = Node::of(attr.ino.0);
            ancestors.push(node);
        }
        Ok(EngineSource {
            ns,
            caller,
            dirs: Mutex::new(HashMap::new()),
            ancestors,
            root: node,
        })
    }
}

impl Drop for EngineSource<'_> {
    fn drop(&mut self) {
        for node in self.dirs.locked().values().chain(&self.ancestors) {
            self.ns.forget(*node, 1);
        }
    }
}

impl EngineSource<'_> {
    /// The node of directory `i` of `plan`, looked up (with its parents)
    /// the first time it is asked for, kept until the source is dropped.
    fn dir_node(&self, plan: &Plan, i: usize) -> io::Result<Node> {
        if i == 0 {
            return Ok(self.root);
        }
        if let Some(node) = self.dirs.locked().get(&i) {
            return Ok(*node);
        }
        let item = &plan.items[i];
        let parent = self.dir_node(plan, item.parent.expect("not the root"))?;
        let attr = self
            .ns
            .lookup(self.caller, parent, &item.entry.name)
            .map_err(io_error)?;
        let node = Node::of(attr.ino.0);
        match self.dirs.locked().entry(i) {
            // Another reader looked it up meanwhile: give this lookup back.
            std::collections::hash_map::Entry::Occupied(e) => {
                self.ns.forget(node, 1);
                Ok(*e.get())
            }
            std::collections::hash_map::Entry::Vacant(e) => Ok(*e.insert(node)),
        }
    }
}

impl Source for EngineSource<'_> {
    fn through(&self) -> &'static str {
        "repository"
    }

    fn item<'a>(&'a self, plan: &'a Plan, i: usize) -> io::Result<Box<dyn SourceItem + 'a>> {
        let item = &plan.items[i];
        if item.entry.meta.kind == FileKind::Dir {
            // Kept until the drill ends: its entries are looked up in it.
            return Ok(Box::new(EngineItem {
                source: self,
                node: self.dir_node(plan, i)?,
                forget: false,
                opened: false,
            }));
        }
        let parent = match item.parent {
            Some(p) => self.dir_node(plan, p)?,
            // A file or symlink drilled alone.
            None => {
                return Ok(Box::new(EngineItem {
                    source: self,
                    node: self.root,
                    forget: false,
                    opened: false,
                }))
            }
        };
        let attr = self
            .ns
            .lookup(self.caller, parent, &item.entry.name)
            .map_err(io_error)?;
        Ok(Box::new(EngineItem {
            source: self,
            node: Node::of(attr.ino.0),
            forget: true,
            opened: false,
        }))
    }
}

struct EngineItem<'a, 'n> {
    source: &'a EngineSource<'n>,
    node: Node,
    forget: bool,
    opened: bool,
}

impl Drop for EngineItem<'_, '_> {
    fn drop(&mut self) {
        if self.opened {
            let _ = self.source.ns.release(self.source.caller, self.node);
        }
        if self.forget {
            self.source.ns.forget(self.node, 1);
        }
    }
}

impl SourceItem for EngineItem<'_, '_> {
    fn stat(&self) -> io::Result<Attr> {
        self.source
            .ns
            .getattr(self.source.caller, self.node)
            .map_err(io_error)
    }

    fn readlink(&self) -> io::Result<Vec<u8>> {
        self.source
            .ns
            .readlink(self.source.caller, self.node)
            .map_err(io_error)
    }

    fn xattrs(&self) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (ns, caller) = (self.source.ns, self.source.caller);
        let mut out = Vec::new();
        for name in ns.listxattr(caller, self.node).map_err(io_error)? {
            let value = ns.getxattr(caller, self.node, &name).map_err(io_error)?;
            out.push((name, value));
        }
        out.sort();
        Ok(out)
    }

    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let (ns, caller) = (self.source.ns, self.source.caller);
        if !self.opened {
            ns.open(caller, self.node, crate::tree::types::OpenMode::Read)
                .map_err(io_error)?;
            self.opened = true;
        }
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(READ_SIZE) as u32;
            let got = ns
                .read(caller, self.node, offset + done as u64, want)
                .map_err(io_error)?;
            if got.is_empty() {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            buf[done..done + got.len()].copy_from_slice(&got);
            done += got.len();
        }
        Ok(())
    }
}

/// The largest read asked of the namespace at once: what the kernel asks
/// of the mount (FUSE's default max_read with max_pages 256).
const READ_SIZE: usize = 1 << 20;

/// An engine error as the system call would have reported it, with the
/// engine's account of it.
fn io_error(e: FsError) -> io::Error {
    io::Error::new(
        io::Error::from_raw_os_error(e.errno()).kind(),
        crate::sys::chain::Chain(&e).to_string(),
    )
}
