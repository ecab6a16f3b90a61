//! Applying a policy to a list of snapshots: a verdict per snapshot, with
//! every reason that keeps it.

use std::collections::HashMap;
use std::fmt;

use jiff::tz::TimeZone;

use crate::policy::retention::{Policy, PolicyError};
use crate::tree::record::RunStatus;

/// What the policy needs to know of one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Snapshot number.
    pub seq: u64,
    /// When it was taken, in seconds since the epoch.
    pub time: i64,
    /// Its label.
    pub label: Option<String>,
    /// Its backup run's status; `None` for a snapshot taken outside a run.
    pub status: Option<RunStatus>,
    /// Under a legal hold.
    pub held: bool,
    /// The end of its retention lock, in seconds since the epoch.
    pub locked_until: Option<i64>,
}

impl Candidate {
    /// Whether it may count for a rule: taken outside a run, or by a run
    /// that completed or validated.
    pub fn is_good(&self) -> bool {
        matches!(
            self.status,
            None | Some(RunStatus::Complete | RunStatus::Validated)
        )
    }
}

/// A calendar period that a bucket rule keeps one snapshot of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// An hour of local time.
    Hour,
    /// A local day.
    Day,
    /// An ISO week (Monday to Sunday; the year is the ISO week's year).
    Week,
    /// A month.
    Month,
    /// A year.
    Year,
}

impl Bucket {
    /// The period holding `time` in `tz`, as it is printed.
    fn of(self, time: i64, tz: &TimeZone) -> String {
        let Ok(ts) = jiff::Timestamp::from_second(time) else {
            return format!("@{time}");
        };
        let z = ts.to_zoned_datetime(tz.clone());
        match self {
            Bucket::Hour => format!(
                "{:04}-{:02}-{:02} {:02}h",
                z.year(),
                z.month(),
                z.day(),
                z.hour()
            ),
            Bucket::Day => format!("{:04}-{:02}-{:02}", z.year(), z.month(), z.day()),
            Bucket::Week => {
                let w = z.iso_week_date();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            Bucket::Month => format!("{:04}-{:02}", z.year(), z.month()),
            Bucket::Year => format!("{:04}", z.year()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bucket::Hour => "hourly",
            Bucket::Day => "daily",
            Bucket::Week => "weekly",
            Bucket::Month => "monthly",
            Bucket::Year => "yearly",
        }
    }
}

/// Why a snapshot is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// One of the newest `keep-last` good snapshots (1 = the newest).
    Last(u32),
    /// The newest good snapshot of a period a bucket rule keeps.
    Period(Bucket, String),
    /// Within `keep-within` of the newest good snapshot.
    Within,
    /// It carries a label `keep-label` names.
    Label(String),
    /// The newest good snapshot, which `latest` names: always kept.
    Newest,
    /// Its run did not end good; kept for inspection until then.
    Inspect {
        /// Seconds since the epoch.
        until: i64,
        /// Its date in the policy's time zone, as it is printed.
        day: String,
    },
    /// Under a legal hold.
    Held,
    /// Inside its retention lock.
    Locked {
        /// Seconds since the epoch.
        until: i64,
        /// Its date in the policy's time zone, as it is printed.
        day: String,
    },
}

impl Reason {
    /// The rule's name, for `--json`.
    pub fn rule(&self) -> &'static str {
        match self {
            Reason::Last(_) => "last",
            Reason::Period(b, _) => b.name(),
            Reason::Within => "within",
            Reason::Label(_) => "label",
            Reason::Newest => "newest",
            Reason::Inspect { .. } => "inspect",
            Reason::Held => "hold",
            Reason::Locked { .. } => "lock",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Last(n) => write!(f, "last {n}"),
            Reason::Period(b, period) => write!(f, "{} {period}", b.name()),
            Reason::Within => f.write_str("within"),
            Reason::Label(l) => write!(f, "label {l}"),
            Reason::Newest => f.write_str("newest good snapshot"),
            Reason::Inspect { day, .. } => write!(f, "run not good; inspect until {day}"),
            Reason::Held => f.write_str("legal hold"),
            Reason::Locked { day, .. } => write!(f, "locked until {day}"),
        }
    }
}

/// The policy's word on one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Snapshot number.
    pub seq: u64,
    /// Kept (some reason) or removed (none).
    pub keep: bool,
    /// Every reason that keeps it, in the order of the rules.
    pub reasons: Vec<Reason>,
}

/// Applies `policy` to `snapshots` at `now` (seconds since the epoch),
/// with calendar periods in `tz`. One verdict per snapshot, in the order
/// given.
pub fn decide(
    snapshots: &[Candidate],
    policy: &Policy,
    now: i64,
    tz: &TimeZone,
) -> Result<Vec<Verdict>, PolicyError> {
    policy.check()?;
    let mut reasons: HashMap<u64, Vec<Reason>> = HashMap::new();
    let mut keep = |seq: u64, why: Reason| reasons.entry(seq).or_default().push(why);

    // Newest first; equal times by number.
    let mut order: Vec<&Candidate> = snapshots.iter().collect();
    order.sort_by_key(|c| std::cmp::Reverse((c.time, c.seq)));
    let good: Vec<&Candidate> = order.iter().copied().filter(|c| c.is_good()).collect();

    if let Some(n) = policy.last {
        for (i, c) in good.iter().take(n as usize).enumerate() {
            keep(c.seq, Reason::Last(i as u32 + 1));
        }
    }
    for (bucket, count) in policy.buckets() {
        let Some(count) = count else { continue };
        let mut kept = 0;
        let mut last: Option<String> = None;
        for c in &good {
            if kept == count {
                break;
            }
            let period = bucket.of(c.time, tz);
            if last.as_ref() != Some(&period) {
                last = Some(period.clone());
                kept += 1;
                keep(c.seq, Reason::Period(bucket, period));
            }
        }
    }
    if let (Some(within), Some(newest)) = (policy.within, good.first()) {
        let from = newest.time.saturating_sub(within.as_secs() as i64);
        for c in good.iter().filter(|c| c.time >= from) {
            keep(c.seq, Reason::Within);
        }
    }
    for c in &order {
        if let Some(label) = c.label.as_ref().filter(|l| policy.labels.contains(l)) {
            keep(c.seq, Reason::Label(label.clone()));
        }
    }
    if let Some(newest) = good.first() {
        keep(newest.seq, Reason::Newest);
    }
    for c in &order {
        let until = c.time.saturating_add(policy.inspect.as_secs() as i64);
        if !c.is_good() && until > now {
            let day = Bucket::Day.of(until, tz);
            keep(c.seq, Reason::Inspect { until, day });
        }
        if c.held {
            keep(c.seq, Reason::Held);
        }
        if let Some(until) = c.locked_until.filter(|&u| u > now) {
            let day = Bucket::Day.of(until, tz);
            keep(c.seq, Reason::Locked { until, day });
        }
    }

    Ok(snapshots
        .iter()
        .map(|c| {
            let reasons = reasons.remove(&c.seq).unwrap_or_default();
            Verdict {
                seq: c.seq,
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect())
}
