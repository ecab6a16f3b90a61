//! Replies held back by the write throttle. A FUSE thread hands over the
//! reply and goes on serving other requests; one thread sends each reply
//! when its delay is over. So a throttled writer waits, and nobody else does.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

type Send = Box<dyn FnOnce() + std::marker::Send>;

/// The thread sending deferred replies.
pub struct Delayer {
    tx: Mutex<Sender<(Instant, Send)>>,
}

impl Delayer {
    /// Starts the sending thread; it ends when the delayer is dropped,
    /// after sending every reply it holds.
    pub fn spawn() -> std::io::Result<Delayer> {
        let (tx, rx) = mpsc::channel::<(Instant, Send)>();
        std::thread::Builder::new()
            .name("throttle-replies".into())
            .spawn(move || {
                let mut due: BTreeMap<(Instant, u64), Send> = BTreeMap::new();
                let mut seq = 0u64;
                loop {
                    let wait = due
                        .first_key_value()
                        .map(|((t, _), _)| t.saturating_duration_since(Instant::now()));
                    let got = match wait {
                        Some(w) => rx.recv_timeout(w),
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    match got {
                        Ok((t, f)) => {
                            seq += 1;
                            due.insert((t, seq), f);
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => {
                            for (_, f) in std::mem::take(&mut due) {
                                f();
                            }
                            return;
                        }
                    }
                    let now = Instant::now();
                    while let Some(entry) = due.first_entry() {
                        if entry.key().0 > now {
                            break;
                        }
                        entry.remove()();
                    }
                }
            })?;
        Ok(Delayer { tx: Mutex::new(tx) })
    }

    /// Runs `send` after `delay`, on the delayer's thread.
    pub fn after(&self, delay: Duration, send: impl FnOnce() + std::marker::Send + 'static) {
        let tx = self.tx.lock().expect("delayer");
        if let Err(mpsc::SendError((_, send))) = tx.send((Instant::now() + delay, Box::new(send))) {
            // The thread is gone (shutting down): answer now.
            send();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn replies_go_out_in_deadline_order_and_none_is_lost() {
        let d = Delayer::spawn().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        for (i, ms) in [(1, 60u64), (2, 10), (3, 30), (4, 0)] {
            let o = order.clone();
            d.after(Duration::from_millis(ms), move || o.lock().unwrap().push(i));
        }
        let o = order.clone();
        d.after(Duration::from_secs(3600), move || o.lock().unwrap().push(5));
        // Polled with a deadline only so that a lost reply fails instead of
        // hanging; how long the replies took is not asserted.
        let wait_for = |n: usize, what: &str| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while order.lock().unwrap().len() < n {
                assert!(Instant::now() < deadline, "{what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        wait_for(4, "a reply due within 60 ms was lost");
        // In deadline order, and the one due in an hour still held.
        assert_eq!(*order.lock().unwrap(), [4, 2, 3, 1]);
        // Dropping the delayer sends what it still holds.
        drop(d);
        wait_for(5, "the held reply was lost");
        assert_eq!(*order.lock().unwrap(), [4, 2, 3, 1, 5]);
    }
}
