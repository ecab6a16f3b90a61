//! Pack writeback on a thread of its own, at its own I/O priority.
//!
//! FUSE threads append pack bytes to the page cache and hand each MiB to
//! this thread, which writes them to the device and waits
//! ([`DiskFile::write_back`]). Because this thread submits the writes, the
//! I/O scheduler sees them at the priority given here
//! ([`IoClass`]), not at the FUSE threads' and not at the kernel flushers'.
//! The queue is short, so dirty pack data stays within a few ranges and
//! writers are paced by what the disk grants this thread: a low priority
//! slows the backup's writes, never the FUSE threads' reads or lookups,
//! which do not wait for this thread. Durability is unchanged: a commit
//! still syncs each pack, and finds most of it already written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::DiskFile;
use crate::sys::ioprio::IoClass;
use crate::sys::sync::Recover;

/// Ranges waiting for the thread; a writer blocks when this many are queued.
const QUEUE: usize = 8;

/// How much a pack grows before its new bytes are handed over: small
/// enough that one request of this thread does not hold the disk long
/// (measured with scripts/bench-ioprio: 1 MiB and 4 MiB wrote as fast).
pub const STEP: u64 = 1 << 20;

struct Range {
    file: Arc<dyn DiskFile>,
    offset: u64,
    len: u64,
}

/// What the writeback thread has done, for `strata status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WritebackStatus {
    /// The thread's I/O priority ("inherited" when none was configured).
    pub priority: String,
    /// The thread's id, to check with `ionice -p`.
    pub thread_id: u32,
    /// Bytes written back.
    pub bytes: u64,
    /// Ranges written back.
    pub ranges: u64,
    /// Ranges whose writeback failed (the next commit's sync reports why).
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    ranges: AtomicU64,
    errors: AtomicU64,
}

/// The writeback thread; [`Writeback::stop`] or dropping this ends it once
/// its queue is done.
pub struct Writeback {
    /// `None` once stopped.
    tx: Mutex<Option<SyncSender<Range>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    priority: Option<IoClass>,
    thread_id: u32,
    counters: Arc<Counters>,
}

impl Writeback {
    /// Starts the thread, at `priority` if given (else it keeps the
    /// process's). Fails when the thread cannot start or the kernel refuses
    /// the priority.
    pub fn spawn(priority: Option<IoClass>) -> std::io::Result<Writeback> {
        let (tx, rx) = sync_channel::<Range>(QUEUE);
        let (ready_tx, ready_rx) = sync_channel(1);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("pack-writeback".into())
            .spawn(move || {
                let started = priority
                    .map_or(Ok(()), IoClass::apply_to_current_thread)
                    .map(|()| unsafe { libc::gettid() } as u32);
                let ok = started.is_ok();
                let _ = ready_tx.send(started);
                if ok {
                    serve(rx, &c);
                }
            })?;
        let thread_id = ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("the writeback thread ended at once"))??;
        Ok(Writeback {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            priority,
            thread_id,
            counters,
        })
    }

    /// Queues `len` bytes of `file` from `offset`; waits while the queue is
    /// full. After [`Writeback::stop`], does nothing.
    pub fn submit(&self, file: Arc<dyn DiskFile>, offset: u64, len: u64) {
        let tx = self.tx.locked().clone();
        if let Some(tx) = tx {
            // The thread lives as long as a sender; a send cannot fail.
            let _ = tx.send(Range { file, offset, len });
        }
    }

    /// Lets the thread finish its queue and waits for it to end, so that a
    /// process that exits next has no thread left in the middle of disk I/O
    /// (its files, and the repository lock, would stay open until then).
    pub fn stop(&self) {
        drop(self.tx.locked().take());
        if let Some(thread) = self.thread.locked().take() {
            let _ = thread.join();
        }
    }

    /// Its priority and counters.
    pub fn status(&self) -> WritebackStatus {
        WritebackStatus {
            priority: self
                .priority
                .map_or_else(|| "inherited".to_string(), |p| p.to_string()),
            thread_id: self.thread_id,
            bytes: self.counters.bytes.load(Ordering::Relaxed),
            ranges: self.counters.ranges.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
        }
    }
}

fn serve(rx: Receiver<Range>, counters: &Counters) {
    for r in rx {
        match r.file.write_back(r.offset, r.len) {
            Ok(()) => {
                counters.bytes.fetch_add(r.len, Ordering::Relaxed);
                counters.ranges.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, offset = r.offset, len = r.len, "pack writeback failed; the next commit's sync will report it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::io::{Disk, LocalDisk};

    fn wait_for(wb: &Writeback, done: impl Fn(&WritebackStatus) -> bool) -> WritebackStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let s = wb.status();
            if done(&s) {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "writeback stuck: {s:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn ranges_are_written_back_at_the_thread_priority() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::new(dir.path());
        let file: Arc<dyn DiskFile> = Arc::from(disk.open("p", true).unwrap());
        file.write_at(0, &vec![7u8; 3 * STEP as usize]).unwrap();
        let wb = Writeback::spawn(Some(IoClass::Idle)).unwrap();
        assert_eq!(
            IoClass::of_thread(wb.status().thread_id).unwrap(),
            Some(IoClass::Idle)
        );
        for i in 0..3 {
            wb.submit(file.clone(), i * STEP, STEP);
        }
        let status = wait_for(&wb, |s| s.ranges == 3);
        assert_eq!(status.bytes, 3 * STEP);
        assert_eq!(status.errors, 0);
        assert_eq!(status.priority, "idle");
        wb.stop();
        wb.submit(file.clone(), 0, STEP);
        assert_eq!(wb.status().ranges, 3, "a stopped thread took more");
    }

    #[test]
    fn a_failed_range_is_counted_not_hidden_from_sync() {
        struct Failing;
        impl DiskFile for Failing {
            fn len(&self) -> std::io::Result<u64> {
                Ok(0)
            }
            fn read_at(&self, _: u64, _: &mut [u8]) -> std::io::Result<()> {
                Ok(())
            }
            fn write_at(&self, _: u64, _: &[u8]) -> std::io::Result<()> {
                Ok(())
            }
            fn set_len(&self, _: u64) -> std::io::Result<()> {
                Ok(())
            }
            fn sync(&self) -> std::io::Result<()> {
                Ok(())
            }
            fn write_back(&self, _: u64, _: u64) -> std::io::Result<()> {
                Err(std::io::Error::from_raw_os_error(libc::EIO))
            }
        }
        let wb = Writeback::spawn(None).unwrap();
        wb.submit(Arc::new(Failing), 0, 1);
        let status = wait_for(&wb, |s| s.errors == 1);
        assert_eq!(status.bytes, 0);
        assert_eq!(status.priority, "inherited");
    }
}
