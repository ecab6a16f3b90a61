//! Read-ahead: chunks a reader will want next are decoded by background
//! workers into the chunk cache, so that decryption and decompression run
//! beside the reader (and the copy that writes out what it read) instead
//! of in its way. cp, rsync and tar restore one file at a time, so the
//! namespace asks for the next files of a directory too.
//!
//! The workers are threads the caller runs ([`Head::run_prefetcher`]);
//! a reader that misses a chunk a worker is decoding waits for it rather
//! than decoding it twice.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::Head;
use crate::store::crypto::codec::Verified;
use crate::store::id::ChunkId;
use crate::sys::sync::Recover;

/// Chunks waiting to be decoded, at most.
const QUEUE_LIMIT: usize = 512;

#[derive(Default)]
struct Queue {
    ids: VecDeque<ChunkId>,
    queued: HashSet<ChunkId>,
    stopped: bool,
}

/// The read-ahead queue and what the workers are decoding now.
#[derive(Default)]
pub struct Prefetch {
    queue: Mutex<Queue>,
    work: Condvar,
    decoding: Mutex<HashSet<ChunkId>>,
    decoded: Condvar,
}

impl Head {
    /// Asks the workers to decode `ids` (in order) unless they are cached,
    /// queued or being decoded; a full queue drops the rest.
    pub fn prefetch(&self, ids: impl IntoIterator<Item = ChunkId>) {
        let mut fresh = Vec::new();
        {
            let cache = self.chunk_cache.locked();
            for id in ids {
                if !cache.contains(&id) {
                    fresh.push(id);
                }
            }
        }
        if fresh.is_empty() {
            return;
        }
        let mut q = self.prefetch.queue.locked();
        for id in fresh {
            if q.ids.len() >= QUEUE_LIMIT {
                break;
            }
            if q.queued.insert(id) {
                q.ids.push_back(id);
            }
        }
        self.prefetch.work.notify_one();
    }

    /// Runs one read-ahead worker until [`Head::stop_prefetchers`].
    pub fn run_prefetcher(&self) {
        loop {
            let id = {
                let mut q = self.prefetch.queue.locked();
                loop {
                    if q.stopped {
                        return;
                    }
                    if let Some(id) = q.ids.pop_front() {
                        q.queued.remove(&id);
                        break id;
                    }
                    q = self.prefetch.work.wait(q).expect("prefetch queue");
                }
            };
            if self.chunk_cache.locked().contains(&id) {
                continue;
            }
            if !self.prefetch.decoding.locked().insert(id) {
                continue;
            }
            // A damaged chunk is reported by the read that needs it.
            if let Ok(c) = self.repo.store().get(&id) {
                self.chunk_cache.locked().insert(id, Arc::new(c));
            }
            self.prefetch.decoding.locked().remove(&id);
            self.prefetch.decoded.notify_all();
        }
    }

    /// Ends every worker's loop.
    pub fn stop_prefetchers(&self) {
        self.prefetch.queue.locked().stopped = true;
        self.prefetch.work.notify_all();
    }

    /// The chunk `id`: from the cache, from a worker decoding it now, or
    /// decoded here.
    pub(super) fn chunk(&self, id: &ChunkId) -> Result<Arc<Verified>, crate::tree::head::FsError> {
        if let Some(c) = self.cached_or_wait(id) {
            return Ok(c);
        }
        let c = Arc::new(self.repo.store().get(id)?);
        self.chunk_cache.locked().insert(*id, c.clone());
        Ok(c)
    }

    fn cached_or_wait(&self, id: &ChunkId) -> Option<Arc<Verified>> {
        if let Some(c) = self.chunk_cache.locked().get(id) {
            return Some(c);
        }
        let mut decoding = self.prefetch.decoding.locked();
        while decoding.contains(id) {
            let (d, timeout) = self
                .prefetch
                .decoded
                .wait_timeout(decoding, Duration::from_secs(10))
                .expect("decoding");
            decoding = d;
            if timeout.timed_out() {
                break;
            }
        }
        drop(decoding);
        self.chunk_cache.locked().get(id)
    }
}
