//! The filesystem the kernel talks to: each request translates into one
//! call of [`Namespace`] and its answer (or error) into the reply.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::InitFlags;
use strata::policy::throttle::Throttle;
use strata::sys::sync::Recover;
use strata::tree::namespace::{DirReply, Listed, Namespace, Node};
use strata::tree::types::{Attr, Caller, FsError, OpenMode, RenameMode, SetAttr, Timestamp};

use crate::delay::Delayer;
use crate::invalidate::{after_snapshot, Invalidate};
use crate::requests::Requests;
use strata_mountd::kernel::abi::{self, fattr, fopen, InHeader};
use strata_mountd::kernel::reply::{Listing, Reply};
use strata_mountd::kernel::request::Op;
use strata_mountd::kernel::Serve;

/// Attributes and entries of the head: the daemon is its only writer.
const HEAD_TTL: Duration = Duration::from_secs(60);
/// Snapshots never change.
const SNAPSHOT_TTL: Duration = Duration::from_secs(3600);
/// The root, snapshots/ and its symlinks; invalidated when they change.
const VIRTUAL_TTL: Duration = Duration::from_secs(60);
/// Largest write the kernel sends.
pub const MAX_WRITE: u32 = 1 << 20;

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

/// The INIT capabilities this filesystem uses.
pub fn capabilities() -> InitFlags {
    InitFlags::FUSE_POSIX_ACL
        | InitFlags::FUSE_DONT_MASK
        | InitFlags::FUSE_DO_READDIRPLUS
        | InitFlags::FUSE_READDIRPLUS_AUTO
        | InitFlags::FUSE_PARALLEL_DIROPS
        | InitFlags::FUSE_ATOMIC_O_TRUNC
        | InitFlags::FUSE_HANDLE_KILLPRIV_V2
        | InitFlags::FUSE_CACHE_SYMLINKS
        | InitFlags::FUSE_BIG_WRITES
        | InitFlags::FUSE_MAX_PAGES
}

fn caller(h: &InHeader) -> Caller {
    Caller {
        uid: h.uid,
        gid: h.gid,
        pid: h.pid,
    }
}

fn ttl(ino: u64) -> Duration {
    match Node::of(ino) {
        Node::Head(_) => HEAD_TTL,
        Node::Snap { .. } => SNAPSHOT_TTL,
        _ => VIRTUAL_TTL,
    }
}

/// The kernel's times are (seconds as a two's-complement u64, nanoseconds).
fn wire_time(t: Timestamp) -> (u64, u32) {
    (t.secs as u64, t.nanos)
}

fn kernel_time(secs: u64, nanos: u32) -> Timestamp {
    Timestamp {
        secs: secs as i64,
        nanos,
    }
}

fn file_attr(a: &Attr) -> abi::Attr {
    let (atime, atimensec) = wire_time(a.atime);
    let (mtime, mtimensec) = wire_time(a.mtime);
    let (ctime, ctimensec) = wire_time(a.ctime);
    abi::Attr {
        ino: a.ino.0,
        size: a.size,
        blocks: a.blocks_bytes.div_ceil(512),
        atime,
        mtime,
        ctime,
        atimensec,
        mtimensec,
        ctimensec,
        mode: a.kind.type_bits() | (a.perm & 0o7777),
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        blksize: 128 * 1024,
        flags: 0,
    }
}

/// An entry answer valid for `ttl` (the name and the attributes alike).
fn entry_out(nodeid: u64, attr: abi::Attr, ttl: Duration) -> abi::EntryOut {
    abi::EntryOut {
        nodeid,
        generation: 0,
        entry_valid: ttl.as_secs(),
        attr_valid: ttl.as_secs(),
        entry_valid_nsec: ttl.subsec_nanos(),
        attr_valid_nsec: ttl.subsec_nanos(),
        attr,
    }
}

fn entry_of(a: &Attr) -> abi::EntryOut {
    entry_out(a.ino.0, file_attr(a), ttl(a.ino.0))
}

fn attr_out(a: &Attr) -> abi::AttrOut {
    let t = ttl(a.ino.0);
    abi::AttrOut {
        attr_valid: t.as_secs(),
        attr_valid_nsec: t.subsec_nanos(),
        dummy: 0,
        attr: file_attr(a),
    }
}

fn entry(reply: Reply, r: Result<Attr, FsError>) {
    match r {
        Ok(a) => reply.entry(&entry_of(&a)),
        Err(e) => reply.error(e.errno()),
    }
}

fn empty(reply: Reply, r: Result<(), FsError>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e.errno()),
    }
}

/// Answers an xattr value or name list by the kernel's size protocol.
fn xattr(reply: Reply, size: u32, r: Result<Vec<u8>, FsError>) {
    match r {
        Ok(v) if size == 0 => reply.xattr_size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(libc::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(e.errno()),
    }
}

fn opened(reply: Reply, open_flags: u32) {
    reply.opened(&abi::OpenOut {
        fh: 0,
        open_flags,
        backing_id: 0,
    })
}

/// Snapshot files never change: the kernel keeps their pages across
/// opens. Closing a read-only handle has nothing to flush (rsync -X opens
/// every file it compares), so the kernel need not tell us.
fn open_flags(ino: u64, write: bool) -> u32 {
    let keep = match Node::of(ino) {
        Node::Snap { .. } => fopen::KEEP_CACHE,
        _ => 0,
    };
    if write {
        keep
    } else {
        keep | fopen::NOFLUSH
    }
}

fn open_mode(flags: u32) -> OpenMode {
    let flags = flags as i32;
    if flags & libc::O_TRUNC != 0 {
        OpenMode::Truncate
    } else if flags & libc::O_ACCMODE != libc::O_RDONLY {
        OpenMode::Write
    } else {
        OpenMode::Read
    }
}

fn set_attr(s: &abi::SetattrIn) -> SetAttr {
    let has = |bit| s.valid & bit != 0;
    let time = |set, now, secs, nanos| {
        has(set).then(|| {
            if has(now) {
                Timestamp::now()
            } else {
                kernel_time(secs, nanos)
            }
        })
    };
    SetAttr {
        perm: has(fattr::MODE).then_some(s.mode & 0o7777),
        uid: has(fattr::UID).then_some(s.uid),
        gid: has(fattr::GID).then_some(s.gid),
        size: has(fattr::SIZE).then_some(s.size),
        atime: time(fattr::ATIME, fattr::ATIME_NOW, s.atime, s.atimensec),
        mtime: time(fattr::MTIME, fattr::MTIME_NOW, s.mtime, s.mtimensec),
    }
}

fn rename_mode(flags: u32) -> Option<RenameMode> {
    match flags {
        0 => Some(RenameMode::Replace),
        f if f == libc::RENAME_EXCHANGE => Some(RenameMode::Exchange),
        f if f == libc::RENAME_NOREPLACE => Some(RenameMode::NoReplace),
        _ => None,
    }
}

impl Serve for StrataFs {
    fn serve(&self, h: &InHeader, op: Op<'_>, reply: Reply) {
        let c = caller(h);
        let ino = h.nodeid;
        let node = Node::of(ino);
        let ns = &*self.ns;
        let rq = &*self.requests;
        match op {
            Op::Lookup { name } => match rq.serve("lookup", || ns.lookup(c, node, name)) {
                // The daemon is the head's only writer, so the kernel may
                // remember that a name is absent (inode 0): rsync looks up
                // every temporary and new name before creating it.
                Err(FsError::NotFound) if matches!(node, Node::Head(_)) => {
                    reply.entry(&entry_out(0, abi::Attr::default(), HEAD_TTL))
                }
                r => entry(reply, r),
            },
            Op::Forget { nlookup } => {
                let _t = self.requests.start("forget");
                ns.forget(node, nlookup);
                reply.none();
            }
            Op::BatchForget(all) => {
                let _t = self.requests.start("batch_forget");
                for (ino, nlookup) in all {
                    ns.forget(Node::of(ino), nlookup);
                }
                reply.none();
            }
            Op::Getattr => match rq.serve("getattr", || ns.getattr(c, node)) {
                Ok(a) => reply.attr(&attr_out(&a)),
                Err(e) => reply.error(e.errno()),
            },
            Op::Setattr(s) => {
                let set = set_attr(&s);
                match rq.serve("setattr", || ns.setattr(c, node, &set)) {
                    Ok(a) => reply.attr(&attr_out(&a)),
                    Err(e) => reply.error(e.errno()),
                }
            }
            Op::Readlink => match rq.serve("readlink", || ns.readlink(c, node)) {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(e.errno()),
            },
            Op::Mknod {
                name,
                mode,
                umask,
                rdev,
            } => entry(
                reply,
                rq.serve("mknod", || {
                    ns.mknod(c, node, name, mode, umask, u64::from(rdev))
                }),
            ),
            Op::Mkdir { name, mode, umask } => {
                let r = rq.serve("mkdir", || ns.mkdir(c, node, name, mode, umask));
                if node == Node::Snapshots {
                    self.snapshot_taken(name, r, reply)
                } else {
                    entry(reply, r)
                }
            }
            Op::Unlink { name } => empty(reply, rq.serve("unlink", || ns.unlink(c, node, name))),
            Op::Rmdir { name } => empty(reply, rq.serve("rmdir", || ns.rmdir(c, node, name))),
            Op::Symlink { name, target } => entry(
                reply,
                rq.serve("symlink", || ns.symlink(c, node, name, target)),
            ),
            Op::Rename {
                name,
                newdir,
                newname,
                flags,
            } => match rename_mode(flags) {
                None => reply.error(libc::EINVAL),
                Some(mode) => empty(
                    reply,
                    rq.serve("rename", || {
                        ns.rename(c, node, name, Node::of(newdir), newname, mode)
                    }),
                ),
            },
            Op::Link { oldnodeid, newname } => entry(
                reply,
                rq.serve("link", || ns.link(c, Node::of(oldnodeid), node, newname)),
            ),
            Op::Open { flags } => {
                let mode = open_mode(flags);
                match rq.serve("open", || ns.open(c, node, mode).map(|_| ())) {
                    Ok(()) => opened(reply, open_flags(ino, mode != OpenMode::Read)),
                    Err(e) => reply.error(e.errno()),
                }
            }
            Op::Read { offset, size } => {
                match rq.serve("read", || ns.read(c, node, offset, size)) {
                    Ok(d) => reply.data(&d),
                    Err(e) => reply.error(e.errno()),
                }
            }
            Op::Write {
                offset,
                data,
                write_flags,
            } => {
                let kill = write_flags & abi::WRITE_KILL_SUIDGID != 0;
                match rq.serve("write", || ns.write(c, node, offset, data, kill)) {
                    Ok(n) => {
                        let delay = self.throttle.admit(n as u64);
                        if delay.is_zero() {
                            reply.written(n as u32)
                        } else {
                            self.delayer.after(delay, move || reply.written(n as u32))
                        }
                    }
                    Err(e) => reply.error(e.errno()),
                }
            }
            Op::Flush => empty(reply, rq.serve("flush", || ns.flush(c, node))),
            Op::Release => empty(reply, rq.serve("release", || ns.release(c, node))),
            Op::Fsync => empty(reply, rq.serve("fsync", || ns.fsync(c, node))),
            Op::Fsyncdir => empty(reply, rq.serve("fsyncdir", || ns.fsync(c, node))),
            Op::Opendir => {
                let _t = self.requests.start("opendir");
                let flags = match node {
                    Node::Snap { .. } => fopen::KEEP_CACHE | fopen::CACHE_DIR,
                    _ => 0,
                };
                opened(reply, flags);
            }
            Op::Releasedir => {
                let _t = self.requests.start("releasedir");
                reply.ok();
            }
            Op::Readdir { offset, size, plus } => {
                let mut listing = Entries {
                    out: Listing::new(size),
                    plus,
                };
                let op = if plus { "readdirplus" } else { "readdir" };
                match self
                    .requests
                    .serve(op, || ns.readdir(c, node, offset, plus, &mut listing))
                {
                    Ok(()) => listing.out.send(reply),
                    Err(e) => reply.error(e.errno()),
                }
            }
            Op::Statfs => match rq.serve("statfs", || ns.statfs(c)) {
                Ok(s) => {
                    const BSIZE: u64 = 4096;
                    let free = s.free_bytes / BSIZE;
                    let used = s.used_bytes.div_ceil(BSIZE);
                    let ffree = 1u64 << 32;
                    reply.statfs(&abi::StatfsOut {
                        blocks: used + free,
                        bfree: free,
                        bavail: free,
                        files: s.inodes + ffree,
                        ffree,
                        bsize: BSIZE as u32,
                        namelen: 255,
                        frsize: BSIZE as u32,
                        ..Default::default()
                    });
                }
                Err(e) => reply.error(e.errno()),
            },
            Op::Setxattr { name, value, flags } => {
                let create = flags as i32 & libc::XATTR_CREATE != 0;
                let replace = flags as i32 & libc::XATTR_REPLACE != 0;
                empty(
                    reply,
                    rq.serve("setxattr", || {
                        ns.setxattr(c, node, name, value, create, replace)
                    }),
                )
            }
            Op::Getxattr { name, size } => xattr(
                reply,
                size,
                rq.serve("getxattr", || ns.getxattr(c, node, name)),
            ),
            Op::Listxattr { size } => {
                let names = rq
                    .serve("listxattr", || ns.listxattr(c, node))
                    .map(|names| {
                        let mut out = Vec::new();
                        for n in names {
                            out.extend_from_slice(&n);
                            out.push(0);
                        }
                        out
                    });
                xattr(reply, size, names)
            }
            Op::Removexattr { name } => empty(
                reply,
                rq.serve("removexattr", || ns.removexattr(c, node, name)),
            ),
            Op::Create { name, mode, umask } => {
                match rq.serve("create", || {
                    ns.create_open(c, node, name, mode & 0o7777, umask)
                }) {
                    Ok(a) => reply.created(
                        &entry_of(&a),
                        &abi::OpenOut {
                            fh: 0,
                            open_flags: 0,
                            backing_id: 0,
                        },
                    ),
                    Err(e) => reply.error(e.errno()),
                }
            }
            // No file here has ioctls: ENOTTY, as for any file that is not a
            // terminal (shells and isatty(3) ask TCGETS of files they write to).
            Op::Ioctl => {
                let _t = self.requests.start("ioctl");
                reply.error(libc::ENOTTY)
            }
            // Requests are short; an interrupted one simply finishes.
            Op::Interrupt => reply.none(),
            Op::Destroy => reply.ok(),
            Op::Other(opcode) => {
                tracing::debug!(opcode, "a FUSE request this daemon does not serve");
                reply.error(libc::ENOSYS)
            }
        }
    }
}

impl StrataFs {
    /// Answers the mkdir that took a snapshot: the kernel binds the name to
    /// its directory for this once (no entry TTL), and later finds the
    /// label symlink.
    fn snapshot_taken(&self, name: &[u8], r: Result<Attr, FsError>, reply: Reply) {
        let a = match r {
            Ok(a) => a,
            Err(e) => return reply.error(e.errno()),
        };
        // The kernel caches symlink targets: `latest` and the label must be
        // forgotten before mkdir returns, or a reader could follow the old
        // target. Inode invalidations take no directory lock, so they can be
        // made while the kernel holds snapshots/ for this mkdir; entry
        // invalidations cannot, and follow the reply.
        let label = std::str::from_utf8(name).ok();
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
            tracing::warn!("symlink invalidation took over 5 s; `latest` may be stale briefly");
        }
        reply.entry(&entry_out(a.ino.0, file_attr(&a), Duration::ZERO));
        let tx = self.invalidate.locked();
        for inv in entries {
            let _ = tx.send(inv);
        }
    }
}

/// A readdir or readdirplus answer as the namespace fills it.
struct Entries {
    out: Listing,
    plus: bool,
}

impl DirReply for Entries {
    fn add(&mut self, e: Listed) -> bool {
        let ino = e.node.ino();
        let typ = e.kind.type_bits() >> 12;
        if !self.plus {
            return self.out.push(None, ino, e.cursor, typ, &e.name);
        }
        // Every entry of readdirplus carries its attributes.
        let Some(attr) = &e.attr else {
            return false;
        };
        let entry = entry_out(ino, file_attr(attr), ttl(ino));
        self.out.push(Some(&entry), ino, e.cursor, typ, &e.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    /// Times before 1970 go to the kernel and come back exact: seconds as
    /// two's complement, nanoseconds as they are.
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
            let (secs, nanos) = wire_time(t);
            assert_eq!(kernel_time(secs, nanos), t);
        }
    }

    #[test]
    fn setattr_takes_only_the_valid_fields_and_now_for_utime_now() {
        let mut s = abi::SetattrIn::new_zeroed();
        s.valid = fattr::MODE | fattr::MTIME | fattr::ATIME | fattr::ATIME_NOW;
        s.mode = 0o104755;
        s.mtime = (-5i64) as u64;
        s.mtimensec = 7;
        s.uid = 42;
        let set = set_attr(&s);
        assert_eq!(set.perm, Some(0o4755));
        assert_eq!(set.uid, None);
        assert_eq!(set.mtime, Some(Timestamp { secs: -5, nanos: 7 }));
        assert!(set.atime.unwrap().secs > 1_700_000_000);
    }
}
