//! The achieved rate: bytes and requests admitted over the last few seconds.

use std::time::Duration;

/// Width of one slot.
pub const SLOT: Duration = Duration::from_millis(250);
/// Slots kept; `SLOT × SLOTS` is the window.
pub const SLOTS: usize = 20;

/// A ring of per-slot counters.
#[derive(Clone, Debug)]
pub struct RateWindow {
    /// (slot number since the origin, bytes, requests).
    slots: [(u64, u64, u64); SLOTS],
    /// When counting began; the rate is not diluted by time before it.
    start: Duration,
}

impl RateWindow {
    /// An empty window starting at `now`.
    pub fn new(now: Duration) -> RateWindow {
        RateWindow {
            slots: [(u64::MAX, 0, 0); SLOTS],
            start: now,
        }
    }

    /// The window's length.
    pub fn length() -> Duration {
        SLOT * SLOTS as u32
    }

    fn index(t: Duration) -> u64 {
        (t.as_nanos() / SLOT.as_nanos()) as u64
    }

    /// Counts one request of `bytes` at `now`.
    pub fn record(&mut self, now: Duration, bytes: u64) {
        let k = Self::index(now);
        let slot = &mut self.slots[(k % SLOTS as u64) as usize];
        if slot.0 != k {
            *slot = (k, 0, 0);
        }
        slot.1 += bytes;
        slot.2 += 1;
    }

    /// (bytes/s, requests/s) over the slots of the last window, the current
    /// partial slot included.
    pub fn rate(&self, now: Duration) -> (f64, f64) {
        let k = Self::index(now);
        let oldest = k.saturating_sub(SLOTS as u64 - 1);
        let (mut bytes, mut ops) = (0u64, 0u64);
        for &(i, b, o) in &self.slots {
            if i != u64::MAX && (oldest..=k).contains(&i) {
                bytes += b;
                ops += o;
            }
        }
        let from = (SLOT * oldest as u32).max(self.start);
        let span = now.saturating_sub(from).as_secs_f64();
        if span <= 0.0 {
            return (0.0, 0.0);
        }
        (bytes as f64 / span, ops as f64 / span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_is_measured_and_old_slots_drop_out() {
        let mut w = RateWindow::new(Duration::ZERO);
        // 100 kB every 10 ms for 10 s: 10 MB/s, 100 requests/s.
        let mut t = Duration::ZERO;
        for _ in 0..1000 {
            w.record(t, 100_000);
            t += Duration::from_millis(10);
        }
        let (b, o) = w.rate(t);
        assert!((b - 10e6).abs() < 0.01 * 10e6, "{b}");
        assert!((o - 100.0).abs() < 1.0, "{o}");
        // Two seconds of silence: of the 4.75 s the window spans, only the
        // first 2.75 s held writes.
        let (b, _) = w.rate(t + Duration::from_secs(2));
        let want = 275.0 * 100_000.0 / 4.75;
        assert!((b - want).abs() < 1.0, "{b} vs {want}");
        // After the whole window, nothing.
        assert_eq!(w.rate(t + Duration::from_secs(6)), (0.0, 0.0));
    }

    #[test]
    fn early_rate_is_not_diluted() {
        let mut w = RateWindow::new(Duration::from_secs(100));
        w.record(Duration::from_secs(100), 1000);
        let (b, o) = w.rate(Duration::from_millis(100_500));
        assert_eq!((b, o), (2000.0, 2.0));
    }
}
