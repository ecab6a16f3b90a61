//! Progress of a long operation on a terminal: one line on standard
//! error, rewritten in place; while mounted, polled from `strata status`.

use std::time::Duration;

use anyhow::Result;
use strata::daemon::control::{self, Reply, Request, Status};

use super::args::Global;
use super::socket_of;

/// Rewrites the progress line with `text`.
pub fn show(text: &str) {
    eprint!("\r\x1b[2K{text}");
}

/// Clears the progress line.
pub fn clear() {
    eprint!("\r\x1b[2K");
}

/// Asks the daemon for its status twice a second and shows what `line`
/// makes of it, until dropped.
pub struct Poll {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poll {
    pub fn start(g: &Global, line: fn(&Status) -> Option<String>) -> Result<Poll> {
        let socket = socket_of(g)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            while stopped.recv_timeout(Duration::from_millis(500)).is_err() {
                if let Ok(Some(Reply::Status(s))) = control::call(&socket, &Request::Status) {
                    if let Some(text) = line(&s) {
                        show(&text);
                    }
                }
            }
        });
        Ok(Poll {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Poll {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
