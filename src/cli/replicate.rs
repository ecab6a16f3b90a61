//! `strata replicate`: through the daemon while mounted, directly when not.

use std::io::IsTerminal;

use anyhow::{bail, Result};
use strata::daemon::control::{Reply, Request};
use strata::daemon::replicate::{repair, serve, Outcome, ReplicateReply, ReplicateRequest};
use strata::exit::Reported;
use strata::ops::replicate::verify::Checked;
use strata::ops::replicate::{Done, ReplicateProgress, Tell};
use strata::policy::throttle::rate::format_bytes;

use super::args::{Global, RepairPacksArgs, ReplicateArgs};
use super::{print, progress, request_or};

pub fn run(g: &Global, a: &ReplicateArgs) -> Result<()> {
    // The daemon's working directory is not ours.
    let config = a.config.as_deref().map(std::path::absolute).transpose()?;
    let req = ReplicateRequest {
        config,
        names: a.names.clone(),
        verify: a.verify,
        due: a.due,
    };
    let shown = !g.quiet && !g.json && std::io::stderr().is_terminal();
    let reply = request_or(g, &Request::Replicate(req.clone()), |ns, caller| {
        let tell = |name: &str, p: &ReplicateProgress| {
            progress::show(&format!(
                "replicate {name}: snapshot {} ({} after it), {} sent",
                p.seq,
                p.left,
                format_bytes(p.bytes_sent as f64)
            ))
        };
        let tell: Option<Tell<'_>> = shown.then_some(&tell);
        Ok(Reply::Replicate(Box::new(serve(
            ns.head(),
            caller,
            &req,
            tell,
        )?)))
    })?;
    if shown {
        progress::clear();
    }
    let Reply::Replicate(reply) = reply else {
        bail!("unexpected answer from the daemon");
    };
    let failed = match &*reply {
        ReplicateReply::Copied(out) => {
            print(g, out, || lines(out, copied));
            first_failure(out)
        }
        ReplicateReply::Verified(out) => {
            print(g, out, || lines(out, verified));
            first_failure(out)
        }
    };
    match failed {
        Some((code, message)) => {
            Err(Reported(code, format!("not every replica is up to date: {message}")).into())
        }
        None => Ok(()),
    }
}

/// The exit code and message of the first replica that failed.
fn first_failure<T>(out: &[Outcome<T>]) -> Option<(u8, String)> {
    out.iter().find(|o| o.exit != 0).map(|o| {
        (
            o.exit,
            o.error
                .clone()
                .unwrap_or_else(|| format!("replica {} is not in step with its source", o.name)),
        )
    })
}

fn lines<T>(out: &[Outcome<T>], each: fn(&T) -> String) -> String {
    if out.is_empty() {
        return "no replica is due".to_owned();
    }
    out.iter()
        .map(|o| match (&o.result, &o.error) {
            (Some(r), _) => format!("{}: {}", o.name, each(r)),
            (None, Some(e)) => format!("{}: FAILED: {e}", o.name),
            (None, None) => format!("{}: FAILED", o.name),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn copied(d: &Done) -> String {
    let r = &d.report;
    let mut out = format!(
        "{}{} snapshot(s) sent ({} object(s), {}; {} already there) in {:.1} s; newest {}",
        if d.created { "made; " } else { "" },
        r.snapshots_sent.len(),
        r.objects_sent,
        format_bytes(r.bytes_sent as f64),
        r.objects_present,
        r.seconds,
        r.newest,
    );
    if r.tombstones_sent > 0 {
        out.push_str(&format!("; {} forgotten on the source", r.tombstones_sent));
    }
    if !d.forgotten.is_empty() {
        out.push_str(&format!(
            "; its retention forgot {}",
            d.forgotten
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

fn verified(c: &Checked) -> String {
    let v = &c.verdict;
    if let Some(d) = &v.chains.diverged {
        return format!("DIVERGED at snapshot {}: {}", d.seq, d.why);
    }
    let mut out = Vec::new();
    if v.chains.missing.is_empty() {
        out.push("every snapshot of the source".to_owned());
    } else {
        out.push(format!(
            "behind: lacks snapshot(s) {}",
            v.chains
                .missing
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if v.objects_missing > 0 {
        out.push(format!(
            "lacks {} object(s) of the snapshots both keep (e.g. {})",
            v.objects_missing,
            v.examples.join(", ")
        ));
    } else {
        out.push(format!(
            "every object of the {} snapshot(s) both keep",
            v.snapshots_checked
        ));
    }
    if !v.chains.kept_longer.is_empty() {
        out.push(format!(
            "keeps {:?} the source forgot",
            v.chains.kept_longer
        ));
    }
    if !v.chains.forgotten_here.is_empty() {
        out.push(format!(
            "forgot {:?} the source keeps",
            v.chains.forgotten_here
        ));
    }
    out.join("; ")
}

/// `strata repair packs --from NAME`.
pub fn repair_packs(g: &Global, a: &RepairPacksArgs) -> Result<()> {
    let config = a.config.as_deref().map(std::path::absolute).transpose()?;
    let req = Request::RepairPacks {
        config: config.clone(),
        from: a.from.clone(),
    };
    let reply = request_or(g, &req, |ns, _| {
        Ok(Reply::RepairPacks(Box::new(repair(
            ns.head(),
            config.as_deref(),
            &a.from,
        )?)))
    })?;
    let Reply::RepairPacks(r) = reply else {
        bail!("unexpected answer from the daemon");
    };
    print(g, &r, || {
        let mut out = format!(
            "read {} pack(s), {} object(s); {} bad",
            r.packs_checked,
            r.objects_checked,
            r.bad_packs.len()
        );
        for b in &r.bad_packs {
            out.push_str(&format!("\n  {b}"));
        }
        if !r.bad_packs.is_empty() {
            out.push_str(&format!(
                "\nfetched {} object(s) ({}) from {}, kept {} intact, {} audit record(s) from the index, replaced {} pack(s)",
                r.objects_fetched,
                format_bytes(r.bytes_fetched as f64),
                a.from,
                r.objects_kept,
                r.objects_from_log,
                r.packs_replaced
            ));
        }
        out
    });
    if !r.complete() {
        return Err(Reported(
            strata::exit::DAMAGED,
            format!(
                "{} object(s) are intact neither here nor in replica {}: {}; their packs were kept",
                r.unrecoverable.len(),
                a.from,
                r.unrecoverable.join(", ")
            ),
        )
        .into());
    }
    Ok(())
}
