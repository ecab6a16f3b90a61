//! Retention policies over years of snapshots, with a fixed clock and
//! fixed time zones (POSIX TZ strings, so no time zone database is needed).

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::tz::TimeZone;
use proptest::prelude::*;
use strata::policy::retention::{decide, Candidate, Policy, PolicyError, Reason, Verdict};
use strata::tree::record::RunStatus;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// Central European time, with its daylight saving changes.
fn berlin() -> TimeZone {
    TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
}

/// Seconds since the epoch of a UTC time written as "2026-12-05T02:00:00Z".
fn at(utc: &str) -> i64 {
    utc.parse::<jiff::Timestamp>().unwrap().as_second()
}

fn snap(seq: u64, time: i64) -> Candidate {
    Candidate {
        seq,
        time,
        label: None,
        status: None,
        held: false,
        locked_until: None,
    }
}

/// `n` nightly snapshots, one a day at `first` and after.
fn nightly(first: i64, n: u64) -> Vec<Candidate> {
    (0..n)
        .map(|i| snap(i + 1, first + i as i64 * DAY))
        .collect()
}

fn kept(verdicts: &[Verdict]) -> Vec<u64> {
    verdicts.iter().filter(|v| v.keep).map(|v| v.seq).collect()
}

fn reasons(verdicts: &[Verdict], seq: u64) -> Vec<String> {
    let v = verdicts.iter().find(|v| v.seq == seq).unwrap();
    v.reasons.iter().map(|r| r.to_string()).collect()
}

#[test]
fn keep_daily_keeps_the_newest_snapshot_of_each_of_the_newest_days() {
    // Two snapshots a day for 30 days: the later one of each day counts.
    let first = at("2026-11-01T01:00:00Z");
    let mut snaps = Vec::new();
    for d in 0..30 {
        snaps.push(snap(2 * d + 1, first + d as i64 * DAY));
        snaps.push(snap(2 * d + 2, first + d as i64 * DAY + 6 * HOUR));
    }
    let policy = Policy {
        daily: Some(7),
        ..Policy::default()
    };
    let now = first + 30 * DAY;
    let v = decide(&snaps, &policy, now, &berlin()).unwrap();
    assert_eq!(kept(&v), [48, 50, 52, 54, 56, 58, 60]);
    assert_eq!(
        reasons(&v, 60),
        ["daily 2026-11-30", "newest good snapshot"]
    );
    assert_eq!(reasons(&v, 48), ["daily 2026-11-24"]);
    assert!(v.iter().filter(|v| !v.keep).all(|v| v.reasons.is_empty()));
}

#[test]
fn days_are_local_days_in_the_named_zone() {
    // 23:30 UTC on 28 March is 00:30 on the 29th in Berlin (CET, UTC+1):
    // the same local day as 22:00 UTC on the 29th (00:00 CEST on the 30th
    // would not be).
    let a = snap(1, at("2026-03-28T22:30:00Z")); // 23:30 CET, the 28th
    let b = snap(2, at("2026-03-28T23:30:00Z")); // 00:30 CET, the 29th
    let c = snap(3, at("2026-03-29T21:30:00Z")); // 23:30 CEST, the 29th
    let policy = Policy {
        daily: Some(10),
        ..Policy::default()
    };
    let v = decide(&[a, b, c], &policy, at("2026-04-01T00:00:00Z"), &berlin()).unwrap();
    assert_eq!(kept(&v), [1, 3], "b and c share the local day 29 March");
    assert_eq!(reasons(&v, 1), ["daily 2026-03-28"]);
    // In UTC the three fall on two days too, but split differently.
    let v = decide(
        &[
            snap(1, at("2026-03-28T22:30:00Z")),
            snap(2, at("2026-03-28T23:30:00Z")),
            snap(3, at("2026-03-29T21:30:00Z")),
        ],
        &policy,
        at("2026-04-01T00:00:00Z"),
        &TimeZone::UTC,
    )
    .unwrap();
    assert_eq!(kept(&v), [2, 3]);
}

#[test]
fn daylight_saving_changes_neither_lose_nor_double_a_day_or_an_hour() {
    let tz = berlin();
    // Nightly at 01:30 UTC across the spring change (29 March 2026) and
    // the autumn change (25 October 2026): one daily each.
    for first in [at("2026-03-25T01:30:00Z"), at("2026-10-21T01:30:00Z")] {
        let snaps = nightly(first, 9);
        let policy = Policy {
            daily: Some(9),
            ..Policy::default()
        };
        let v = decide(&snaps, &policy, first + 10 * DAY, &tz).unwrap();
        assert_eq!(kept(&v).len(), 9, "{v:?}");
    }
    // On 25 October the local hour 02:00-03:00 happens twice (CEST, then
    // CET): two snapshots an hour apart in UTC fall in the same local hour,
    // and keep-hourly keeps the later.
    let a = snap(1, at("2026-10-25T00:15:00Z")); // 02:15 CEST
    let b = snap(2, at("2026-10-25T01:15:00Z")); // 02:15 CET
    let c = snap(3, at("2026-10-25T02:15:00Z")); // 03:15 CET
    let policy = Policy {
        hourly: Some(24),
        ..Policy::default()
    };
    let v = decide(&[a, b, c], &policy, at("2026-10-26T00:00:00Z"), &tz).unwrap();
    assert_eq!(kept(&v), [2, 3]);
    assert_eq!(reasons(&v, 2), ["hourly 2026-10-25 02h"]);
}

#[test]
fn weeks_are_iso_weeks_and_the_year_turns_inside_one() {
    // 2026 begins on a Thursday, so it has 53 ISO weeks: Thursday 31
    // December 2026 and Saturday 2 January 2027 are both in 2026-W53.
    let snaps = [
        snap(1, at("2026-12-24T02:00:00Z")), // W52
        snap(2, at("2026-12-31T02:00:00Z")), // W53
        snap(3, at("2027-01-02T02:00:00Z")), // W53
        snap(4, at("2027-01-04T02:00:00Z")), // 2027-W01 (Monday)
    ];
    let policy = Policy {
        weekly: Some(10),
        ..Policy::default()
    };
    let v = decide(&snaps, &policy, at("2027-01-05T00:00:00Z"), &berlin()).unwrap();
    assert_eq!(kept(&v), [1, 3, 4]);
    assert_eq!(reasons(&v, 3), ["weekly 2026-W53"]);
    assert_eq!(reasons(&v, 4), ["weekly 2027-W01", "newest good snapshot"]);
}

#[test]
fn gfs_over_three_years_keeps_dailies_weeklies_monthlies_and_yearlies() {
    // Nightly at 01:00 UTC from 1 January 2024 to 5 December 2026.
    let first = at("2024-01-01T01:00:00Z");
    let now = at("2026-12-05T12:00:00Z");
    let n = ((now - first) / DAY + 1) as u64;
    let snaps = nightly(first, n);
    let policy = Policy {
        daily: Some(7),
        weekly: Some(4),
        monthly: Some(12),
        yearly: Some(3),
        ..Policy::default()
    };
    let v = decide(&snaps, &policy, now, &berlin()).unwrap();
    let day_of = |seq: u64| {
        jiff::Timestamp::from_second(snaps[seq as usize - 1].time)
            .unwrap()
            .to_zoned_datetime(berlin())
            .strftime("%Y-%m-%d")
            .to_string()
    };
    let days: Vec<String> = kept(&v).into_iter().map(day_of).collect();
    // Yearlies: the last night of 2024 and 2025 (and the newest, of 2026).
    assert!(days.contains(&"2024-12-31".to_owned()), "{days:?}");
    assert!(days.contains(&"2025-12-31".to_owned()), "{days:?}");
    // Monthlies: the last night of each month back to January 2026.
    for m in 1..=11 {
        let last = jiff::civil::date(2026, m, 1).last_of_month();
        assert!(days.contains(&last.to_string()), "{last} missing: {days:?}");
    }
    assert!(!days.contains(&"2025-12-30".to_owned()));
    // Dailies: 29 November to 5 December. Weeklies (ISO weeks end on
    // Sunday): 5 December and 29 November are dailies too, then 22 and
    // 15 November.
    for d in [
        "11-29", "11-30", "12-01", "12-02", "12-03", "12-04", "12-05",
    ] {
        assert!(days.contains(&format!("2026-{d}")), "{d}: {days:?}");
    }
    for sunday in ["2026-11-22", "2026-11-15"] {
        assert!(days.contains(&sunday.to_owned()), "{sunday}: {days:?}");
    }
    assert!(!days.contains(&"2026-11-08".to_owned()), "only 4 weeklies");
    // 7 dailies, 2 more weeklies, 10 more monthlies (December's and
    // November's are dailies), 2 more yearlies (2026's is the newest).
    assert_eq!(days.len(), 7 + 2 + 10 + 2, "{days:?}");
}

#[test]
fn a_run_that_did_not_end_good_is_no_daily_and_is_kept_only_for_inspection() {
    let first = at("2026-12-01T01:00:00Z");
    let mut snaps = nightly(first, 5);
    snaps[4].status = Some(RunStatus::Failed);
    snaps[3].status = Some(RunStatus::Inconsistent);
    snaps[2].status = Some(RunStatus::Validated);
    snaps[1].status = Some(RunStatus::Complete);
    let policy = Policy {
        daily: Some(2),
        inspect: Duration::from_secs(3 * DAY as u64),
        ..Policy::default()
    };
    let now = first + 5 * DAY;
    let v = decide(&snaps, &policy, now, &berlin()).unwrap();
    assert_eq!(kept(&v), [2, 3, 4, 5]);
    assert_eq!(reasons(&v, 3), ["daily 2026-12-03", "newest good snapshot"]);
    assert_eq!(reasons(&v, 2), ["daily 2026-12-02"]);
    assert_eq!(reasons(&v, 5), ["run not good; inspect until 2026-12-08"]);
    // A week later the failed and inconsistent nights are removed.
    let v = decide(&snaps, &policy, now + 7 * DAY, &berlin()).unwrap();
    assert_eq!(kept(&v), [2, 3]);
}

#[test]
fn holds_and_locks_keep_what_no_rule_keeps_and_an_expired_lock_does_not() {
    let first = at("2026-01-01T01:00:00Z");
    let mut snaps = nightly(first, 10);
    snaps[0].held = true;
    // 00:30 on New Year's Day in Berlin, still 2032 in UTC: the date
    // printed is the zone's.
    snaps[1].locked_until = Some(at("2032-12-31T23:30:00Z"));
    snaps[2].locked_until = Some(at("2026-02-01T00:00:00Z"));
    let policy = Policy {
        last: Some(1),
        ..Policy::default()
    };
    let v = decide(&snaps, &policy, at("2026-06-01T00:00:00Z"), &berlin()).unwrap();
    assert_eq!(kept(&v), [1, 2, 10]);
    assert_eq!(reasons(&v, 1), ["legal hold"]);
    assert_eq!(reasons(&v, 2), ["locked until 2033-01-01"]);
    assert_eq!(reasons(&v, 10), ["last 1", "newest good snapshot"]);
}

#[test]
fn keep_within_counts_back_from_the_newest_snapshot_not_from_now() {
    let first = at("2026-01-01T01:00:00Z");
    let snaps = nightly(first, 10);
    let policy = Policy {
        within: Some(Duration::from_secs(3 * DAY as u64)),
        ..Policy::default()
    };
    // A year after the backups stopped, the last three days are still kept.
    let v = decide(&snaps, &policy, first + 400 * DAY, &berlin()).unwrap();
    assert_eq!(kept(&v), [7, 8, 9, 10]);
}

#[test]
fn keep_label_keeps_every_snapshot_with_the_label() {
    let first = at("2026-01-01T01:00:00Z");
    let mut snaps = nightly(first, 6);
    snaps[0].label = Some("before-upgrade".into());
    snaps[2].label = Some("nightly".into());
    snaps[3].label = Some("before-upgrade".into());
    snaps[3].status = Some(RunStatus::Failed);
    let policy = Policy {
        labels: vec!["before-upgrade".into()],
        inspect: Duration::ZERO,
        ..Policy::default()
    };
    let v = decide(&snaps, &policy, first + 30 * DAY, &berlin()).unwrap();
    assert_eq!(kept(&v), [1, 4, 6]);
    assert_eq!(reasons(&v, 4), ["label before-upgrade"]);
}

#[test]
fn a_policy_without_a_rule_or_with_a_zero_count_is_refused() {
    let snaps = nightly(at("2026-01-01T01:00:00Z"), 3);
    let now = at("2026-02-01T00:00:00Z");
    let refused = |policy: Policy| decide(&snaps, &policy, now, &berlin()).unwrap_err();
    assert_eq!(refused(Policy::default()), PolicyError::Empty);
    assert!(refused(Policy::default())
        .to_string()
        .contains("give at least one rule"));
    let zero = Policy {
        daily: Some(0),
        ..Policy::default()
    };
    assert_eq!(refused(zero), PolicyError::Zero("daily"));
}

/// One rule of a policy alone, for the union property.
fn rules_alone(p: &Policy) -> Vec<Policy> {
    let base = Policy {
        inspect: p.inspect,
        ..Policy::default()
    };
    let mut out = Vec::new();
    let mut one = |f: &dyn Fn(&mut Policy)| {
        let mut q = base.clone();
        f(&mut q);
        if q.check().is_ok() {
            out.push(q);
        }
    };
    one(&|q| q.last = p.last);
    one(&|q| q.hourly = p.hourly);
    one(&|q| q.daily = p.daily);
    one(&|q| q.weekly = p.weekly);
    one(&|q| q.monthly = p.monthly);
    one(&|q| q.yearly = p.yearly);
    one(&|q| q.within = p.within);
    one(&|q| q.labels = p.labels.clone());
    out
}

fn statuses() -> impl Strategy<Value = Option<RunStatus>> {
    prop_oneof![
        4 => Just(None),
        2 => Just(Some(RunStatus::Complete)),
        2 => Just(Some(RunStatus::Validated)),
        1 => Just(Some(RunStatus::Failed)),
        1 => Just(Some(RunStatus::Inconsistent)),
        1 => Just(Some(RunStatus::Pending)),
    ]
}

prop_compose! {
    fn candidates()(
        gaps in prop::collection::vec(0i64..(40 * DAY), 1..120),
        marks in prop::collection::vec(
            (statuses(), prop::option::of(0usize..3), any::<bool>(), prop::option::of(-400i64..400)),
            120,
        ),
    ) -> Vec<Candidate> {
        let mut time = at("2022-01-01T00:00:00Z");
        gaps.iter().zip(marks).enumerate().map(|(i, (gap, (status, label, held, lock)))| {
            time += gap;
            Candidate {
                seq: i as u64 + 1,
                time,
                label: label.map(|l| ["a", "b", "c"][l].to_owned()),
                status,
                held: held && i % 7 == 0,
                locked_until: lock.map(|days| time + days * DAY),
            }
        }).collect()
    }
}

prop_compose! {
    fn policies()(
        counts in prop::collection::vec(prop::option::of(1u32..15), 6),
        within in prop::option::of(0u64..(90 * DAY as u64)),
        labels in prop::collection::vec(prop_oneof![Just("a"), Just("c"), Just("z")], 0..2),
        inspect in 0u64..(30 * DAY as u64),
    ) -> Policy {
        Policy {
            last: counts[0],
            hourly: counts[1],
            daily: counts[2],
            weekly: counts[3],
            monthly: counts[4],
            yearly: counts[5],
            within: within.map(Duration::from_secs),
            labels: labels.into_iter().map(String::from).collect(),
            inspect: Duration::from_secs(inspect),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The kept set is the union of what each rule keeps alone, plus what
    /// is held, locked, under inspection or the newest; nothing held or
    /// locked is ever removed; a snapshot is kept exactly when it has a
    /// reason.
    #[test]
    fn the_kept_set_is_the_union_of_the_rules_and_holds_and_locks_always_win(
        snaps in candidates(),
        policy in policies(),
        offset in 0i64..(800 * DAY),
    ) {
        prop_assume!(policy.check().is_ok());
        let now = at("2022-01-01T00:00:00Z") + offset;
        let tz = berlin();
        let all = decide(&snaps, &policy, now, &tz).unwrap();
        let kept_all: BTreeSet<u64> = kept(&all).into_iter().collect();
        let mut union = BTreeSet::new();
        for rule in rules_alone(&policy) {
            union.extend(kept(&decide(&snaps, &rule, now, &tz).unwrap()));
        }
        prop_assert_eq!(&kept_all, &union);
        for (c, v) in snaps.iter().zip(&all) {
            prop_assert_eq!(c.seq, v.seq);
            prop_assert_eq!(v.keep, !v.reasons.is_empty());
            if c.held || c.locked_until.is_some_and(|u| u > now) {
                prop_assert!(v.keep, "held or locked snapshot {} removed", c.seq);
            }
            if !c.is_good() {
                let counted = v.reasons.iter().any(|r| matches!(
                    r,
                    Reason::Last(_) | Reason::Period(..) | Reason::Within | Reason::Newest
                ));
                prop_assert!(!counted, "snapshot {} of a bad run counted: {:?}", c.seq, v.reasons);
            }
        }
    }
}
