//! `strata snapshot …` and `strata status`: through the daemon's control
//! socket while the repository is mounted, directly when it is not.

use anyhow::{bail, Context, Result};
use strata::daemon::control::{Reply, Request};
use strata::exit::{self, Reported};
use strata::sys::runlock;
use strata::tree::record::SnapshotInfo;

use super::args::{Global, SnapshotCommand};
use super::{locked, print, request};

fn show(info: &SnapshotInfo) -> String {
    let mut out = format!(
        "snapshot   {}\nname       {}\nlabel      {}\nstatus     {}\nid         {}\nprevious   {}\nroot tree  {}\ndirectories serialized {}, reused {}\ntaken by uid {}",
        info.seq,
        info.name,
        info.label.as_deref().unwrap_or("-"),
        info.status,
        info.id,
        info.prev.as_deref().unwrap_or("-"),
        info.root_tree.as_deref().unwrap_or("-"),
        info.dirs_serialized,
        info.dirs_reused,
        info.caller_uid
    );
    let at = |secs: i64| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64),
        )
    };
    if let Some(h) = &info.hold {
        out.push_str(&format!(
            "\nlegal hold since {} by uid {}: {}",
            at(h.since),
            h.uid,
            h.reason
        ));
    }
    if !info.hold_history.is_empty() {
        out.push_str("\nhold history:");
        for c in &info.hold_history {
            out.push_str(&format!(
                "\n  {}  {} by uid {} (gid {}, pid {}): {}",
                at(c.time),
                if c.held { "placed" } else { "released" },
                c.uid,
                c.gid,
                c.pid,
                c.reason
            ));
        }
    }
    if let Some(run) = &info.run {
        out.push_str(&format!("\nbackup run {}", run.run));
        let outcomes = std::iter::once(&run.copy).chain(&run.hooks);
        for h in outcomes {
            let phase = h.phase.map_or("copy", |p| p.as_str());
            let result = match (&h.error, h.exit) {
                (None, _) => "ok".to_owned(),
                (Some(e), _) => format!("FAILED: {e}"),
            };
            out.push_str(&format!(
                "\n  {phase:<13} {:<16} {result} ({:.1} s{})",
                h.name,
                h.millis as f64 / 1000.0,
                if h.attempts > 1 {
                    format!(", {} attempts", h.attempts)
                } else {
                    String::new()
                }
            ));
            for line in h
                .stderr
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                out.push_str(&format!("\n      stderr: {line}"));
            }
        }
        for (k, v) in run.points() {
            out.push_str(&format!("\n  point {k} = {v}"));
        }
        if let Some(l) = &run.leftovers {
            out.push_str(&format!("\n  taken over leftovers of {l}"));
        }
    }
    out
}

pub fn run(g: &Global, c: &SnapshotCommand) -> Result<()> {
    let req = match c {
        SnapshotCommand::Create { label, force } => {
            if let Some(l) = label {
                strata::tree::namespace::check_label(l)
                    .map_err(|e| Reported(exit::USAGE, format!("--label: {e}")))?;
            }
            if !force {
                refuse_during_a_run(g)?;
            }
            Request::SnapshotCreate {
                label: label.clone(),
                run: None,
            }
        }
        SnapshotCommand::List => Request::SnapshotList,
        SnapshotCommand::Show { snapshot } => Request::SnapshotShow {
            snapshot: snapshot.clone(),
        },
        SnapshotCommand::Hold { snapshot, reason } => Request::SnapshotHold {
            snapshot: snapshot.clone(),
            reason: reason.clone(),
        },
        SnapshotCommand::Release { snapshot, reason } => Request::SnapshotRelease {
            snapshot: snapshot.clone(),
            reason: reason.clone(),
        },
    };
    match (c, request(g, &req)?) {
        (SnapshotCommand::Create { .. }, Reply::Snapshot(info)) => print(g, &info, || {
            format!(
                "created snapshot {} ({}), {} directories serialized",
                info.seq, info.name, info.dirs_serialized
            )
        }),
        (SnapshotCommand::Hold { .. }, Reply::Snapshot(info)) => print(g, &info, || {
            format!(
                "snapshot {} ({}) is under a legal hold",
                info.seq, info.name
            )
        }),
        (SnapshotCommand::Release { .. }, Reply::Snapshot(info)) => print(g, &info, || {
            format!("snapshot {} ({}): legal hold released", info.seq, info.name)
        }),
        (_, Reply::Snapshot(info)) => print(g, &info, || show(&info)),
        (_, Reply::Snapshots(infos)) => print(g, &infos, || {
            let mut out = String::from("   seq  name                  status        hold  label");
            for i in &infos {
                out.push_str(&format!(
                    "\n{:>6}  {}  {:<12}  {:<4}  {}",
                    i.seq,
                    i.name,
                    i.status,
                    if i.hold.is_some() { "held" } else { "" },
                    i.label.as_deref().unwrap_or("")
                ));
            }
            out
        }),
        (_, other) => bail!("unexpected answer from the daemon: {other:?}"),
    }
    Ok(())
}

/// A snapshot taken while a backup run copies could hold its copy
/// half-done, so it is refused unless a human means it (--force).
fn refuse_during_a_run(g: &Global) -> Result<()> {
    let id = locked(g)?.config().instance();
    let lock = runlock::path(&strata::sys::mountpoint::runtime_dir(), &id);
    let running = runlock::running(&lock).with_context(|| {
        format!(
            "could not tell whether a backup run is in progress, so no snapshot was taken: reading the run lock {} failed (check that directory, or add --force)",
            lock.display()
        )
    })?;
    if let Some(h) = running {
        return Err(Reported(
            exit::RUN_IN_PROGRESS,
            format!(
                "a backup run is in progress ({h}): a snapshot now could hold its copy half-done; let it finish (it takes its own snapshot), or add --force to take one anyway"
            ),
        )
        .into());
    }
    Ok(())
}

/// `strata status`.
pub fn status(g: &Global) -> Result<()> {
    let Reply::Status(mut s) = request(g, &Request::Status)? else {
        bail!("unexpected answer from the daemon");
    };
    let id = locked(g)?.config().id.clone();
    s.repository = Some(g.repo.display().to_string());
    s.repository_id = Some(id.clone());
    if s.mountpoint.is_none() {
        s.dead_mount = strata::sys::mountpoint::dead_mounts_of(&id)
            .first()
            .map(|p| p.display().to_string());
    }
    print(g, &s, || {
        let state = match (&s.mountpoint, &s.read_only_reason, &s.dead_mount) {
            (Some(m), None, _) => format!("mounted on {m} (daemon pid {})", s.pid.unwrap_or(0)),
            (Some(m), Some(why), _) => format!("mounted on {m}, READ-ONLY: {why}"),
            (None, _, Some(m)) => format!("DEAD mount on {m}: its daemon stopped"),
            (None, _, None) => "not mounted".to_owned(),
        };
        let mut out = format!(
            "repository  {} (id {})\nstate       {state}\nsnapshots   {} (latest {})\ninodes      {}\nstaging     {} bytes\ncommits     {}",
            g.repo.display(),
            id,
            s.snapshots,
            s.latest.as_deref().unwrap_or("-"),
            s.inodes,
            s.staging_bytes,
            s.durable_commits
        );
        if let Some(t) = &s.transport {
            out.push_str(&format!("\ntransport   {t}"));
        }
        if let Some(w) = &s.writeback {
            out.push_str(&format!(
                "\nwriteback   {} written back at I/O priority {} (thread {}){}",
                strata::policy::throttle::rate::format_bytes(w.bytes as f64),
                w.priority,
                w.thread_id,
                match w.errors {
                    0 => String::new(),
                    n => format!(", {n} ranges FAILED"),
                }
            ));
        }
        if let Some(t) = &s.throttle {
            out.push('\n');
            out.push_str(&super::throttle::describe(t));
        }
        if let Some(p) = &s.prune {
            out.push_str(&format!("\npruning     {}", super::prune::describe(p)));
        }
        if let Some(d) = &s.drill {
            out.push_str(&format!("\ndrilling    {}", super::drill::describe(d)));
        }
        if let Some((done, total)) = s.check {
            out.push_str(&format!("\nchecking    {done} of {total} chunks read"));
        }
        if let Some(l) = &s.leftovers {
            let reset = match &l.last_good {
                Some(good) => format!("`strata head reset --to {good}` rolls head/ back to the last good snapshot before it"),
                None => "no good snapshot before it to reset head/ to".to_owned(),
            };
            out.push_str(&format!(
                "\nLEFTOVERS   head/ holds the leftovers of {l}; the next backup run's snapshot will hold them too; {reset}"
            ));
        }
        out
    });
    if let Some(m) = &s.dead_mount {
        return Err(Reported(
            exit::MOUNTPOINT,
            format!("the daemon serving {m} has died; run `strata umount {m}` to detach the mount, then `strata mount` again (its log says why it stopped)"),
        )
        .into());
    }
    Ok(())
}
