//! `strata audit list|verify|export`: the audit log, through the daemon
//! when the repository is mounted, else from the repository itself.

use std::io::Write;

use anyhow::{bail, Context, Result};
use strata::daemon::control::{Reply, Request};
use strata::exit::Tampered;
use strata::tree::audit::AuditRecord;

use super::args::{AuditCommand, Global};
use super::{print, request};

pub fn run(g: &Global, c: &AuditCommand) -> Result<()> {
    match c {
        AuditCommand::List { since } => {
            let Reply::Audit(records) = request(g, &Request::AuditList { since: *since })? else {
                bail!("unexpected answer listing the audit log");
            };
            print(g, &records, || table(&records));
        }
        AuditCommand::Verify { config } => {
            let req = Request::AuditVerify {
                config: config.clone(),
            };
            let Reply::AuditVerdict(v) = request(g, &req)? else {
                bail!("unexpected answer checking the audit log");
            };
            print(g, &v, || {
                let head = v.head_hash.get(..16).unwrap_or("-");
                let mut out = format!(
                    "{} records, head {} ({head}), {} snapshot anchors compared ({} replica(s))",
                    v.records, v.head, v.anchors, v.replicas
                );
                for w in &v.warnings {
                    out.push_str(&format!("\nwarning: {w}"));
                }
                for p in &v.problems {
                    out.push_str(&format!("\nproblem: {p}"));
                }
                if v.problems.is_empty() {
                    out.push_str("\nthe audit log is intact");
                }
                out
            });
            if !v.problems.is_empty() {
                return Err(Tampered(v.problems.len()).into());
            }
        }
        AuditCommand::Export { since, output } => {
            let Reply::AuditExport(lines) = request(g, &Request::AuditExport { since: *since })?
            else {
                bail!("unexpected answer exporting the audit log");
            };
            let mut text = lines.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            match output {
                None => std::io::stdout().write_all(text.as_bytes())?,
                Some(path) => std::fs::write(path, text)
                    .with_context(|| format!("cannot write the export to {}", path.display()))?,
            }
        }
    }
    Ok(())
}

/// One line per record: number, time, who, how, what, and how it ended.
fn table(records: &[AuditRecord]) -> String {
    let mut out = String::from("     n  time                         uid     pid  via         operation          result  details");
    for r in records {
        let details = if r.details.is_empty() {
            String::new()
        } else {
            serde_json::Value::Object(r.details.clone()).to_string()
        };
        let result = match r.exit {
            Some(code) => format!("{} ({code})", r.result),
            None => r.result.clone(),
        };
        out.push_str(&format!(
            "\n{:>6}  {:27}  {:>5}  {:>6}  {:10}  {:17}  {:6}  {}",
            r.n, r.time, r.uid, r.pid, r.via, r.op, result, details
        ));
    }
    out
}
