//! The audit log of a mounted repository: the mount and unmount, requests
//! over the control socket with the caller SO_PEERCRED names, snapshots by
//! mkdir and the first read of a snapshot with the caller FUSE names, key
//! changes, a changed configuration seen at the next mount; and a replica
//! that still vouches for the log after a rewrite of the repository.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata::store::io::{Disk, LocalDisk};
use strata::tree::audit::AuditRecord;
use strata::tree::head::txn::Reader;
use strata::tree::head::Head;
use strata::tree::objects::{AuditAnchor, SnapshotRow};

use super::common::tier::{self, Tier};
use super::harness::{ok, rsync_into, run, Mount};
use super::tree;

fn records(m: &Mount) -> Vec<AuditRecord> {
    serde_json::from_str(&ok(m.strata().args(["--json", "audit", "list"]))).unwrap()
}

/// strata.toml with the replica "near" and `extra` lines.
fn config(m: &Mount, extra: &str) -> PathBuf {
    let path = m.path("strata.toml");
    let near = m.path("near");
    std::fs::write(
        &path,
        format!(
            "[[replica]]\nname = \"near\"\nto = \"{}\"\n{extra}",
            near.display()
        ),
    )
    .unwrap();
    path
}

/// A repository mounted with strata.toml declaring the replica "near".
fn mounted_with_replica() -> (Mount, PathBuf) {
    let m = Mount::unmounted();
    let conf = config(&m, "");
    m.mount_with(&["--config", conf.to_str().unwrap()]);
    (m, conf)
}

#[test]
fn the_mount_records_who_did_what() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let (m, conf) = mounted_with_replica();
    let c = conf.to_str().unwrap();
    let daemon = m.daemon_pid();
    let src = m.path("src");
    tree::make(&src);
    rsync_into(&src, &m.head().join("data"));
    let snap = m.snapshot("nightly");
    // Two files of one snapshot: one record, for the first.
    let files: Vec<PathBuf> = walk(&snap.join("data"))
        .into_iter()
        .filter(|p| p.is_file())
        .take(2)
        .collect();
    for f in &files {
        std::fs::read(f).unwrap();
    }
    ok(m.strata().args(["snapshot", "create", "--label", "second"]));
    ok(m.strata().args(["check"]));
    ok(m.strata().args(["find", "*"]));
    ok(m.strata().args(["replicate", "--config", c]));
    m.umount();
    // Key slots change only while unmounted.
    let key = m.path("new.key");
    ok(m.strata().args(["key", "add", "--new-key-file"]).arg(&key));
    // The host configuration changes while unmounted: the next mount says so.
    config(&m, "[verify]\ncycle = \"30d\"\n");
    m.mount_with(&["--config", c]);

    let records = records(&m);
    let seen: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.op.as_str(), r.via.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("mount", "mount"),
            ("snapshot_create", "fuse"),
            ("snapshot_read", "fuse"),
            ("snapshot_create", "socket"),
            ("check", "socket"),
            ("find", "socket"),
            ("replicate", "socket"),
            // The request that unmounted, always before the mount's end.
            ("shutdown", "socket"),
            ("unmount", "mount"),
            ("key_add", "repository"),
            ("mount", "mount"),
        ]
    );
    let me = std::process::id();
    // The daemon's own records name it; FUSE names the process that made
    // the directory or opened the file (this test); SO_PEERCRED names the
    // strata command, neither.
    assert_eq!(records[0].pid, daemon);
    // FUSE names the thread (this test's), or on some kernels its process.
    let tid = unsafe { libc::gettid() } as u32;
    for r in &records[1..3] {
        assert!(r.pid == tid || r.pid == me, "{r:?} (pid {me}, tid {tid})");
    }
    assert_eq!(records[1].details["label"], "nightly");
    assert_eq!(records[2].details["seq"], 1);
    for r in records[3..8].iter().chain(&records[9..10]) {
        assert!(r.pid != me && r.pid != daemon, "{r:?}");
        assert_eq!(r.uid, unsafe { libc::geteuid() });
    }
    assert_eq!(records[3].details["seq"], 2);
    assert_eq!(records[5].details["pattern"], "*");
    assert!(records[0].details.get("config_changed").is_none());
    assert_eq!(
        records[10].details["config_changed"],
        serde_json::json!(["host"])
    );
    assert_ne!(records[10].details["config"]["repository"], "absent");

    // The snapshots anchor the log; so do the replica's copies of them.
    let v: serde_json::Value = serde_json::from_str(&ok(m
        .strata()
        .args(["--json", "audit", "verify", "--config", c])))
    .unwrap();
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    assert_eq!(v["replicas"], 1, "{v}");
    assert_eq!(
        v["anchors"], 4,
        "two snapshots here and on the replica: {v}"
    );

    // An export while mounted, through the daemon.
    let export = ok(m.strata().args(["audit", "export"]));
    assert_eq!(export.lines().count(), records.len() + 2);
    m.umount();
}

/// Someone with the key rewrites the log and the anchors of every snapshot
/// here to match: nothing here contradicts it any more, but the replica's
/// snapshot records still name the original.
#[test]
fn a_replica_vouches_for_the_log_after_a_rewrite_here() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let (m, conf) = mounted_with_replica();
    let c = conf.to_str().unwrap();
    m.snapshot("one");
    m.snapshot("two");
    ok(m.strata().args(["replicate", "--config", c]));
    m.umount();
    ok(m.strata().args(["audit", "verify", "--config", c]));

    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(m.repo()));
    let head = Head::new(super::common::open(disk)).unwrap();
    rewrite(&head);
    head.commit().unwrap();
    drop(head);

    // Without the replica, the rewrite holds together.
    let lone = m.path("lone.toml");
    std::fs::write(&lone, "").unwrap();
    ok(m.strata().args(["audit", "verify", "--config"]).arg(&lone));
    let out = run(m.strata().args(["audit", "verify", "--config", c]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(30), "{said}");
    assert!(said.contains("replica near's snapshot 2"), "{said}");
    assert!(!said.contains("problem: snapshot"), "here it holds: {said}");
}

/// Rewrites the audit log ([`super::common::audit::rewrite_log`]) and
/// re-anchors every snapshot row on the new chain.
fn rewrite(head: &Head) {
    let hashes = super::common::audit::rewrite_log(head);
    let serial = head.serial();
    serial
        .transact(|w| {
            let snaps: Vec<(u64, Vec<u8>)> = {
                use redb::ReadableTable;
                w.snapshots()?
                    .iter()
                    .unwrap()
                    .map(|r| {
                        let (k, v) = r.unwrap();
                        (k.value(), v.value().to_vec())
                    })
                    .collect()
            };
            for (seq, sealed) in snaps {
                let mut row = SnapshotRow::open(w.sealer(), seq, &sealed)?;
                if let Some(a) = row.record.audit {
                    row.record.audit = Some(AuditAnchor {
                        n: a.n,
                        hash: hashes[a.n as usize],
                    });
                }
                let v = row.seal(w.sealer(), seq);
                w.snapshots_mut()?
                    .insert(seq, v.as_slice())
                    .map_err(strata::tree::head::records::db)?;
            }
            Ok(())
        })
        .unwrap();
    serial.commit().unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}
