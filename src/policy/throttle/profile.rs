//! Time-of-day and weekday profiles: which limit is in force when.
//!
//! A profile is a window `[from, to)` on a set of weekdays. A window whose
//! `to` is not after its `from` runs past midnight into the next day, and it
//! belongs to the day it starts on: `days = ["fri"], from = "22:00",
//! to = "06:00"` is Friday 22:00 to Saturday 06:00. The first profile, in the
//! order written, whose window contains the local time wins; when none does,
//! the default limit applies.

use super::clock::{LocalTime, TimeOfDay, Weekday, DAY_SECS};
use super::rate::Limits;

/// One window and its limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Name, shown as the reason for the limit.
    pub name: String,
    /// Days the window starts on, indexed Monday = 0.
    pub days: [bool; 7],
    /// Start, inclusive.
    pub from: TimeOfDay,
    /// End, exclusive; at or before `from` means the next day.
    pub to: TimeOfDay,
    /// The limit inside the window (`None` fields: unlimited).
    pub limits: Limits,
}

impl Profile {
    /// Whether `t` falls inside this profile's window.
    pub fn contains(&self, t: LocalTime) -> bool {
        let on = |d: Weekday| self.days[d.index()];
        let s = t.time;
        if self.from < self.to {
            on(t.weekday) && self.from <= s && s < self.to
        } else {
            // Past midnight: the evening part on a listed day, the morning
            // part on the day after a listed day.
            (on(t.weekday) && s >= self.from) || (on(t.weekday.add_days(-1)) && s < self.to)
        }
    }
}

/// The profiles in the order written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// First match wins.
    pub profiles: Vec<Profile>,
}

impl Schedule {
    /// The profile in force at `t`, if any.
    pub fn active(&self, t: LocalTime) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.contains(t))
    }

    /// Seconds from `t` until the next instant at which the active profile
    /// could change (a window edge or midnight); at least 1.
    pub fn secs_to_next_edge(&self, t: LocalTime) -> u32 {
        let now = t.time.secs();
        let dist = |e: u32| (e % DAY_SECS + DAY_SECS - now - 1) % DAY_SECS + 1;
        self.profiles
            .iter()
            .flat_map(|p| [p.from.secs(), p.to.secs()])
            .chain([0])
            .map(dist)
            .min()
            .unwrap_or(DAY_SECS - now)
    }
}

#[cfg(test)]
mod tests {
    use super::super::rate::ByteRate;
    use super::*;
    use Weekday::*;

    fn profile(name: &str, days: &[Weekday], from: &str, to: &str) -> Profile {
        let mut d = [false; 7];
        for day in days {
            d[day.index()] = true;
        }
        Profile {
            name: name.into(),
            days: d,
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
            limits: Limits {
                bytes: Some(ByteRate(1)),
                ops: None,
            },
        }
    }

    fn name_at(s: &Schedule, t: LocalTime) -> Option<&str> {
        s.active(t).map(|p| p.name.as_str())
    }

    #[test]
    fn business_hours_edges() {
        let s = Schedule {
            profiles: vec![profile(
                "work",
                &[Mon, Tue, Wed, Thu, Fri],
                "07:00",
                "19:00",
            )],
        };
        assert_eq!(name_at(&s, LocalTime::at(Mon, 6, 59, 59)), None);
        assert_eq!(name_at(&s, LocalTime::at(Mon, 7, 0, 0)), Some("work"));
        assert_eq!(name_at(&s, LocalTime::at(Fri, 18, 59, 59)), Some("work"));
        assert_eq!(name_at(&s, LocalTime::at(Fri, 19, 0, 0)), None);
        assert_eq!(name_at(&s, LocalTime::at(Sat, 12, 0, 0)), None);
        assert_eq!(s.secs_to_next_edge(LocalTime::at(Mon, 6, 59, 0)), 60);
        assert_eq!(s.secs_to_next_edge(LocalTime::at(Mon, 7, 0, 0)), 12 * 3600);
        assert_eq!(s.secs_to_next_edge(LocalTime::at(Mon, 23, 0, 0)), 3600);
    }

    #[test]
    fn window_past_midnight_belongs_to_its_start_day() {
        let s = Schedule {
            profiles: vec![profile("night", &[Fri], "22:00", "06:00")],
        };
        assert_eq!(name_at(&s, LocalTime::at(Fri, 21, 59, 59)), None);
        assert_eq!(name_at(&s, LocalTime::at(Fri, 22, 0, 0)), Some("night"));
        assert_eq!(name_at(&s, LocalTime::at(Sat, 0, 0, 0)), Some("night"));
        assert_eq!(name_at(&s, LocalTime::at(Sat, 5, 59, 59)), Some("night"));
        assert_eq!(name_at(&s, LocalTime::at(Sat, 6, 0, 0)), None);
        // Friday morning belongs to Thursday's night, which is not listed.
        assert_eq!(name_at(&s, LocalTime::at(Fri, 3, 0, 0)), None);
        assert_eq!(name_at(&s, LocalTime::at(Sat, 22, 30, 0)), None);
    }

    #[test]
    fn first_match_wins_and_whole_day() {
        let s = Schedule {
            profiles: vec![
                profile("lunch", &Weekday::ALL, "12:00", "13:00"),
                profile("weekday", &[Mon, Tue, Wed, Thu, Fri], "00:00", "24:00"),
            ],
        };
        assert_eq!(name_at(&s, LocalTime::at(Wed, 12, 30, 0)), Some("lunch"));
        assert_eq!(name_at(&s, LocalTime::at(Wed, 13, 0, 0)), Some("weekday"));
        assert_eq!(name_at(&s, LocalTime::at(Wed, 23, 59, 59)), Some("weekday"));
        assert_eq!(name_at(&s, LocalTime::at(Sun, 12, 30, 0)), Some("lunch"));
        assert_eq!(name_at(&s, LocalTime::at(Sun, 14, 0, 0)), None);
    }
}
