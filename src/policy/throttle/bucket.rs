//! A token bucket that answers with a delay instead of blocking.
//!
//! Tokens are kept in nano-units (units × 10⁹) so that refilling for `ns`
//! nanoseconds at `rate` units per second adds exactly `ns × rate`, and a
//! delay is `⌈debt / rate⌉` nanoseconds: on a simulated clock the arithmetic
//! is exact, with no drift from floating point.
//!
//! A request always takes its tokens at once, which may drive the level
//! negative (a debt); its caller defers the reply until the debt is repaid.
//! The debt is floored at `rate × max_delay`, so no request is told to wait
//! longer than `max_delay`: whatever a request asks beyond that is forgiven.
//! The limit therefore holds exactly as long as the writes in flight at once
//! stay within `rate × max_delay` bytes (one sequential writer always does);
//! more concurrent writers than that get `max_delay` each and the achieved
//! rate exceeds the limit. A short wait for every request is the contract
//! here, the rate is the aim.

use std::time::Duration;

const NANOS: i128 = 1_000_000_000;

/// A token bucket over some unit (bytes, requests).
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: Duration,
    max_delay: Duration,
    /// Nano-units; negative is a debt. Bounds: `-rate × max_delay ..= rate × burst`.
    tokens: i128,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` units per second (at least 1), holding
    /// `burst` worth of rate, answering with delays of at most `max_delay`.
    pub fn new(rate: u64, burst: Duration, max_delay: Duration, now: Duration) -> TokenBucket {
        let rate = rate.max(1);
        TokenBucket {
            rate,
            burst,
            max_delay,
            tokens: rate as i128 * burst.as_nanos() as i128,
            last: now,
        }
    }

    /// Units per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Changes the rate, keeping the tokens (or the debt) held, clamped to the
    /// new bounds.
    pub fn set_rate(&mut self, rate: u64, now: Duration) {
        self.refill(now);
        self.rate = rate.max(1);
        self.tokens = self.tokens.clamp(self.floor(), self.cap());
    }

    /// Takes `n` units at `now` and returns how long the caller must wait
    /// before it may count them as done: zero while under the limit, never
    /// more than `max_delay`.
    pub fn reserve(&mut self, n: u64, now: Duration) -> Duration {
        self.refill(now);
        self.tokens = (self.tokens - n as i128 * NANOS).max(self.floor());
        if self.tokens >= 0 {
            return Duration::ZERO;
        }
        let rate = self.rate as i128;
        let ns = (-self.tokens + rate - 1) / rate;
        Duration::from_nanos(ns as u64).min(self.max_delay)
    }

    /// Tokens available now, in whole units (negative: a debt).
    pub fn level(&mut self, now: Duration) -> i64 {
        self.refill(now);
        (self.tokens / NANOS) as i64
    }

    fn cap(&self) -> i128 {
        self.rate as i128 * self.burst.as_nanos() as i128
    }

    fn floor(&self) -> i128 {
        -(self.rate as i128 * self.max_delay.as_nanos() as i128)
    }

    fn refill(&mut self, now: Duration) {
        // A clock that seems to go back (it should not) refills nothing.
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        let add = (elapsed.as_nanos() as i128).saturating_mul(self.rate as i128);
        self.tokens = self.tokens.saturating_add(add).min(self.cap());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn burst_is_free_then_each_request_waits_its_share() {
        let mut b = TokenBucket::new(10 * MIB, S, S, Duration::ZERO);
        for i in 0..10 {
            assert_eq!(
                b.reserve(MIB, Duration::ZERO),
                Duration::ZERO,
                "request {i}"
            );
        }
        assert_eq!(b.reserve(MIB, Duration::ZERO), Duration::from_millis(100));
        assert_eq!(b.reserve(MIB, Duration::ZERO), Duration::from_millis(200));
        // After the debt is repaid and a little more, the next is free again.
        assert_eq!(b.level(Duration::from_millis(200)), 0);
        assert_eq!(b.reserve(MIB, Duration::from_millis(300)), Duration::ZERO);
    }

    #[test]
    fn delay_is_capped_and_excess_forgiven() {
        let cap = Duration::from_millis(250);
        let mut b = TokenBucket::new(MIB, Duration::from_millis(100), cap, Duration::ZERO);
        let d = b.reserve(64 * MIB, Duration::ZERO);
        assert_eq!(d, cap);
        // The debt is only what the cap allows: 250 ms later it is repaid.
        assert_eq!(b.level(cap), 0);
        for _ in 0..100 {
            assert!(b.reserve(MIB, cap) <= cap);
        }
    }

    #[test]
    fn idle_refill_stops_at_burst() {
        let mut b = TokenBucket::new(1000, Duration::from_secs(2), S, Duration::ZERO);
        b.reserve(2000, Duration::ZERO);
        assert_eq!(b.level(Duration::from_secs(3600)), 2000);
    }

    #[test]
    fn rate_change_keeps_debt_in_units() {
        let mut b = TokenBucket::new(1000, S, Duration::from_secs(10), Duration::ZERO);
        assert_eq!(b.reserve(1500, Duration::ZERO), Duration::from_millis(500));
        b.set_rate(100, Duration::ZERO);
        // 500 units of debt at 100/s: the next unit waits 5.01 s.
        assert_eq!(b.reserve(1, Duration::ZERO), Duration::from_millis(5010));
        // Lowering the rate clamps the burst too.
        b.set_rate(10, Duration::from_secs(100));
        assert_eq!(b.level(Duration::from_secs(100)), 10);
    }
}
