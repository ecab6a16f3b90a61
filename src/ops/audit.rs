//! The audit log as an auditor reads it: the records, a check that none was
//! edited, removed, reordered or cut off (against the snapshot records'
//! anchors too), and the export in JSON lines.

use serde::Serialize;

use crate::ops::replicate::target;
use crate::policy::replica::ReplicaConfig;
use crate::sys::chain::Chain;
use crate::tree::audit::verify::{self, Verdict};
use crate::tree::audit::{chain_hash, open_row, Audit, AuditRecord};
use crate::tree::head::Head;
use crate::tree::objects::AuditAnchor;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{Fault, FsError};

/// The records at or after `since` (seconds since the epoch), oldest first.
pub fn list(head: &Head, since: Option<i64>) -> Result<Vec<AuditRecord>, FsError> {
    let mut records = Audit::of(head).list()?;
    records.retain(|r| after(&r.time, since));
    Ok(records)
}

/// Checks the log against itself, against the anchor every kept snapshot
/// record carries, and against the anchors in the snapshot records of
/// `replicas`: copies a rewrite of this repository cannot reach. A replica
/// that cannot be opened is a warning, not a finding.
pub fn verify(head: &Head, replicas: &[ReplicaConfig]) -> Result<Verdict, FsError> {
    let audit = Audit::of(head);
    let rows = audit.rows()?;
    let mut anchors = anchors(head, "")?;
    let mut warnings = Vec::new();
    for r in replicas {
        match target::open(&r.to, head.repo(), None) {
            Ok((replica, _)) => anchors.extend(self::anchors(&replica, &r.name)?),
            Err(e) => warnings.push(format!(
                "replica {} was not compared: {}",
                r.name,
                Chain(&e)
            )),
        }
    }
    let mut verdict = audit.with_sealer(|sealer| verify::verify(sealer, &rows, &anchors))?;
    verdict.replicas = (replicas.len() - warnings.len()) as u64;
    verdict.warnings.extend(warnings);
    Ok(verdict)
}

/// The anchors of `head`'s kept snapshots, named for a reader.
fn anchors(head: &Head, replica: &str) -> Result<Vec<(String, AuditAnchor)>, FsError> {
    let at = |seq: u64, name: String| match replica {
        "" => format!("snapshot {seq} ({name})"),
        r => format!("replica {r}'s snapshot {seq} ({name})"),
    };
    Ok(Snapshots::of(head)
        .list()?
        .into_iter()
        .filter_map(|row| {
            let a = row.record.audit?;
            Some((at(row.record.seq, row.record.name()), a))
        })
        .collect())
}

/// One line of an export: the record's number, its chain hash, and the
/// record exactly as stored, so that SHA-256 of `record`'s UTF-8 bytes is
/// `hash`, and the next line's record names it as `prev`.
#[derive(Clone, Debug, Serialize)]
pub struct ExportLine {
    /// The record's number.
    pub n: u64,
    /// SHA-256 of `record`, hex.
    pub hash: String,
    /// The record's JSON, as stored.
    pub record: String,
}

/// The records at or after `since`, as export lines (JSON, one per line).
pub fn export(head: &Head, since: Option<i64>) -> Result<Vec<String>, FsError> {
    let audit = Audit::of(head);
    let rows = audit.rows()?;
    let mut out = Vec::new();
    for (n, sealed) in rows {
        if n == 0 {
            continue;
        }
        let body = audit.with_sealer(|s| open_row(s, n, &sealed))??;
        let record = AuditRecord::decode(&body)
            .map_err(|e| FsError::Corrupt(Fault::caused(format!("audit record {n}"), e)))?;
        if !after(&record.time, since) {
            continue;
        }
        let line = ExportLine {
            n,
            hash: hex::encode(chain_hash(&body)),
            record: String::from_utf8_lossy(&body).into_owned(),
        };
        out.push(serde_json::to_string(&line).expect("a line serializes"));
    }
    Ok(out)
}

/// Whether a record written at `time` (RFC 3339) is at or after `since`.
fn after(time: &str, since: Option<i64>) -> bool {
    let Some(since) = since else {
        return true;
    };
    humantime::parse_rfc3339(time)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .is_none_or(|d| d.as_secs() as i64 >= since)
}
