//! The write pipeline: chunks a file's writer has cut are hashed, looked
//! up, compressed and sealed by a bounded pool of workers, off the path the
//! writer waits on, and appended to the open pack in the order they were
//! handed over, so a file's chunks lie in a pack as they lie in the file.
//!
//! A chunk handed over is answered with a [`Ticket`]; its id (or the
//! error that kept it from being stored) is there once it is appended.
//! The caller records the id, in the head's rows, only then: no row ever
//! names an object the store does not have pending or committed, which is
//! all the store's commit and garbage collection rely on.
//!
//! The queue holds at most two chunks per worker, so a writer faster than
//! the workers waits in [`Pipeline::submit`], and memory stays bounded.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::store::chunks::{Store, StoreError};
use crate::store::format::Kind;
use crate::store::id::ChunkId;
use crate::sys::cpus::Cpus;
use crate::sys::sync::Recover;

/// Chunks queued per worker before [`Pipeline::submit`] waits.
const QUEUED_PER_WORKER: usize = 2;

/// Where a chunk's outcome lands.
#[derive(Default)]
struct Slot {
    outcome: Mutex<Option<Result<ChunkId, StoreError>>>,
    done: Condvar,
}

impl Slot {
    fn fill(&self, outcome: Result<ChunkId, StoreError>) {
        *self.outcome.locked() = Some(outcome);
        self.done.notify_all();
    }
}

/// A chunk handed to the pipeline: its id once stored, or why it was not.
pub struct Ticket(Arc<Slot>);

impl Ticket {
    /// Waits for the chunk to be appended (or to fail). The outcome is
    /// handed out once; a second call waits forever, so callers keep it.
    pub fn wait(&self) -> Result<ChunkId, StoreError> {
        let mut outcome = self.0.outcome.locked();
        loop {
            if let Some(o) = outcome.take() {
                return o;
            }
            outcome = self.0.done.wait(outcome).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The outcome if it is there, without waiting.
    pub fn try_take(&self) -> Option<Result<ChunkId, StoreError>> {
        self.0.outcome.locked().take()
    }
}

struct Job {
    seq: u64,
    data: Vec<u8>,
    slot: Arc<Slot>,
}

/// Lets workers append in the order chunks were handed over.
#[derive(Default)]
struct Turn {
    next: Mutex<u64>,
    passed: Condvar,
}

impl Turn {
    fn wait(&self, seq: u64) {
        let mut next = self.next.locked();
        while *next != seq {
            next = self.passed.wait(next).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn pass(&self) {
        *self.next.locked() += 1;
        self.passed.notify_all();
    }
}

/// The workers and the queue that feeds them.
pub struct Pipeline {
    store: Arc<Store>,
    /// The next sequence number, held while a job is queued so the queue
    /// is in sequence order.
    queue: Mutex<(u64, Option<SyncSender<Job>>)>,
    workers: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts `workers` threads sealing for `store`. With none (or when
    /// no thread can be started) chunks are stored on the caller's thread.
    pub fn start(store: Arc<Store>, workers: usize) -> Pipeline {
        let (tx, rx) = sync_channel(workers.max(1) * QUEUED_PER_WORKER);
        let rx = Arc::new(Mutex::new(rx));
        let turn = Arc::new(Turn::default());
        let mut handles = Vec::new();
        for n in 0..workers {
            let (store, rx, turn) = (store.clone(), rx.clone(), turn.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("strata-seal-{n}"))
                .spawn(move || {
                    // Not the pin of a ring thread that started the pipeline.
                    if let Err(e) = Cpus::of_process().and_then(|c| c.apply_to_this_thread()) {
                        tracing::warn!(error = %e, "a sealing worker keeps its starter's CPUs");
                    }
                    work(&store, &rx, &turn)
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    tracing::warn!(error = %e, "could not start a sealing worker; sealing on fewer");
                    break;
                }
            }
        }
        let tx = (!handles.is_empty()).then_some(tx);
        Pipeline {
            store,
            queue: Mutex::new((0, tx)),
            workers: handles,
        }
    }

    /// Hands a chunk over; waits while the queue is full.
    pub fn submit(&self, data: Vec<u8>) -> Ticket {
        let slot = Arc::new(Slot::default());
        let mut queue = self.queue.locked();
        let (seq, tx) = &mut *queue;
        let job = Job {
            seq: *seq,
            data,
            slot: slot.clone(),
        };
        let unsent = match tx {
            Some(tx) => tx.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        match unsent {
            None => *seq += 1,
            // No workers (or they are gone): stored here and now.
            Some(job) => {
                drop(queue);
                store_now(&self.store, job);
            }
        }
        Ticket(slot)
    }

    /// How many workers seal.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }
}

impl Drop for Pipeline {
    /// Lets the workers finish what is queued, then joins them.
    fn drop(&mut self) {
        self.queue.locked().1 = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

fn store_now(store: &Store, job: Job) {
    job.slot
        .fill(store.put_object(Kind::Chunk, &job.data).map(|(id, _)| id));
}

/// A worker: prepares chunks as they come, appends each in its turn.
fn work(store: &Store, rx: &Mutex<Receiver<Job>>, turn: &Turn) {
    loop {
        let Ok(job) = rx.locked().recv() else {
            return;
        };
        // A panic is a bug met by one chunk: that chunk fails, the
        // turn still passes, and the worker goes on.
        let prepared = catch_unwind(AssertUnwindSafe(|| store.prepare(Kind::Chunk, &job.data)))
            .unwrap_or_else(|_| Err(internal()));
        drop(job.data);
        turn.wait(job.seq);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            prepared.and_then(|p| store.append_prepared(p))
        }))
        .unwrap_or_else(|_| Err(internal()));
        turn.pass();
        job.slot.fill(outcome.map(|(id, _)| id));
    }
}

fn internal() -> StoreError {
    tracing::error!("an internal error interrupted sealing a chunk");
    StoreError::Failed("an internal error interrupted sealing a chunk".into())
}
