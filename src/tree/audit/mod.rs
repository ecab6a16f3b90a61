//! The audit log: who read, changed or deleted backups or keys, in records
//! an auditor can prove were not edited.
//!
//! A record is JSON (fields can be added without losing history) that
//! names the chain hash of the record before it; its own chain hash is
//! SHA-256 of its bytes, so anyone can recompute the chain from an export.
//! Each record is kept twice: as a row of the `audit` table, sealed and
//! bound to its number (a record moved to another row does not open), and
//! as an object in the packs, so `strata repair index` keeps the log. Row 0
//! holds the sealed head (the newest record's number and hash), so a
//! removed tail is seen; and every snapshot record carries the head at its
//! time ([`AuditAnchor`]), inside the bytes its id, the snapshot chain and
//! every replica vouch for ([`verify`] checks all three).

pub mod verify;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::crypto::Sealer;
use crate::store::format::Kind;
use crate::tree::head::records;
use crate::tree::head::txn::{Reader, Write};
use crate::tree::head::Head;
use crate::tree::objects::AuditAnchor;
use crate::tree::types::{Caller, Fault, FsError, Timestamp};

/// The anchor of an empty log.
pub const EMPTY: AuditAnchor = AuditAnchor {
    n: 0,
    hash: [0; 32],
};

/// What an operation was and how it ended, before it gets its number.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// The operation, e.g. "snapshot_create", "key_add", "mount".
    pub op: String,
    /// How the request arrived: "socket" (the daemon's control socket),
    /// "repository" (a command that opened the repository itself),
    /// "fuse" (a file operation through the mount: a mkdir in snapshots/,
    /// the first open of a snapshot's file by a user), "mount" (the
    /// daemon's own doing).
    pub via: String,
    /// What it acted on: snapshot names, key slots, counts.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// The exit code it failed with; `None` when it succeeded.
    pub failed: Option<u8>,
    /// Whether the operation left the repository's backups and keys as they
    /// were (a read, a check, a failure, a refusal, a dry run): its record
    /// then stays in the index only, so that the files stay so too.
    pub changed_nothing: bool,
}

/// One record, as stored and exported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Number, from 1, without gaps.
    pub n: u64,
    /// When (UTC, RFC 3339 to the microsecond).
    pub time: String,
    /// Who asked: user id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id.
    pub pid: u32,
    /// See [`Entry::via`].
    pub via: String,
    /// See [`Entry::op`].
    pub op: String,
    /// See [`Entry::details`].
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
    /// "ok" or "failed".
    pub result: String,
    /// The exit code of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<u8>,
    /// The previous record's chain hash, hex (64 zeros for the first).
    pub prev: String,
}

/// The chain hash of a record's stored bytes.
pub fn chain_hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

impl AuditRecord {
    /// A record from its stored bytes.
    pub fn decode(body: &[u8]) -> Result<AuditRecord, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// A value of the `audit` table.
type Sealed = &'static [u8];

/// The log's head as row 0 holds it (the empty log's when absent).
pub fn head_of(
    table: &impl ReadableTable<u64, Sealed>,
    sealer: &Sealer,
) -> Result<AuditAnchor, FsError> {
    match table.get(0).map_err(records::db)? {
        None => Ok(EMPTY),
        Some(v) => open_head(sealer, v.value()),
    }
}

/// Opens the sealed head of row 0.
pub fn open_head(sealer: &Sealer, sealed: &[u8]) -> Result<AuditAnchor, FsError> {
    let corrupt = |e: String| FsError::Corrupt(Fault::new(format!("audit log head: {e}")));
    let plain = sealer
        .open(Kind::IndexAuditHead, &0u64.to_le_bytes(), sealed)
        .map_err(|e| corrupt(e.to_string()))?;
    postcard::from_bytes(&plain).map_err(|e| corrupt(e.to_string()))
}

/// Opens the sealed row of record `n`: its stored bytes.
pub fn open_row(sealer: &Sealer, n: u64, sealed: &[u8]) -> Result<Vec<u8>, FsError> {
    sealer
        .open(Kind::IndexAudit, &n.to_le_bytes(), sealed)
        .map_err(|e| FsError::Corrupt(Fault::caused(format!("audit record {n}"), e)))
}

/// The sealed rows that store record `body` as number `n` and make it
/// the head: `[(n, record), (0, head)]`.
pub fn sealed_rows(sealer: &Sealer, n: u64, body: &[u8]) -> [(u64, Vec<u8>); 2] {
    let head = AuditAnchor {
        n,
        hash: chain_hash(body),
    };
    let plain = postcard::to_allocvec(&head).expect("an anchor serializes");
    [
        (n, sealer.seal(Kind::IndexAudit, &n.to_le_bytes(), body)),
        (
            0,
            sealer.seal(Kind::IndexAuditHead, &0u64.to_le_bytes(), &plain),
        ),
    ]
}

/// The log's head in a write transaction: what a snapshot taken in it
/// anchors.
pub fn head(w: &Write<'_>) -> Result<AuditAnchor, FsError> {
    head_of(w.audit()?, w.sealer())
}

/// Appends `entry` as `caller`'s record in `w`: the next number, chained to
/// the head. The record of an operation that changed nothing stays in the
/// index only ([`Entry::changed_nothing`]; an index lost with it is said by
/// `strata repair index`: [`LOST`]).
pub fn append(
    w: &mut Write<'_>,
    head: &Head,
    caller: Caller,
    entry: Entry,
) -> Result<AuditRecord, FsError> {
    let last = self::head(w)?;
    let in_packs = !entry.changed_nothing && entry.failed.is_none();
    let (record, body) = make(last, caller, entry);
    if in_packs {
        head.repo().store().put_object(Kind::Audit, &body)?;
    }
    for (k, v) in sealed_rows(w.sealer(), record.n, &body) {
        w.audit_mut()?
            .insert(k, v.as_slice())
            .map_err(records::db)?;
    }
    Ok(record)
}

/// The details key of a `repair_index` record that names the records an
/// index rebuilt from packs could not recover (those of operations that
/// changed nothing, which only the lost index held).
pub const LOST: &str = "lost_records";

/// The record that follows `last`, and its stored bytes.
pub fn make(last: AuditAnchor, caller: Caller, entry: Entry) -> (AuditRecord, Vec<u8>) {
    let record = AuditRecord {
        n: last.n + 1,
        time: rfc3339(Timestamp::now()),
        uid: caller.uid,
        gid: caller.gid,
        pid: caller.pid,
        via: entry.via,
        op: entry.op,
        details: entry.details,
        result: if entry.failed.is_some() {
            "failed"
        } else {
            "ok"
        }
        .to_owned(),
        exit: entry.failed,
        prev: hex::encode(last.hash),
    };
    let body = serde_json::to_vec(&record).expect("a record serializes");
    (record, body)
}

/// `time` as RFC 3339 UTC to the microsecond.
fn rfc3339(time: Timestamp) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(time.secs.max(0) as u64, time.nanos);
    humantime::format_rfc3339_micros(t).to_string()
}

/// The audit log of one head.
#[derive(Clone, Copy)]
pub struct Audit<'h> {
    head: &'h Head,
}

impl<'h> Audit<'h> {
    /// The log of `head`.
    pub fn of(head: &'h Head) -> Audit<'h> {
        Audit { head }
    }

    /// Appends `entry` for `caller` and makes it durable before returning.
    /// Under the head's commit serialization, as a snapshot is: the
    /// transaction stores an object, so a store commit must not wait on it.
    pub fn record(&self, caller: Caller, entry: Entry) -> Result<AuditRecord, FsError> {
        let serial = self.head.serial();
        let record = serial.transact(|w| append(w, self.head, caller, entry))?;
        serial.commit()?;
        Ok(record)
    }

    /// Every row as stored, oldest first: (number, sealed bytes), the head
    /// row 0 included, with the sealer that opens them. What verification
    /// and export start from.
    pub fn rows(&self) -> Result<Vec<(u64, Vec<u8>)>, FsError> {
        let r = self.head.rtx()?;
        let Some(table) = r.audit()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(records::db)? {
            let (k, v) = row.map_err(records::db)?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The records, oldest first; a record that does not open or decode
    /// fails the listing (`strata audit verify` says which and why).
    pub fn list(&self) -> Result<Vec<AuditRecord>, FsError> {
        let r = self.head.rtx()?;
        let mut out = Vec::new();
        for (n, sealed) in self.rows()? {
            if n == 0 {
                continue;
            }
            let body = open_row(r.sealer(), n, &sealed)?;
            out.push(
                AuditRecord::decode(&body)
                    .map_err(|e| FsError::Corrupt(Fault::caused(format!("audit record {n}"), e)))?,
            );
        }
        Ok(out)
    }

    /// The stored bytes of every record that opens, oldest first: what a
    /// pack repair stores again when a pack that held them is lost.
    pub fn bodies(&self) -> Result<Vec<Vec<u8>>, FsError> {
        let r = self.head.rtx()?;
        Ok(self
            .rows()?
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .filter_map(|(n, sealed)| open_row(r.sealer(), n, &sealed).ok())
            .collect())
    }

    /// Runs `f` with the sealer of the log's rows.
    pub fn with_sealer<T>(&self, f: impl FnOnce(&Sealer) -> T) -> Result<T, FsError> {
        Ok(f(self.head.rtx()?.sealer()))
    }
}
