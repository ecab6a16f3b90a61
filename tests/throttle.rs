//! The throttle as the daemon uses it: admit, set/clear, adapt, status, on a
//! simulated clock (no test here measures wall-clock time); the
//! configuration; the real pressure files; the real cgroup v2 hierarchy.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strata::policy::throttle::adaptive::{read_psi_file, PsiSource};
use strata::policy::throttle::cgroup::{self, IoPolicy, IoPriorityError};
use strata::policy::throttle::{
    ByteRate, Limits, LocalTime, OpsRate, PressureSample, Sampler, SimClock, Throttle,
    ThrottleConfigError, ThrottlePolicy, Weekday,
};
use strata::sys::ioprio::IoClass;
use tier::Tier;
use Weekday::*;

#[path = "common/tier.rs"]
mod tier;

const MIB: u64 = 1024 * 1024;

fn at(day: Weekday, h: u32, m: u32, s: u32) -> SimClock {
    SimClock::new(LocalTime::at(day, h, m, s))
}

fn throttle(toml: &str, clock: &SimClock) -> Throttle {
    let policy = ThrottlePolicy::from_toml(toml).unwrap_or_else(|e| panic!("{e}"));
    Throttle::new(policy, Arc::new(clock.clone()))
}

/// Sends `n` requests of `size` one after another, each waiting out its delay
/// (as a sequential writer such as cp or rsync does); returns the total delay.
fn write_sequentially(t: &Throttle, clock: &SimClock, n: usize, size: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..n {
        let d = t.admit(size);
        total += d;
        clock.advance(d);
    }
    total
}

#[test]
fn fifty_mib_at_ten_mib_per_second_takes_four_seconds_of_delay() {
    let clock = at(Mon, 3, 0, 0);
    let t = throttle("[throttle]\nrate = \"10MiB/s\"", &clock);
    let total = write_sequentially(&t, &clock, 50, MIB);
    // One second of burst (10 MiB) passes at once; the other 40 MiB take 4 s.
    assert_eq!(total, Duration::from_secs(4));
    let s = t.status();
    assert_eq!(s.total_delay, total);
    assert_eq!(s.delayed_requests, 40);
    assert_eq!((s.requests, s.bytes), (50, 50 * MIB));
    assert_eq!(s.reason, "default limit");
}

#[test]
fn smaller_burst_means_more_delay() {
    let clock = at(Mon, 3, 0, 0);
    let t = throttle("[throttle]\nrate = \"10MiB/s\"\nburst = \"500ms\"", &clock);
    assert_eq!(
        write_sequentially(&t, &clock, 50, MIB),
        Duration::from_millis(4500)
    );
}

#[test]
fn burst_refills_only_to_its_size_after_idling() {
    let clock = at(Mon, 3, 0, 0);
    let t = throttle("[throttle]\nrate = \"4MiB/s\"\nburst = \"2s\"", &clock);
    write_sequentially(&t, &clock, 20, MIB);
    clock.advance(Duration::from_secs(3600));
    // An hour idle still allows only 2 s × 4 MiB/s = 8 MiB at once.
    for i in 0..8 {
        assert_eq!(t.admit(MIB), Duration::ZERO, "request {i}");
    }
    assert_eq!(t.admit(MIB), Duration::from_millis(250));
}

#[test]
fn no_delay_exceeds_the_cap_even_with_many_writers_at_once() {
    let clock = at(Mon, 3, 0, 0);
    let t = Arc::new(throttle(
        "[throttle]\nrate = \"1MiB/s\"\nmax_delay = \"300ms\"",
        &clock,
    ));
    // Eight threads, 200 requests each, all at the same instant.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || (0..200).map(|_| t.admit(128 * 1024)).max().unwrap())
        })
        .collect();
    let worst = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap();
    assert_eq!(worst, Duration::from_millis(300));
    let s = t.status();
    assert_eq!(s.requests, 1600);
    assert_eq!(s.max_delay, Duration::from_millis(300));
}

#[test]
fn ops_limit_delays_small_requests() {
    let clock = at(Mon, 3, 0, 0);
    let t = throttle("[throttle]\nops = \"100/s\"", &clock);
    // 100 requests of burst, then 10 ms each for 200 more.
    assert_eq!(
        write_sequentially(&t, &clock, 300, 1),
        Duration::from_secs(2)
    );
    // The byte rate is unlimited: one huge request costs one operation.
    clock.advance(Duration::from_secs(10));
    assert_eq!(t.admit(10_000 * MIB), Duration::ZERO);
}

#[test]
fn the_slower_of_bytes_and_ops_decides() {
    let clock = at(Mon, 3, 0, 0);
    let t = throttle(
        "[throttle]\nrate = \"1MiB/s\"\nops = \"10/s\"\nburst = \"1s\"",
        &clock,
    );
    // 1 KiB requests: ops bind (10/s), bytes would allow 1024/s.
    assert_eq!(
        write_sequentially(&t, &clock, 30, 1024),
        Duration::from_secs(2)
    );
}

const SCHEDULE: &str = r#"
[throttle]
rate = "50MiB/s"

[[throttle.profile]]
name = "business-hours"
days = ["mon-fri"]
from = "07:00"
to = "19:00"
rate = "20MiB/s"

[[throttle.profile]]
name = "nights"
from = "22:00"
to = "06:00"
"#;

fn limit_and_reason(t: &Throttle) -> (Option<u64>, String) {
    let s = t.status();
    (s.effective.bytes.map(ByteRate::get), s.reason)
}

#[test]
fn profiles_switch_exactly_at_their_edges() {
    let clock = at(Mon, 6, 59, 58);
    let t = throttle(SCHEDULE, &clock);
    assert_eq!(
        limit_and_reason(&t),
        (Some(50 * MIB), "default limit".into())
    );
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        limit_and_reason(&t),
        (Some(20 * MIB), "profile business-hours".into())
    );
    clock.advance(Duration::from_secs(12 * 3600 - 1)); // 18:59:59
    assert_eq!(t.status().profile.as_deref(), Some("business-hours"));
    clock.advance(Duration::from_secs(1)); // 19:00
    assert_eq!(
        limit_and_reason(&t),
        (Some(50 * MIB), "default limit".into())
    );
    clock.advance(Duration::from_secs(3 * 3600)); // 22:00, nights: unlimited
    assert_eq!(limit_and_reason(&t), (None, "profile nights".into()));
    assert_eq!(t.status().effective, Limits::UNLIMITED);
}

#[test]
fn admit_follows_a_profile_edge_without_status_being_asked() {
    // Nights (unlimited) end at 06:00; 06:00-07:00 is the default 50 MiB/s.
    let clock = at(Tue, 5, 59, 59);
    let t = throttle(SCHEDULE, &clock);
    assert_eq!(t.admit(1000 * MIB), Duration::ZERO);
    clock.advance(Duration::from_secs(1));
    // The bucket starts full (50 MiB); 1000 MiB is far more: the cap.
    assert_eq!(t.admit(1000 * MIB), Duration::from_secs(1));
}

#[test]
fn night_window_crosses_midnight_and_weekdays_decide_business_hours() {
    let clock = at(Fri, 23, 59, 59);
    let t = throttle(SCHEDULE, &clock);
    assert_eq!(t.status().profile.as_deref(), Some("nights"));
    clock.advance(Duration::from_secs(1)); // Sat 00:00
    assert_eq!(t.status().profile.as_deref(), Some("nights"));
    clock.advance(Duration::from_secs(6 * 3600 - 1)); // Sat 05:59:59
    assert_eq!(t.status().profile.as_deref(), Some("nights"));
    clock.advance(Duration::from_secs(1)); // Sat 06:00
    assert_eq!(
        limit_and_reason(&t),
        (Some(50 * MIB), "default limit".into())
    );
    clock.advance(Duration::from_secs(4 * 3600)); // Sat 10:00: no business hours
    assert_eq!(
        limit_and_reason(&t),
        (Some(50 * MIB), "default limit".into())
    );
    clock.advance(Duration::from_secs(2 * 86_400)); // Mon 10:00
    assert_eq!(t.status().profile.as_deref(), Some("business-hours"));
}

#[test]
fn override_replaces_profiles_until_it_expires_or_is_cleared() {
    let clock = at(Wed, 10, 0, 0);
    let t = throttle(SCHEDULE, &clock);
    let five = Limits {
        bytes: Some(ByteRate(5 * MIB)),
        ops: None,
    };
    t.set(five, Some(Duration::from_secs(2 * 3600)));
    let s = t.status();
    assert_eq!(s.effective, five);
    assert_eq!(s.reason, "override for 2h more");
    assert_eq!(s.override_remaining, Some(Duration::from_secs(7200)));
    clock.advance(Duration::from_secs(3600) + Duration::from_millis(1));
    assert_eq!(t.status().reason, "override for 1h more");
    // The write path sees the override: 5 MiB of burst, then 200 ms per MiB.
    assert_eq!(
        write_sequentially(&t, &clock, 7, MIB),
        Duration::from_millis(400)
    );
    clock.advance(Duration::from_secs(3600));
    // Expired: admit is back on the profile's 20 MiB/s, 50 ms per MiB once
    // the 5 MiB the bucket held are spent (a raised limit keeps the tokens
    // held, it does not grant a new burst).
    assert_eq!(
        write_sequentially(&t, &clock, 20, MIB),
        Duration::from_millis(750)
    );
    assert_eq!(
        limit_and_reason(&t),
        (Some(20 * MIB), "profile business-hours".into())
    );
    assert_eq!(t.status().override_limits, None);
    // Until cleared.
    t.set(Limits::UNLIMITED, None);
    assert_eq!(
        limit_and_reason(&t),
        (None, "override until cleared".into())
    );
    clock.advance(Duration::from_secs(30 * 86_400));
    assert_eq!(t.status().reason, "override until cleared");
    assert!(t.clear());
    assert!(!t.clear());
    assert_eq!(t.status().profile.as_deref(), Some("business-hours"));
}

const ADAPTIVE: &str = r#"
[throttle]
rate = "20MiB/s"
[throttle.adaptive]
psi = "io"
threshold = "10%"
min_rate = "1MiB/s"
increase = "3MiB/s"
"#;

fn io(pct: f64) -> PressureSample {
    PressureSample {
        io: Some(pct),
        ..Default::default()
    }
}

#[test]
fn adaptive_backs_off_multiplicatively_and_recovers_additively() {
    let clock = at(Mon, 3, 0, 0);
    let t = throttle(ADAPTIVE, &clock);
    // A writer that keeps up with the limit.
    write_sequentially(&t, &clock, 60, MIB);
    let mut rates = vec![];
    for _ in 0..7 {
        t.adapt(&io(23.5));
        clock.advance(Duration::from_secs(5));
        rates.push(t.status().effective.bytes.unwrap().get() as f64 / MIB as f64);
    }
    // Starts from the achieved 20 MiB/s; halves to the 1 MiB/s floor.
    assert_eq!(rates, [10.0, 5.0, 2.5, 1.25, 1.0, 1.0, 1.0]);
    assert_eq!(
        t.status().reason,
        "adaptive: io pressure 23.5% > 10% (otherwise default limit)"
    );
    // The write path follows: at 1 MiB/s a 1 MiB request waits a second.
    clock.advance(Duration::from_secs(10));
    write_sequentially(&t, &clock, 1, MIB);
    assert_eq!(t.admit(MIB), Duration::from_secs(1));

    let mut rates = vec![];
    for _ in 0..8 {
        t.adapt(&io(2.0));
        rates.push(t.status().effective.bytes.unwrap().get() / MIB);
    }
    // +3 MiB/s per calm interval, then the configured 20 MiB/s again.
    assert_eq!(rates, [4, 7, 10, 13, 16, 19, 20, 20]);
    let s = t.status();
    assert_eq!(s.adaptive_rate, None);
    assert_eq!(s.reason, "default limit");
}

#[test]
fn adaptive_holds_when_pressure_cannot_be_read() {
    let clock = at(Mon, 3, 0, 0);
    let t = throttle(ADAPTIVE, &clock);
    t.adapt(&io(50.0));
    let before = t.status().effective;
    let blind = PressureSample {
        unavailable: vec!["/proc/pressure/io: gone".into()],
        ..Default::default()
    };
    t.adapt(&blind);
    let s = t.status();
    assert_eq!(s.effective, before);
    assert!(
        s.reason.contains("holding, /proc/pressure/io: gone"),
        "{}",
        s.reason
    );
}

#[test]
fn adaptive_never_exceeds_an_override_or_profile() {
    let clock = at(Mon, 3, 0, 0);
    let t = throttle(ADAPTIVE, &clock);
    t.adapt(&io(50.0)); // nothing written: straight to the floor
    assert_eq!(t.status().effective.bytes, Some(ByteRate(MIB)));
    t.set(
        Limits {
            bytes: Some(ByteRate(2 * MIB)),
            ops: None,
        },
        None,
    );
    t.adapt(&io(0.0)); // 1 + 3 >= 2: released to the override
    let s = t.status();
    assert_eq!(s.effective.bytes, Some(ByteRate(2 * MIB)));
    assert_eq!(s.reason, "override until cleared");
}

#[test]
fn achieved_rate_reports_what_was_admitted() {
    let clock = at(Mon, 3, 0, 0);
    let t = throttle("[throttle]\nrate = \"10MiB/s\"", &clock);
    write_sequentially(&t, &clock, 100, MIB);
    let s = t.status();
    // Steady state after the burst: 10 MiB/s and 10 requests/s.
    let bps = s.achieved_bytes_per_sec / MIB as f64;
    assert!((bps - 10.0).abs() < 0.5, "{bps} MiB/s");
    assert!(
        (s.achieved_ops_per_sec - 10.0).abs() < 0.5,
        "{}",
        s.achieved_ops_per_sec
    );
    // Idle for longer than the window: nothing achieved.
    clock.advance(s.window + Duration::from_secs(1));
    let s = t.status();
    assert_eq!(
        (s.achieved_bytes_per_sec, s.achieved_ops_per_sec),
        (0.0, 0.0)
    );
    assert_eq!(s.requests, 100);
}

#[test]
fn unlimited_admits_everything_at_once_and_still_counts() {
    let clock = at(Mon, 3, 0, 0);
    let t = Throttle::new(ThrottlePolicy::unlimited(), Arc::new(clock.clone()));
    for _ in 0..1000 {
        assert_eq!(t.admit(MIB), Duration::ZERO);
    }
    clock.advance(Duration::from_secs(1));
    let s = t.status();
    assert_eq!(s.reason, "unlimited");
    assert_eq!(s.bytes, 1000 * MIB);
    assert!(s.achieved_bytes_per_sec > 0.0);
}

#[test]
fn status_round_trips_through_json() {
    let clock = at(Mon, 8, 0, 0);
    let t = throttle(SCHEDULE, &clock);
    write_sequentially(&t, &clock, 30, MIB);
    let s = t.status();
    let json = serde_json::to_string(&s).unwrap();
    let back: strata::policy::throttle::ThrottleStatus = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert!(
        json.contains("\"reason\":\"profile business-hours\""),
        "{json}"
    );
}

// ---- configuration ----

#[test]
fn full_config_parses() {
    let text = r#"
[throttle]
rate = "50MiB/s"
ops = "2000/s"
max_delay = "1s"
[[throttle.profile]]
name = "business-hours"
days = ["mon","tue","wed","thu","fri"]
from = "07:00"
to = "19:00"
rate = "20MiB/s"
[throttle.adaptive]
psi = "io"
threshold = "10%"
probe = ["/usr/local/bin/db-latency"]
probe_threshold = "50ms"
interval = "5s"
min_rate = "1MiB/s"
[throttle.io]
weight = 50
max_write = "100MiB/s"
class = "best-effort"

[hooks]
whatever = "belongs to another module"
"#;
    let p = ThrottlePolicy::from_toml(text).unwrap();
    assert_eq!(p.limits.bytes, Some(ByteRate(50 * MIB)));
    assert_eq!(p.limits.ops, Some(OpsRate(2000)));
    assert_eq!(p.max_delay, Duration::from_secs(1));
    let prof = &p.schedule.profiles[0];
    assert_eq!(prof.name, "business-hours");
    assert_eq!(prof.days, [true, true, true, true, true, false, false]);
    assert_eq!(
        (prof.from.to_string(), prof.to.to_string()),
        ("07:00".into(), "19:00".into())
    );
    let a = p.adaptive.unwrap();
    assert_eq!(a.psi, Some(PsiSource::Io));
    assert_eq!(a.threshold, 10.0);
    let probe = a.probe.unwrap();
    assert_eq!(probe.argv, ["/usr/local/bin/db-latency"]);
    assert_eq!(probe.threshold, Duration::from_millis(50));
    assert_eq!(probe.timeout, Duration::from_secs(5));
    assert_eq!(a.aimd.min_rate, ByteRate(MIB));
    assert_eq!(a.aimd.decrease, 0.5);
    let io = p.io.unwrap();
    assert_eq!(io.weight, Some(50));
    assert_eq!(io.max_write, Some(ByteRate(100 * MIB)));
    assert_eq!(io.class, Some(IoClass::BestEffort(7)), "level 7 by default");
    assert!(io.needs_io_controller());
    for (table, class) in [
        ("class = \"idle\"", IoClass::Idle),
        ("class = \"best-effort\"\nlevel = 2", IoClass::BestEffort(2)),
    ] {
        let io = ThrottlePolicy::from_toml(&format!("[throttle.io]\n{table}"))
            .unwrap()
            .io
            .unwrap();
        assert_eq!(io.class, Some(class));
        assert!(!io.needs_io_controller(), "a class alone needs no cgroup");
    }

    // Absent table: unlimited. Plain numbers are bytes/s and requests/s.
    assert_eq!(
        ThrottlePolicy::from_toml("").unwrap(),
        ThrottlePolicy::unlimited()
    );
    let p = ThrottlePolicy::from_toml("[throttle]\nrate = 1048576\nops = 20").unwrap();
    assert_eq!(p.limits.bytes, Some(ByteRate(MIB)));
    assert_eq!(p.limits.ops, Some(OpsRate(20)));
}

#[test]
fn bad_configs_name_key_value_and_what_is_accepted() {
    for (body, key, needles) in [
        (
            "rate = \"20MB/x\"",
            "throttle.rate",
            &["\"20MB/x\"", "MiB/s"][..],
        ),
        ("rate = true", "throttle.rate", &["true", "unlimited"]),
        ("ops = \"fast\"", "throttle.ops", &["\"fast\"", "2000/s"]),
        (
            "max_delay = \"forever\"",
            "throttle.max_delay",
            &["\"forever\"", "duration"],
        ),
        (
            "max_delay = \"5m\"",
            "throttle.max_delay",
            &["\"5m\"", "to 30s"],
        ),
        ("max_delay = 1", "throttle.max_delay", &["= 1:", "\"5s\""]),
        (
            "[[throttle.profile]]\nname = \"x\"\ndays = [\"mon\", \"funday\"]",
            "throttle.profile[0].days",
            &["\"funday\" is not a day", "mon, tue"],
        ),
        (
            "[[throttle.profile]]\nname = \"x\"\nfrom = \"7am\"",
            "throttle.profile[0].from",
            &["\"7am\"", "HH:MM"],
        ),
        (
            "[[throttle.profile]]\nname = \"x\"\nfrom = \"07:00\"\nto = \"07:00\"",
            "throttle.profile[0].to",
            &["empty"],
        ),
        (
            "[[throttle.profile]]\nname = \"a\"\n[[throttle.profile]]\nname = \"a\"",
            "throttle.profile[1].name",
            &["another profile"],
        ),
        (
            "[[throttle.profile]]\nfrom = \"07:00\"",
            "throttle.profile[0].name",
            &["required"],
        ),
        (
            "[throttle.adaptive]\npsi = \"disk\"",
            "throttle.adaptive.psi",
            &["\"disk\"", "\"both\""],
        ),
        (
            "[throttle.adaptive]\ninterval = \"5s\"",
            "throttle.adaptive.psi or",
            &["required"],
        ),
        (
            "[throttle.adaptive]\npsi = \"io\"\nthreshold = \"150%\"",
            "throttle.adaptive.threshold",
            &["\"150%\"", "at most 100"],
        ),
        (
            "[throttle.adaptive]\nprobe = [\"db-latency\"]\nprobe_threshold = \"5ms\"",
            "throttle.adaptive.probe",
            &["absolute path"],
        ),
        (
            "[throttle.adaptive]\nprobe = [\"/bin/true\"]",
            "throttle.adaptive.probe_threshold",
            &["required", "50ms"],
        ),
        (
            "[throttle.adaptive]\npsi = \"io\"\nprobe_threshold = \"5ms\"",
            "throttle.adaptive.probe_threshold",
            &["without throttle.adaptive.probe"],
        ),
        (
            "[throttle.adaptive]\npsi = \"io\"\ndecrease = 1.5",
            "throttle.adaptive.decrease",
            &["1.5", "between 0 and 1"],
        ),
        (
            "[throttle.adaptive]\npsi = \"io\"\nmin_rate = \"unlimited\"",
            "throttle.adaptive.min_rate",
            &["finite"],
        ),
        (
            "[throttle.io]\nweight = 0",
            "throttle.io.weight",
            &["= 0", "1 to 10000"],
        ),
        (
            "[throttle.io]\nmax_write = \"lots\"",
            "throttle.io.max_write",
            &["\"lots\""],
        ),
        (
            "[throttle.io]\nclass = \"realtime\"",
            "throttle.io.class",
            &["\"realtime\"", "idle", "best-effort"],
        ),
        (
            "[throttle.io]\nclass = \"best-effort\"\nlevel = 8",
            "throttle.io.level",
            &["= 8", "0 (highest) to 7"],
        ),
        (
            "[throttle.io]\nclass = \"idle\"\nlevel = 3",
            "throttle.io.level",
            &["no levels"],
        ),
        (
            "[throttle.io]\nlevel = 3",
            "throttle.io.class",
            &["best-effort"],
        ),
    ] {
        let text = format!("[throttle]\n{body}");
        let text = text.replace("[throttle]\n[", "[");
        let err = ThrottlePolicy::from_toml(&text).expect_err(&text);
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                ThrottleConfigError::Invalid { .. } | ThrottleConfigError::Missing { .. }
            ),
            "{text}: {msg}"
        );
        assert!(msg.contains(key), "{text}: {msg} does not name {key}");
        for n in needles {
            assert!(msg.contains(n), "{text}: {msg} does not say {n:?}");
        }
    }
}

#[test]
fn unknown_keys_are_refused_by_name() {
    for (text, key) in [
        ("[throttle]\nrat = \"1MiB/s\"", "rat"),
        ("[[throttle.profile]]\nname = \"a\"\nrates = 1", "rates"),
        (
            "[throttle.adaptive]\npsi = \"io\"\nthreshhold = 5",
            "threshhold",
        ),
        ("[throttle.io]\nwieght = 5", "wieght"),
    ] {
        let err = ThrottlePolicy::from_toml(text).unwrap_err();
        assert!(matches!(err, ThrottleConfigError::Syntax(_)), "{err}");
        assert!(err.to_string().contains(key), "{err}");
    }
}

// ---- the real machine ----

#[test]
fn real_pressure_files_parse() {
    if tier::missing(&[Tier::Pressure]) {
        return;
    }
    for name in ["io", "cpu"] {
        let path = Path::new("/proc/pressure").join(name);
        let psi = read_psi_file(&path).unwrap_or_else(|e| {
            panic!("this test needs a kernel with pressure stall information: {e}")
        });
        for v in [psi.some.avg10, psi.some.avg60, psi.some.avg300] {
            assert!((0.0..=100.0).contains(&v), "{name}: {v}");
        }
    }
    let policy = ThrottlePolicy::from_toml("[throttle.adaptive]\npsi = \"both\"")
        .unwrap()
        .adaptive
        .unwrap();
    let s = Sampler::new(policy).sample();
    assert!(s.io.is_some() && s.cpu.is_some(), "{s:?}");
    assert!(s.unavailable.is_empty(), "{:?}", s.unavailable);
}

/// A child process to move between cgroups; killed on drop.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(
            std::process::Command::new("sleep")
                .arg("600")
                .spawn()
                .unwrap(),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn test_cgroup_name(what: &str) -> String {
    format!("strata-test-{what}-{}", std::process::id())
}

#[test]
fn cgroup_v2_child_holds_a_moved_process_and_is_removed() {
    if tier::missing(&[Tier::Cgroup]) {
        return;
    }
    let root = cgroup::cgroup2_mount()
        .unwrap_or_else(|e| panic!("this test needs a cgroup v2 hierarchy: {e}"));
    let child = Sleeper::start();
    let before = cgroup::cgroup_of(child.pid()).unwrap();
    let name = test_cgroup_name("move");
    let placed = cgroup::place(child.pid(), &name, &IoPolicy::default(), Path::new("/"))
        .unwrap_or_else(|e| panic!("cgroup v2 at {} is not writable here: {e}", root.display()));
    assert!(placed.created);
    let now = cgroup::cgroup_of(child.pid()).unwrap();
    assert!(now.ends_with(&format!("/{name}")), "{now}");
    let procs = std::fs::read_to_string(placed.cgroup.join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), child.pid().to_string());
    placed.undo().unwrap();
    assert_eq!(cgroup::cgroup_of(child.pid()).unwrap(), before);
    assert!(!placed.cgroup.exists());
}

/// io.max on the repository's disk, for real, where cgroup v2 has the io
/// controller. Where it has not (a hybrid cgroup v1/v2 machine, like the
/// one this was written on), placement must fail with exactly that reason
/// and leave no cgroup behind: the daemon then reports it and relies on the
/// write throttle alone.
#[test]
fn cgroup_v2_io_max_applies_to_the_repository_device_or_says_why_not() {
    if tier::missing(&[Tier::Cgroup]) {
        return;
    }
    let repo = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dev = cgroup::device_of(repo.path()).unwrap_or_else(|e| panic!("{e}"));
    let child = Sleeper::start();
    let policy = IoPolicy {
        weight: Some(50),
        max_write: Some(ByteRate(100 * MIB)),
        max_read: None,
        class: None,
    };
    let name = test_cgroup_name("io");
    let io_controller = cgroup::cgroup2_mount()
        .ok()
        .and_then(|m| std::fs::read_to_string(m.join("cgroup.controllers")).ok())
        .is_some_and(|c| c.split_whitespace().any(|c| c == "io"));
    match cgroup::place(child.pid(), &name, &policy, repo.path()) {
        Ok(placed) => {
            assert!(io_controller, "placed without an io controller");
            let io_max = std::fs::read_to_string(placed.cgroup.join("io.max")).unwrap();
            let undo = placed.undo();
            assert!(
                io_max.lines().any(|l| l.starts_with(&format!("{dev} "))
                    && l.contains(&format!("wbps={}", 100 * MIB))
                    && l.contains("rbps=max")),
                "io.max reads {io_max:?}"
            );
            assert_eq!(
                placed.io_max.as_deref(),
                io_max.lines().find(|l| l.starts_with(&format!("{dev} ")))
            );
            undo.unwrap();
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !io_controller,
                "cgroup v2 has the io controller, yet: {msg}"
            );
            assert!(matches!(e, IoPriorityError::NotAvailable(_)), "{msg}");
            let parent = cgroup::cgroup_of(child.pid()).unwrap();
            if let Ok(root) = cgroup::cgroup2_mount() {
                let left = root.join(parent.trim_start_matches('/')).join(&name);
                assert!(
                    !left.exists(),
                    "a failed placement left {} behind",
                    left.display()
                );
            }
        }
    }
}

#[test]
fn adaptive_task_samples_the_real_pressure_files() {
    if tier::missing(&[Tier::Pressure]) {
        return;
    }
    let policy = ThrottlePolicy::from_toml(
        "[throttle]\nrate = \"20MiB/s\"\n[throttle.adaptive]\npsi = \"both\"\ninterval = \"100ms\"",
    )
    .unwrap();
    let t = Arc::new(Throttle::with_system_clock(policy));
    let task = strata::policy::throttle::AdaptiveTask::spawn(t.clone()).expect("adaptive policy");
    // Wait for the first sample (not a timing assertion: the deadline is
    // only there so a broken sampler fails instead of hanging).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let verdict = loop {
        if let Some(v) = t.status().adaptive_verdict {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no sample within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(task);
    assert!(
        matches!(
            verdict,
            strata::policy::throttle::Verdict::Over(_)
                | strata::policy::throttle::Verdict::Under(_)
        ),
        "{verdict:?}"
    );
    assert!(verdict.detail().contains("pressure"), "{verdict:?}");
    // Without adaptive mode there is no task.
    let plain = Arc::new(Throttle::with_system_clock(ThrottlePolicy::unlimited()));
    assert!(strata::policy::throttle::AdaptiveTask::spawn(plain).is_none());
}
