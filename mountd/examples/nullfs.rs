//! nullfs: a do-nothing FUSE filesystem, the floor of what any FUSE
//! filesystem costs. `scripts/bench` rsyncs into it to tell the kernel
//! round trips apart from strata's own work.
//!
//!     nullfs MOUNTPOINT        # foreground; ends on `umount MOUNTPOINT`
//!
//! Only metadata lives (in memory): inodes with their attributes,
//! directories, symlink targets, extended attributes and file sizes. Data
//! is dropped: a write only extends the size, a read returns zeros.
//!
//! fuser's defaults throughout (no extra init capabilities, one thread);
//! the only choices are those any filesystem makes: attributes and entries,
//! absent names included, are cached by the kernel for a minute (this
//! process is the only writer), as strata does for its head.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

const TTL: Duration = Duration::from_secs(60);
const ROOT: u64 = 1;
const NAME_MAX: usize = 255;
const BSIZE: u64 = 4096;
/// Directory cursors 1 and 2 are "." and "..".
const FIRST_COOKIE: u64 = 3;

/// A time as the kernel means it: seconds (maybe negative) and nanoseconds.
#[derive(Clone, Copy)]
struct Ts {
    secs: i64,
    nanos: u32,
}

impl Ts {
    fn now() -> Ts {
        Ts::from_kernel(SystemTime::now())
    }

    /// What we send: exact on both sides of the epoch (fuser encodes it
    /// with a borrow for negative times).
    fn system_time(self) -> SystemTime {
        let nanos = Duration::from_nanos(u64::from(self.nanos));
        if self.secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.secs as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(self.secs.unsigned_abs()) + nanos
        }
    }

    /// A time fuser 0.18 hands us: it decodes negative (secs, nsecs) as
    /// the epoch minus (|secs|, nsecs); this undoes exactly that (as
    /// mountd/src/fuse.rs does).
    fn from_kernel(t: SystemTime) -> Ts {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Ts {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => Ts {
                secs: -(e.duration().as_secs() as i64),
                nanos: e.duration().subsec_nanos(),
            },
        }
    }
}

fn time(t: TimeOrNow) -> Ts {
    match t {
        TimeOrNow::SpecificTime(t) => Ts::from_kernel(t),
        TimeOrNow::Now => Ts::now(),
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
    kind: FileType,
    perm: u16,
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
    fn attr(&self, ino: u64) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: self.size,
            blocks: self.size.div_ceil(512),
            atime: self.atime.system_time(),
            mtime: self.mtime.system_time(),
            ctime: self.ctime.system_time(),
            crtime: self.ctime.system_time(),
            kind: self.kind,
            perm: self.perm,
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

type Res<T> = Result<T, Errno>;

/// A directory entry: inode, cursor, kind, name.
type DirEntry = (u64, u64, FileType, Vec<u8>);

fn err(code: i32) -> Errno {
    Errno::from_i32(code)
}

impl State {
    fn new() -> State {
        let now = Ts::now();
        let root = Inode {
            kind: FileType::Directory,
            perm: 0o755,
            uid: unsafe { libc::getuid() },
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
        self.inodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn get_mut(&mut self, ino: u64) -> Res<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    /// The inode `name` in directory `dir` names, if any.
    fn child(&self, dir: u64, name: &[u8]) -> Res<Option<u64>> {
        match &self.get(dir)?.content {
            Content::Dir { entries, .. } => Ok(entries.get(name).map(|e| e.0)),
            _ => Err(Errno::ENOTDIR),
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
            _ => Err(Errno::ENOTDIR),
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
                let (ino, cookie) = entries.remove(name).ok_or(Errno::ENOENT)?;
                by_cookie.remove(&cookie);
                Ok(ino)
            }
            _ => Err(Errno::ENOTDIR),
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

    /// Makes an inode named `name` in `parent` with the permissions in
    /// `mode` (the umask applied); returns its attributes (the kernel now
    /// holds one reference).
    fn make(
        &mut self,
        req: &Request,
        parent: u64,
        name: &[u8],
        kind: FileType,
        mode: u32,
        content: Content,
    ) -> Res<FileAttr> {
        if name.len() > NAME_MAX {
            return Err(err(libc::ENAMETOOLONG));
        }
        let p = self.get(parent)?;
        if self.child(parent, name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let mut perm = (mode & 0o7777) as u16;
        let mut gid = req.gid();
        // A set-group-ID directory hands its group down (and the bit to
        // subdirectories).
        if p.perm & libc::S_ISGID as u16 != 0 {
            gid = p.gid;
            if kind == FileType::Directory {
                perm |= libc::S_ISGID as u16;
            }
        }
        let is_dir = kind == FileType::Directory;
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
            uid: req.uid(),
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

    fn lookup(&mut self, parent: u64, name: &[u8]) -> Res<Option<FileAttr>> {
        if name.len() > NAME_MAX {
            return Err(err(libc::ENAMETOOLONG));
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

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &mut self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> Res<FileAttr> {
        let n = self.get_mut(ino)?;
        let now = Ts::now();
        if let Some(size) = size {
            match n.content {
                Content::File => {}
                Content::Dir { .. } => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
            n.size = size;
            n.mtime = now;
        }
        if let Some(mode) = mode {
            n.perm = (mode & 0o7777) as u16;
        }
        if let Some(uid) = uid {
            n.uid = uid;
        }
        if let Some(gid) = gid {
            n.gid = gid;
        }
        if let Some(t) = atime {
            n.atime = time(t);
        }
        if let Some(t) = mtime {
            n.mtime = time(t);
        }
        n.ctime = now;
        Ok(n.attr(ino))
    }

    fn link(&mut self, ino: u64, newparent: u64, newname: &[u8]) -> Res<FileAttr> {
        if newname.len() > NAME_MAX {
            return Err(err(libc::ENAMETOOLONG));
        }
        if self.get(ino)?.is_dir() {
            return Err(Errno::EPERM);
        }
        if self.child(newparent, newname)?.is_some() {
            return Err(Errno::EEXIST);
        }
        self.add_entry(newparent, newname, ino)?;
        let n = self.get_mut(ino)?;
        n.nlink += 1;
        n.lookups += 1;
        n.ctime = Ts::now();
        Ok(n.attr(ino))
    }

    fn unlink(&mut self, parent: u64, name: &[u8]) -> Res<()> {
        let ino = self.child(parent, name)?.ok_or(Errno::ENOENT)?;
        if self.get(ino)?.is_dir() {
            return Err(Errno::EISDIR);
        }
        self.remove_entry(parent, name)?;
        self.unref(ino);
        Ok(())
    }

    fn rmdir(&mut self, parent: u64, name: &[u8]) -> Res<()> {
        let ino = self.child(parent, name)?.ok_or(Errno::ENOENT)?;
        self.check_empty_dir(ino)?;
        self.remove_entry(parent, name)?;
        self.get_mut(parent)?.nlink -= 1;
        self.unref(ino);
        Ok(())
    }

    fn check_empty_dir(&self, ino: u64) -> Res<()> {
        match &self.get(ino)?.content {
            Content::Dir { entries, .. } if entries.is_empty() => Ok(()),
            Content::Dir { .. } => Err(err(libc::ENOTEMPTY)),
            _ => Err(Errno::ENOTDIR),
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
            return Err(err(libc::ENAMETOOLONG));
        }
        let ino = self.child(parent, name)?.ok_or(Errno::ENOENT)?;
        let src_dir = self.get(ino)?.is_dir();
        if let Some(old) = self.child(newparent, newname)? {
            if noreplace {
                return Err(Errno::EEXIST);
            }
            if old == ino {
                // Two names of one file: nothing to do.
                return Ok(());
            }
            match (src_dir, self.get(old)?.is_dir()) {
                (true, true) => self.check_empty_dir(old)?,
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
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
            return Err(Errno::EBADF);
        }
        let now = Ts::now();
        n.size = n.size.max(offset + len as u64);
        n.mtime = now;
        n.ctime = now;
        Ok(())
    }

    /// Entries of `ino` after the cursor `offset`.
    fn readdir(&self, ino: u64, offset: u64) -> Res<Vec<DirEntry>> {
        let Content::Dir {
            parent,
            entries,
            by_cookie,
            ..
        } = &self.get(ino)?.content
        else {
            return Err(Errno::ENOTDIR);
        };
        let mut out = Vec::new();
        if offset < 1 {
            out.push((ino, 1, FileType::Directory, b".".to_vec()));
        }
        if offset < 2 {
            out.push((*parent, 2, FileType::Directory, b"..".to_vec()));
        }
        for (&cookie, name) in by_cookie.range(offset.max(FIRST_COOKIE - 1) + 1..) {
            let child = entries[name].0;
            let kind = self.get(child)?.kind;
            out.push((child, cookie, kind, name.clone()));
        }
        Ok(out)
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

fn entry(reply: ReplyEntry, r: Res<FileAttr>) {
    match r {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn empty(reply: ReplyEmpty, r: Res<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// An xattr value or name list by the kernel's size protocol.
fn xattr(reply: ReplyXattr, size: u32, r: Res<Vec<u8>>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(err(libc::ERANGE)),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(e),
    }
}

/// The entry of an absent name (inode 0): the kernel remembers the
/// absence for TTL.
fn absent() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

fn kind_of(mode: u32) -> Option<FileType> {
    match mode & libc::S_IFMT {
        libc::S_IFREG => Some(FileType::RegularFile),
        libc::S_IFCHR => Some(FileType::CharDevice),
        libc::S_IFBLK => Some(FileType::BlockDevice),
        libc::S_IFIFO => Some(FileType::NamedPipe),
        libc::S_IFSOCK => Some(FileType::Socket),
        _ => None,
    }
}

impl Filesystem for NullFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.state().lookup(parent.0, name.as_bytes()) {
            Ok(Some(a)) => reply.entry(&TTL, &a, Generation(0)),
            Ok(None) => reply.entry(&TTL, &absent(), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.state().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().get(ino.0) {
            Ok(n) => reply.attr(&TTL, &n.attr(ino.0)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self
            .state()
            .setattr(ino.0, mode, uid, gid, size, atime, mtime)
        {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.state().get(ino.0).map(|n| &n.content) {
            Ok(Content::Symlink(t)) => reply.data(t),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let Some(kind) = kind_of(mode) else {
            return reply.error(Errno::EINVAL);
        };
        let content = if kind == FileType::RegularFile {
            Content::File
        } else {
            Content::Special(rdev)
        };
        let r = self
            .state()
            .make(req, parent.0, name.as_bytes(), kind, mode & !umask, content);
        entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.state().make(
            req,
            parent.0,
            name.as_bytes(),
            FileType::Directory,
            mode & !umask,
            Content::dir(parent.0),
        );
        entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.state().unlink(parent.0, name.as_bytes()));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.state().rmdir(parent.0, name.as_bytes()));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let target = target.as_os_str().as_bytes().to_vec();
        let r = self.state().make(
            req,
            parent.0,
            link_name.as_bytes(),
            FileType::Symlink,
            0o777,
            Content::Symlink(target),
        );
        entry(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let noreplace = if flags.is_empty() {
            false
        } else if flags == RenameFlags::RENAME_NOREPLACE {
            true
        } else {
            return reply.error(Errno::EINVAL);
        };
        let r = self.state().rename(
            parent.0,
            name.as_bytes(),
            newparent.0,
            newname.as_bytes(),
            noreplace,
        );
        empty(reply, r);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.state().link(ino.0, newparent.0, newname.as_bytes()),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.state().get(ino.0) {
            Ok(n) if n.is_dir() => reply.error(Errno::EISDIR),
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let len = match self.state().get(ino.0) {
            Ok(n) => n.size.saturating_sub(offset).min(u64::from(size)),
            Err(e) => return reply.error(e),
        };
        reply.data(&vec![0; len as usize]);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.state().write(ino.0, offset, data.len()) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.state().get(ino.0) {
            Ok(n) if n.is_dir() => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.state().readdir(ino.0, offset) {
            Ok(list) => {
                for (child, cookie, kind, name) in list {
                    if reply.add(INodeNo(child), cookie, kind, OsStr::from_bytes(&name)) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let st = self.state();
        let used = st
            .inodes
            .values()
            .map(|n| n.size.div_ceil(BSIZE))
            .sum::<u64>();
        let free = 1u64 << 32;
        let ffree = 1u64 << 32;
        reply.statfs(
            used + free,
            free,
            free,
            st.inodes.len() as u64 + ffree,
            ffree,
            BSIZE as u32,
            NAME_MAX as u32,
            BSIZE as u32,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mut st = self.state();
        let n = match st.get_mut(ino.0) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let exists = n.xattrs.contains_key(name.as_bytes());
        if flags & libc::XATTR_CREATE != 0 && exists {
            return reply.error(Errno::EEXIST);
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return reply.error(Errno::NO_XATTR);
        }
        n.xattrs.insert(name.as_bytes().to_vec(), value.to_vec());
        n.ctime = Ts::now();
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let r = self.state().get(ino.0).and_then(|n| {
            n.xattrs
                .get(name.as_bytes())
                .cloned()
                .ok_or(Errno::NO_XATTR)
        });
        xattr(reply, size, r);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = self.state().get(ino.0).map(|n| {
            let mut out = Vec::new();
            for name in n.xattrs.keys() {
                out.extend_from_slice(name);
                out.push(0);
            }
            out
        });
        xattr(reply, size, r);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.state();
        let r = st.get_mut(ino.0).and_then(|n| {
            n.xattrs.remove(name.as_bytes()).ok_or(Errno::NO_XATTR)?;
            n.ctime = Ts::now();
            Ok(())
        });
        empty(reply, r);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self.state().make(
            req,
            parent.0,
            name.as_bytes(),
            FileType::RegularFile,
            mode & !umask,
            Content::File,
        );
        match r {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [mountpoint] = args.as_slice() else {
        bail!("usage: nullfs MOUNTPOINT");
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("nullfs".into()),
        MountOption::DefaultPermissions,
    ];
    let fs = NullFs {
        state: Mutex::new(State::new()),
    };
    fuser::mount(fs, mountpoint, &config)
        .with_context(|| format!("nullfs on {}", Path::new(mountpoint).display()))
}
