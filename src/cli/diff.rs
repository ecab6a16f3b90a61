//! `strata diff`: one request, then one line per difference.

use anyhow::Result;
use strata::daemon::control::{Reply, Request};
use strata::tree::catalog::query::{kind_letter, Change};

use super::args::Global;
use super::{print, request};

pub fn run(g: &Global, from: &str, to: &str, path: Option<&str>) -> Result<()> {
    let req = Request::Diff {
        from: from.to_owned(),
        to: to.to_owned(),
        path: path.map(str::to_owned),
    };
    let Reply::Diff(reply) = request(g, &req)? else {
        anyhow::bail!("the daemon answered diff with something else");
    };
    print(g, &*reply, || {
        let mut out = vec![format!(
            "from {} ({}) to {} ({}): {} differences",
            reply.from.name,
            reply.from.seq,
            reply.to.name,
            reply.to.seq,
            reply.differences.len()
        )];
        for d in &reply.differences {
            let mark = match d.change {
                Change::Added => "+",
                Change::Removed => "-",
                Change::Changed => "M",
            };
            let what: Vec<&str> = d.what.iter().map(|a| a.as_str()).collect();
            out.push(if what.is_empty() {
                format!("{mark} {} {}", kind_letter(d.kind), d.path)
            } else {
                format!(
                    "{mark} {} {}  ({})",
                    kind_letter(d.kind),
                    d.path,
                    what.join(", ")
                )
            });
        }
        out.join("\n")
    });
    Ok(())
}
