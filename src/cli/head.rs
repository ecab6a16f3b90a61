//! `strata head reset`: head/ back to a snapshot's tree, through the
//! daemon while mounted, directly when not.

use anyhow::{bail, Context, Result};
use strata::daemon::control::{Reply, Request};
use strata::exit::{self, Reported};
use strata::sys::runlock;

use super::args::{Global, HeadCommand};
use super::request;
use super::{locked, print};

pub fn run(g: &Global, c: &HeadCommand) -> Result<()> {
    let HeadCommand::Reset { to } = c;
    // Held for the reset, so that no backup run starts copying into the
    // head while it changes under it.
    let _lock = run_lock(g)?;
    let Reply::Reset(info) = request(
        g,
        &Request::HeadReset {
            snapshot: to.clone(),
        },
    )?
    else {
        bail!("unexpected answer from the daemon");
    };
    print(g, &info, || {
        let s = &info.snapshot;
        let label = s
            .label
            .as_ref()
            .map_or(String::new(), |l| format!(", label {l}"));
        let mut out = format!(
            "head/ reset to snapshot {} ({}{label}, {}): every change made in head/ after it was discarded",
            s.seq, s.name, s.status
        );
        if let Some(l) = &info.leftovers {
            out.push_str(&format!(
                "\nthe discarded changes included the leftovers of {l}"
            ));
        }
        out
    });
    Ok(())
}

/// The repository's run lock, or exit 24 naming the run in progress.
fn run_lock(g: &Global) -> Result<runlock::RunLock> {
    let id = locked(g)?.config().instance();
    let path = runlock::path(&strata::sys::mountpoint::runtime_dir(), &id);
    let me = runlock::Holder::me(Some("(strata head reset)".into()));
    let taken = runlock::acquire(&path, &me, None, |_| {})
        .with_context(|| format!("taking the run lock {}", path.display()))?;
    taken.map_err(|h| {
        Reported(
            exit::RUN_IN_PROGRESS,
            format!(
                "a backup run is in progress ({h}): head/ was not reset, since that would discard its copy half-done; let the run end, then run `strata head reset` again"
            ),
        )
        .into()
    })
}
