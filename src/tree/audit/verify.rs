//! Checking the audit log: every row opens as the record of its number, the
//! numbers have no gaps, each record names its predecessor's chain hash,
//! the sealed head names the last record, and every anchor (a snapshot
//! record's, here or on a replica) names a record the log still holds, with
//! the same hash.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{chain_hash, open_head, open_row, AuditRecord, LOST};
use crate::store::crypto::Sealer;
use crate::tree::objects::AuditAnchor;

/// What a check of the log found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Records read.
    pub records: u64,
    /// The newest record's number, as the sealed head names it.
    pub head: u64,
    /// Its chain hash, hex.
    pub head_hash: String,
    /// Anchors compared with the log.
    pub anchors: u64,
    /// Replicas whose snapshots' anchors were compared.
    pub replicas: u64,
    /// What could not be compared (a replica out of reach).
    pub warnings: Vec<String>,
    /// What does not hold; empty when the log is intact.
    pub problems: Vec<String>,
}

/// Checks `rows` (number, sealed bytes; row 0 is the head) against each
/// other and against `anchors` (where the anchor was found, the anchor).
pub fn verify(
    sealer: &Sealer,
    rows: &[(u64, Vec<u8>)],
    anchors: &[(String, AuditAnchor)],
) -> Verdict {
    let mut v = Verdict::default();
    let lost = lost(sealer, rows);
    let mut head = None;
    let mut hashes = BTreeMap::new();
    // The hash the next record must name; `None` after a record that could
    // not be read, whose hash is unknown.
    let mut prev = Some([0u8; 32]);
    let mut expected = 1;
    for (n, sealed) in rows {
        let n = *n;
        if n == 0 {
            match open_head(sealer, sealed) {
                Ok(h) => head = Some(h),
                Err(e) => v.problems.push(format!("{e}: it was changed or replaced")),
            }
            continue;
        }
        v.records += 1;
        if n != expected {
            if (expected..n).all(|k| lost.contains(&k)) {
                v.warnings.push(format!(
                    "{} not in the log: {LOST_SAID}",
                    numbers(expected, n - 1)
                ));
            } else {
                v.problems.push(missing(expected, n - 1));
            }
            prev = None;
        }
        expected = n + 1;
        let body = match open_row(sealer, n, sealed) {
            Ok(body) => body,
            Err(_) => {
                v.problems.push(format!(
                    "record {n} does not open as record {n}: its bytes were changed, or it was moved from another row"
                ));
                prev = None;
                continue;
            }
        };
        let hash = chain_hash(&body);
        match AuditRecord::decode(&body) {
            Err(e) => v.problems.push(format!("record {n} is not a record: {e}")),
            Ok(r) if r.n != n => v
                .problems
                .push(format!("record {n} calls itself record {}", r.n)),
            Ok(r) => {
                if let Some(p) = prev {
                    if r.prev != hex::encode(p) {
                        v.problems.push(format!(
                            "record {n} does not follow record {}: one of the two was replaced",
                            n - 1
                        ));
                    }
                }
            }
        }
        hashes.insert(n, hash);
        prev = Some(hash);
    }
    let last = expected - 1;
    match head {
        None if last > 0 => v
            .problems
            .push("the log's head (row 0) is missing: it was removed".to_owned()),
        None => {}
        Some(h) => {
            v.head = h.n;
            v.head_hash = hex::encode(h.hash);
            if h.n > last {
                v.problems.push(format!(
                    "the log ends at record {last} but its head names record {}: {}",
                    h.n,
                    missing(last + 1, h.n)
                ));
            } else if h.n < last {
                v.problems.push(format!(
                    "the log's head names record {} but the log goes on to {last}: the head was rolled back or the records after it added",
                    h.n
                ));
            } else if hashes.get(&last).is_some_and(|x| *x != h.hash) {
                v.problems.push(format!(
                    "record {last} is not the record the log's head names: it was replaced"
                ));
            }
        }
    }
    for (at, a) in anchors {
        if a.n == 0 {
            continue;
        }
        v.anchors += 1;
        match hashes.get(&a.n) {
            None if lost.contains(&a.n) => v
                .warnings
                .push(format!("{at} vouches for record {}: {LOST_SAID}", a.n)),
            None => v.problems.push(format!(
                "{at} vouches for record {}, which the log no longer holds",
                a.n
            )),
            Some(h) if *h != a.hash => v.problems.push(format!(
                "{at} vouches for another record {}: the log was rewritten from there on",
                a.n
            )),
            Some(_) => {}
        }
    }
    v
}

/// Why a number a repair named is not a finding.
const LOST_SAID: &str = "the record of an operation that changed nothing (a read, a check, a failure, a refusal, a dry run) is kept in the index only, and the index was rebuilt from the packs (the repair_index record says so)";

/// The numbers `repair_index` records name as lost with the index.
fn lost(sealer: &Sealer, rows: &[(u64, Vec<u8>)]) -> BTreeSet<u64> {
    rows.iter()
        .filter(|(n, _)| *n > 0)
        .filter_map(|(n, sealed)| open_row(sealer, *n, sealed).ok())
        .filter_map(|body| AuditRecord::decode(&body).ok())
        .filter(|r| r.op == "repair_index")
        .filter_map(|r| r.details.get(LOST).cloned())
        .filter_map(|v| serde_json::from_value::<Vec<u64>>(v).ok())
        .flatten()
        .collect()
}

fn missing(from: u64, to: u64) -> String {
    if from == to {
        format!("record {from} is missing: it was removed")
    } else {
        format!("records {from} to {to} are missing: they were removed")
    }
}

fn numbers(from: u64, to: u64) -> String {
    if from == to {
        format!("record {from} is")
    } else {
        format!("records {from} to {to} are")
    }
}
