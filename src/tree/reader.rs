//! The read path: decoded chunks kept for readers, and read-ahead.
//!
//! Chunks a reader will want next are decoded by background workers into
//! the cache, so that decryption and decompression run beside the reader
//! (and the copy that writes out what it read) instead of in its way. cp,
//! rsync and tar restore one file at a time, so the namespace asks for the
//! next files of a directory too. The workers are threads the caller runs
//! ([`ChunkReader::run_worker`]); a reader that misses a chunk a worker is
//! decoding waits for it rather than decoding it twice.
//!
//! Lock order: `queue`, `cache` and `decoding` are each taken alone.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::store::chunks::{Store, StoreError};
use crate::store::crypto::codec::Verified;
use crate::store::id::ChunkId;
use crate::sys::sync::Recover;

/// Decoded chunks kept for reads, in bytes.
pub const CHUNK_CACHE_BYTES: usize = 64 << 20;

/// Chunks waiting to be decoded, at most.
const QUEUE_LIMIT: usize = 512;

/// Recently decoded chunks, evicted oldest first once over [`CHUNK_CACHE_BYTES`].
#[derive(Default)]
struct Cache {
    map: HashMap<ChunkId, Arc<Verified>>,
    order: VecDeque<ChunkId>,
    bytes: usize,
}

impl Cache {
    fn insert(&mut self, id: ChunkId, chunk: Arc<Verified>) {
        if self.map.contains_key(&id) {
            return;
        }
        self.bytes += chunk.as_slice().len();
        self.map.insert(id, chunk);
        self.order.push_back(id);
        while self.bytes > CHUNK_CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(c) = self.map.remove(&old) {
                self.bytes -= c.as_slice().len();
            }
        }
    }
}

#[derive(Default)]
struct Queue {
    ids: VecDeque<ChunkId>,
    queued: HashSet<ChunkId>,
    stopped: bool,
}

/// Decoded chunks, the read-ahead queue, and what the workers are
/// decoding now.
#[derive(Default)]
pub struct ChunkReader {
    cache: Mutex<Cache>,
    queue: Mutex<Queue>,
    work: Condvar,
    decoding: Mutex<HashSet<ChunkId>>,
    decoded: Condvar,
}

impl ChunkReader {
    /// The chunk `id`: from the cache, from a worker decoding it now, or
    /// decoded here from `store`.
    pub fn chunk(&self, store: &Store, id: &ChunkId) -> Result<Arc<Verified>, StoreError> {
        if let Some(c) = self.cached_or_wait(id) {
            return Ok(c);
        }
        let c = Arc::new(store.get(id)?);
        self.cache.locked().insert(*id, c.clone());
        Ok(c)
    }

    /// Asks the workers to decode `ids` (in order) unless they are cached,
    /// queued or being decoded; a full queue drops the rest.
    pub fn prefetch(&self, ids: impl IntoIterator<Item = ChunkId>) {
        let fresh: Vec<ChunkId> = {
            let cache = self.cache.locked();
            ids.into_iter()
                .filter(|id| !cache.map.contains_key(id))
                .collect()
        };
        if fresh.is_empty() {
            return;
        }
        let mut q = self.queue.locked();
        for id in fresh {
            if q.ids.len() >= QUEUE_LIMIT {
                break;
            }
            if q.queued.insert(id) {
                q.ids.push_back(id);
            }
        }
        self.work.notify_one();
    }

    /// Runs one read-ahead worker, decoding from `store`, until
    /// [`ChunkReader::stop`].
    pub fn run_worker(&self, store: &Store) {
        loop {
            let id = {
                let mut q = self.queue.locked();
                loop {
                    if q.stopped {
                        return;
                    }
                    if let Some(id) = q.ids.pop_front() {
                        q.queued.remove(&id);
                        break id;
                    }
                    q = self.work.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            if self.cache.locked().map.contains_key(&id) {
                continue;
            }
            if !self.decoding.locked().insert(id) {
                continue;
            }
            // A damaged chunk is reported by the read that needs it.
            if let Ok(c) = store.get(&id) {
                self.cache.locked().insert(id, Arc::new(c));
            }
            self.decoding.locked().remove(&id);
            self.decoded.notify_all();
        }
    }

    /// Drops every decoded chunk kept, so that what is read next comes
    /// from the packs (a drill times a cold restore).
    pub fn forget_decoded(&self) {
        *self.cache.locked() = Cache::default();
    }

    /// Ends every worker's loop.
    pub fn stop(&self) {
        self.queue.locked().stopped = true;
        self.work.notify_all();
    }

    fn cached_or_wait(&self, id: &ChunkId) -> Option<Arc<Verified>> {
        if let Some(c) = self.cache.locked().map.get(id) {
            return Some(c.clone());
        }
        let mut decoding = self.decoding.locked();
        while decoding.contains(id) {
            let (d, timeout) = self
                .decoded
                .wait_timeout(decoding, Duration::from_secs(10))
                .unwrap_or_else(|p| p.into_inner());
            decoding = d;
            if timeout.timed_out() {
                break;
            }
        }
        drop(decoding);
        self.cache.locked().map.get(id).cloned()
    }
}
