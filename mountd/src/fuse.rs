//! The FUSE callbacks: each one translates a kernel request into one call
//! of [`Namespace`] and its answer (or error) into the reply.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    IoctlFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use strata::policy::throttle::Throttle;
use strata::sys::sync::Recover;
use strata::tree::namespace::{DirReply, Listed, Namespace, Node};
use strata::tree::types::{
    Attr, Caller, FileKind, FsError, OpenMode, RenameMode, SetAttr, Timestamp,
};

use crate::delay::Delayer;
use crate::invalidate::{after_snapshot, Invalidate};
use crate::requests::Requests;

/// Attributes and entries of the head: the daemon is its only writer.
const HEAD_TTL: Duration = Duration::from_secs(60);
/// Snapshots never change.
const SNAPSHOT_TTL: Duration = Duration::from_secs(3600);
/// The root, snapshots/ and its symlinks; invalidated when they change.
const VIRTUAL_TTL: Duration = Duration::from_secs(60);
/// Largest write the kernel sends.
const MAX_WRITE: u32 = 1 << 20;

/// The filesystem the kernel talks to.
pub struct StrataFs {
    ns: Arc<Namespace>,
    invalidate: Mutex<Sender<Invalidate>>,
    requests: Arc<Requests>,
    throttle: Arc<Throttle>,
    delayer: Delayer,
}

impl StrataFs {
    /// Serves `ns`; cache invalidations go to `invalidate`; requests are counted in `requests`.
    /// Write replies are held back as `throttle` says, by `delayer`.
    pub fn new(
        ns: Arc<Namespace>,
        invalidate: Sender<Invalidate>,
        requests: Arc<Requests>,
        throttle: Arc<Throttle>,
        delayer: Delayer,
    ) -> StrataFs {
        StrataFs {
            ns,
            invalidate: Mutex::new(invalidate),
            requests,
            throttle,
            delayer,
        }
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

/// What a kernel inode number stands for in the namespace.
fn node(ino: INodeNo) -> Node {
    Node::of(ino.0)
}

fn ttl(ino: u64) -> Duration {
    match Node::of(ino) {
        Node::Head(_) => HEAD_TTL,
        Node::Snap { .. } => SNAPSHOT_TTL,
        _ => VIRTUAL_TTL,
    }
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
    }
}

fn system_time(t: Timestamp) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(t.nanos));
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.secs as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs()) + nanos
    }
}

/// A time the kernel sent (setattr). fuser 0.18 turns the kernel's
/// (seconds, nanoseconds) into a SystemTime as the epoch minus (|seconds|,
/// nanoseconds) when the seconds are negative, where the epoch minus
/// |seconds| plus nanoseconds is meant; this undoes exactly that, so times
/// before 1970 keep their nanoseconds. (Pinned by Cargo.lock; the mount
/// tests catch a change.)
fn kernel_time(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            Timestamp {
                secs: -(d.as_secs() as i64),
                nanos: d.subsec_nanos(),
            }
        }
    }
}

fn time_or_now(t: TimeOrNow) -> Timestamp {
    match t {
        TimeOrNow::SpecificTime(t) => kernel_time(t),
        TimeOrNow::Now => Timestamp::now(),
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.blocks_bytes.div_ceil(512),
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.btime),
        kind: file_type(a.kind),
        perm: a.perm as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        blksize: 128 * 1024,
        flags: 0,
    }
}

/// The entry of an absent name (inode 0), for the kernel's negative cache.
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

fn entry(reply: ReplyEntry, r: Result<Attr, FsError>) {
    match r {
        Ok(a) => reply.entry(&ttl(a.ino.0), &file_attr(&a), Generation(0)),
        Err(e) => reply.error(errno(&e)),
    }
}

fn empty(reply: ReplyEmpty, r: Result<(), FsError>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Answers an xattr value or name list by the kernel's size protocol.
fn xattr(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, FsError>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Snapshot files never change: the kernel keeps their pages across
/// opens. Closing a read-only handle has nothing to flush (rsync -X opens
/// every file it compares), so the kernel need not tell us.
fn open_flags(ino: u64, write: bool) -> FopenFlags {
    let keep = match Node::of(ino) {
        Node::Snap { .. } => FopenFlags::FOPEN_KEEP_CACHE,
        _ => FopenFlags::empty(),
    };
    if write {
        keep
    } else {
        keep | FopenFlags::FOPEN_NOFLUSH
    }
}

fn open_mode(flags: OpenFlags) -> OpenMode {
    if flags.0 & libc::O_TRUNC != 0 {
        OpenMode::Truncate
    } else if flags.acc_mode() != OpenAccMode::O_RDONLY {
        OpenMode::Write
    } else {
        OpenMode::Read
    }
}

impl Filesystem for StrataFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_POSIX_ACL
            | InitFlags::FUSE_DONT_MASK
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_MAX_PAGES;
        if let Err(missing) = config.add_capabilities(wanted) {
            tracing::warn!(?missing, "kernel lacks FUSE capabilities");
            let _ = config.add_capabilities(wanted & !missing);
        }
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_WRITE);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.requests.serve("lookup", || {
            self.ns.lookup(caller(req), node(parent), name.as_bytes())
        }) {
            // The daemon is the head's only writer, so the kernel may
            // remember that a name is absent (inode 0): rsync looks up
            // every temporary and new name before creating it.
            Err(FsError::NotFound) if matches!(node(parent), Node::Head(_)) => {
                reply.entry(&HEAD_TTL, &absent(), Generation(0))
            }
            r => entry(reply, r),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _t = self.requests.start("forget");
        self.ns.forget(node(ino), nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self
            .requests
            .serve("getattr", || self.ns.getattr(caller(req), node(ino)))
        {
            Ok(a) => reply.attr(&ttl(ino.0), &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
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
        let set = SetAttr {
            perm: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(time_or_now),
            mtime: mtime.map(time_or_now),
        };
        match self
            .requests
            .serve("setattr", || self.ns.setattr(caller(req), node(ino), &set))
        {
            Ok(a) => reply.attr(&ttl(ino.0), &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        match self
            .requests
            .serve("readlink", || self.ns.readlink(caller(req), node(ino)))
        {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(&e)),
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
        entry(
            reply,
            self.requests.serve("mknod", || {
                self.ns.mknod(
                    caller(req),
                    node(parent),
                    name.as_bytes(),
                    mode,
                    umask,
                    u64::from(rdev),
                )
            }),
        );
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
        let r = self.requests.serve("mkdir", || {
            self.ns
                .mkdir(caller(req), node(parent), name.as_bytes(), mode, umask)
        });
        if node(parent) != Node::Snapshots {
            return entry(reply, r);
        }
        // A new snapshot: the kernel binds the name to its directory for
        // this once (no entry TTL), and later finds the label symlink.
        match r {
            Ok(a) => {
                // The kernel caches symlink targets: `latest` and the label
                // must be forgotten before mkdir returns, or a reader could
                // follow the old target. Inode invalidations take no
                // directory lock, so they can be made while the kernel holds
                // snapshots/ for this mkdir; entry invalidations cannot, and
                // follow the reply.
                let label = name.to_str();
                let (inodes, entries): (Vec<_>, Vec<_>) = after_snapshot(&self.ns, label)
                    .into_iter()
                    .partition(|i| matches!(i, Invalidate::Inode(_)));
                let (done, sent) = std::sync::mpsc::channel();
                {
                    let tx = self.invalidate.locked();
                    for inv in inodes {
                        let _ = tx.send(inv);
                    }
                    let _ = tx.send(Invalidate::Done(done));
                }
                if sent.recv_timeout(Duration::from_secs(5)).is_err() {
                    tracing::warn!(
                        "symlink invalidation took over 5 s; `latest` may be stale briefly"
                    );
                }
                reply.entry(&Duration::ZERO, &file_attr(&a), Generation(0));
                let tx = self.invalidate.locked();
                for inv in entries {
                    let _ = tx.send(inv);
                }
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(
            reply,
            self.requests.serve("unlink", || {
                self.ns.unlink(caller(req), node(parent), name.as_bytes())
            }),
        );
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(
            reply,
            self.requests.serve("rmdir", || {
                self.ns.rmdir(caller(req), node(parent), name.as_bytes())
            }),
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.requests.serve("symlink", || {
                self.ns.symlink(
                    caller(req),
                    node(parent),
                    link_name.as_bytes(),
                    target.as_os_str().as_bytes(),
                )
            }),
        );
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mode = if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            RenameMode::Exchange
        } else if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            RenameMode::NoReplace
        } else if flags.is_empty() {
            RenameMode::Replace
        } else {
            return reply.error(Errno::EINVAL);
        };
        empty(
            reply,
            self.requests.serve("rename", || {
                self.ns.rename(
                    caller(req),
                    node(parent),
                    name.as_bytes(),
                    node(newparent),
                    newname.as_bytes(),
                    mode,
                )
            }),
        );
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.requests.serve("link", || {
                self.ns
                    .link(caller(req), node(ino), node(newparent), newname.as_bytes())
            }),
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mode = open_mode(flags);
        match self
            .requests
            .serve("open", || self.ns.open(caller(req), node(ino), mode))
        {
            Ok(_) => reply.opened(FileHandle(0), open_flags(ino.0, mode != OpenMode::Read)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.requests.serve("read", || {
            self.ns.read(caller(req), node(ino), offset, size)
        }) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        match self.requests.serve("write", || {
            self.ns.write(caller(req), node(ino), offset, data, kill)
        }) {
            Ok(n) => {
                let delay = self.throttle.admit(n as u64);
                if delay.is_zero() {
                    reply.written(n as u32)
                } else {
                    self.delayer.after(delay, move || reply.written(n as u32))
                }
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.requests
                .serve("flush", || self.ns.flush(caller(req), node(ino))),
        );
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.requests
                .serve("release", || self.ns.release(caller(req), node(ino))),
        );
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.requests
                .serve("fsync", || self.ns.fsync(caller(req), node(ino))),
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _t = self.requests.start("opendir");
        let flags = match node(ino) {
            Node::Snap { .. } => FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            _ => FopenFlags::empty(),
        };
        reply.opened(FileHandle(0), flags);
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.requests.serve("readdir", || {
            self.ns.readdir(
                caller(req),
                node(ino),
                offset,
                false,
                &mut Listing(&mut reply),
            )
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self.requests.serve("readdirplus", || {
            self.ns.readdir(
                caller(req),
                node(ino),
                offset,
                true,
                &mut ListingPlus(&mut reply),
            )
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.requests
                .serve("fsyncdir", || self.ns.fsync(caller(req), node(ino))),
        );
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self
            .requests
            .serve("statfs", || self.ns.statfs(caller(req)))
        {
            Ok(s) => {
                const BSIZE: u64 = 4096;
                let free = s.free_bytes / BSIZE;
                let used = s.used_bytes.div_ceil(BSIZE);
                let ffree = 1u64 << 32;
                reply.statfs(
                    used + free,
                    free,
                    free,
                    s.inodes + ffree,
                    ffree,
                    BSIZE as u32,
                    255,
                    BSIZE as u32,
                );
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let create = flags & libc::XATTR_CREATE != 0;
        let replace = flags & libc::XATTR_REPLACE != 0;
        empty(
            reply,
            self.requests.serve("setxattr", || {
                self.ns.setxattr(
                    caller(req),
                    node(ino),
                    name.as_bytes(),
                    value,
                    create,
                    replace,
                )
            }),
        );
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        xattr(
            reply,
            size,
            self.requests.serve("getxattr", || {
                self.ns.getxattr(caller(req), node(ino), name.as_bytes())
            }),
        );
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let names = self
            .requests
            .serve("listxattr", || self.ns.listxattr(caller(req), node(ino)))
            .map(|names| {
                let mut out = Vec::new();
                for n in names {
                    out.extend_from_slice(&n);
                    out.push(0);
                }
                out
            });
        xattr(reply, size, names);
    }

    /// No file here has ioctls: ENOTTY, as for any file that is not a
    /// terminal (shells and isatty(3) ask TCGETS of files they write to).
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        let _counted = self.requests.serve("ioctl", || Ok(()));
        reply.error(Errno::ENOTTY);
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(
            reply,
            self.requests.serve("removexattr", || {
                self.ns.removexattr(caller(req), node(ino), name.as_bytes())
            }),
        );
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
        let c = caller(req);
        let r = self.requests.serve("create", || {
            self.ns
                .create_open(c, node(parent), name.as_bytes(), mode & 0o7777, umask)
        });
        match r {
            Ok(a) => reply.created(
                &ttl(a.ino.0),
                &file_attr(&a),
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

/// A readdir reply as the namespace fills it.
struct Listing<'a>(&'a mut ReplyDirectory);

impl DirReply for Listing<'_> {
    fn add(&mut self, e: Listed) -> bool {
        // fuser's add answers whether the buffer is full.
        !self.0.add(
            INodeNo(e.node.ino()),
            e.cursor,
            file_type(e.kind),
            OsStr::from_bytes(&e.name),
        )
    }
}

/// A readdirplus reply as the namespace fills it: every entry carries its
/// attributes.
struct ListingPlus<'a>(&'a mut ReplyDirectoryPlus);

impl DirReply for ListingPlus<'_> {
    fn add(&mut self, e: Listed) -> bool {
        let Some(attr) = &e.attr else {
            return false;
        };
        !self.0.add(
            INodeNo(e.node.ino()),
            e.cursor,
            OsStr::from_bytes(&e.name),
            &ttl(e.node.ino()),
            &file_attr(attr),
            Generation(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_before_and_after_the_epoch() {
        for t in [
            Timestamp { secs: 0, nanos: 0 },
            Timestamp { secs: 1, nanos: 5 },
            Timestamp {
                secs: -1,
                nanos: 999_999_999,
            },
            Timestamp {
                secs: -86_400 * 365 * 70,
                nanos: 123_456_789,
            },
            Timestamp {
                secs: 4_102_444_800,
                nanos: 1,
            },
        ] {
            // What we send is exact.
            let sent = system_time(t);
            let back = match sent.duration_since(UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
                Err(e) => {
                    let d = e.duration();
                    match d.subsec_nanos() {
                        0 => (-(d.as_secs() as i64), 0),
                        n => (-(d.as_secs() as i64) - 1, 1_000_000_000 - n),
                    }
                }
            };
            assert_eq!(back, (t.secs, t.nanos));
            // What fuser hands us for the kernel's (secs, nsecs) decodes exactly.
            let received = if t.secs >= 0 {
                UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
            } else {
                UNIX_EPOCH - Duration::new(t.secs.unsigned_abs(), t.nanos)
            };
            assert_eq!(kernel_time(received), t);
        }
    }
}
