//! `[[drill]]` entries of strata.toml: restore drills an administrator
//! names, with their objective, their schedule and the program that starts
//! and checks the restored service.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::policy::alert::CHILD_PATH;
use crate::policy::hostconfig::duration;
use crate::sys::process::{Capture, Ended, Program};
use crate::tree::snapshot::drills::ServiceCheck;

/// One `[[drill]]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// Name, unique; recorded with each drill.
    pub name: String,
    /// The snapshot: a label, a time name, a number or "latest" [default: latest].
    #[serde(default = "latest")]
    pub snapshot: String,
    /// The path inside the snapshot [default: all of it].
    #[serde(default = "root")]
    pub path: String,
    /// The recovery-time objective: restore plus service ready.
    #[serde(default, deserialize_with = "opt_duration")]
    pub rto: Option<Duration>,
    /// Files read at once [default: 8].
    #[serde(default = "readers")]
    pub readers: u32,
    /// A scratch directory the restore goes into (a new directory in it
    /// per drill, removed afterwards unless `keep`); none: read and
    /// discard.
    #[serde(default)]
    pub to: Option<PathBuf>,
    /// Keep the restored copy after the drill.
    #[serde(default)]
    pub keep: bool,
    /// The program (and its arguments; no shell) that starts the restored
    /// service, waits until it is ready, checks it and stops it; it gets
    /// the restore's directory in STRATA_DRILL_DIR.
    #[serde(default)]
    pub validate: Vec<String>,
    /// How long the program may run [default: 1h].
    #[serde(default = "validate_timeout", deserialize_with = "duration")]
    pub validate_timeout: Duration,
    /// How often `strata drill run --due` runs it, e.g. "7d".
    #[serde(default, deserialize_with = "opt_duration")]
    pub schedule: Option<Duration>,
}

fn latest() -> String {
    "latest".to_owned()
}

fn root() -> String {
    "/".to_owned()
}

fn readers() -> u32 {
    8
}

fn validate_timeout() -> Duration {
    Duration::from_secs(3600)
}

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A `[[drill]]` that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum DrillConfigError {
    /// A name with other characters.
    #[error("[[drill]] name {0:?}: use letters, digits, '-' and '_'")]
    Name(String),
    /// Two drills of one name.
    #[error("[[drill]] name {0:?} is used twice")]
    NameTwice(String),
    /// A service to start on nothing.
    #[error("[[drill]] {0:?}: validate needs to = \"DIR\": a discard drill restores nothing to start a service on")]
    ValidateWithoutRestore(String),
    /// Readers out of range.
    #[error("[[drill]] {0:?}: readers must be 1 to 256")]
    Readers(String),
    /// A relative scratch directory.
    #[error("[[drill]] {0:?}: to must be an absolute path")]
    RelativeTo(String),
}

/// Checks every `[[drill]]`.
pub fn check(drills: &[DrillConfig]) -> Result<(), DrillConfigError> {
    let mut names = std::collections::BTreeSet::new();
    for d in drills {
        let name = &d.name;
        if !crate::policy::hostconfig::is_name(name) {
            return Err(DrillConfigError::Name(name.clone()));
        }
        if !names.insert(name) {
            return Err(DrillConfigError::NameTwice(name.clone()));
        }
        if !d.validate.is_empty() && d.to.is_none() {
            return Err(DrillConfigError::ValidateWithoutRestore(name.clone()));
        }
        if !(1..=256).contains(&d.readers) {
            return Err(DrillConfigError::Readers(name.clone()));
        }
        if d.to.as_ref().is_some_and(|t| !t.is_absolute()) {
            return Err(DrillConfigError::RelativeTo(name.clone()));
        }
    }
    Ok(())
}

/// Whether a drill on `schedule` whose last run started at `last` (secs
/// since the epoch) is due at `now`: never run, or run longer ago than
/// its schedule. A drill without a schedule is never due.
pub fn due(schedule: Option<Duration>, last: Option<i64>, now: i64) -> bool {
    match (schedule, last) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(every), Some(t)) => now.saturating_sub(t) >= every.as_secs() as i64,
    }
}

/// Output of a `validate` program kept in the record, per stream.
const KEPT_OUTPUT: usize = 4096;

/// Runs `d`'s `validate` program on the restore in `dir` (of snapshot
/// `snapshot`), with a cleared environment but PATH and the STRATA_DRILL_*
/// variables, until `validate_timeout`.
pub fn service_check(d: &DrillConfig, dir: &Path, snapshot: &str) -> ServiceCheck {
    let started = Instant::now();
    let mut check = ServiceCheck {
        command: d.validate.clone(),
        exit: None,
        error: None,
        secs: 0.0,
        ready_secs: 0.0,
        output: String::new(),
    };
    let program = Program::new(&d.validate[0], &d.validate[1..])
        .envs([
            ("PATH", CHILD_PATH),
            ("STRATA_DRILL_NAME", d.name.as_str()),
            ("STRATA_DRILL_SNAPSHOT", snapshot),
        ])
        .envs([("STRATA_DRILL_DIR", dir)])
        .stdout(Capture::Bytes { keep: KEPT_OUTPUT })
        .stderr(Capture::Bytes { keep: KEPT_OUTPUT })
        .kill_grace(Duration::from_secs(10));
    let mut running = match program.start() {
        Ok(r) => r,
        Err(e) => {
            check.error = Some(format!("{} cannot be started: {e}", d.validate[0]));
            return check;
        }
    };
    let ended = running.wait(started + d.validate_timeout);
    let finished = running.finish(ended);
    check.secs = started.elapsed().as_secs_f64();
    check.ready_secs = finished
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ready_secs="))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .rfind(|v| v.is_finite())
        .map_or(check.secs, |v| v.clamp(0.0, check.secs));
    check.output = format!("{}{}", finished.stdout, finished.stderr);
    match finished.ended {
        Ended::Exited(status) => {
            check.exit = status.code();
            if status.code() != Some(0) {
                check.error = Some(match status.code() {
                    Some(c) => format!("exit status {c}"),
                    None => "killed by a signal".to_owned(),
                });
            }
        }
        Ended::TimedOut(_) => {
            check.error = Some(format!(
                "still running after validate_timeout ({}); stopped",
                humantime::format_duration(d.validate_timeout)
            ))
        }
        Ended::Lost(e) => check.error = Some(format!("waiting for it failed: {e}")),
        Ended::Interrupted(sig, _) => {
            check.error = Some(format!(
                "stopped: strata was interrupted ({})",
                crate::sys::process::signal_name(sig)
            ))
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::hostconfig::HostConfig;

    #[test]
    fn drills_parse_with_defaults_and_refuse_what_cannot_run() {
        let c = HostConfig::parse(
            "[[drill]]\nname = \"pg\"\nsnapshot = \"nightly\"\npath = \"/pg\"\nrto = \"30m\"\nto = \"/var/tmp/drills\"\nvalidate = [\"/usr/lib/strata/hooks/drill-postgresql\"]\nschedule = \"7d\"\n\n[[drill]]\nname = \"all\"\n",
        )
        .unwrap();
        assert_eq!(c.drills.len(), 2);
        assert_eq!(c.drills[0].rto, Some(Duration::from_secs(1800)));
        assert_eq!(c.drills[0].schedule, Some(Duration::from_secs(7 * 86400)));
        let all = &c.drills[1];
        assert_eq!((all.snapshot.as_str(), all.path.as_str()), ("latest", "/"));
        assert_eq!((all.readers, all.to.is_none(), all.keep), (8, true, false));
        assert_eq!(all.validate_timeout, Duration::from_secs(3600));
        for (text, message) in [
            ("[[drill]]\nname = \"a b\"\n", "use letters"),
            (
                "[[drill]]\nname = \"a\"\n[[drill]]\nname = \"a\"\n",
                "used twice",
            ),
            (
                "[[drill]]\nname = \"a\"\nvalidate = [\"x\"]\n",
                "validate needs to",
            ),
            ("[[drill]]\nname = \"a\"\nreaders = 0\n", "readers must be"),
            ("[[drill]]\nname = \"a\"\nto = \"tmp\"\n", "absolute"),
            (
                "[[drill]]\nname = \"a\"\nrto = \"soon\"\n",
                "not a duration",
            ),
            ("[[drill]]\nname = \"a\"\nwhen = \"7d\"\n", "unknown field"),
        ] {
            let e = HostConfig::parse(text).unwrap_err().to_string();
            assert!(e.contains(message), "{text}: {e}");
        }
    }

    fn entry(validate: &[&str], timeout: Duration) -> DrillConfig {
        DrillConfig {
            name: "svc".into(),
            snapshot: latest(),
            path: root(),
            rto: None,
            readers: 8,
            to: Some("/tmp".into()),
            keep: false,
            validate: validate.iter().map(|s| s.to_string()).collect(),
            validate_timeout: timeout,
            schedule: None,
        }
    }

    #[test]
    fn a_service_check_reports_readiness_output_and_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("PG_VERSION"), "16\n").unwrap();
        let script = "test -f \"$STRATA_DRILL_DIR/PG_VERSION\" || exit 3; sleep 0.1; echo ready_secs=0.05; echo ready_secs=nan; echo checked $STRATA_DRILL_SNAPSHOT";
        let ok = service_check(
            &entry(&["sh", "-c", script], Duration::from_secs(60)),
            dir.path(),
            "2026-12-06T01:00:00Z",
        );
        assert!(ok.passed(), "{ok:?}");
        // The last finite value, at most the time it ran.
        assert_eq!((ok.exit, ok.ready_secs), (Some(0), 0.05));
        assert!(ok.output.contains("checked 2026-12-06T01:00:00Z"), "{ok:?}");

        let empty = tempfile::tempdir().unwrap();
        let failed = service_check(
            &entry(&["sh", "-c", script], Duration::from_secs(60)),
            empty.path(),
            "x",
        );
        assert!(!failed.passed());
        assert_eq!(failed.error.as_deref(), Some("exit status 3"));
        assert_eq!(failed.ready_secs, failed.secs, "no ready_secs= line");

        let slow = service_check(
            &entry(&["sleep", "30"], Duration::from_millis(200)),
            dir.path(),
            "x",
        );
        assert!(slow.error.unwrap().contains("validate_timeout"));

        let missing = service_check(
            &entry(&["/nonexistent/validate"], Duration::from_secs(5)),
            dir.path(),
            "x",
        );
        assert!(missing.error.unwrap().contains("cannot be started"));
    }

    #[test]
    fn a_drill_is_due_when_never_run_or_older_than_its_schedule() {
        let week = Some(Duration::from_secs(7 * 86400));
        assert!(due(week, None, 1000));
        assert!(!due(week, Some(1000), 1000 + 7 * 86400 - 1));
        assert!(due(week, Some(1000), 1000 + 7 * 86400));
        assert!(!due(None, None, 1000));
    }
}
