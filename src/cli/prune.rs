//! `strata prune`: through the daemon while mounted (writes into head/ go
//! on), directly when not.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Result};
use strata::daemon::control::{Reply, Request};
use strata::exit::{self, Reported};
use strata::ops::prune::{prune, PruneContext, PruneOptions, PruneProgress, PruneReport};
use strata::policy::throttle::rate::{format_bytes, parse_size};

use super::args::{Global, PruneArgs};
use super::progress::{self, Poll};
use super::{print, request_or};

/// `--max-unused`: a percentage from 0 to 100, "%" optional.
fn max_unused(text: &str) -> Option<f64> {
    let t = text.trim();
    let v: f64 = t.strip_suffix('%').unwrap_or(t).trim_end().parse().ok()?;
    (v.is_finite() && (0.0..=100.0).contains(&v)).then_some(v)
}

pub fn run(g: &Global, a: &PruneArgs) -> Result<()> {
    let usage = |m: String| Reported(exit::USAGE, m);
    let opts = PruneOptions {
        max_unused_percent: max_unused(&a.max_unused).ok_or_else(|| {
            usage(format!(
                "--max-unused {:?} is not a percentage from 0 to 100 (e.g. 5 or 5%)",
                a.max_unused
            ))
        })?,
        max_repack_bytes: match &a.max_repack_size {
            None => None,
            Some(t) => Some(parse_size(t).ok_or_else(|| {
                usage(format!(
                    "--max-repack-size {t:?} is not a size (e.g. \"10GiB\", \"500MB\", or a number of bytes)"
                ))
            })?),
        },
        dry_run: a.dry_run,
    };
    let shown = !g.quiet && !g.json && std::io::stderr().is_terminal();
    let req = Request::Prune { options: opts };
    let reply = {
        // Mounted, the daemon prunes and `status` says how far it is.
        let _poll = shown
            .then(|| {
                Poll::start(g, |s| {
                    s.prune.as_ref().map(|p| format!("prune: {}", describe(p)))
                })
            })
            .transpose()?;
        request_or(g, &req, |ns, caller| {
            let last = std::sync::Mutex::new(None::<(std::time::Instant, String)>);
            // A new phase at once, the same phase at most 4 times a second.
            let tell = |p: &PruneProgress| {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                let due = last.as_ref().is_none_or(|(at, phase)| {
                    *phase != p.phase || at.elapsed() >= Duration::from_millis(250)
                });
                if due {
                    show(p);
                    *last = Some((std::time::Instant::now(), p.phase.clone()));
                }
            };
            let cx = PruneContext {
                throttle: None,
                progress: shown.then_some(&tell as &(dyn Fn(&PruneProgress) + Sync)),
            };
            Ok(Reply::Prune(Box::new(prune(ns.head(), caller, opts, cx)?)))
        })?
    };
    if shown {
        progress::clear();
    }
    let Reply::Prune(report) = reply else {
        bail!("unexpected answer from the daemon");
    };
    print(g, &report, || text(&report));
    Ok(())
}

/// How far a prune is, in words (also for `strata status`).
pub(crate) fn describe(p: &PruneProgress) -> String {
    let size = |n: u64| format_bytes(n as f64);
    match p.phase.as_str() {
        "mark" => "reading the trees of the kept snapshots and the head".to_owned(),
        "judge" => format!("reading pack tables, {} of {}", p.done, p.total),
        "copy" => format!(
            "copying what is in use, {} of {}",
            size(p.done),
            size(p.total)
        ),
        "commit" => "committing, then deleting".to_owned(),
        other => other.to_owned(),
    }
}

/// Prune's progress on a terminal.
fn show(p: &PruneProgress) {
    progress::show(&format!("prune: {}", describe(p)));
}

fn text(r: &PruneReport) -> String {
    let size = |n: u64| format_bytes(n as f64);
    let (delete, repack, freed) = if r.dry_run {
        ("would delete", "would repack", "would be freed")
    } else {
        ("deleted", "repacked", "freed")
    };
    let mut out = format!(
        "{} objects in use ({} trees read)\n{delete} {} unused pack(s), {repack} {} ({} of objects in use copied)\n{} in {} pack(s) before, {} in {} after: {} {freed}, {} unused left",
        r.live_objects,
        r.trees_read,
        r.packs_deleted,
        r.packs_repacked,
        size(r.bytes_repacked),
        size(r.bytes_before),
        r.packs_before,
        size(r.bytes_after),
        r.packs_after,
        size(r.bytes_freed),
        size(r.unused_bytes_left),
    );
    if r.dry_run {
        out.push_str("\ndry run: nothing changed");
    }
    out
}
