//! Finished packs on their way to a remote backend (a bucket), uploaded by
//! a thread of their own in the order they were finished.
//!
//! A commit queues its finished packs here instead of uploading them under
//! the store's writer lock, so an upload held back by a bandwidth limit, or
//! slow, never holds back the writers. A queued pack is durable already: it
//! is finished in `open/` and recorded in the index. The store records it
//! as finished once uploaded, and waits for the queue wherever the bucket
//! must hold everything so far: a flush (a snapshot of a bucket repository,
//! a link sent to a replica, garbage collection before it deletes), and its
//! drop. A crash with packs still queued leaves them in `open/`, finished:
//! the next open uploads them (`Store::recover`).

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

use crate::store::chunks::open_pack_path;
use crate::store::id::PackId;
use crate::store::io::backend::PackBackend;
use crate::sys::sync::Recover;

/// The queue and its thread.
pub struct Uploads {
    tx: Mutex<Option<mpsc::Sender<(PackId, u64)>>>,
    state: Arc<(Mutex<State>, Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    /// Packs queued and not yet uploaded.
    queued: usize,
    /// Packs uploaded, with their lengths, not yet recorded as finished.
    done: Vec<(PackId, u64)>,
    /// The first upload that failed: later ones are not tried.
    failed: Option<String>,
}

impl Uploads {
    /// A queue uploading to `backend`.
    pub fn start(backend: Arc<dyn PackBackend>) -> std::io::Result<Uploads> {
        let (tx, rx) = mpsc::channel::<(PackId, u64)>();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("strata-upload".into())
            .spawn(move || {
                for (id, len) in rx {
                    let skip = shared.0.locked().failed.is_some();
                    let result = match skip {
                        true => Ok(()),
                        false => backend.create(id, &open_pack_path(id)),
                    };
                    let mut st = shared.0.locked();
                    match result {
                        Ok(()) if !skip => st.done.push((id, len)),
                        Ok(()) => {}
                        Err(e) => {
                            tracing::error!(pack = %id.short(), error = %e, "upload failed; the pack stays in open/ and is uploaded at the next open");
                            st.failed = Some(format!("uploading pack {id}: {e}"));
                        }
                    }
                    st.queued -= 1;
                    shared.1.notify_all();
                }
            })?;
        Ok(Uploads {
            tx: Mutex::new(Some(tx)),
            state,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues finished pack `id` of `len` bytes.
    pub fn queue(&self, id: PackId, len: u64) {
        self.state.0.locked().queued += 1;
        let sent = self
            .tx
            .locked()
            .as_ref()
            .is_some_and(|tx| tx.send((id, len)).is_ok());
        if !sent {
            let mut st = self.state.0.locked();
            st.queued -= 1;
            st.failed
                .get_or_insert_with(|| "the upload thread has stopped".into());
        }
    }

    /// The packs uploaded since the last call, and the failure if one
    /// happened.
    pub fn take_done(&self) -> (Vec<(PackId, u64)>, Option<String>) {
        let mut st = self.state.0.locked();
        (std::mem::take(&mut st.done), st.failed.clone())
    }

    /// Waits until every queued pack is uploaded (or given up on).
    pub fn wait(&self) {
        let (lock, cv) = &*self.state;
        let mut st = lock.locked();
        while st.queued > 0 {
            st = cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        // The queue drains, then the thread ends.
        self.tx.locked().take();
        if let Some(t) = self.thread.locked().take() {
            let _ = t.join();
        }
    }
}
