//! Adaptive mode: back off when the machine is under pressure.
//!
//! Two sources say "the system is suffering": Linux pressure stall
//! information (`/proc/pressure/io`, `/proc/pressure/cpu`, the `some avg10`
//! figure: the share of the last ten seconds in which at least one task was
//! stalled on that resource), and an optional probe command whose latency
//! stands for the foreground workload (a query against the clinical database,
//! often on another host, since the copy's source is often elsewhere).
//!
//! The controller is AIMD, as in TCP congestion control: every interval,
//! when any source is above its threshold the adaptive rate is multiplied by
//! `decrease` (never below `min_rate`); when all are below, it grows by
//! `increase` until it reaches the limit that would be in force without it,
//! and then it lets go. A source that cannot be read this interval holds the
//! rate where it is. [`Aimd::step`] and [`AdaptivePolicy::judge`] are pure
//! functions of their inputs; [`Sampler`] reads the real sources.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::rate::ByteRate;
use crate::sys::process::{Capture, Ended, Program};

/// Where the kernel publishes pressure stall information.
pub const PSI_DIR: &str = "/proc/pressure";

/// The PATH a probe runs with (its environment is otherwise empty).
pub const PROBE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which pressure files to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PsiSource {
    /// `/proc/pressure/io`.
    Io,
    /// `/proc/pressure/cpu`.
    Cpu,
    /// Both; either above the threshold counts.
    Both,
}

impl PsiSource {
    fn reads_io(self) -> bool {
        matches!(self, PsiSource::Io | PsiSource::Both)
    }
    fn reads_cpu(self) -> bool {
        matches!(self, PsiSource::Cpu | PsiSource::Both)
    }
}

/// One line of a pressure file.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PsiLine {
    /// Percent of the last 10 s stalled.
    pub avg10: f64,
    /// Percent of the last 60 s stalled.
    pub avg60: f64,
    /// Percent of the last 300 s stalled.
    pub avg300: f64,
    /// Total stall time, microseconds.
    pub total_us: u64,
}

/// A parsed pressure file.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Psi {
    /// Some task stalled.
    pub some: PsiLine,
    /// All non-idle tasks stalled (absent for cpu before Linux 5.13).
    pub full: Option<PsiLine>,
}

/// A pressure file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PsiError {
    /// The file is not there or cannot be read.
    #[error("{path}: pressure stall information is not available ({reason})")]
    Unavailable {
        /// The file.
        path: PathBuf,
        /// Why, for the operator.
        reason: String,
    },
    /// The text is not in the kernel's format.
    #[error("{path}: not in the pressure stall format: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: PsiFormatError,
    },
}

/// What is wrong with the text of a pressure file (lines count from 1).
#[derive(Debug, thiserror::Error)]
pub enum PsiFormatError {
    /// A line that is neither `some` nor `full`.
    #[error("line {line}: unknown kind {kind:?}")]
    UnknownKind {
        /// The line.
        line: usize,
        /// Its first word.
        kind: String,
    },
    /// A second `some` or `full` line.
    #[error("line {line}: second {kind:?} line")]
    Repeated {
        /// The line.
        line: usize,
        /// `some` or `full`.
        kind: String,
    },
    /// A word that is not `key=value`.
    #[error("line {line}: {word:?} is not key=value")]
    NotKeyValue {
        /// The line.
        line: usize,
        /// The word.
        word: String,
    },
    /// An average that is not a percentage.
    #[error("line {line}: {key}={value:?} is not a percentage")]
    NotPercentage {
        /// The line.
        line: usize,
        /// `avg10`, `avg60` or `avg300`.
        key: String,
        /// The value.
        value: String,
    },
    /// A total that is not a count.
    #[error("line {line}: total={value:?} is not a count of microseconds")]
    NotMicroseconds {
        /// The line.
        line: usize,
        /// The value.
        value: String,
    },
    /// A line without one of the four known fields.
    #[error("line {line}: {kind} has no {field}")]
    Missing {
        /// The line.
        line: usize,
        /// `some` or `full`.
        kind: String,
        /// The field.
        field: &'static str,
    },
    /// No `some` line at all.
    #[error("no \"some\" line")]
    NoSome,
}

/// Why a probe command gave no reading.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No command configured.
    #[error("probe command is empty")]
    Empty,
    /// It did not start.
    #[error("probe {program}: cannot start: {source}")]
    Start {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Waiting for it failed.
    #[error("probe {program}: waiting for it: {source}")]
    Lost {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited unsuccessfully: it could not measure.
    #[error("probe {program} failed ({status})")]
    Failed {
        /// The program.
        program: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
}

/// Parses the text of a pressure file:
/// `some avg10=0.36 avg60=0.17 avg300=0.52 total=526389369` and optionally a
/// `full` line of the same shape. Unknown fields are ignored (the kernel may
/// add some); the four known ones are required on each line.
pub fn parse_psi(text: &str) -> Result<Psi, PsiFormatError> {
    let mut some = None;
    let mut full = None;
    for (n, words) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line = n + 1;
        let mut words = words.split_whitespace();
        let kind = words.next().unwrap_or_default();
        let slot = match kind {
            "some" => &mut some,
            "full" => &mut full,
            other => {
                return Err(PsiFormatError::UnknownKind {
                    line,
                    kind: other.to_owned(),
                })
            }
        };
        if slot.is_some() {
            return Err(PsiFormatError::Repeated {
                line,
                kind: kind.to_owned(),
            });
        }
        let (mut a10, mut a60, mut a300, mut total) = (None, None, None, None);
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| PsiFormatError::NotKeyValue {
                    line,
                    word: w.to_owned(),
                })?;
            let pct = || -> Result<f64, PsiFormatError> {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && (0.0..=100.0).contains(x))
                    .ok_or_else(|| PsiFormatError::NotPercentage {
                        line,
                        key: k.to_owned(),
                        value: v.to_owned(),
                    })
            };
            match k {
                "avg10" => a10 = Some(pct()?),
                "avg60" => a60 = Some(pct()?),
                "avg300" => a300 = Some(pct()?),
                "total" => {
                    total = Some(
                        v.parse::<u64>()
                            .map_err(|_| PsiFormatError::NotMicroseconds {
                                line,
                                value: v.to_owned(),
                            })?,
                    )
                }
                _ => {}
            }
        }
        let missing = |field| PsiFormatError::Missing {
            line,
            kind: kind.to_owned(),
            field,
        };
        *slot = Some(PsiLine {
            avg10: a10.ok_or_else(|| missing("avg10"))?,
            avg60: a60.ok_or_else(|| missing("avg60"))?,
            avg300: a300.ok_or_else(|| missing("avg300"))?,
            total_us: total.ok_or_else(|| missing("total"))?,
        });
    }
    Ok(Psi {
        some: some.ok_or(PsiFormatError::NoSome)?,
        full,
    })
}

/// Reads and parses one pressure file.
pub fn read_psi_file(path: &Path) -> Result<Psi, PsiError> {
    let text = std::fs::read_to_string(path).map_err(|e| PsiError::Unavailable {
        path: path.to_path_buf(),
        reason: match e.raw_os_error() {
            Some(libc::ENOENT) => {
                "no such file: the kernel lacks CONFIG_PSI, or it is older than 4.20".into()
            }
            Some(libc::EOPNOTSUPP) => {
                "the kernel has PSI switched off; boot with psi=1 to enable it".into()
            }
            _ => e.to_string(),
        },
    })?;
    parse_psi(&text).map_err(|source| PsiError::Malformed {
        path: path.to_path_buf(),
        source,
    })
}

/// The reading of a probe command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReading {
    /// The latency it printed, or else its wall time; the timeout when it
    /// timed out.
    #[serde(with = "super::secs")]
    pub latency: Duration,
    /// Whether it was killed at the timeout.
    pub timed_out: bool,
}

/// What the sources said this interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PressureSample {
    /// `some avg10` of io, percent, when read.
    pub io: Option<f64>,
    /// `some avg10` of cpu, percent, when read.
    pub cpu: Option<f64>,
    /// The probe, when it ran and succeeded or timed out.
    pub probe: Option<ProbeReading>,
    /// Why a configured source gave nothing this time.
    pub unavailable: Vec<String>,
}

/// What a sample means for the rate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Some source is above its threshold: back off. Says which.
    Over(String),
    /// Every source read is below its threshold: recover.
    Under(String),
    /// No source could be read: hold.
    Unknown(String),
}

impl Verdict {
    /// The explanation.
    pub fn detail(&self) -> &str {
        match self {
            Verdict::Over(s) | Verdict::Under(s) | Verdict::Unknown(s) => s,
        }
    }
}

/// The additive-increase, multiplicative-decrease rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aimd {
    /// The adaptive rate never goes below this (bytes/s).
    pub min_rate: ByteRate,
    /// Factor applied on pressure, `0 < decrease < 1`.
    pub decrease: f64,
    /// Added per calm interval (bytes/s).
    pub increase: ByteRate,
}

impl Aimd {
    /// The adaptive rate after one interval.
    ///
    /// `current` is the adaptive rate (`None`: not limiting), `ceiling` the
    /// limit in force without adaptation (`None`: unlimited), `achieved` the
    /// bytes/s actually written lately. On pressure with no adaptive rate
    /// yet, the decrease starts from what is being achieved (clamped to
    /// `min_rate..=ceiling`), so the first back-off bites at once rather than
    /// after several halvings of an unused ceiling. On calm, the rate grows
    /// and is released once it reaches the ceiling, or, with no ceiling, once
    /// it is twice what is being achieved (it no longer binds).
    pub fn step(
        &self,
        current: Option<u64>,
        ceiling: Option<u64>,
        achieved: u64,
        verdict: &Verdict,
    ) -> Option<u64> {
        let min = self.min_rate.get();
        match verdict {
            Verdict::Unknown(_) => current,
            Verdict::Over(_) => {
                let base = current.unwrap_or_else(|| {
                    let a = achieved.max(min);
                    ceiling.map_or(a, |c| a.min(c))
                });
                Some(((base as f64 * self.decrease) as u64).max(min))
            }
            Verdict::Under(_) => {
                let next = current?.saturating_add(self.increase.get());
                let released = match ceiling {
                    Some(c) => next >= c,
                    None => next >= achieved.saturating_mul(2).max(1),
                };
                (!released).then_some(next)
            }
        }
    }
}

/// How to run the probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Program (absolute path) and arguments.
    pub argv: Vec<String>,
    /// Killed after this long; counts as a latency of `timeout`.
    pub timeout: Duration,
    /// Latency above this is pressure.
    pub threshold: Duration,
}

/// The validated `[throttle.adaptive]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptivePolicy {
    /// Which pressure files to read, if any.
    pub psi: Option<PsiSource>,
    /// `some avg10` above this percentage is pressure.
    pub threshold: f64,
    /// The probe, if any.
    pub probe: Option<ProbeSpec>,
    /// How often to sample and step.
    pub interval: Duration,
    /// The rule.
    pub aimd: Aimd,
}

impl AdaptivePolicy {
    /// Compares a sample with the thresholds.
    pub fn judge(&self, s: &PressureSample) -> Verdict {
        let mut over = Vec::new();
        let mut under = Vec::new();
        let t = self.threshold;
        for (name, v) in [("io", s.io), ("cpu", s.cpu)] {
            if let Some(v) = v {
                if v > t {
                    over.push(format!("{name} pressure {v:.1}% > {t}%"));
                } else {
                    under.push(format!("{name} pressure {v:.1}% <= {t}%"));
                }
            }
        }
        if let (Some(p), Some(spec)) = (s.probe, &self.probe) {
            let th = humantime::format_duration(spec.threshold);
            if p.timed_out {
                over.push(format!(
                    "probe timed out after {}",
                    humantime::format_duration(p.latency)
                ));
            } else {
                // Milliseconds with one decimal are what an operator compares.
                let ms = p.latency.as_secs_f64() * 1e3;
                if p.latency > spec.threshold {
                    over.push(format!("probe latency {ms:.1}ms > {th}"));
                } else {
                    under.push(format!("probe latency {ms:.1}ms <= {th}"));
                }
            }
        }
        if !over.is_empty() {
            Verdict::Over(over.join(", "))
        } else if !under.is_empty() {
            Verdict::Under(under.join(", "))
        } else if s.unavailable.is_empty() {
            Verdict::Unknown("no pressure source configured".into())
        } else {
            Verdict::Unknown(s.unavailable.join("; "))
        }
    }
}

/// Reads the real sources of an [`AdaptivePolicy`].
#[derive(Debug, Clone)]
pub struct Sampler {
    policy: AdaptivePolicy,
    psi_dir: PathBuf,
}

impl Sampler {
    /// A sampler reading `/proc/pressure`.
    pub fn new(policy: AdaptivePolicy) -> Sampler {
        Sampler::with_psi_dir(policy, PSI_DIR)
    }

    /// A sampler reading pressure files from `dir` (for tests).
    pub fn with_psi_dir(policy: AdaptivePolicy, dir: impl Into<PathBuf>) -> Sampler {
        Sampler {
            policy,
            psi_dir: dir.into(),
        }
    }

    /// The policy sampled for.
    pub fn policy(&self) -> &AdaptivePolicy {
        &self.policy
    }

    /// Reads the pressure files and runs the probe (blocking for up to its
    /// timeout).
    pub fn sample(&self) -> PressureSample {
        let mut s = PressureSample::default();
        if let Some(src) = self.policy.psi {
            let mut read = |name: &str| match read_psi_file(&self.psi_dir.join(name)) {
                Ok(p) => Some(p.some.avg10),
                Err(e) => {
                    s.unavailable.push(e.to_string());
                    None
                }
            };
            let io = src.reads_io().then(|| read("io")).flatten();
            let cpu = src.reads_cpu().then(|| read("cpu")).flatten();
            (s.io, s.cpu) = (io, cpu);
        }
        if let Some(spec) = &self.policy.probe {
            match run_probe(&spec.argv, spec.timeout) {
                Ok(r) => s.probe = Some(r),
                Err(e) => s.unavailable.push(e.to_string()),
            }
        }
        s
    }
}

/// Runs a probe command: empty environment but [`PROBE_PATH`], stdin from
/// /dev/null, stderr discarded, in its own process group (killed as a group
/// at the timeout). The latency is the last non-empty line of its output
/// when that is a duration ("12ms", "1.5s") or a plain number of
/// milliseconds, and its wall time otherwise. A non-zero exit is an error:
/// the probe could not measure.
pub fn run_probe(argv: &[String], timeout: Duration) -> Result<ProbeReading, ProbeError> {
    let prog = argv.first().ok_or(ProbeError::Empty)?;
    let start = Instant::now();
    let mut child = Program::new(prog, &argv[1..])
        .envs([("PATH", PROBE_PATH)])
        // Only the tail matters; 64 KiB bounds what a chatty probe costs.
        .stdout(Capture::Bytes { keep: 64 * 1024 })
        .start()
        .map_err(|source| ProbeError::Start {
            program: prog.clone(),
            source,
        })?;
    let ended = child.wait(start + timeout);
    let wall = start.elapsed();
    // A grandchild may keep the pipe open; its output is not waited for long.
    let done = child.finish(ended);
    let status = match done.ended {
        Ended::Exited(st) => st,
        Ended::TimedOut(_) | Ended::Interrupted(..) => {
            return Ok(ProbeReading {
                latency: timeout,
                timed_out: true,
            })
        }
        Ended::Lost(source) => {
            return Err(ProbeError::Lost {
                program: prog.clone(),
                source,
            })
        }
    };
    if !status.success() {
        return Err(ProbeError::Failed {
            program: prog.clone(),
            status,
        });
    }
    let last = done.stdout.lines().map(str::trim).rfind(|l| !l.is_empty());
    let latency = last.and_then(parse_latency).unwrap_or(wall);
    Ok(ProbeReading {
        latency,
        timed_out: false,
    })
}

fn parse_latency(s: &str) -> Option<Duration> {
    if let Ok(ms) = s.parse::<f64>() {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1e3));
    }
    humantime::parse_duration(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn parses_kernel_format() {
        let io = "some avg10=23.51 avg60=0.17 avg300=0.52 total=526389369\n\
                  full avg10=0.36 avg60=0.15 avg300=0.38 total=384343757\n";
        let p = parse_psi(io).unwrap();
        assert_eq!(p.some.avg10, 23.51);
        assert_eq!(p.some.total_us, 526_389_369);
        assert_eq!(p.full.unwrap().avg300, 0.38);
        // cpu before 5.13: no full line.
        let cpu = parse_psi("some avg10=2.14 avg60=0.49 avg300=1.19 total=2299544121\n").unwrap();
        assert_eq!(cpu.full, None);
        // A future extra field is ignored.
        let extra =
            parse_psi("some avg10=1.00 avg60=0.00 avg300=0.00 avg3600=0.00 total=5").unwrap();
        assert_eq!(extra.some.avg10, 1.0);
    }

    #[test]
    fn rejects_what_is_not_psi() {
        for (text, needle) in [
            ("", "no \"some\""),
            (
                "full avg10=0.00 avg60=0.00 avg300=0.00 total=0",
                "no \"some\"",
            ),
            ("some avg10=0.00 avg60=0.00 total=0", "avg300"),
            (
                "some avg10=abc avg60=0.00 avg300=0.00 total=0",
                "avg10=\"abc\"",
            ),
            (
                "some avg10=101.0 avg60=0.00 avg300=0.00 total=0",
                "percentage",
            ),
            ("some avg10=1 avg60=0 avg300=0 total=-3", "total"),
            ("some avg10 avg60=0 avg300=0 total=3", "key=value"),
            ("half avg10=1 avg60=0 avg300=0 total=3", "unknown kind"),
            (
                "some avg10=1 avg60=0 avg300=0 total=3\nsome avg10=1 avg60=0 avg300=0 total=3",
                "second",
            ),
        ] {
            let e = parse_psi(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn missing_file_names_reason() {
        let e = read_psi_file(Path::new("/nonexistent/pressure/io")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/nonexistent/pressure/io") && msg.contains("CONFIG_PSI"),
            "{msg}"
        );
    }

    fn aimd() -> Aimd {
        Aimd {
            min_rate: ByteRate(MIB),
            decrease: 0.5,
            increase: ByteRate(2 * MIB),
        }
    }

    fn over() -> Verdict {
        Verdict::Over("x".into())
    }
    fn under() -> Verdict {
        Verdict::Under("x".into())
    }

    #[test]
    fn aimd_halves_to_floor_and_recovers_additively_to_ceiling() {
        let a = aimd();
        let ceiling = Some(20 * MIB);
        // First back-off starts from the achieved rate, clamped to the ceiling.
        assert_eq!(a.step(None, ceiling, 50 * MIB, &over()), Some(10 * MIB));
        assert_eq!(a.step(None, ceiling, 8 * MIB, &over()), Some(4 * MIB));
        let mut r = Some(16 * MIB);
        let mut seen = vec![];
        for _ in 0..6 {
            r = a.step(r, ceiling, 0, &over());
            seen.push(r.unwrap() / MIB);
        }
        assert_eq!(seen, [8, 4, 2, 1, 1, 1]);
        seen.clear();
        for _ in 0..12 {
            r = a.step(r, ceiling, 0, &under());
            seen.push(r.map_or(0, |v| v / MIB));
        }
        // +2 MiB/s per calm interval; released (None) on reaching 20.
        assert_eq!(seen, [3, 5, 7, 9, 11, 13, 15, 17, 19, 0, 0, 0]);
        // Unknown holds.
        assert_eq!(
            a.step(Some(7 * MIB), ceiling, 0, &Verdict::Unknown("x".into())),
            Some(7 * MIB)
        );
    }

    #[test]
    fn aimd_without_ceiling_lets_go_when_not_binding() {
        let a = aimd();
        assert_eq!(a.step(None, None, 40 * MIB, &over()), Some(20 * MIB));
        // Still binding (the writer achieves what it is allowed): keep growing.
        assert_eq!(
            a.step(Some(20 * MIB), None, 20 * MIB, &under()),
            Some(22 * MIB)
        );
        // The writer slowed down to 5 MiB/s: 22 MiB/s no longer binds.
        assert_eq!(a.step(Some(20 * MIB), None, 5 * MIB, &under()), None);
        // No writes and pressure: the floor.
        assert_eq!(a.step(None, None, 0, &over()), Some(MIB));
    }

    fn policy(psi: Option<PsiSource>, probe: Option<ProbeSpec>) -> AdaptivePolicy {
        AdaptivePolicy {
            psi,
            threshold: 10.0,
            probe,
            interval: Duration::from_secs(5),
            aimd: aimd(),
        }
    }

    #[test]
    fn judge_names_the_source() {
        let spec = ProbeSpec {
            argv: vec!["/bin/true".into()],
            timeout: Duration::from_secs(2),
            threshold: Duration::from_millis(50),
        };
        let p = policy(Some(PsiSource::Both), Some(spec));
        let mut s = PressureSample {
            io: Some(23.5),
            cpu: Some(1.0),
            ..Default::default()
        };
        assert_eq!(p.judge(&s), Verdict::Over("io pressure 23.5% > 10%".into()));
        s.io = Some(10.0);
        assert_eq!(
            p.judge(&s),
            Verdict::Under("io pressure 10.0% <= 10%, cpu pressure 1.0% <= 10%".into())
        );
        s.probe = Some(ProbeReading {
            latency: Duration::from_millis(80),
            timed_out: false,
        });
        assert_eq!(
            p.judge(&s),
            Verdict::Over("probe latency 80.0ms > 50ms".into())
        );
        s.probe = Some(ProbeReading {
            latency: Duration::from_secs(2),
            timed_out: true,
        });
        assert_eq!(
            p.judge(&s),
            Verdict::Over("probe timed out after 2s".into())
        );
        let none = PressureSample {
            unavailable: vec!["no psi".into()],
            ..Default::default()
        };
        assert_eq!(p.judge(&none), Verdict::Unknown("no psi".into()));
    }

    #[test]
    fn sampler_reads_files_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("io"),
            "some avg10=12.50 avg60=1.00 avg300=0.50 total=100\nfull avg10=3.00 avg60=0.00 avg300=0.00 total=10\n",
        )
        .unwrap();
        let s = Sampler::with_psi_dir(policy(Some(PsiSource::Both), None), dir.path()).sample();
        assert_eq!(s.io, Some(12.5));
        assert_eq!(s.cpu, None);
        assert_eq!(s.unavailable.len(), 1);
        assert!(s.unavailable[0].contains("cpu"), "{:?}", s.unavailable);
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn probe_number_duration_failure_and_timeout() {
        let t = Duration::from_secs(5);
        assert_eq!(
            run_probe(&sh("echo starting; echo 42.5"), t)
                .unwrap()
                .latency,
            Duration::from_micros(42_500)
        );
        assert_eq!(
            run_probe(&sh("echo 3ms"), t).unwrap().latency,
            Duration::from_millis(3)
        );
        // No number: wall time, which is short but not zero.
        let r = run_probe(&sh("echo ok"), t).unwrap();
        assert!(!r.timed_out && r.latency < t && r.latency > Duration::ZERO);
        // The environment is cleared.
        assert_eq!(
            run_probe(&sh("test -z \"$HOME\" && echo 7"), t)
                .unwrap()
                .latency,
            Duration::from_millis(7)
        );
        let e = run_probe(&sh("exit 3"), t).unwrap_err();
        assert!(matches!(e, ProbeError::Failed { .. }), "{e}");
        assert!(e.to_string().contains("failed"), "{e}");
        let e = run_probe(&["/nonexistent/probe".to_string()], t).unwrap_err();
        assert!(matches!(e, ProbeError::Start { .. }), "{e}");
        assert!(e.to_string().contains("cannot start"), "{e}");
        let short = Duration::from_millis(200);
        assert_eq!(
            run_probe(&sh("sleep 30"), short).unwrap(),
            ProbeReading {
                latency: short,
                timed_out: true
            }
        );
    }
}
