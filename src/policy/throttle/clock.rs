//! Time as the throttle sees it: a monotonic clock for buckets, windows and
//! expiries, and the local weekday and time of day for profiles.
//!
//! Everything time-dependent in the throttle reads a [`Clock`], so tests run
//! on a [`SimClock`] that only moves when told to, and no test sleeps.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds in a day.
pub const DAY_SECS: u32 = 86_400;

/// A source of time.
pub trait Clock: Send + Sync {
    /// Monotonic time since an arbitrary fixed origin; never goes back.
    fn now(&self) -> Duration;
    /// The local weekday and time of day, for profiles.
    fn local(&self) -> LocalTime;
}

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// All days, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// 0 for Monday .. 6 for Sunday.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The day `n` days later (negative: earlier).
    pub fn add_days(self, n: i64) -> Weekday {
        Weekday::ALL[(self.index() as i64 + n).rem_euclid(7) as usize]
    }

    /// Short lower-case name, as written in the configuration.
    pub fn name(self) -> &'static str {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][self.index()]
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Weekday {
    type Err = ();

    /// "mon" or "monday", any case.
    fn from_str(s: &str) -> Result<Weekday, ()> {
        let s = s.trim().to_ascii_lowercase();
        const FULL: [&str; 7] = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        Weekday::ALL
            .into_iter()
            .find(|d| s == d.name() || s == FULL[d.index()])
            .ok_or(())
    }
}

/// A time of day, seconds since local midnight, `0..=86400` (86400 is
/// "24:00", usable only as the end of a window).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeOfDay(u32);

impl TimeOfDay {
    /// Midnight at the start of the day.
    pub const MIDNIGHT: TimeOfDay = TimeOfDay(0);
    /// "24:00", the end of the day.
    pub const END_OF_DAY: TimeOfDay = TimeOfDay(DAY_SECS);

    /// From hours, minutes and seconds; `None` when out of range.
    pub fn hms(h: u32, m: u32, s: u32) -> Option<TimeOfDay> {
        let t = h.checked_mul(3600)? + m * 60 + s;
        (m < 60 && s < 60 && t <= DAY_SECS).then_some(TimeOfDay(t))
    }

    /// Seconds since midnight.
    pub fn secs(self) -> u32 {
        self.0
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 / 60 % 60, self.0 % 60);
        if s == 0 {
            write!(f, "{h:02}:{m:02}")
        } else {
            write!(f, "{h:02}:{m:02}:{s:02}")
        }
    }
}

impl FromStr for TimeOfDay {
    type Err = ();

    /// "HH:MM" or "HH:MM:SS", 24-hour, "24:00" allowed.
    fn from_str(s: &str) -> Result<TimeOfDay, ()> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        if !(2..=3).contains(&parts.len())
            || parts
                .iter()
                .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(());
        }
        let n = |i: usize| parts.get(i).map_or(Ok(0), |p| p.parse::<u32>());
        let (h, m, sec) = (
            n(0).map_err(drop)?,
            n(1).map_err(drop)?,
            n(2).map_err(drop)?,
        );
        TimeOfDay::hms(h, m, sec).ok_or(())
    }
}

/// A local weekday and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    /// The day.
    pub weekday: Weekday,
    /// The time of day, below 24:00.
    pub time: TimeOfDay,
}

impl LocalTime {
    /// `weekday` at `hh:mm:ss`; panics when out of range (for tests and constants).
    pub fn at(weekday: Weekday, h: u32, m: u32, s: u32) -> LocalTime {
        let time = TimeOfDay::hms(h, m, s).filter(|t| t.0 < DAY_SECS);
        LocalTime {
            weekday,
            time: time.expect("time of day out of range"),
        }
    }

    /// This local time `secs` seconds later, ignoring daylight-saving shifts.
    pub fn plus_secs(self, secs: u64) -> LocalTime {
        let total = self.time.0 as u64 + secs;
        LocalTime {
            weekday: self.weekday.add_days((total / DAY_SECS as u64) as i64),
            time: TimeOfDay((total % DAY_SECS as u64) as u32),
        }
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.weekday, self.time)
    }
}

/// The real clock: `Instant` for monotonic time, the C library's
/// `localtime_r` (so the system time zone and daylight saving) for local time.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is now.
    pub fn new() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn local(&self) -> LocalTime {
        // SAFETY: time(NULL) writes nothing; localtime_r writes only into `tm`,
        // which lives on this stack frame, and is thread-safe.
        let tm = unsafe {
            let t = libc::time(std::ptr::null_mut());
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&t, &mut tm).is_null() {
                // Cannot fail for the current time; fall back to UTC midnight
                // rather than panic on the write path.
                return LocalTime::at(Weekday::Mon, 0, 0, 0);
            }
            tm
        };
        // tm_wday counts from Sunday = 0; tm_sec may be 60 in a leap second.
        LocalTime {
            weekday: Weekday::Sun.add_days(tm.tm_wday as i64),
            time: TimeOfDay(
                (tm.tm_hour as u32 * 3600 + tm.tm_min as u32 * 60 + (tm.tm_sec as u32).min(59))
                    .min(DAY_SECS - 1),
            ),
        }
    }
}

/// A clock for tests: starts at a given local time and moves only by
/// [`SimClock::advance`]. Clones share the same time.
#[derive(Clone, Debug)]
pub struct SimClock {
    inner: Arc<Mutex<SimState>>,
}

#[derive(Debug)]
struct SimState {
    mono: Duration,
    start: LocalTime,
}

impl SimClock {
    /// A clock at monotonic zero and local time `start`.
    pub fn new(start: LocalTime) -> SimClock {
        SimClock {
            inner: Arc::new(Mutex::new(SimState {
                mono: Duration::ZERO,
                start,
            })),
        }
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.lock().mono += d;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for SimClock {
    fn now(&self) -> Duration {
        self.lock().mono
    }

    fn local(&self) -> LocalTime {
        let s = self.lock();
        s.start.plus_secs(s.mono.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekday_and_time_parse() {
        assert_eq!("Mon".parse(), Ok(Weekday::Mon));
        assert_eq!("sunday".parse(), Ok(Weekday::Sun));
        assert!("mo".parse::<Weekday>().is_err());
        assert_eq!("07:00".parse(), Ok(TimeOfDay(7 * 3600)));
        assert_eq!("23:59:30".parse(), Ok(TimeOfDay(86_370)));
        assert_eq!("24:00".parse(), Ok(TimeOfDay::END_OF_DAY));
        for bad in ["7:00", "24:01", "12:60", "12", "12:00:00:00", "ab:cd", ""] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad} accepted");
        }
        assert_eq!(TimeOfDay(7 * 3600 + 5).to_string(), "07:00:05");
    }

    #[test]
    fn sim_clock_rolls_over_midnight_and_week() {
        let c = SimClock::new(LocalTime::at(Weekday::Sun, 23, 59, 59));
        c.advance(Duration::from_millis(999));
        assert_eq!(c.local(), LocalTime::at(Weekday::Sun, 23, 59, 59));
        c.advance(Duration::from_millis(1));
        assert_eq!(c.local(), LocalTime::at(Weekday::Mon, 0, 0, 0));
        c.advance(Duration::from_secs(7 * 86_400));
        assert_eq!(c.local(), LocalTime::at(Weekday::Mon, 0, 0, 0));
        assert_eq!(c.now(), Duration::from_secs(7 * 86_400 + 1));
    }

    #[test]
    fn system_clock_local_time_is_in_range() {
        let t = SystemClock::new().local();
        assert!(t.time.secs() < DAY_SECS);
    }
}
