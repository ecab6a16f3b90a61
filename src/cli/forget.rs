//! `strata forget`: through the daemon while mounted, directly when not.

use anyhow::{bail, Result};
use strata::daemon::control::{Reply, Request};
use strata::exit::{self, Reported};
use strata::ops::forget::ForgetReport;
use strata::policy::hostconfig::HostConfig;
use strata::policy::retention::RetentionConfig;

use super::args::{ForgetArgs, Global};
use super::{print, request};

/// The rules to send: the flags' if any is given (they replace the file's
/// as a whole), else the file's; the file's time zone and lock always,
/// unless `--timezone` names another zone.
fn retention(a: &ForgetArgs, file: RetentionConfig) -> RetentionConfig {
    let flags = RetentionConfig {
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
        keep_within: a.keep_within.clone(),
        keep_label: a.keep_label.clone(),
        ..RetentionConfig::default()
    };
    let rules = if flags.has_rules() || !a.snapshots.is_empty() {
        flags
    } else {
        RetentionConfig {
            lock: None,
            lock_label: Default::default(),
            timezone: None,
            ..file.clone()
        }
    };
    RetentionConfig {
        timezone: a.timezone.clone().or(file.timezone),
        lock: file.lock,
        lock_label: file.lock_label,
        inspect: rules.inspect.clone().or(file.inspect),
        ..rules
    }
}

pub fn run(g: &Global, a: &ForgetArgs) -> Result<()> {
    if let Some(zone) = &a.timezone {
        if let Err(e) = jiff::tz::TimeZone::get(zone) {
            return Err(Reported(
                exit::USAGE,
                format!("--timezone {zone:?} is not a time zone this system knows ({e}); use an IANA name such as \"Europe/Berlin\" or \"UTC\" (see /usr/share/zoneinfo); nothing changed"),
            )
            .into());
        }
    }
    let file = HostConfig::load_or_default(a.config.as_deref())?.retention;
    let retention = retention(a, file);
    if !a.snapshots.is_empty() && retention.has_rules() {
        return Err(Reported(
            exit::USAGE,
            "name snapshots to forget or give keep rules, not both; nothing changed".into(),
        )
        .into());
    }
    // Flags are checked here, so their mistakes read as the flags'.
    retention.check().map_err(|e| {
        Reported(
            exit::USAGE,
            format!(
                "{}; nothing changed",
                e.to_string().replace("[retention] keep_", "--keep-")
            ),
        )
    })?;
    let req = Request::Forget {
        snapshots: a.snapshots.clone(),
        retention,
        dry_run: a.dry_run,
    };
    let Reply::Forget(report) = request(g, &req)? else {
        bail!("unexpected answer from the daemon");
    };
    print(g, &report, || text(&report));
    Ok(())
}

/// The report for people: the policy, the lock, a line per snapshot.
pub fn text(r: &ForgetReport) -> String {
    let mut out = String::new();
    if let Some(p) = &r.policy {
        out.push_str(&format!("policy          {p} (time zone {})\n", r.timezone));
    }
    out.push_str(&format!("retention lock  {}\n", r.lock));
    out.push_str("   seq  name                  status        action  reasons");
    for l in &r.snapshots {
        let action = match (l.keep, r.dry_run) {
            (true, _) => "keep",
            (false, true) => "forget",
            (false, false) => "forgot",
        };
        let reasons: Vec<&str> = l.reasons.iter().map(|k| k.text.as_str()).collect();
        out.push_str(&format!(
            "\n{:>6}  {}  {:<12}  {:<6}  {}",
            l.seq,
            l.name,
            l.status,
            action,
            reasons.join(", ")
        ));
        if let Some(label) = &l.label {
            if reasons.is_empty() {
                out.push_str(&format!("(label {label})"));
            }
        }
    }
    let verb = if r.dry_run { "would forget" } else { "forgot" };
    out.push_str(&format!(
        "\n{verb} {} snapshot(s), kept {}{}",
        r.forgotten,
        r.kept,
        if r.dry_run {
            " (dry run: nothing changed)"
        } else if r.forgotten > 0 {
            "; `strata prune` frees the space their data used"
        } else {
            ""
        }
    ));
    out
}
