//! `strata drill`: through the daemon while mounted (it reads the
//! snapshot through the mount), directly when not; then the verdict, its
//! alert and its exit code.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use strata::daemon::control::{run_drill, run_estimate, Reply, Request};
use strata::exit::{self, Reported};
use strata::ops::drill::{DrillContext, DrillProgress, DrillSpec};
use strata::policy::alert;
use strata::policy::hostconfig::HostConfig;
use strata::policy::throttle::rate::format_bytes;
use strata::tree::snapshot::drills::{DrillRecord, DrillResult};

use super::args::{DrillArgs, DrillCommand, Global};
use super::progress::{self, Poll};
use super::{print, request, request_or};
use strata::policy::drill::{service_check, DrillConfig};

/// Read-ahead workers of a drill that reads without the daemon, as the
/// daemon runs them.
const READ_AHEAD_WORKERS: usize = 2;

pub fn run(g: &Global, a: &DrillArgs) -> Result<()> {
    match &a.command {
        Some(DrillCommand::Run { names, due, config }) => {
            run_configured(g, names, *due, config.as_deref())
        }
        Some(DrillCommand::List) => list(g),
        Some(DrillCommand::Show { number }) => show(g, *number),
        None => drill(g, a),
    }
}

/// Splits SNAPSHOT[:PATH]; a snapshot's time name has colons of its own,
/// so the path starts at the first ":/".
fn split(what: &str) -> (&str, &str) {
    match what.find(":/") {
        Some(i) => (&what[..i], &what[i + 1..]),
        None => (what, "/"),
    }
}

fn drill(g: &Global, a: &DrillArgs) -> Result<()> {
    let what = a.what.as_deref().expect("clap requires it");
    let (snapshot, path) = split(what);
    let to = match &a.to {
        Some(p) if p.is_absolute() => Some(p.clone()),
        Some(p) => Some(std::env::current_dir()?.join(p)),
        None => None,
    };
    let spec = DrillSpec {
        snapshot: snapshot.to_owned(),
        path: path.to_owned(),
        to,
        readers: a.readers,
        rto_secs: a.rto.map(|d| Duration::from(d).as_secs_f64()),
        name: None,
        deferred: false,
    };
    if a.estimate {
        return predict(g, &spec);
    }
    let config = HostConfig::load_or_default(a.config.as_deref())?;
    let record = execute(g, &spec)?;
    alert(g, &config, &record);
    print(g, &json(&record), || text(&record));
    verdict(g, &[record])
}

/// Runs `spec`: through the daemon when one runs, else here; progress on
/// a terminal.
fn execute(g: &Global, spec: &DrillSpec) -> Result<DrillRecord> {
    let shown = !g.quiet && !g.json && std::io::stderr().is_terminal();
    let req = Request::Drill { spec: spec.clone() };
    let reply = {
        // Mounted, the daemon drills and `status` says how far it is.
        let _poll = shown
            .then(|| Poll::start(g, |s| s.drill.as_ref().map(describe)))
            .transpose()?;
        request_or(g, &req, |ns, caller| {
            let tell = |p: &DrillProgress| progress::show(&describe(p));
            let cx = DrillContext {
                progress: shown.then_some(&tell as &(dyn Fn(&DrillProgress) + Sync)),
            };
            std::thread::scope(|s| {
                for _ in 0..READ_AHEAD_WORKERS {
                    s.spawn(|| ns.run_prefetcher());
                }
                let done = run_drill(ns, caller, spec, None, cx);
                ns.head().reader().stop();
                Ok(Reply::Drill(Box::new(done?)))
            })
        })?
    };
    if shown {
        progress::clear();
    }
    let Reply::Drill(record) = reply else {
        bail!("unexpected answer from the daemon");
    };
    Ok(*record)
}

/// `strata drill --estimate`: the prediction, and exit 27 when it misses
/// the objective.
fn predict(g: &Global, spec: &DrillSpec) -> Result<()> {
    let req = Request::DrillEstimate { spec: spec.clone() };
    let reply = request_or(g, &req, |ns, caller| {
        std::thread::scope(|s| {
            for _ in 0..READ_AHEAD_WORKERS {
                s.spawn(|| ns.run_prefetcher());
            }
            let done = run_estimate(ns, caller, spec, None);
            ns.head().reader().stop();
            Ok(Reply::Estimate(Box::new(done?)))
        })
    })?;
    let Reply::Estimate(e) = reply else {
        bail!("unexpected answer from the daemon");
    };
    print(g, &e, || {
        let mut out = format!(
            "estimate: {} {} of snapshot {} ({} file(s), {} director(ies), {}) would take {} (± {:.1} %)
  files {} on {} reader(s), directories {}, others {}, flush {}
  from a sample of {} file(s), {} read in {}",
            if e.restore {
                "a restore"
            } else {
                "a discard drill"
            },
            e.path,
            e.snapshot_name,
            e.files,
            e.dirs,
            format_bytes(e.bytes as f64),
            seconds(e.predicted_secs),
            e.margin_pct,
            seconds(e.files_secs),
            e.readers,
            seconds(e.dirs_secs),
            seconds(e.others_secs),
            seconds(e.flush_secs),
            e.sampled_files,
            format_bytes(e.sampled_bytes as f64),
            seconds(e.took_secs),
        );
        if let Some(rto) = e.rto_secs {
            let verdict = if e.predicted_secs <= rto {
                "met"
            } else {
                "MISSED"
            };
            out.push_str(&format!("\nobjective: {} ({verdict})", seconds(rto)));
        }
        for p in &e.problems {
            out.push_str(&format!("\nproblem:   {p}"));
        }
        out
    });
    if !e.problems.is_empty() {
        return Err(Reported(
            exit::DAMAGED,
            format!(
                "the sample met {} problem(s): a drill would fail; run `strata check --read-data`",
                e.problems.len()
            ),
        )
        .into());
    }
    if e.rto_secs.is_some_and(|rto| e.predicted_secs > rto) {
        return Err(Reported(
            exit::DRILL_MISSED_RTO,
            format!(
                "the drill is predicted to take {}, longer than the objective of {}",
                seconds(e.predicted_secs),
                seconds(e.rto_secs.unwrap_or(0.0))
            ),
        )
        .into());
    }
    Ok(())
}

/// How a failed drill failed: what its exit code and alert class say.
enum Failure {
    /// Something could not be read or is not what the snapshot holds: 13.
    Damage,
    /// The target could not take the restore: 1.
    Target,
    /// The restored service failed its check: 22.
    Service,
}

fn failure(d: &DrillRecord) -> Failure {
    if d.damage_count > 0 {
        Failure::Damage
    } else if d.problem_count > 0 {
        Failure::Target
    } else {
        Failure::Service
    }
}

/// The exit of drills that ran: for the first that failed, 13 (damage),
/// 1 (the target) or 22 (the service check), with its problems on
/// standard error when standard output is JSON or quiet; else 27 if any
/// missed its objective.
fn verdict(g: &Global, records: &[DrillRecord]) -> Result<()> {
    if let Some(d) = records.iter().find(|d| d.result == DrillResult::Failed) {
        if g.json || g.quiet {
            for p in &d.problems {
                eprintln!("strata: {p}");
            }
        }
        let shown = if d.problem_count > d.problems.len() as u64 {
            format!(" (the first {} shown)", d.problems.len())
        } else {
            String::new()
        };
        let (code, message) = match failure(d) {
            Failure::Damage => (
                exit::DAMAGED,
                format!(
                    "drill {}: {} problem(s) found{shown}, {} of them in what the repository returned; run `strata check --read-data`",
                    d.number, d.problem_count, d.damage_count
                ),
            ),
            Failure::Target => (
                exit::ERROR,
                format!(
                    "drill {}: the restore could not be written, or not read back as written: {} problem(s){shown}; the repository read clean: give the target room, permissions and extended attributes (or drill with --discard)",
                    d.number, d.problem_count
                ),
            ),
            Failure::Service => {
                let why = d.service.as_ref().and_then(|s| s.error.as_deref());
                (
                    exit::VALIDATION_FAILED,
                    format!(
                        "drill {}: the restored service failed its check ({}); its output: `strata drill show {}`",
                        d.number,
                        why.unwrap_or("?"),
                        d.number
                    ),
                )
            }
        };
        return Err(Reported(code, message).into());
    }
    if let Some(d) = records.iter().find(|d| d.result == DrillResult::MissedRto) {
        return Err(Reported(
            exit::DRILL_MISSED_RTO,
            format!(
                "drill {}: the recovery took {}, longer than the objective of {}",
                d.number,
                seconds(d.recovery_secs()),
                seconds(d.rto_secs.unwrap_or(0.0)),
            ),
        )
        .into());
    }
    Ok(())
}

/// `strata drill run`: the `[[drill]]` entries named (all when none are),
/// or only those due.
fn run_configured(g: &Global, names: &[String], due: bool, path: Option<&Path>) -> Result<()> {
    let config = HostConfig::load_or_default(path)?;
    let usage = |m: String| Reported(exit::USAGE, m);
    if config.drills.is_empty() {
        return Err(usage(
            "no [[drill]] entries in the host configuration; see strata.toml(5)".to_owned(),
        )
        .into());
    }
    let mut chosen: Vec<&DrillConfig> = Vec::new();
    for name in names {
        let d = config
            .drills
            .iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = config.drills.iter().map(|d| d.name.as_str()).collect();
                usage(format!(
                    "no [[drill]] named {name:?}; the configured ones: {}",
                    known.join(", ")
                ))
            })?;
        chosen.push(d);
    }
    if names.is_empty() {
        chosen = config.drills.iter().collect();
    }
    if due {
        let Reply::Drills(past) = request(g, &Request::DrillList)? else {
            bail!("unexpected answer from the daemon");
        };
        let now = strata::tree::types::Timestamp::now().secs;
        chosen.retain(|d| {
            let last = past
                .iter()
                .rfind(|r| r.name.as_deref() == Some(d.name.as_str()))
                .map(|r| r.started.secs);
            strata::policy::drill::due(d.schedule, last, now)
        });
    }
    // One drill that cannot run does not keep the others from running:
    // it is said, alerted, and decides the exit if no verdict does.
    let mut records = Vec::new();
    let mut first_error = None;
    for d in chosen {
        match configured(g, d) {
            Ok(record) => {
                alert(g, &config, &record);
                records.push(record);
            }
            Err(e) => {
                eprintln!("strata: [[drill]] {:?} did not run: {e:#}", d.name);
                not_run(g, &config, strata::daemon::exit_code(&*e));
                first_error.get_or_insert(e);
            }
        }
    }
    let all: Vec<serde_json::Value> = records.iter().map(json).collect();
    print(g, &all, || {
        if records.is_empty() {
            return "no drill is due".to_owned();
        }
        records.iter().map(text).collect::<Vec<_>>().join("\n\n")
    });
    verdict(g, &records)?;
    first_error.map_or(Ok(()), Err)
}

/// Raises drill_failed for a `[[drill]]` that did not run (exit `code`).
fn not_run(g: &Global, config: &HostConfig, code: u8) {
    let Some((id, alerter)) = super::alerter(g, config) else {
        return;
    };
    let class = match code {
        exit::DAMAGED => alert::Class::Corruption,
        exit::USAGE | exit::HOST_CONFIG => alert::Class::Configuration,
        _ => alert::Class::TransientIo,
    };
    let event = alert::Event::new(alert::Kind::DrillFailed, class, SystemTime::now())
        .with_repository(id)
        .with_fields(alert::Fields {
            exit_status: Some(i32::from(code)),
            ..alert::Fields::default()
        });
    if let Err(e) = alerter.raise(event).result() {
        eprintln!("strata: the drill_failed alert could not be delivered: {e}");
    }
}

/// Runs one `[[drill]]`: the restore (or discard), then its service
/// check, then the record; the restored copy is removed unless kept.
fn configured(g: &Global, d: &DrillConfig) -> Result<DrillRecord> {
    let to = match &d.to {
        Some(scratch) => {
            std::fs::create_dir_all(scratch).map_err(|e| {
                anyhow::anyhow!(
                    "[[drill]] {:?}: cannot create {}: {e}",
                    d.name,
                    scratch.display()
                )
            })?;
            let now = strata::tree::types::Timestamp::now();
            Some(scratch.join(format!("{}-{}-{:09}", d.name, now.secs, now.nanos)))
        }
        None => None,
    };
    let spec = DrillSpec {
        snapshot: d.snapshot.clone(),
        path: d.path.clone(),
        to: to.clone(),
        readers: d.readers,
        rto_secs: d.rto.map(|r| r.as_secs_f64()),
        name: Some(d.name.clone()),
        deferred: !d.validate.is_empty(),
    };
    let record = execute(g, &spec).and_then(|mut record| {
        if !spec.deferred {
            return Ok(record);
        }
        if record.problem_count == 0 {
            let dir = to.as_deref().expect("validate needs to");
            record.service = Some(service_check(d, dir, &record.snapshot_name));
            record.result = record.judge();
        }
        let req = Request::DrillRecord {
            record: Box::new(record.clone()),
        };
        let reply = request_or(g, &req, |ns, caller| {
            let stored = strata::ops::drill::store(ns.head(), caller, record)?;
            Ok(Reply::Drill(Box::new(stored)))
        })?;
        let Reply::Drill(stored) = reply else {
            bail!("unexpected answer from the daemon");
        };
        Ok(*stored)
    });
    if let (Some(dir), false) = (&to, d.keep) {
        if dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                eprintln!(
                    "strata: the restored copy {} could not be removed: {e}; remove it by hand",
                    dir.display()
                );
            }
        }
    }
    record
}

/// Raises drill_missed_rto or drill_failed, or resolves them when the
/// drill passed (drill_missed_rto only when it had an objective to meet).
/// A failure to alert is said, and does not change the verdict.
fn alert(g: &Global, config: &HostConfig, record: &DrillRecord) {
    let Some((id, alerter)) = super::alerter(g, config) else {
        return;
    };
    let fields = alert::Fields {
        snapshot: alert::Token::new(&record.snapshot_name).ok(),
        elapsed_secs: Some(record.recovery_secs().ceil() as u64),
        limit_secs: record.rto_secs.map(|s| s.ceil() as u64),
        ..alert::Fields::default()
    };
    let raise = |kind, class| {
        let event = alert::Event::new(kind, class, SystemTime::now())
            .with_repository(id)
            .with_fields(fields.clone());
        if let Err(e) = alerter.raise(event).result() {
            eprintln!("strata: the {kind} alert could not be delivered: {e}");
        }
    };
    let resolve = |kind| {
        if let Err(e) = alerter.resolve(kind, Some(id)) {
            eprintln!("strata: resolving the {kind} alert failed: {e}");
        }
    };
    match record.result {
        DrillResult::Failed => raise(
            alert::Kind::DrillFailed,
            match failure(record) {
                Failure::Damage => alert::Class::Corruption,
                Failure::Target => alert::Class::Configuration,
                Failure::Service => alert::Class::Hook,
            },
        ),
        DrillResult::MissedRto => {
            raise(alert::Kind::DrillMissedRto, alert::Class::Timeout);
            resolve(alert::Kind::DrillFailed);
        }
        DrillResult::Passed => {
            if record.rto_secs.is_some() {
                resolve(alert::Kind::DrillMissedRto);
            }
            resolve(alert::Kind::DrillFailed);
        }
    }
}

fn list(g: &Global) -> Result<()> {
    let Reply::Drills(drills) = request(g, &Request::DrillList)? else {
        bail!("unexpected answer from the daemon");
    };
    let all: Vec<serde_json::Value> = drills.iter().map(json).collect();
    print(g, &all, || {
        if drills.is_empty() {
            return "no drills recorded yet (`strata drill latest --discard` runs one)".to_owned();
        }
        let mut out = format!(
            "{:>4}  {:<20}  {:<10}  {:<20}  {:>9}  {:>9}  {:>10}  {}",
            "no", "started", "result", "snapshot", "restore", "rto", "rate", "path"
        );
        for d in &drills {
            out.push_str(&format!(
                "\n{:>4}  {:<20}  {:<10}  {:<20}  {:>9}  {:>9}  {:>10}  {}{}",
                d.number,
                rfc3339(d.started.secs),
                d.result.as_str(),
                d.snapshot_name,
                seconds(d.restore_secs),
                d.rto_secs.map_or("-".to_owned(), seconds),
                format!("{}/s", format_bytes(d.bytes_per_sec())),
                d.path,
                d.to.as_ref()
                    .map_or(" (discarded)".to_owned(), |t| format!(" -> {t}")),
            ));
        }
        out
    });
    Ok(())
}

fn show(g: &Global, number: u64) -> Result<()> {
    let Reply::Drill(record) = request(g, &Request::DrillShow { number })? else {
        bail!("unexpected answer from the daemon");
    };
    print(g, &json(&record), || text(&record));
    Ok(())
}

/// A drill for --json: times in seconds since the epoch, ids in hex, and
/// the rates.
fn json(d: &DrillRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(d).expect("a drill record serializes");
    v["started"] = d.started.secs.into();
    v["snapshot_id"] = hex::encode(d.snapshot_id).into();
    v["bytes_per_sec"] = d.bytes_per_sec().into();
    v["files_per_sec"] = d.files_per_sec().into();
    v
}

/// A drill in words.
fn text(d: &DrillRecord) -> String {
    let mut out = format!(
        "drill {}: {}\nsnapshot:  {} (number {}), path {}\n",
        d.number,
        d.result.as_str(),
        d.snapshot_name,
        d.snapshot,
        d.path
    );
    out.push_str(&match &d.to {
        Some(to) => format!("restored:  to {} through the {}", to, d.through),
        None => format!("read:      through the {}, discarded", d.through),
    });
    out.push_str(&format!(
        " by {} reader(s)\nstarted:   {} by uid {} (pid {})\ncontent:   {} file(s), {} director(ies), {} other(s), {}\nrestore:   {}, {}/s, {:.0} files/s",
        d.readers,
        rfc3339(d.started.secs),
        d.caller.0,
        d.caller.2,
        d.files,
        d.dirs,
        d.others,
        format_bytes(d.bytes as f64),
        seconds(d.restore_secs),
        format_bytes(d.bytes_per_sec()),
        d.files_per_sec(),
    ));
    if let Some(s) = &d.service {
        out.push_str(&format!(
            "\nservice:   {} ready after {}, checked in {} ({}){}",
            s.command.first().map_or("", String::as_str),
            seconds(s.ready_secs),
            seconds(s.secs),
            if s.passed() { "passed" } else { "FAILED" },
            s.error.as_ref().map_or(String::new(), |e| format!(": {e}")),
        ));
        if !s.passed() {
            for line in s.output.lines() {
                out.push_str(&format!("\n           | {line}"));
            }
        }
    }
    if let Some(rto) = d.rto_secs {
        let verdict = if d.recovery_secs() <= rto {
            "met"
        } else {
            "MISSED"
        };
        out.push_str(&format!(
            "\nobjective: {} ({verdict}; recovery {})",
            seconds(rto),
            seconds(d.recovery_secs())
        ));
    }
    if d.to.is_some() {
        out.push_str(&format!(
            "\nverify:    {} (read back from the disk)",
            seconds(d.verify_secs)
        ));
    }
    for p in &d.problems {
        out.push_str(&format!("\nproblem:   {p}"));
    }
    if d.problem_count > d.problems.len() as u64 {
        out.push_str(&format!(
            "\n           and {} more",
            d.problem_count - d.problems.len() as u64
        ));
    }
    out
}

/// How far a drill is, in words (also for `strata status`).
pub(crate) fn describe(p: &DrillProgress) -> String {
    let size = |n: u64| format_bytes(n as f64);
    format!(
        "drill: {} {} of {} files, {} of {}",
        p.phase,
        p.files_done,
        p.files,
        size(p.bytes_done),
        size(p.bytes)
    )
}

fn seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.2} s")
    } else {
        humantime::format_duration(Duration::from_secs(s.round() as u64)).to_string()
    }
}

fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
