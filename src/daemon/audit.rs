//! What the audit log records of each control request: the request's own
//! parameters and what it did, with the caller (SO_PEERCRED on the socket,
//! the process itself when the CLI opened the repository).
//!
//! Polling questions (status, metrics, report, listings of snapshots and
//! drills, the throttle's state) are not recorded: they read no backup
//! content and would bury the log. Everything else is, failed or not.

use serde_json::{json, Map, Value};

use super::control::{Reply, Request};
use crate::tree::audit::{chain_hash, Audit, Entry};
use crate::tree::namespace::Namespace;
use crate::tree::types::Caller;

/// Where a request came from: the daemon's control socket, or a command
/// that opened the repository itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The control socket of a mounted repository's daemon.
    Socket,
    /// The CLI, on an unmounted repository.
    Repository,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Socket => "socket",
            Via::Repository => "repository",
        }
    }
}

/// Whether `req` leaves a record.
pub fn audited(req: &Request) -> bool {
    !matches!(
        req,
        Request::Status
            | Request::Metrics
            | Request::Report
            | Request::SnapshotList
            | Request::SnapshotShow { .. }
            | Request::DrillList
            | Request::DrillShow { .. }
            | Request::ThrottleShow
    )
}

/// Records `req`, served for `caller`, with its outcome (the reply, or the
/// exit code it failed with). The operation has happened by now; a record
/// that cannot be written is said in the log, and the reply stands.
pub fn record(
    ns: &Namespace,
    caller: Caller,
    via: Via,
    req: &Request,
    outcome: Result<&Reply, u8>,
) {
    if !audited(req) {
        return;
    }
    let entry = entry(req, via, outcome);
    if let Err(e) = Audit::of(ns.head()).record(caller, entry) {
        tracing::error!(request = req.name(), uid = caller.uid, pid = caller.pid, error = %e, "the audit record of a request could not be written");
    }
}

/// The record of `req`.
pub fn entry(req: &Request, via: Via, outcome: Result<&Reply, u8>) -> Entry {
    let mut details = params(req);
    if let Ok(reply) = outcome {
        details.extend(facts(reply));
    }
    let op = match req {
        Request::KeyChanged { change } => change.op.clone(),
        _ => req.name().to_owned(),
    };
    let failed = outcome.err().or_else(|| outcome.ok().and_then(verdict));
    Entry {
        op,
        via: via.as_str().to_owned(),
        details,
        failed,
        changed_nothing: failed.is_some() || !changes(req),
    }
}

/// Whether `req` changes the repository's backups or keys (when it
/// succeeds); reads, checks, dry runs and the throttle do not.
fn changes(req: &Request) -> bool {
    match req {
        Request::SnapshotCreate { .. }
        | Request::SnapshotRun { .. }
        | Request::SnapshotHold { .. }
        | Request::SnapshotRelease { .. }
        | Request::HeadReset { .. }
        | Request::LeftoversRecord { .. }
        | Request::Drill { .. }
        | Request::DrillRecord { .. }
        | Request::RepairPacks { .. }
        | Request::KeyChanged { .. } => true,
        Request::Forget { dry_run, .. } => !*dry_run,
        Request::Prune { options } => !options.dry_run,
        Request::SnapshotList
        | Request::SnapshotShow { .. }
        | Request::Check { .. }
        | Request::DrillEstimate { .. }
        | Request::DrillList
        | Request::DrillShow { .. }
        | Request::Replicate(_)
        | Request::Metrics
        | Request::Report
        | Request::Status
        | Request::ThrottleShow
        | Request::ThrottleSet { .. }
        | Request::ThrottleClear
        | Request::AuditList { .. }
        | Request::AuditVerify { .. }
        | Request::AuditExport { .. }
        | Request::Find { .. }
        | Request::Versions { .. }
        | Request::TierShow { .. }
        | Request::Diff { .. }
        | Request::RepairCatalog
        | Request::Shutdown => false,
    }
}

/// The exit code of a reply that reports a finding: the command that gets
/// it fails.
fn verdict(reply: &Reply) -> Option<u8> {
    match reply {
        Reply::Check(c) if !c.errors.is_empty() => Some(crate::exit::DAMAGED),
        Reply::AuditVerdict(v) if !v.problems.is_empty() => Some(crate::exit::AUDIT_TAMPERED),
        _ => None,
    }
}

/// The request's parameters, but for the run records and leftovers a run
/// carries (hook output and paths: the run's own record keeps them).
fn params(req: &Request) -> Map<String, Value> {
    let mut map = match serde_json::to_value(req) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    map.remove("request");
    if let Some(Value::Object(run)) = map.remove("run") {
        for key in ["run", "status"] {
            if let Some(v) = run.get(key) {
                map.insert(format!("run_{key}"), v.clone());
            }
        }
    }
    map.remove("leftovers");
    // A key change's or a query's fields, at the top.
    for inner in ["change", "spec"] {
        if let Some(Value::Object(fields)) = map.remove(inner) {
            map.extend(fields);
        }
    }
    map.remove("op");
    prune_empty(&mut map);
    map
}

/// Drops what says nothing (nulls, empty lists and tables), so a record
/// shows what was asked, not every default.
fn prune_empty(map: &mut Map<String, Value>) {
    map.retain(|_, v| {
        if let Value::Object(inner) = v {
            prune_empty(inner);
        }
        !matches!(v, Value::Null)
            && !matches!(v, Value::Array(a) if a.is_empty())
            && !matches!(v, Value::Object(o) if o.is_empty())
    });
}

/// What the reply says was done.
fn facts(reply: &Reply) -> Map<String, Value> {
    let v = match reply {
        Reply::Snapshot(s) => json!({"seq": s.seq, "name": s.name}),
        Reply::Reset(r) => json!({"seq": r.snapshot.seq, "name": r.snapshot.name}),
        Reply::Forget(f) => {
            let gone: Vec<&str> = f
                .snapshots
                .iter()
                .filter(|l| !l.keep)
                .map(|l| l.name.as_str())
                .collect();
            json!({"forgotten": gone})
        }
        Reply::Prune(p) => json!({
            "packs_deleted": p.packs_deleted,
            "packs_repacked": p.packs_repacked,
            "bytes_freed": p.bytes_freed,
        }),
        Reply::Drill(d) => json!({
            "drill": d.number,
            "seq": d.snapshot,
            "name": d.snapshot_name,
            "result": d.result.as_str(),
        }),
        Reply::Check(c) => json!({"errors": c.errors.len(), "bytes_read": c.bytes_read}),
        Reply::RepairPacks(r) => json!({"report": r}),
        Reply::Replicate(r) => json!({"replicas": r}),
        _ => Value::Null,
    };
    match v {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The daemon itself, as the caller of what it does on its own.
fn daemon() -> Caller {
    // SAFETY: geteuid and getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    Caller {
        uid,
        gid,
        pid: std::process::id(),
    }
}

/// Records a mount at `mountpoint`, with the SHA-256 of each configuration
/// file the daemon read (`None`: absent), and which of them changed since
/// the previous mount's record: a changed retention lock, replica or key
/// file is seen even when nobody says so.
pub fn mounted(ns: &Namespace, mountpoint: &str, configs: &[(&str, Option<Vec<u8>>)]) {
    let digests: Map<String, Value> = configs
        .iter()
        .map(|(name, bytes)| {
            let digest = bytes
                .as_deref()
                .map_or("absent".to_owned(), |b| hex::encode(chain_hash(b)));
            (name.to_string(), Value::String(digest))
        })
        .collect();
    let audit = Audit::of(ns.head());
    let before = audit.list().ok().and_then(|records| {
        records
            .into_iter()
            .rev()
            .find(|r| r.op == "mount")
            .and_then(|r| r.details.get("config").cloned())
    });
    let mut details = Map::new();
    details.insert("mountpoint".into(), mountpoint.into());
    if let Some(Value::Object(before)) = before {
        let changed: Vec<&String> = digests
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(v))
            .map(|(k, _)| k)
            .collect();
        details.insert("config_changed".into(), json!(changed));
    }
    details.insert("config".into(), Value::Object(digests));
    own(ns, "mount", details);
}

/// Records the end of a mount, before the final commit makes it durable.
pub fn unmounted(ns: &Namespace, mountpoint: &str) {
    let mut details = Map::new();
    details.insert("mountpoint".into(), mountpoint.into());
    own(ns, "unmount", details);
}

fn own(ns: &Namespace, op: &str, details: Map<String, Value>) {
    let entry = Entry {
        op: op.to_owned(),
        via: "mount".to_owned(),
        details,
        failed: None,
        changed_nothing: false,
    };
    if let Err(e) = Audit::of(ns.head()).record(daemon(), entry) {
        tracing::error!(op, error = %e, "the audit record could not be written");
    }
}
