//! `strata runs`: backup runs, from the snapshots they took and from the
//! records of failed runs that took none (kept on this host).

use anyhow::{bail, Result};
use serde::Serialize;
use strata::daemon::control::{Reply, Request};
use strata::exit::{self, Reported};
use strata::policy::backup::journal;
use strata::tree::record::RunRecord;

use super::args::{Global, RunsCommand};
use super::{locked, print};

/// One run as listed and shown.
#[derive(Serialize)]
struct Run {
    run: String,
    /// Seconds since the epoch.
    started: i64,
    status: &'static str,
    /// The snapshot it took, if any.
    snapshot: Option<String>,
    /// Why it failed, for a run that took no snapshot.
    failure: Option<String>,
    record: RunRecord,
}

pub fn run(g: &Global, c: &RunsCommand) -> Result<()> {
    let runs = all(g)?;
    match c {
        RunsCommand::List => print(g, &runs, || {
            runs.iter().map(line).collect::<Vec<_>>().join("\n")
        }),
        RunsCommand::Show { run } => {
            let Some(r) = runs.iter().find(|r| &r.run == run) else {
                return Err(Reported(
                    exit::USAGE,
                    format!("no backup run {run:?}; `strata runs list` lists the runs known"),
                )
                .into());
            };
            print(g, r, || show(r));
        }
    }
    Ok(())
}

/// Runs stored with snapshots and runs kept here, oldest first.
fn all(g: &Global) -> Result<Vec<Run>> {
    let id = locked(g)?.config().id.clone();
    let Reply::Snapshots(snaps) = super::request(g, &Request::SnapshotList)? else {
        bail!("unexpected answer listing snapshots");
    };
    let mut runs: Vec<Run> = snaps
        .into_iter()
        .filter_map(|s| {
            let record = s.run?;
            Some(Run {
                run: record.run.clone(),
                started: record.started,
                status: record.status.as_str(),
                snapshot: Some(s.name),
                failure: None,
                record,
            })
        })
        .collect();
    runs.extend(journal::load(&id).into_iter().map(|k| Run {
        run: k.record.run.clone(),
        started: k.record.started,
        status: k.record.status.as_str(),
        snapshot: None,
        failure: Some(k.failure),
        record: k.record,
    }));
    runs.sort_by_key(|r| r.started);
    Ok(runs)
}

fn line(r: &Run) -> String {
    format!(
        "{}  {}  {:<12}  {}",
        r.run,
        time(r.started),
        r.status,
        r.snapshot.as_deref().unwrap_or("no snapshot")
    )
}

fn time(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn show(r: &Run) -> String {
    let mut out = format!(
        "run:      {}\nstarted:  {}\nstatus:   {}\nsnapshot: {}",
        r.run,
        time(r.started),
        r.status,
        r.snapshot.as_deref().unwrap_or("none taken")
    );
    if let Some(f) = &r.failure {
        out.push_str(&format!("\nfailure:  {f}"));
    }
    let copy = std::iter::once(&r.record.copy).filter(|c| c.attempts > 0);
    for h in r.record.hooks.iter().chain(copy) {
        let phase = h.phase.map_or("copy", |p| p.as_str());
        let how = h.error.as_deref().unwrap_or("ok");
        out.push_str(&format!("\n{phase} {}: {how}", h.name));
        for l in h.stderr.lines() {
            out.push_str(&format!("\n  | {l}"));
        }
    }
    out
}
