//! Serving one request: counted per opcode with the time it took, and a
//! panic below turned into EIO for that request alone.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata::sys::sync::Recover;
use strata::tree::types::{Fault, FsError};

/// Requests served per opcode and the time spent serving them, for
/// `strata status --json` and the benchmark: requests per file decide the
/// speed of a FUSE filesystem.
#[derive(Default)]
pub struct Requests {
    by_op: Mutex<BTreeMap<&'static str, (u64, Duration)>>,
}

/// Counts one request when dropped.
pub struct Timer<'a> {
    requests: &'a Requests,
    op: &'static str,
    start: Instant,
}

impl Requests {
    /// Counts a request that cannot fail (forget, opendir) when the timer drops.
    pub fn start(&self, op: &'static str) -> Timer<'_> {
        Timer {
            requests: self,
            op,
            start: Instant::now(),
        }
    }

    /// Serves one request: counts it, and turns a panic below into EIO for
    /// this request alone (logged with the opcode), so one bug met by one
    /// request does not take the mount down. Locks a panic can poison are
    /// recovered below (see `strata::sys::sync`).
    pub fn serve<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let _t = self.start(op);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(op, panic = %what, "internal error; this request fails with EIO");
            Err(FsError::Io(Fault::new(format!("internal error in {op}"))))
        })
    }

    /// Count and total microseconds per opcode.
    pub fn snapshot(&self) -> BTreeMap<String, (u64, u64)> {
        let by_op = self.by_op.locked();
        by_op
            .iter()
            .map(|(op, (n, t))| (op.to_string(), (*n, t.as_micros() as u64)))
            .collect()
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        let took = self.start.elapsed();
        let mut by_op = self.requests.by_op.locked();
        let e = by_op.entry(self.op).or_default();
        e.0 += 1;
        e.1 += took;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_fails_its_request_alone() {
        let requests = Requests::default();
        let r: Result<(), FsError> = requests.serve("write", || panic!("a bug in one request"));
        assert_eq!(r.map_err(|e| e.errno()), Err(libc::EIO));
        assert_eq!(requests.serve("read", || Ok(7)).unwrap(), 7);
        let counts = requests.snapshot();
        assert_eq!((counts["write"].0, counts["read"].0), (1, 1));
    }
}
