//! nullfs: a do-nothing FUSE filesystem, the floor of what any FUSE
//! filesystem costs. `scripts/bench` rsyncs into it to tell the kernel
//! round trips apart from strata's own work.
//!
//!     nullfs [--transport auto|io-uring|dev-fuse] [--threads N] MOUNTPOINT
//!
//! It stays in the foreground, says on stderr which transport serves, and
//! ends on `umount MOUNTPOINT`.
//!
//! It runs on strata-mountd's own kernel layer (`strata_mountd::kernel`):
//! the same request parsing and replies, over the same transports, chosen
//! as strata-mountd chooses them (`--transport`, strata-mountd(8),
//! TRANSPORT: FUSE over io_uring where the kernel offers it, /dev/fuse
//! otherwise), so the bench measures the floor of each transport.
//!
//! Only metadata lives (in memory): inodes with their attributes,
//! directories, symlink targets, extended attributes and file sizes. Data
//! is dropped: a write only extends the size, a read returns zeros.
//!
//! The only choices are those any filesystem makes. INIT asks for nothing
//! but writes as large as strata's (FUSE_BIG_WRITES, FUSE_MAX_PAGES, 1 MiB),
//! none of strata's other capabilities; /dev/fuse is read by one thread
//! unless `--threads` says otherwise. Attributes and entries, absent names
//! included, are cached by the kernel for a minute (this process is the
//! only writer), as strata does for its head.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use fuser::{Config, InitFlags, MountOption};
use strata::daemon::mount_args::Transport;
use strata_mountd::kernel::abi::{self, fattr, InHeader};
use strata_mountd::kernel::reply::{Listing, Reply};
use strata_mountd::kernel::request::Op;
use strata_mountd::kernel::{self, Serve, TransportStatus};

const TTL: Duration = Duration::from_secs(60);
const ROOT: u64 = 1;
const NAME_MAX: usize = 255;
const BSIZE: u64 = 4096;
/// Largest write the kernel sends, as to strata-mountd.
const MAX_WRITE: u32 = 1 << 20;
/// Directory cursors 1 and 2 are "." and "..".
const FIRST_COOKIE: u64 = 3;

const USAGE: &str = "usage: nullfs [--transport auto|io-uring|dev-fuse] [--threads N] MOUNTPOINT";

/// A time as the kernel sends and takes it: seconds (two's complement, so
/// before the epoch too) and nanoseconds.
#[derive(Clone, Copy)]
struct Ts {
    secs: u64,
    nanos: u32,
}

impl Ts {
    fn now() -> Ts {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ts {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
        }
    }
}

enum Content {
    File,
    /// Entries by name (inode, cursor) and names by cursor, so readdir
    /// resumes correctly while the directory changes.
    Dir {
        parent: u64,
        entries: BTreeMap<Vec<u8>, (u64, u64)>,
        by_cookie: BTreeMap<u64, Vec<u8>>,
        next_cookie: u64,
    },
    Symlink(Vec<u8>),
    /// Devices (with their number), fifos, sockets.
    Special(u32),
}

impl Content {
    fn dir(parent: u64) -> Content {
        Content::Dir {
            parent,
            entries: BTreeMap::new(),
            by_cookie: BTreeMap::new(),
            next_cookie: FIRST_COOKIE,
        }
    }
}

struct Inode {
    /// The file-type bits of `st_mode` (`S_IFREG`, `S_IFDIR`, ...).
    kind: u32,
    /// The permission bits of `st_mode` (with setuid, setgid, sticky).
    perm: u32,
    uid: u32,
    gid: u32,
    size: u64,
    nlink: u32,
    atime: Ts,
    mtime: Ts,
    ctime: Ts,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    content: Content,
    /// References the kernel holds (lookups not yet forgotten).
    lookups: u64,
}

impl Inode {
    fn attr(&self, ino: u64) -> abi::Attr {
        abi::Attr {
            ino,
            size: self.size,
            blocks: self.size.div_ceil(512),
            atime: self.atime.secs,
            mtime: self.mtime.secs,
            ctime: self.ctime.secs,
            atimensec: self.atime.nanos,
            mtimensec: self.mtime.nanos,
            ctimensec: self.ctime.nanos,
            mode: self.kind | self.perm,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: match self.content {
                Content::Special(rdev) => rdev,
                _ => 0,
            },
            blksize: BSIZE as u32,
            flags: 0,
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir { .. })
    }
}

struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
}

/// A result or an errno.
type Res<T> = Result<T, i32>;

impl State {
    fn new() -> State {
        let now = Ts::now();
        let root = Inode {
            kind: libc::S_IFDIR,
            perm: 0o755,
            // SAFETY: getuid and getgid take nothing and cannot fail.
            uid: unsafe { libc::getuid() },
            // SAFETY: as above.
            gid: unsafe { libc::getgid() },
            size: 0,
            nlink: 2,
            atime: now,
            mtime: now,
            ctime: now,
            xattrs: BTreeMap::new(),
            content: Content::dir(ROOT),
            lookups: 1,
        };
        State {
            inodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
        }
    }

    fn get(&self, ino: u64) -> Res<&Inode> {
        self.inodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn get_mut(&mut self, ino: u64) -> Res<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    /// The inode `name` in directory `dir` names, if any.
    fn child(&self, dir: u64, name: &[u8]) -> Res<Option<u64>> {
        match &self.get(dir)?.content {
            Content::Dir { entries, .. } => Ok(entries.get(name).map(|e| e.0)),
            _ => Err(libc::ENOTDIR),
        }
    }

    fn add_entry(&mut self, dir: u64, name: &[u8], ino: u64) -> Res<()> {
        let now = Ts::now();
        let d = self.get_mut(dir)?;
        d.mtime = now;
        d.ctime = now;
        match &mut d.content {
            Content::Dir {
                entries,
                by_cookie,
                next_cookie,
                ..
            } => {
                let cookie = *next_cookie;
                *next_cookie += 1;
                entries.insert(name.to_vec(), (ino, cookie));
                by_cookie.insert(cookie, name.to_vec());
                Ok(())
            }
            _ => Err(libc::ENOTDIR),
        }
    }

    fn remove_entry(&mut self, dir: u64, name: &[u8]) -> Res<u64> {
        let now = Ts::now();
        let d = self.get_mut(dir)?;
        d.mtime = now;
        d.ctime = now;
        match &mut d.content {
            Content::Dir {
                entries, by_cookie, ..
            } => {
                let (ino, cookie) = entries.remove(name).ok_or(libc::ENOENT)?;
                by_cookie.remove(&cookie);
                Ok(ino)
            }
            _ => Err(libc::ENOTDIR),
        }
    }

    /// Drops an inode nobody names and the kernel no longer holds.
    fn maybe_free(&mut self, ino: u64) {
        if ino == ROOT {
            return;
        }
        if matches!(self.inodes.get(&ino), Some(n) if n.nlink == 0 && n.lookups == 0) {
            self.inodes.remove(&ino);
        }
    }

    /// One link less to `ino` (unlinked or replaced by a rename).
    fn unref(&mut self, ino: u64) {
        let now = Ts::now();
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.nlink = if n.is_dir() {
                0
            } else {
                n.nlink.saturating_sub(1)
            };
            n.ctime = now;
        }
        self.maybe_free(ino);
    }

    /// Makes an inode of `kind` named `name` in `parent` for the caller of
    /// `h`, with the permissions in `mode` (the umask applied); returns its
    /// attributes (the kernel now holds one reference).
    fn make(
        &mut self,
        h: &InHeader,
        parent: u64,
        name: &[u8],
        kind: u32,
        mode: u32,
        content: Content,
    ) -> Res<abi::Attr> {
        if name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        let p = self.get(parent)?;
        if self.child(parent, name)?.is_some() {
            return Err(libc::EEXIST);
        }
        let is_dir = kind == libc::S_IFDIR;
        let mut perm = mode & 0o7777;
        let mut gid = h.gid;
        // A set-group-ID directory hands its group down (and the bit to
        // subdirectories).
        if p.perm & libc::S_ISGID != 0 {
            gid = p.gid;
            if is_dir {
                perm |= libc::S_ISGID;
            }
        }
        let size = match &content {
            Content::Symlink(t) => t.len() as u64,
            _ => 0,
        };
        let now = Ts::now();
        let ino = self.next_ino;
        self.next_ino += 1;
        let node = Inode {
            kind,
            perm,
            uid: h.uid,
            gid,
            size,
            nlink: if is_dir { 2 } else { 1 },
            atime: now,
            mtime: now,
            ctime: now,
            xattrs: BTreeMap::new(),
            content,
            lookups: 1,
        };
        let attr = node.attr(ino);
        self.inodes.insert(ino, node);
        self.add_entry(parent, name, ino)?;
        if is_dir {
            self.get_mut(parent)?.nlink += 1;
        }
        Ok(attr)
    }

    fn lookup(&mut self, parent: u64, name: &[u8]) -> Res<Option<abi::Attr>> {
        if name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        let Some(ino) = self.child(parent, name)? else {
            return Ok(None);
        };
        let n = self.get_mut(ino)?;
        n.lookups += 1;
        Ok(Some(n.attr(ino)))
    }

    fn forget(&mut self, ino: u64, nlookup: u64) {
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.lookups = n.lookups.saturating_sub(nlookup);
        }
        self.maybe_free(ino);
    }

    /// Sets what `s.valid` says, and only that.
    fn setattr(&mut self, ino: u64, s: &abi::SetattrIn) -> Res<abi::Attr> {
        let has = |bit| s.valid & bit != 0;
        let now = Ts::now();
        let time = |set_now, secs, nanos| {
            if has(set_now) {
                now
            } else {
                Ts { secs, nanos }
            }
        };
        let n = self.get_mut(ino)?;
        if has(fattr::SIZE) {
            match n.content {
                Content::File => {}
                Content::Dir { .. } => return Err(libc::EISDIR),
                _ => return Err(libc::EINVAL),
            }
            n.size = s.size;
            n.mtime = now;
        }
        if has(fattr::MODE) {
            n.perm = s.mode & 0o7777;
        }
        if has(fattr::UID) {
            n.uid = s.uid;
        }
        if has(fattr::GID) {
            n.gid = s.gid;
        }
        if has(fattr::ATIME) {
            n.atime = time(fattr::ATIME_NOW, s.atime, s.atimensec);
        }
        if has(fattr::MTIME) {
            n.mtime = time(fattr::MTIME_NOW, s.mtime, s.mtimensec);
        }
        n.ctime = now;
        Ok(n.attr(ino))
    }

    fn link(&mut self, ino: u64, newparent: u64, newname: &[u8]) -> Res<abi::Attr> {
        if newname.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        if self.get(ino)?.is_dir() {
            return Err(libc::EPERM);
        }
        if self.child(newparent, newname)?.is_some() {
            return Err(libc::EEXIST);
        }
        self.add_entry(newparent, newname, ino)?;
        let n = self.get_mut(ino)?;
        n.nlink += 1;
        n.lookups += 1;
        n.ctime = Ts::now();
        Ok(n.attr(ino))
    }

    fn unlink(&mut self, parent: u64, name: &[u8]) -> Res<()> {
        let ino = self.child(parent, name)?.ok_or(libc::ENOENT)?;
        if self.get(ino)?.is_dir() {
            return Err(libc::EISDIR);
        }
        self.remove_entry(parent, name)?;
        self.unref(ino);
        Ok(())
    }

    fn rmdir(&mut self, parent: u64, name: &[u8]) -> Res<()> {
        let ino = self.child(parent, name)?.ok_or(libc::ENOENT)?;
        self.check_empty_dir(ino)?;
        self.remove_entry(parent, name)?;
        self.get_mut(parent)?.nlink -= 1;
        self.unref(ino);
        Ok(())
    }

    fn check_empty_dir(&self, ino: u64) -> Res<()> {
        match &self.get(ino)?.content {
            Content::Dir { entries, .. } if entries.is_empty() => Ok(()),
            Content::Dir { .. } => Err(libc::ENOTEMPTY),
            _ => Err(libc::ENOTDIR),
        }
    }

    /// rename(2) without flags, or with RENAME_NOREPLACE. (The kernel
    /// refuses moving a directory under itself before asking us.)
    fn rename(
        &mut self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        noreplace: bool,
    ) -> Res<()> {
        if newname.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        let ino = self.child(parent, name)?.ok_or(libc::ENOENT)?;
        let src_dir = self.get(ino)?.is_dir();
        if let Some(old) = self.child(newparent, newname)? {
            if noreplace {
                return Err(libc::EEXIST);
            }
            if old == ino {
                // Two names of one file: nothing to do.
                return Ok(());
            }
            match (src_dir, self.get(old)?.is_dir()) {
                (true, true) => self.check_empty_dir(old)?,
                (true, false) => return Err(libc::ENOTDIR),
                (false, true) => return Err(libc::EISDIR),
                (false, false) => {}
            }
            self.remove_entry(newparent, newname)?;
            if src_dir {
                self.get_mut(newparent)?.nlink -= 1;
            }
            self.unref(old);
        }
        self.remove_entry(parent, name)?;
        self.add_entry(newparent, newname, ino)?;
        let now = Ts::now();
        let n = self.get_mut(ino)?;
        n.ctime = now;
        if let Content::Dir { parent: up, .. } = &mut n.content {
            *up = newparent;
        }
        if src_dir && parent != newparent {
            self.get_mut(parent)?.nlink -= 1;
            self.get_mut(newparent)?.nlink += 1;
        }
        Ok(())
    }

    fn write(&mut self, ino: u64, offset: u64, len: usize) -> Res<()> {
        let n = self.get_mut(ino)?;
        if !matches!(n.content, Content::File) {
            return Err(libc::EBADF);
        }
        let now = Ts::now();
        n.size = n.size.max(offset + len as u64);
        n.mtime = now;
        n.ctime = now;
        Ok(())
    }

    /// Lists `dir` after the cursor `offset` into `out`, until it is full.
    /// With `plus`, every entry carries its attributes and the kernel takes
    /// a lookup reference on each, counted here as a lookup's, but on "."
    /// and ".." (fs/fuse/readdir.c, fuse_direntplus_link).
    fn readdir(&mut self, dir: u64, offset: u64, plus: bool, out: &mut Listing) -> Res<()> {
        let Content::Dir {
            parent,
            entries,
            by_cookie,
            ..
        } = &self.get(dir)?.content
        else {
            return Err(libc::ENOTDIR);
        };
        let mut list = Vec::new();
        if offset < 1 {
            list.push((dir, 1, b".".to_vec()));
        }
        if offset < 2 {
            list.push((*parent, 2, b"..".to_vec()));
        }
        for (&cookie, name) in by_cookie.range(offset.max(FIRST_COOKIE - 1) + 1..) {
            list.push((entries[name].0, cookie, name.clone()));
        }
        for (ino, cookie, name) in list {
            let n = self.get_mut(ino)?;
            let entry = plus.then(|| entry_out(n.attr(ino)));
            if !out.push(entry.as_ref(), ino, cookie, n.kind >> 12, &name) {
                break;
            }
            if plus && cookie >= FIRST_COOKIE {
                n.lookups += 1;
            }
        }
        Ok(())
    }

    fn setxattr(&mut self, ino: u64, name: &[u8], value: &[u8], flags: u32) -> Res<()> {
        let n = self.get_mut(ino)?;
        let exists = n.xattrs.contains_key(name);
        let flags = flags as i32;
        if flags & libc::XATTR_CREATE != 0 && exists {
            return Err(libc::EEXIST);
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return Err(libc::ENODATA);
        }
        n.xattrs.insert(name.to_vec(), value.to_vec());
        n.ctime = Ts::now();
        Ok(())
    }

    fn removexattr(&mut self, ino: u64, name: &[u8]) -> Res<()> {
        let n = self.get_mut(ino)?;
        n.xattrs.remove(name).ok_or(libc::ENODATA)?;
        n.ctime = Ts::now();
        Ok(())
    }

    fn statfs(&self) -> abi::StatfsOut {
        let used = self
            .inodes
            .values()
            .map(|n| n.size.div_ceil(BSIZE))
            .sum::<u64>();
        // Free blocks and free inodes alike.
        let free = 1u64 << 32;
        abi::StatfsOut {
            blocks: used + free,
            bfree: free,
            bavail: free,
            files: self.inodes.len() as u64 + free,
            ffree: free,
            bsize: BSIZE as u32,
            namelen: NAME_MAX as u32,
            frsize: BSIZE as u32,
            ..Default::default()
        }
    }
}

/// The answer naming an inode (its number and attributes, cached for
/// TTL); inode 0 is an absent name, whose absence is cached alike.
fn entry_out(attr: abi::Attr) -> abi::EntryOut {
    abi::EntryOut {
        nodeid: attr.ino,
        generation: 0,
        entry_valid: TTL.as_secs(),
        attr_valid: TTL.as_secs(),
        entry_valid_nsec: TTL.subsec_nanos(),
        attr_valid_nsec: TTL.subsec_nanos(),
        attr,
    }
}

fn entry(reply: Reply, r: Res<abi::Attr>) {
    match r {
        Ok(a) => reply.entry(&entry_out(a)),
        Err(e) => reply.error(e),
    }
}

fn attr(reply: Reply, r: Res<abi::Attr>) {
    match r {
        Ok(attr) => reply.attr(&abi::AttrOut {
            attr_valid: TTL.as_secs(),
            attr_valid_nsec: TTL.subsec_nanos(),
            dummy: 0,
            attr,
        }),
        Err(e) => reply.error(e),
    }
}

fn empty(reply: Reply, r: Res<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// An xattr value or name list by the kernel's size protocol.
fn xattr(reply: Reply, size: u32, r: Res<Vec<u8>>) {
    match r {
        Ok(v) if size == 0 => reply.xattr_size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(libc::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(e),
    }
}

/// The file-type bits of a mknod that makes something other than a
/// directory or symlink.
fn kind_of(mode: u32) -> Option<u32> {
    match mode & libc::S_IFMT {
        k @ (libc::S_IFREG | libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO | libc::S_IFSOCK) => {
            Some(k)
        }
        _ => None,
    }
}

struct NullFs {
    state: Mutex<State>,
}

impl NullFs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("nullfs state")
    }
}

impl Serve for NullFs {
    fn serve(&self, h: &InHeader, op: Op<'_>, reply: Reply) {
        let ino = h.nodeid;
        match op {
            Op::Lookup { name } => match self.state().lookup(ino, name) {
                Ok(Some(a)) => reply.entry(&entry_out(a)),
                Ok(None) => reply.entry(&entry_out(abi::Attr::default())),
                Err(e) => reply.error(e),
            },
            Op::Forget { nlookup } => {
                self.state().forget(ino, nlookup);
                reply.none();
            }
            Op::BatchForget(all) => {
                let mut st = self.state();
                for (ino, nlookup) in all {
                    st.forget(ino, nlookup);
                }
                reply.none();
            }
            Op::Getattr => attr(reply, self.state().get(ino).map(|n| n.attr(ino))),
            Op::Setattr(s) => attr(reply, self.state().setattr(ino, &s)),
            Op::Readlink => match self.state().get(ino).map(|n| &n.content) {
                Ok(Content::Symlink(t)) => reply.data(t),
                Ok(_) => reply.error(libc::EINVAL),
                Err(e) => reply.error(e),
            },
            Op::Mknod {
                name,
                mode,
                umask,
                rdev,
            } => {
                let Some(kind) = kind_of(mode) else {
                    return reply.error(libc::EINVAL);
                };
                let content = if kind == libc::S_IFREG {
                    Content::File
                } else {
                    Content::Special(rdev)
                };
                let r = self
                    .state()
                    .make(h, ino, name, kind, mode & !umask, content);
                entry(reply, r);
            }
            Op::Mkdir { name, mode, umask } => {
                let r = self.state().make(
                    h,
                    ino,
                    name,
                    libc::S_IFDIR,
                    mode & !umask,
                    Content::dir(ino),
                );
                entry(reply, r);
            }
            Op::Unlink { name } => empty(reply, self.state().unlink(ino, name)),
            Op::Rmdir { name } => empty(reply, self.state().rmdir(ino, name)),
            Op::Symlink { name, target } => {
                let r = self.state().make(
                    h,
                    ino,
                    name,
                    libc::S_IFLNK,
                    0o777,
                    Content::Symlink(target.to_vec()),
                );
                entry(reply, r);
            }
            Op::Rename {
                name,
                newdir,
                newname,
                flags,
            } => {
                let noreplace = match flags {
                    0 => false,
                    libc::RENAME_NOREPLACE => true,
                    _ => return reply.error(libc::EINVAL),
                };
                let r = self.state().rename(ino, name, newdir, newname, noreplace);
                empty(reply, r);
            }
            Op::Link { oldnodeid, newname } => {
                entry(reply, self.state().link(oldnodeid, ino, newname))
            }
            Op::Open { .. } => match self.state().get(ino) {
                Ok(n) if n.is_dir() => reply.error(libc::EISDIR),
                Ok(_) => reply.opened(&abi::OpenOut::default()),
                Err(e) => reply.error(e),
            },
            Op::Read { offset, size } => {
                let len = match self.state().get(ino) {
                    Ok(n) => n.size.saturating_sub(offset).min(u64::from(size)),
                    Err(e) => return reply.error(e),
                };
                reply.data(&vec![0; len as usize]);
            }
            Op::Write { offset, data, .. } => match self.state().write(ino, offset, data.len()) {
                Ok(()) => reply.written(data.len() as u32),
                Err(e) => reply.error(e),
            },
            Op::Flush | Op::Release | Op::Fsync | Op::Fsyncdir | Op::Releasedir => reply.ok(),
            Op::Opendir => match self.state().get(ino) {
                Ok(n) if n.is_dir() => reply.opened(&abi::OpenOut::default()),
                Ok(_) => reply.error(libc::ENOTDIR),
                Err(e) => reply.error(e),
            },
            Op::Readdir { offset, size, plus } => {
                let mut out = Listing::new(size);
                match self.state().readdir(ino, offset, plus, &mut out) {
                    Ok(()) => out.send(reply),
                    Err(e) => reply.error(e),
                }
            }
            Op::Statfs => reply.statfs(&self.state().statfs()),
            Op::Setxattr { name, value, flags } => {
                empty(reply, self.state().setxattr(ino, name, value, flags))
            }
            Op::Getxattr { name, size } => {
                let r = self
                    .state()
                    .get(ino)
                    .and_then(|n| n.xattrs.get(name).cloned().ok_or(libc::ENODATA));
                xattr(reply, size, r);
            }
            Op::Listxattr { size } => {
                let r = self.state().get(ino).map(|n| {
                    let mut out = Vec::new();
                    for name in n.xattrs.keys() {
                        out.extend_from_slice(name);
                        out.push(0);
                    }
                    out
                });
                xattr(reply, size, r);
            }
            Op::Removexattr { name } => empty(reply, self.state().removexattr(ino, name)),
            Op::Create { name, mode, umask } => {
                let r =
                    self.state()
                        .make(h, ino, name, libc::S_IFREG, mode & !umask, Content::File);
                match r {
                    Ok(a) => reply.created(&entry_out(a), &abi::OpenOut::default()),
                    Err(e) => reply.error(e),
                }
            }
            // No file here is a terminal (shells and isatty(3) ask TCGETS).
            Op::Ioctl => reply.error(libc::ENOTTY),
            // Requests are short; an interrupted one simply finishes.
            Op::Interrupt => reply.none(),
            Op::Destroy => reply.ok(),
            Op::Other(_) => reply.error(libc::ENOSYS),
        }
    }
}

/// The command line.
struct Args {
    transport: Transport,
    threads: usize,
    mountpoint: PathBuf,
}

impl Args {
    fn parse() -> anyhow::Result<Args> {
        let mut transport = Transport::Auto;
        let mut threads = 1;
        let mut mountpoint = None;
        let mut args = std::env::args_os().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().and_then(|v| v.into_string().ok());
            match arg.to_str() {
                Some("--transport") => {
                    let v = value();
                    transport = [Transport::Auto, Transport::IoUring, Transport::DevFuse]
                        .into_iter()
                        .find(|t| Some(t.as_str()) == v.as_deref())
                        .with_context(|| {
                            format!("--transport: auto, io-uring or dev-fuse\n{USAGE}")
                        })?;
                }
                Some("--threads") => {
                    threads = value()
                        .and_then(|v| v.parse().ok())
                        .filter(|&n| n > 0)
                        .with_context(|| format!("--threads: a number above 0\n{USAGE}"))?;
                }
                Some(a) if a.starts_with('-') => bail!("unknown option {a}\n{USAGE}"),
                _ if mountpoint.is_none() => mountpoint = Some(PathBuf::from(arg)),
                _ => bail!(USAGE),
            }
        }
        Ok(Args {
            transport,
            threads,
            mountpoint: mountpoint.context(USAGE)?,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let mnt = args.mountpoint.display();
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("nullfs".into()),
        MountOption::DefaultPermissions,
    ];
    let fs = Arc::new(NullFs {
        state: Mutex::new(State::new()),
    });
    let status = Arc::new(TransportStatus::default());
    let options = kernel::Options {
        config: &config,
        capabilities: InitFlags::FUSE_BIG_WRITES | InitFlags::FUSE_MAX_PAGES,
        max_write: MAX_WRITE,
        transport: args.transport,
        threads: args.threads,
    };
    let mounted = kernel::mount(&args.mountpoint, &options, fs, status.clone())
        .with_context(|| format!("nullfs on {mnt}"))?;
    eprintln!("nullfs on {mnt}: serving on {}", status.describe());
    mounted.join().with_context(|| format!("nullfs on {mnt}"))?;
    Ok(())
}
