//! `strata find`: the flags checked here (a pattern that does not compile
//! is wrong usage, refused before the repository is opened), then one
//! request, served by the daemon or on the opened repository.

use anyhow::Result;
use strata::daemon::control::{Reply, Request};
use strata::exit::{self, Reported};
use strata::tree::catalog::query::{kind_letter, FindSpec, Found, Pattern, Span};

use super::args::{FindArgs, Global};
use super::{print, request};

pub fn run(g: &Global, a: &FindArgs) -> Result<()> {
    let spec = FindSpec {
        pattern: a.pattern.clone(),
        regex: a.regex,
        path: a.path,
        snapshot: a.snapshot.clone(),
        since: a.since,
        until: a.until,
        size: a.size,
        newer: a.newer,
        uid: a.uid,
        kind: a.kind,
    };
    if let Err(e) = Pattern::new(&spec) {
        return Err(Reported(exit::USAGE, e).into());
    }
    let Reply::Found(found) = request(g, &Request::Find { spec })? else {
        anyhow::bail!("the daemon answered find with something else");
    };
    print(g, &found, || text(&found));
    if found.is_empty() {
        return Err(Reported(
            exit::NOT_FOUND,
            format!(
                "nothing matched {:?} in the kept snapshots{}",
                a.pattern,
                if a.path || a.pattern.contains('/') {
                    ""
                } else {
                    " (a glob is matched against base names; --path matches full paths)"
                }
            ),
        )
        .into());
    }
    Ok(())
}

/// One line per match: type, path, then its runs of snapshots.
fn text(found: &[Found]) -> String {
    found
        .iter()
        .map(|f| {
            let spans: Vec<String> = f.snapshots.iter().map(span).collect();
            format!("{} {}  {}", kind_letter(f.kind), f.path, spans.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// "FIRST .. LAST (N)", or "NAME (1)".
pub fn span(s: &Span) -> String {
    if s.count == 1 {
        format!("{} (1)", s.first)
    } else {
        format!("{} .. {} ({})", s.first, s.last, s.count)
    }
}
