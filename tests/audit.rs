//! The audit log through the CLI on an unmounted repository: what each
//! operation records, that `strata audit verify` finds each kind of
//! tampering (exit 30), that an export lets an auditor's own tools
//! recompute the chain, and that `strata repair index` keeps the log.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use strata::store::io::{Disk, LocalDisk};
use strata::tree::audit::AuditRecord;
use strata::tree::head::txn::Reader;
use strata::tree::head::Head;

struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    /// A repository with passphrase "correct horse", as `common::open` opens it.
    fn new() -> Repo {
        let r = Repo {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(r.path("pw"), "correct horse\n").unwrap();
        // No replicas: this machine's /etc/strata/strata.toml is not the test's.
        std::fs::write(r.path("strata.toml"), "").unwrap();
        r.ok(&["init", "--kdf-memory-mib", "1", "--kdf-iterations", "1"]);
        r
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--repo")
            .arg(self.path("repo"))
            .arg("--password-file")
            .arg(self.path("pw"))
            .args(args)
            .env("STRATA_RUNTIME_DIR", self.path("run"))
            .env("STRATA_STATE_DIR", self.path("state"))
            .env("STRATA_CONFIG", self.path("strata.toml"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn records(&self) -> Vec<AuditRecord> {
        serde_json::from_str(&self.ok(&["--json", "audit", "list"])).unwrap()
    }

    /// Runs `f` on the head of the repository, opened by this process as
    /// someone holding the files and, for some tampering, the key.
    fn tamper(&self, f: impl FnOnce(&Head)) {
        let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(self.path("repo")));
        let head = Head::new(common::open(disk)).unwrap();
        f(&head);
        head.commit().unwrap();
    }

    /// `audit verify` fails with exit 30 naming `what`.
    fn tampered(&self, what: &str) {
        let out = self.run(&["audit", "verify"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(30), "{text}");
        assert!(text.contains(what), "expected {what:?} in: {text}");
        assert!(text.contains("does not verify"), "{text}");
    }
}

/// A repository with a few records and two snapshots, the second of which
/// anchors the log at its first record; verified intact.
fn busy() -> Repo {
    let r = Repo::new();
    r.ok(&["snapshot", "create"]);
    r.ok(&["snapshot", "create", "--label", "nightly"]);
    r.ok(&["snapshot", "hold", "latest", "--reason", "case 7"]);
    r.ok(&["snapshot", "release", "latest", "--reason", "case closed"]);
    r.ok(&["check"]);
    assert_eq!(r.records().len(), 5, "a listing is recorded after it");
    r.ok(&["audit", "verify"]);
    r
}

/// Rows of the audit table as stored: (number, sealed bytes).
fn rows(head: &Head) -> Vec<(u64, Vec<u8>)> {
    strata::tree::audit::Audit::of(head).rows().unwrap()
}

fn set_row(head: &Head, n: u64, value: Option<&[u8]>) {
    let serial = head.serial();
    serial
        .transact(|w| {
            let t = w.audit_mut()?;
            match value {
                Some(v) => t.insert(n, v).map(|_| ()),
                None => t.remove(n).map(|_| ()),
            }
            .map_err(strata::tree::head::records::db)
        })
        .unwrap();
    serial.commit().unwrap();
}

#[test]
fn each_operation_leaves_a_record_with_its_caller() {
    let r = busy();
    r.ok(&["forget", "1"]);
    r.ok(&["prune"]);
    let key = r.path("new.key");
    r.ok(&["key", "add", "--new-key-file", key.to_str().unwrap()]);
    r.ok(&["snapshot", "list"]);
    let refused = r.run(&["forget", "no-such-snapshot"]);
    assert!(!refused.status.success());
    let records = r.records();
    let ops: Vec<&str> = records.iter().map(|r| r.op.as_str()).collect();
    assert_eq!(
        ops,
        [
            "snapshot_create",
            "snapshot_create",
            "snapshot_hold",
            "snapshot_release",
            "check",
            "audit_list",
            "audit_verify",
            "forget",
            "prune",
            "key_add",
            "forget",
        ],
        "a listing of snapshots is not recorded; everything else is"
    );
    let me = unsafe { libc::geteuid() };
    for (i, rec) in records.iter().enumerate() {
        assert_eq!(rec.n, i as u64 + 1);
        assert_eq!(rec.uid, me);
        assert_ne!(rec.pid, 0);
        assert_eq!(rec.via, "repository");
    }
    let hold = &records[2];
    assert_eq!(hold.details["reason"], "case 7");
    assert_eq!(hold.details["seq"], 2);
    assert_eq!(
        records[7].details["forgotten"][0],
        records[0].details["name"]
    );
    assert_eq!(records[9].details["kind"], "key-file");
    let failed = &records[10];
    let code = refused.status.code().map(|c| c as u8);
    assert_eq!((failed.result.as_str(), failed.exit), ("failed", code));
    r.ok(&["audit", "verify"]);
    let since = r.ok(&["--json", "audit", "list", "--since", "2999-01-01"]);
    assert_eq!(since.trim(), "[]");
    let bad = r.run(&["audit", "list", "--since", "yesterday-ish"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a time"));
}

#[test]
fn a_flipped_byte_is_found() {
    let r = busy();
    r.tamper(|head| {
        let mut v = rows(head)[3].1.clone();
        let last = v.len() - 1;
        v[last] ^= 1;
        set_row(head, 3, Some(&v));
    });
    r.tampered("record 3 does not open as record 3");
}

#[test]
fn a_removed_record_is_found() {
    let r = busy();
    r.tamper(|head| set_row(head, 2, None));
    r.tampered("record 2 is missing");
}

#[test]
fn reordered_records_are_found() {
    let r = busy();
    r.tamper(|head| {
        let rows = rows(head);
        set_row(head, 2, Some(&rows[3].1));
        set_row(head, 3, Some(&rows[2].1));
    });
    r.tampered("record 2 does not open as record 2");
}

#[test]
fn a_truncated_tail_is_found() {
    let r = busy();
    let last = r.records().len() as u64 + 1;
    r.tamper(|head| {
        set_row(head, last, None);
        set_row(head, last - 1, None);
    });
    r.tampered(&format!("records {} to {last} are missing", last - 1));
}

/// Someone with the key edits a record and seals it again: the next record
/// no longer follows it.
#[test]
fn a_resealed_record_is_found() {
    let r = busy();
    r.tamper(|head| {
        let (_, sealed) = rows(head)[3].clone();
        let body = head
            .rtx()
            .map(|t| strata::tree::audit::open_row(t.sealer(), 3, &sealed).unwrap())
            .unwrap();
        let mut rec = AuditRecord::decode(&body).unwrap();
        rec.uid = 4242;
        let edited = serde_json::to_vec(&rec).unwrap();
        let v = head.rtx().unwrap().sealer().seal(
            strata::store::format::Kind::IndexAudit,
            &3u64.to_le_bytes(),
            &edited,
        );
        set_row(head, 3, Some(&v));
    });
    r.tampered("record 4 does not follow record 3");
}

/// Someone with the key rewrites the log from record 1 on, each record
/// chained to the edited one and the head sealed again: the chain holds,
/// but the snapshot that anchored record 1 vouches for the original.
#[test]
fn a_rewritten_chain_is_found_by_the_snapshot_anchor() {
    let r = busy();
    r.tamper(|head| {
        common::audit::rewrite_log(head);
    });
    r.tampered("vouches for another record 1");
}

/// An export is JSON lines that Python's hashlib alone checks: each
/// record's SHA-256 is its hash, and each names the one before.
#[test]
fn an_export_is_checked_by_an_auditors_own_tools() {
    let r = busy();
    let file = r.path("audit.jsonl");
    r.ok(&["audit", "export", "--output", file.to_str().unwrap()]);
    let check = r#"
import hashlib, json, sys
prev = "0" * 64
n = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    h = hashlib.sha256(e["record"].encode()).hexdigest()
    assert h == e["hash"], ("hash", e["n"])
    rec = json.loads(e["record"])
    assert rec["prev"] == prev, ("chain", e["n"])
    assert rec["n"] == e["n"] == n + 1
    prev, n = h, n + 1
print(n)
"#;
    let out = Command::new("python3")
        .args(["-c", check])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
    // The same check fails on an edited line: it can fail.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replacen("case 7", "case 8", 1);
    std::fs::write(&file, text).unwrap();
    let out = Command::new("python3")
        .args(["-c", check])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// The records of what changed the repository are objects in the packs
/// too: an index rebuilt from the packs holds them as they were, and the
/// repair names the records of reads it could not recover (the index alone
/// held them, so that a read leaves the files as they were).
#[test]
fn repair_index_keeps_the_log() {
    let r = busy();
    r.ok(&["snapshot", "create"]);
    let before = r.records();
    std::fs::remove_file(r.path("repo").join(strata::store::format::INDEX_FILE)).unwrap();
    r.ok(&["repair", "index"]);
    let after = r.records();
    let changes = ["snapshot_create", "snapshot_hold", "snapshot_release"];
    let kept: Vec<_> = before
        .iter()
        .filter(|x| changes.contains(&x.op.as_str()))
        .collect();
    assert_eq!(kept.len(), 5);
    assert_eq!(after.iter().take(5).collect::<Vec<_>>(), kept);
    let repair = &after[5];
    assert_eq!(repair.op, "repair_index");
    // The check, the listing and the verify of busy(); the listing after
    // the last change is past the end of what the packs hold.
    assert_eq!(repair.details["lost_records"], serde_json::json!([5, 6, 7]));
    assert_eq!(repair.details["packs_end"], 8);
    assert_eq!(repair.n, 9);
    let said = r.ok(&["audit", "verify"]);
    assert!(said.contains("records 5 to 7 are not in the log"), "{said}");
}

/// The sealed head and a snapshot's anchor are only as old as the last
/// write: a head rolled back to an older sealed value is seen.
#[test]
fn a_rolled_back_head_is_found() {
    let r = busy();
    let old_head = {
        let mut v = None;
        r.tamper(|head| v = Some(rows(head)[0].1.clone()));
        v.unwrap()
    };
    r.ok(&["snapshot", "create"]);
    r.tamper(|head| set_row(head, 0, Some(&old_head)));
    r.tampered("the head was rolled back");
}

/// Every file but the index, with its bytes.
fn files(dir: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.file_name() != Some(strata::store::format::INDEX_FILE.as_ref()) {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// A refused request is recorded in the index alone, so the repository's
/// files stay as they were; an index rebuilt from the packs lacks that
/// record, and the repair says so in a record of its own.
#[test]
fn a_refused_request_changes_no_file_and_a_repair_names_what_it_lost() {
    let r = busy();
    r.ok(&["snapshot", "hold", "1", "--reason", "case 9"]);
    let before = files(&r.path("repo"));
    let refused = r.run(&["forget", "1"]);
    assert_eq!(refused.status.code(), Some(26), "held");
    assert!(
        before == files(&r.path("repo")),
        "a refused forget changed a file"
    );
    let records = r.records();
    let last = records.last().unwrap();
    assert_eq!((last.op.as_str(), last.exit), ("forget", Some(26)));
    let lost = last.n;
    // A change after it: the refused request's record is now inside the
    // log the packs hold, not past its end.
    r.ok(&["snapshot", "release", "1", "--reason", "case 9 closed"]);

    std::fs::remove_file(r.path("repo").join(strata::store::format::INDEX_FILE)).unwrap();
    r.ok(&["repair", "index"]);
    let after = r.records();
    let repair = after
        .iter()
        .find(|x| x.op == "repair_index")
        .expect("recorded");
    let named: Vec<u64> = serde_json::from_value(repair.details["lost_records"].clone()).unwrap();
    assert!(named.contains(&lost), "{named:?}");
    let said = r.ok(&["audit", "verify"]);
    assert!(
        said.contains(&format!(
            "records {lost} to {} are not in the log",
            lost + 1
        )),
        "{said}"
    );
    assert!(said.contains("changed nothing"), "{said}");
    // Without the repair's record, the same gap is a finding.
    r.tamper(|head| set_row(head, repair.n, None));
    r.tampered(&format!("records {lost} to {} are missing", lost + 1));
}

/// A drill, a head reset and every key command leave their records too,
/// with what they acted on.
#[test]
fn drills_resets_and_key_changes_leave_records() {
    let r = busy();
    r.ok(&["drill", "latest", "--discard"]);
    r.ok(&["head", "reset", "--to", "1"]);
    let key = r.path("second.key");
    let added = r.ok(&["key", "add", "--new-key-file", key.to_str().unwrap()]);
    let slot = added.trim().rsplit(' ').next().unwrap().to_owned();
    std::fs::write(r.path("pw2"), "battery staple\n").unwrap();
    let cheap = ["--kdf-memory-mib", "1", "--kdf-iterations", "1"];
    let pw2 = r.path("pw2");
    let mut passwd = vec![
        "key",
        "passwd",
        "--new-password-file",
        pw2.to_str().unwrap(),
    ];
    passwd.extend(cheap);
    r.ok(&passwd);
    std::fs::copy(r.path("pw2"), r.path("pw")).unwrap();
    r.ok(&["key", "remove", &slot]);
    let records = r.records();
    let tail: Vec<&str> = records[7..].iter().map(|x| x.op.as_str()).collect();
    assert_eq!(
        tail,
        ["drill", "head_reset", "key_add", "key_passwd", "key_remove"]
    );
    assert_eq!(records[7].details["result"], "passed");
    assert_eq!(records[8].details["seq"], 1);
    assert_eq!(records[9].details["slot"], slot.as_str());
    assert_eq!(records[11].details["slot"], slot.as_str());
    r.ok(&["audit", "verify"]);
}
