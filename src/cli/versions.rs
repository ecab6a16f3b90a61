//! `strata versions`: one request, then a table of the versions.

use anyhow::Result;
use strata::daemon::control::{Reply, Request};
use strata::exit::{self, Reported};
use strata::tree::catalog::query::kind_letter;

use super::args::Global;
use super::find::span;
use super::{print, request};

pub fn run(g: &Global, path: &str) -> Result<()> {
    let req = Request::Versions {
        path: path.to_owned(),
    };
    let Reply::Versions(reply) = request(g, &req)? else {
        anyhow::bail!("the daemon answered versions with something else");
    };
    print(g, &*reply, || {
        let mut out = vec![format!(
            "{:>3} {:1} {:>12} {:<20} {:>11} {:>4}  {:<16}  snapshots",
            "#", "t", "size", "modified", "uid:gid", "mode", "content"
        )];
        for (i, v) in reply.versions.iter().enumerate() {
            let mtime = strata::tree::objects::SnapshotRecord::name_at(v.mtime);
            let content = match (&v.digest, &v.target) {
                (Some(d), _) => d[..16].to_owned(),
                (_, Some(t)) => format!("-> {t}"),
                _ => "-".to_owned(),
            };
            out.push(format!(
                "{:>3} {:1} {:>12} {:<20} {:>11} {:>4o}  {:<16}  {}",
                i + 1,
                kind_letter(v.kind),
                v.size,
                mtime,
                format!("{}:{}", v.uid, v.gid),
                v.mode & 0o7777,
                content,
                span(&v.snapshots)
            ));
        }
        out.join("\n")
    });
    if reply.versions.is_empty() {
        return Err(Reported(
            exit::NOT_FOUND,
            format!(
                "no kept snapshot holds {}; `strata find` searches by name",
                reply.path
            ),
        )
        .into());
    }
    Ok(())
}
