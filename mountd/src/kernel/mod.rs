//! The kernel side of the mount: the FUSE protocol, parsed and answered in
//! one place ([`request`], [`reply`]), over two transports — /dev/fuse
//! ([`classic`]) and, where the kernel allows it, per-CPU io_uring queues
//! ([`ring`]). The filesystem implements [`Serve`] once for both.
//!
//! fuser still mounts, negotiates INIT ([`mount`]), sends notifications
//! and unmounts; it reads no request. (fuser's transport cannot carry the ring, and its
//! parsed request types cannot be built outside it.)

pub mod abi;
mod classic;
mod mount;
pub mod reply;
pub mod request;
mod ring;

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use strata::sys::sync::Recover;

pub use mount::{mount, MountError, Mounted, Options};

use abi::InHeader;
use reply::Reply;
use request::{Body, Malformed, Op};

/// A filesystem the kernel's requests are handed to.
pub trait Serve: Send + Sync + 'static {
    /// Serves one request; `reply` must be answered (now or later, from
    /// any thread). Forgets and interrupts take `reply.none()`.
    fn serve(&self, header: &InHeader, op: Op<'_>, reply: Reply);
}

/// Parses and serves one request. A panic below fails this request alone
/// (its reply, dropped unsent, answers EIO) and the thread serves on: a
/// ring thread that died would leave its CPU's requests waiting forever.
fn dispatch(fs: &dyn Serve, h: &InHeader, body: Body<'_>, reply: Reply) {
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match Op::parse(h.opcode, body) {
            Ok(op) => fs.serve(h, op, reply),
            Err(Malformed(opcode)) => {
                tracing::error!(opcode, "a FUSE request does not parse; failing it with EIO");
                reply.error(libc::EIO)
            }
        }
    }));
    if served.is_err() {
        tracing::error!(
            opcode = h.opcode,
            "serving a FUSE request panicked; it failed with EIO"
        );
    }
}

/// What the mount runs on, for the log and `strata status`.
#[derive(Default)]
pub struct TransportStatus {
    /// Queues serving, 0 when the ring is not used.
    queues: AtomicUsize,
    /// Why the ring is not used.
    why_not: Mutex<String>,
    ring_requests: Arc<AtomicU64>,
}

impl TransportStatus {
    fn ring(&self, queues: usize) {
        self.queues.store(queues, Ordering::Relaxed);
    }

    fn dev_fuse(&self, why: String) {
        self.queues.store(0, Ordering::Relaxed);
        *self.why_not.locked() = why;
    }

    /// "io_uring (N queues, M requests served on the ring)", or
    /// "dev-fuse (why the ring is not used)".
    pub fn describe(&self) -> String {
        match self.queues.load(Ordering::Relaxed) {
            0 => format!("dev-fuse ({})", self.why_not.locked()),
            q => format!(
                "io_uring ({q} queues, {} requests served on the ring)",
                self.ring_requests.load(Ordering::Relaxed)
            ),
        }
    }
}

/// The threads serving a mount.
pub struct Serving {
    classic: Vec<JoinHandle<io::Result<()>>>,
    ring: Vec<(Arc<ring::Queue>, JoinHandle<io::Result<()>>)>,
}

/// Starts serving the connection `dev` (after INIT): `threads` readers of
/// /dev/fuse, and the ring's queues if `ring_offered`. `max_write` is the
/// negotiated largest write.
fn start(
    dev: BorrowedFd<'_>,
    fs: Arc<dyn Serve>,
    threads: usize,
    max_write: usize,
    ring_offered: Result<(), String>,
    status: Arc<TransportStatus>,
) -> io::Result<Serving> {
    // Header, the largest fixed argument, and the data.
    let bufsize = max_write + 4096;
    let mut classic = Vec::new();
    for i in 0..threads.max(1) {
        let fd = Arc::new(if i == 0 {
            dev.try_clone_to_owned()?
        } else {
            classic::clone_dev(dev)?
        });
        let fs = fs.clone();
        classic.push(
            std::thread::Builder::new()
                .name(format!("fuse-{i}"))
                .spawn(move || classic::run(fd, &*fs, bufsize))?,
        );
    }
    let mut queues = Vec::new();
    match ring_offered {
        Err(why) => {
            tracing::info!("serving on /dev/fuse: {why}");
            status.dev_fuse(why);
        }
        Ok(()) => {
            let n = ring::queue_count();
            let made: io::Result<Vec<_>> = (0..n)
                .map(|q| {
                    ring::Queue::new(q as u16, dev, bufsize, status.ring_requests.clone())
                        .map(Arc::new)
                })
                .collect();
            match made {
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set up the io_uring queues; serving on /dev/fuse");
                    status.dev_fuse(format!("the io_uring queues could not be set up: {e}"));
                }
                Ok(made) => {
                    status.ring(n);
                    for q in made {
                        let (queue, fs, status) = (q.clone(), fs.clone(), status.clone());
                        let qid = queues.len();
                        let h = std::thread::Builder::new()
                            .name(format!("fuse-ring-{qid}"))
                            .spawn(move || {
                                let r = queue.run(&*fs);
                                // The kernel uses the ring only once every
                                // queue has registered: a queue that fails
                                // to leaves /dev/fuse serving.
                                if let Err(e) = &r {
                                    tracing::error!(qid, error = %e, "an io_uring queue stopped");
                                    status.dev_fuse(format!("io_uring queue {qid} failed: {e}"));
                                }
                                r
                            })?;
                        queues.push((q, h));
                    }
                    tracing::info!(queues = n, "serving on FUSE over io_uring");
                }
            }
        }
    }
    Ok(Serving {
        classic,
        ring: queues,
    })
}

impl Serving {
    /// Waits for the connection to end (unmount), then stops the ring.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for h in self.classic {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a FUSE thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        for (q, _) in &self.ring {
            q.stop();
        }
        for (_, h) in self.ring {
            // A queue's error was logged when it stopped; the mount was served.
            let _ = h.join();
        }
        result
    }
}
