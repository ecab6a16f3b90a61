//! `strata check --freshness`: the checks a timer runs because a dead
//! daemon cannot: is the newest good snapshot recent enough, and does the
//! storage have room. Each raises its alert; exit 16 when a backup was missed.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use serde::Serialize;
use strata::daemon::control::{Reply, Request};
use strata::exit::{self, Reported};
use strata::policy::alert::{self, Alerter};
use strata::policy::hostconfig::HostConfig;
use strata::store::id::RepoId;

use super::args::{CheckArgs, Global};
use super::request;
use super::{locked, print};

#[derive(Serialize)]
struct Freshness {
    /// The newest snapshot `latest` may point at, if any.
    newest: Option<String>,
    /// Its age, or the repository's if it has none, in seconds.
    age_secs: u64,
    /// The allowed age in seconds.
    max_age_secs: u64,
    /// Whether a backup was missed.
    missed: bool,
    /// Fill of the filesystem holding the repository, percent.
    fill_percent: Option<u64>,
    /// The alert threshold, percent.
    fill_threshold: u8,
}

pub fn run(g: &Global, a: &CheckArgs) -> Result<()> {
    let config = HostConfig::load_or_default(a.config.as_deref())?;
    let result = check(g, a, &config);
    if let Err(e) = &result {
        if strata::daemon::exit_code(&**e) != exit::BACKUP_MISSED {
            unreadable(g, &config, e);
        }
    }
    result
}

/// A check that could not be made is itself alerted: a repository on a
/// disk that did not mount, a key that no longer opens it, a daemon that
/// does not answer would otherwise pass unnoticed until a restore. Without
/// the repository's id, the alert state is kept by its path.
fn unreadable(g: &Global, config: &HostConfig, e: &anyhow::Error) {
    let code = strata::daemon::exit_code(&**e);
    let class = match code {
        exit::NO_REPOSITORY | exit::WRONG_SECRET | exit::HOST_CONFIG => alert::Class::Configuration,
        _ => e
            .chain()
            .find_map(|c| c.downcast_ref::<std::io::Error>())
            .map_or(alert::Class::TransientIo, alert::classify),
    };
    let Ok(alerter) = Alerter::from_config(&config.alerts, alert::state_path_of(&g.repo)) else {
        return;
    };
    let event = alert::Event::new(alert::Kind::StorageError, class, SystemTime::now()).with_fields(
        alert::Fields {
            exit_status: Some(i32::from(code)),
            ..alert::Fields::default()
        },
    );
    let report = alerter.raise(event);
    if let Err(err) = report.result() {
        eprintln!("strata: the alert that the check failed could not be delivered: {err}");
    }
}

fn check(g: &Global, a: &CheckArgs, config: &HostConfig) -> Result<()> {
    let max_age = a
        .max_age
        .map(Duration::from)
        .unwrap_or(config.alerts.max_snapshot_age);
    let repo = locked(g)?;
    let id: RepoId = repo.config().id.parse()?;
    let created = UNIX_EPOCH + Duration::from_secs(repo.config().created);
    drop(repo);
    let alerter = Alerter::from_config(&config.alerts, alert::state_path(&id)).map_err(|e| {
        Reported(
            exit::HOST_CONFIG,
            format!("the [alerts] configuration cannot be used: {e}"),
        )
    })?;
    let Reply::Snapshots(rows) = request(g, &Request::SnapshotList)? else {
        bail!("unexpected answer from the daemon");
    };
    // The newest snapshot that counts: the one `latest` would name.
    let newest = rows
        .iter()
        .rev()
        .find(|s| s.run.as_ref().is_none_or(|r| r.latest));
    let last = newest.map_or(created, |s| {
        UNIX_EPOCH + Duration::from_secs(s.time.max(0) as u64)
    });
    let now = SystemTime::now();
    let mut events = Vec::new();
    let missed = alert::freshness(last, now, max_age);
    events.extend(missed.clone());
    let usage = strata::daemon::watch::usage(&g.repo).ok();
    if let Some((used, total)) = usage {
        events.extend(alert::fill_check(used, total, config.alerts.fill_threshold));
    }
    alert::raise_all(&alerter, id, events);
    for r in alerter.tick(now) {
        if let Err(e) = r.result() {
            eprintln!("strata: an escalated alert could not be delivered: {e}");
        }
    }
    if missed.is_none() {
        let _ = alerter.resolve(alert::Kind::BackupMissed, Some(id));
    }
    let report = Freshness {
        newest: newest.map(|s| s.name.clone()),
        age_secs: now.duration_since(last).unwrap_or_default().as_secs(),
        max_age_secs: max_age.as_secs(),
        missed: missed.is_some(),
        fill_percent: usage.map(|(u, t)| u * 100 / t.max(1)),
        fill_threshold: config.alerts.fill_threshold,
    };
    print(g, &report, || {
        format!(
            "newest good snapshot {} ({} ago; allowed {}){}\nstorage {}% full (alert at {}%)",
            report.newest.as_deref().unwrap_or("none"),
            humantime::format_duration(Duration::from_secs(report.age_secs)),
            humantime::format_duration(max_age),
            if report.missed { ": BACKUP MISSED" } else { "" },
            report.fill_percent.map_or("?".into(), |p| p.to_string()),
            report.fill_threshold
        )
    });
    if report.missed {
        return Err(Reported(
            exit::BACKUP_MISSED,
            format!(
                "no good snapshot for {}: check the backup job and the daemon ({})",
                humantime::format_duration(Duration::from_secs(report.age_secs)),
                Path::new(&g.repo).display()
            ),
        )
        .into());
    }
    Ok(())
}
