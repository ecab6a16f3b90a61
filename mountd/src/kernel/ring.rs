//! FUSE over io_uring (Linux 6.14+, `fuse.enable_uring=1`): one queue per
//! CPU, each served by a thread pinned to that CPU. The kernel hands a
//! request to the queue of the CPU that made it, and the answer to one
//! request and the fetch of the next are one submission, so a request costs
//! no cross-CPU wake-up and no extra system call.
//!
//! Each queue entry is a header area (the request's `fuse_in_header`, its
//! fixed argument, and the entry's commit id and payload size) and a payload
//! buffer (names, data), registered once. Forgets and interrupts keep coming
//! on /dev/fuse, and so does everything until every queue has registered:
//! the classic threads run beside the ring.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use io_uring::{cqueue, opcode, squeue::Entry128, types, IoUring};
use strata::sys::sync::Recover;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::abi::{InHeader, OutHeader};
use super::reply::{Reply, To};
use super::request::Body;
use super::{dispatch, Serve};

/// `enum fuse_uring_cmd`.
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;
/// Sizes of `struct fuse_uring_req_header`'s areas.
const IN_OUT_SIZE: usize = 128;
const OP_IN_SIZE: usize = 128;
/// Requests a queue holds at once: one being served, the others waiting
/// or held back (a throttled write's answer).
const DEPTH: usize = 8;
/// Refusals in a row after which an entry is no longer registered again.
const MAX_REFUSALS: u32 = 3;
/// The completion's user data of the stop signal (entries are 0..DEPTH).
const STOP: u64 = u64::MAX;
const PAGE: usize = 4096;

/// `struct fuse_uring_ent_in_out`.
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct EntInOut {
    flags: u64,
    commit_id: u64,
    payload_sz: u32,
    padding: u32,
    reserved: u64,
}

/// `struct fuse_uring_cmd_req`, in the command area of the submission.
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct CmdReq {
    flags: u64,
    commit_id: u64,
    qid: u16,
    padding: [u8; 6],
}

/// Offsets in the header area.
const OP_IN: usize = IN_OUT_SIZE;
const ENT_IN_OUT: usize = IN_OUT_SIZE + OP_IN_SIZE;
const HEADER_SIZE: usize = ENT_IN_OUT + size_of::<EntInOut>();

/// Page-aligned memory the kernel copies requests into and answers out of.
struct PageBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is plain memory; who touches it when is ordered by
// the entry's state (see `Entry`).
unsafe impl Send for PageBuf {}
unsafe impl Sync for PageBuf {}

impl PageBuf {
    fn new(len: usize) -> io::Result<PageBuf> {
        let len = len.next_multiple_of(PAGE);
        let layout = Layout::from_size_align(len, PAGE).map_err(io::Error::other)?;
        // SAFETY: len is non-zero.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        Ok(PageBuf { ptr, len })
    }

    fn read<T: FromBytes>(&self, at: usize) -> T {
        // SAFETY: in bounds (checked), and no write races a read: the kernel
        // wrote before completing the fetch, and we write only in `commit`.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr.add(at), size_of::<T>()) };
        T::read_from_bytes(bytes).expect("sized")
    }

    fn write(&self, at: usize, parts: &[&[u8]]) {
        let mut at = at;
        for p in parts {
            assert!(at + p.len() <= self.len);
            // SAFETY: in bounds; the entry is ours (between fetch and commit)
            // and no reference to this memory is alive (see `Entry`).
            unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), self.ptr.add(at), p.len()) };
            at += p.len();
        }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, Layout::from_size_align_unchecked(self.len, PAGE)) }
    }
}

/// The entry's two buffers as the kernel is told of them at registration.
struct Iov(Box<[libc::iovec; 2]>);

// SAFETY: the pointers are the entry's own buffers, only read by the kernel.
unsafe impl Send for Iov {}
unsafe impl Sync for Iov {}

/// One registered request slot of a queue.
///
/// Between the completion that hands it a request and the commit of the
/// answer, the entry belongs to us. While the request is being served, its
/// payload is borrowed by the parsed request, so an answer sent before
/// serving returns (from this thread or another) is staged and written when
/// serving is over.
struct Entry {
    header: PageBuf,
    payload: PageBuf,
    iov: Iov,
    state: Mutex<EntryState>,
}

#[derive(Default)]
struct EntryState {
    commit_id: u64,
    /// Commands of this entry the kernel refused in a row.
    refusals: u32,
    /// The payload is borrowed by the request being served.
    borrowed: bool,
    staged: Option<(OutHeader, Vec<u8>)>,
}

/// One CPU's queue.
pub struct Queue {
    qid: u16,
    ring: IoUring<Entry128, cqueue::Entry>,
    /// Serializes pushes to the submission queue (answers come from any thread).
    submit: Mutex<()>,
    entries: Vec<Entry>,
    stop: OwnedFd,
    served: Arc<AtomicU64>,
}

/// Where an answer goes: an entry of a queue.
pub struct Slot {
    queue: Arc<Queue>,
    index: usize,
}

impl Slot {
    pub fn commit(self, header: &OutHeader, parts: &[&[u8]]) {
        let e = &self.queue.entries[self.index];
        let mut st = e.state.locked();
        if st.borrowed {
            st.staged = Some((*header, parts.concat()));
            return;
        }
        self.queue.commit(self.index, st.commit_id, header, parts);
    }
}

/// A FUSE io_uring command on the registered /dev/fuse descriptor.
fn command(cmd_op: u32, qid: u16, commit_id: u64) -> opcode::UringCmd80 {
    let req = CmdReq {
        flags: 0,
        commit_id,
        qid,
        padding: [0; 6],
    };
    let mut cmd = [0u8; 80];
    cmd[..size_of::<CmdReq>()].copy_from_slice(req.as_bytes());
    opcode::UringCmd80::new(types::Fixed(0), cmd_op).cmd(cmd)
}

/// Sets the `len` field of a submission, which the io-uring crate's
/// UringCmd80 leaves zero; registration needs it (the iovec count).
fn with_len(e: Entry128, len: u32) -> Entry128 {
    // SAFETY: Entry128 is repr(C): a 64-byte `struct io_uring_sqe` and 64
    // bytes of command; `len` is the u32 at offset 24 of io_uring_sqe
    // (include/uapi/linux/io_uring.h), as the test below checks by `addr`
    // at offset 16.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(e) };
    raw[24..28].copy_from_slice(&len.to_ne_bytes());
    unsafe { std::mem::transmute::<[u8; 128], Entry128>(raw) }
}

impl Queue {
    /// Creates queue `qid` on the FUSE connection `dev`, with payload
    /// buffers of `payload` bytes (at least the connection's max_write).
    pub fn new(
        qid: u16,
        dev: BorrowedFd<'_>,
        payload: usize,
        served: Arc<AtomicU64>,
    ) -> io::Result<Queue> {
        let ring = IoUring::<Entry128, cqueue::Entry>::builder()
            .setup_cqsize(2 * (DEPTH as u32 + 1))
            .build(DEPTH as u32 + 1)?;
        ring.submitter().register_files(&[dev.as_raw_fd()])?;
        let mut entries = Vec::with_capacity(DEPTH);
        for _ in 0..DEPTH {
            let header = PageBuf::new(HEADER_SIZE)?;
            let payload = PageBuf::new(payload)?;
            let iov = Iov(Box::new([
                libc::iovec {
                    iov_base: header.ptr.cast(),
                    iov_len: HEADER_SIZE,
                },
                libc::iovec {
                    iov_base: payload.ptr.cast(),
                    iov_len: payload.len,
                },
            ]));
            entries.push(Entry {
                header,
                payload,
                iov,
                state: Mutex::new(EntryState::default()),
            });
        }
        // SAFETY: eventfd with valid flags; the result is checked.
        let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if stop < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Queue {
            qid,
            ring,
            submit: Mutex::new(()),
            entries,
            // SAFETY: just created, owned by nobody else.
            stop: unsafe { OwnedFd::from_raw_fd(stop) },
            served,
        })
    }

    /// Ends `run` (at unmount).
    pub fn stop(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn push(&self, e: &Entry128) -> io::Result<()> {
        let _g = self.submit.locked();
        // SAFETY: pushes are serialized by `submit`; the completion side is
        // only read by the queue's thread. The buffers an entry points at
        // live as long as the queue.
        unsafe {
            let mut sq = self.ring.submission_shared();
            sq.push(e)
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
            sq.sync();
        }
        self.ring.submitter().submit()?;
        Ok(())
    }

    fn register(&self, index: usize) -> io::Result<()> {
        let e = command(CMD_REGISTER, self.qid, 0)
            .addr(Some(self.entries[index].iov.0.as_ptr() as u64))
            .build()
            .user_data(index as u64);
        self.push(&with_len(e, 2))
    }

    /// Writes the answer into entry `index` and hands it back to the kernel,
    /// which takes the answer and fills the entry with the next request.
    fn commit(&self, index: usize, commit_id: u64, header: &OutHeader, parts: &[&[u8]]) {
        let e = &self.entries[index];
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let (header, parts, len) = if len > e.payload.len {
            tracing::error!(
                len,
                max = e.payload.len,
                "a FUSE answer is larger than the ring's buffer; failing it with EIO"
            );
            let h = OutHeader {
                len: size_of::<OutHeader>() as u32,
                error: -libc::EIO,
                unique: header.unique,
            };
            (h, &[][..], 0)
        } else {
            (*header, parts, len)
        };
        e.payload.write(0, parts);
        e.header.write(0, &[header.as_bytes()]);
        let io = EntInOut {
            commit_id,
            payload_sz: len as u32,
            ..Default::default()
        };
        e.header.write(ENT_IN_OUT, &[io.as_bytes()]);
        let sqe = command(CMD_COMMIT_AND_FETCH, self.qid, commit_id)
            .build()
            .user_data(index as u64);
        if let Err(err) = self.push(&sqe) {
            tracing::error!(error = %err, qid = self.qid, "committing a FUSE answer to the ring failed");
        }
    }

    /// Registers every entry and serves requests until stopped or the
    /// connection ends. Runs on the queue's own thread, pinned to its CPU.
    pub fn run(self: Arc<Queue>, fs: &dyn Serve) -> io::Result<()> {
        pin_to(self.qid as usize);
        for i in 0..self.entries.len() {
            self.register(i)?;
        }
        let poll = opcode::PollAdd::new(types::Fd(self.stop.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(STOP);
        self.push(&Entry128::from(poll))?;
        let mut done = Vec::with_capacity(2 * DEPTH);
        loop {
            match self.ring.submitter().submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
            done.clear();
            // SAFETY: only this thread reads the completion queue.
            unsafe { self.ring.completion_shared() }
                .for_each(|c| done.push((c.user_data(), c.result())));
            for &(user, res) in &done {
                if user == STOP {
                    return Ok(());
                }
                let index = user as usize;
                if res < 0 {
                    // The connection is gone (unmounted or aborted).
                    if matches!(-res, libc::ENOTCONN | libc::ENODEV | libc::ECANCELED) {
                        return Ok(());
                    }
                    self.refused(index, io::Error::from_raw_os_error(-res))?;
                    continue;
                }
                self.entries[index].state.locked().refusals = 0;
                self.serve(index, fs);
            }
        }
    }

    /// The kernel refused a command of entry `index`: the entry is
    /// registered again, so the queue keeps its depth (a queue that lost
    /// every entry would leave its CPU's requests waiting forever). An entry
    /// refused again and again is given up; the queue stops when all are.
    fn refused(&self, index: usize, e: io::Error) -> io::Result<()> {
        let refusals = {
            let mut st = self.entries[index].state.locked();
            st.refusals += 1;
            st.refusals
        };
        tracing::error!(qid = self.qid, index, error = %e, "the kernel refused an io_uring command");
        if refusals <= MAX_REFUSALS {
            return self.register(index);
        }
        let given_up = self
            .entries
            .iter()
            .filter(|e| e.state.locked().refusals > MAX_REFUSALS)
            .count();
        if given_up == self.entries.len() {
            return Err(e);
        }
        Ok(())
    }

    /// Serves the request the kernel put in entry `index`.
    fn serve(self: &Arc<Queue>, index: usize, fs: &dyn Serve) {
        self.served.fetch_add(1, Ordering::Relaxed);
        let e = &self.entries[index];
        let h: InHeader = e.header.read(0);
        let op_in: [u8; OP_IN_SIZE] = e.header.read(OP_IN);
        let io: EntInOut = e.header.read(ENT_IN_OUT);
        let payload_len = (io.payload_sz as usize).min(e.payload.len);
        let borrowed = payload_len > 0;
        {
            let mut st = e.state.locked();
            st.commit_id = io.commit_id;
            st.borrowed = borrowed;
        }
        {
            // SAFETY: the kernel filled `payload_len` bytes before completing
            // the fetch; nothing writes the payload while `borrowed` is set.
            let payload = unsafe { std::slice::from_raw_parts(e.payload.ptr, payload_len) };
            let reply = Reply::new(
                h.unique,
                To::Ring(Slot {
                    queue: self.clone(),
                    index,
                }),
            );
            dispatch(
                fs,
                &h,
                Body::Split {
                    op_in: &op_in,
                    payload,
                },
                reply,
            );
        }
        if borrowed {
            let mut st = e.state.locked();
            st.borrowed = false;
            if let Some((header, bytes)) = st.staged.take() {
                self.commit(index, st.commit_id, &header, &[&bytes]);
            }
        }
    }
}

/// Keeps the calling thread on `cpu`, where the kernel queues that CPU's requests.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays in bounds for
    // cpu < CPU_SETSIZE, which sysconf's count is.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(cpu, error = %io::Error::last_os_error(), "cannot pin a ring thread to its CPU");
        }
    }
}

/// The queues the kernel expects: one per possible CPU (its qid is the CPU
/// a request comes from), from /sys/devices/system/cpu/possible ("0-3",
/// "0,2-5"), or the configured CPUs if that cannot be read.
pub fn queue_count() -> usize {
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| highest_cpu(&s));
    match possible {
        Some(max) => max + 1,
        // SAFETY: sysconf has no preconditions.
        None => unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as usize,
    }
}

/// The highest CPU number of a kernel CPU list.
fn highest_cpu(list: &str) -> Option<usize> {
    list.trim()
        .split(',')
        .map(|r| r.rsplit('-').next()?.parse::<usize>().ok())
        .try_fold(0, |m, n| Some(m.max(n?)))
}

/// Whether the request's fixed argument fits the ring's header area.
const _: () = assert!(super::abi::MAX_OP_IN <= OP_IN_SIZE);
const _: () = assert!(size_of::<InHeader>() <= IN_OUT_SIZE);
const _: () = assert!(size_of::<CmdReq>() == 24);
const _: () = assert!(HEADER_SIZE == 288);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_give_their_highest_cpu() {
        assert_eq!(highest_cpu("0-1\n"), Some(1));
        assert_eq!(highest_cpu("0"), Some(0));
        assert_eq!(highest_cpu("0,2-5,7"), Some(7));
        assert_eq!(highest_cpu("x"), None);
    }

    #[test]
    fn len_is_set_beside_addr() {
        let e = command(CMD_REGISTER, 3, 0)
            .addr(Some(0x1122_3344_5566_7788))
            .build()
            .user_data(9);
        let raw: [u8; 128] = unsafe { std::mem::transmute(with_len(e, 2)) };
        assert_eq!(raw[16..24], 0x1122_3344_5566_7788u64.to_ne_bytes());
        assert_eq!(raw[24..28], 2u32.to_ne_bytes());
        // The command's qid lands at offset 48 + 16 of the submission.
        assert_eq!(raw[48 + 16..48 + 18], 3u16.to_ne_bytes());
    }
}
