//! Forgetting snapshots through the engine and the forget operation:
//! tombstones keep the chain verifiable, a rebuilt index does not bring a
//! forgotten snapshot back, numbers and names are never reused, and holds
//! and the retention lock refuse whoever asks, leaving everything as it was.

mod common;

use std::sync::Arc;

use common::*;
use strata::ops::forget::{forget, ForgetError, Selection};
use strata::policy::retention::RetentionConfig;
use strata::store::io::sim::SimDisk;
use strata::store::io::Disk;
use strata::store::repo::RepoError;
use strata::store::retention_lock::RetentionLock;
use strata::tree::head::Head;
use strata::tree::snapshot::Snapshots;
use strata::tree::types::{Caller, FsError, Timestamp};

const ADMIN: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 4242,
};

const YEAR: u64 = 31_557_600;

fn repository() -> Arc<dyn Disk> {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
    init_encrypted(disk.clone());
    disk
}

fn seqs(s: &Snapshots<'_>) -> Vec<u64> {
    s.list().unwrap().iter().map(|r| r.record.seq).collect()
}

fn now() -> i64 {
    Timestamp::now().secs
}

fn rules(text: &str) -> RetentionConfig {
    toml::from_str(text).unwrap()
}

#[test]
fn forgetting_leaves_tombstones_the_chain_verifies_and_numbers_and_names_are_never_reused() {
    let disk = repository();
    let h = Head::new(open(disk)).unwrap();
    let s = Snapshots::of(&h);
    let taken: Vec<_> = (0..4)
        .map(|_| s.take(ADMIN, Some("nightly")).unwrap())
        .collect();
    let ids: Vec<[u8; 32]> = s.list().unwrap().iter().map(|r| r.id).collect();

    let stones = s.forget(ADMIN, &[2, 4], "policy: keep-last 2").unwrap();
    assert_eq!(seqs(&s), [1, 3]);
    assert_eq!(stones.len(), 2);
    let recorded = s.tombstones().unwrap();
    assert_eq!(recorded, stones);
    assert_eq!((recorded[0].seq, recorded[0].snapshot), (2, ids[1]));
    assert_eq!(recorded[0].prev, Some(ids[0]));
    assert_eq!(recorded[1].name(), taken[3].name());
    assert_eq!(recorded[1].label.as_deref(), Some("nightly"));
    assert_eq!(recorded[1].caller, (0, 0, 4242));
    assert_eq!(recorded[1].reason, "policy: keep-last 2");
    assert!(s.runs().unwrap().is_empty());
    assert_eq!(s.verify_chain().unwrap(), Vec::<String>::new());
    assert_eq!(s.verify(ADMIN).unwrap(), Vec::<String>::new());

    // The newest snapshot was forgotten: the next one still gets a new
    // number and a later name, and chains to the forgotten one.
    let next = s.take(ADMIN, None).unwrap();
    assert_eq!(next.seq, 5);
    assert_eq!(next.prev, Some(ids[3]));
    assert!(next.time.secs > taken[3].time.secs, "a later name");
    assert_eq!(s.verify_chain().unwrap(), Vec::<String>::new());

    assert!(matches!(
        s.forget(ADMIN, &[2], "again"),
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        s.forget(ADMIN, &[3, 9], "one unknown"),
        Err(FsError::NotFound)
    ));
    assert_eq!(seqs(&s), [1, 3, 5], "all or nothing");
}

#[test]
fn a_rebuilt_index_keeps_forgotten_snapshots_forgotten_and_their_hold_history() {
    let disk = repository();
    let ids = {
        let h = Head::new(open(disk.clone())).unwrap();
        let s = Snapshots::of(&h);
        for _ in 0..3 {
            s.take(ADMIN, None).unwrap();
        }
        s.hold(ADMIN, 1, "case 7").unwrap();
        s.release(ADMIN, 1, "case closed").unwrap();
        s.forget(ADMIN, &[1, 2], "named").unwrap();
        s.list().unwrap().iter().map(|r| r.id).collect::<Vec<_>>()
    };
    let check = |disk: &Arc<dyn Disk>| {
        let h = Head::new(open(disk.clone())).unwrap();
        let s = Snapshots::of(&h);
        assert_eq!(seqs(&s), [3]);
        assert_eq!(s.list().unwrap()[0].id, ids[0]);
        let stones: Vec<u64> = s.tombstones().unwrap().iter().map(|t| t.seq).collect();
        assert_eq!(stones, [1, 2]);
        assert_eq!(s.hold_history(1).unwrap().len(), 2, "the history stays");
        assert_eq!(s.verify_chain().unwrap(), Vec::<String>::new());
    };
    check(&disk);
    assert!(repair(&disk).head_preserved);
    check(&disk);
    disk.remove(strata::store::format::INDEX_FILE).unwrap();
    let report = repair(&disk);
    assert!(!report.head_preserved);
    assert_eq!(report.snapshots_recovered, 1);
    check(&disk);
    let h = Head::new(open(disk)).unwrap();
    assert_eq!(
        Snapshots::of(&h).take(ADMIN, None).unwrap().seq,
        4,
        "numbers of forgotten snapshots are not given again after a rebuild"
    );
}

#[test]
fn a_snapshot_inside_the_retention_lock_cannot_be_forgotten_and_the_lock_only_grows() {
    let disk = repository();
    {
        let h = Head::new(open(disk.clone())).unwrap();
        let s = Snapshots::of(&h);
        s.take(ADMIN, Some("daily")).unwrap();
        s.take(ADMIN, Some("yearly")).unwrap();
        s.take(ADMIN, None).unwrap();
        let by_label = RetentionLock {
            all: None,
            labels: [("yearly".to_owned(), 10 * YEAR)].into(),
        };
        h.repo().raise_retention_lock(&by_label).unwrap();
        let refused = s.forget(ADMIN, &[1, 2], "named").unwrap_err();
        assert!(refused.to_string().contains("retention lock"), "{refused}");
        assert_eq!(seqs(&s), [1, 2, 3], "all or nothing");
        s.forget(ADMIN, &[1], "named").unwrap();

        let all = RetentionLock {
            all: Some(7 * YEAR),
            labels: Default::default(),
        };
        let raised = h.repo().raise_retention_lock(&all).unwrap();
        assert_eq!(raised.all, Some(7 * YEAR));
        assert_eq!(raised.labels["yearly"], 10 * YEAR, "parts not named stay");
        assert!(matches!(
            s.forget(ADMIN, &[3], "named"),
            Err(FsError::Busy(_))
        ));
        let shorter = RetentionLock {
            all: Some(YEAR),
            labels: Default::default(),
        };
        match h.repo().raise_retention_lock(&shorter) {
            Err(e @ RepoError::LockShortened(_)) => {
                let text = e.to_string();
                assert!(
                    text.contains("lock 1y is shorter than the repository's 7y"),
                    "{text}"
                );
                assert_eq!(
                    strata::exit::ExitCode::exit_code(&e),
                    strata::exit::PROTECTED
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(h.repo().retention_lock(), raised);
    }
    // The lock is in the signed config: a reopened repository has it.
    let repo = open(disk.clone());
    assert_eq!(repo.retention_lock().all, Some(7 * YEAR));
    assert_eq!(repo.config().retention_lock.all, Some(7 * YEAR));
    drop(repo);
    // An edit that shortens it fails the config's integrity check.
    let text = String::from_utf8(disk.read("config").unwrap()).unwrap();
    let edited = text.replace(&format!("all = {}", 7 * YEAR), "all = 1");
    assert_ne!(edited, text);
    disk.write_atomic("config", edited.as_bytes()).unwrap();
    let refused = strata::store::repo::LockedRepo::open(disk, "test repository")
        .unwrap()
        .unlock(Some(&passphrase("correct horse")))
        .err()
        .expect("an edited lock is refused");
    assert!(refused.to_string().contains("integrity check"), "{refused}");
}

#[test]
fn forget_applies_a_policy_reports_every_reason_and_a_dry_run_changes_nothing() {
    let disk = repository();
    let h = Head::new(open(disk)).unwrap();
    let s = Snapshots::of(&h);
    for _ in 0..4 {
        s.take(ADMIN, None).unwrap();
    }
    s.hold(ADMIN, 1, "case 9").unwrap();
    let policy = rules("keep_last = 2\nlock = \"1h\"\ntimezone = \"UTC\"\n");
    let dry = forget(&h, ADMIN, &Selection::Policy(&policy), now(), true).unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.policy.as_deref(), Some("keep-last 2"));
    assert_eq!(dry.timezone, "UTC");
    assert_eq!(
        (dry.forgotten, dry.kept),
        (0, 4),
        "the 1h lock keeps them all"
    );
    assert_eq!(dry.lock, "1h for every snapshot");
    assert!(
        h.repo().retention_lock().is_empty(),
        "a dry run writes no lock"
    );
    let line = |seq: u64| dry.snapshots.iter().find(|l| l.seq == seq).unwrap();
    let rules_of =
        |seq: u64| -> Vec<String> { line(seq).reasons.iter().map(|k| k.rule.clone()).collect() };
    assert_eq!(rules_of(1), ["hold", "lock"]);
    assert_eq!(rules_of(4), ["last", "newest", "lock"]);

    let policy = rules("keep_last = 2\ntimezone = \"UTC\"\n");
    let dry = forget(&h, ADMIN, &Selection::Policy(&policy), now(), true).unwrap();
    assert_eq!((dry.forgotten, dry.kept), (1, 3));
    assert_eq!(seqs(&s), [1, 2, 3, 4], "a dry run forgets nothing");
    let done = forget(&h, ADMIN, &Selection::Policy(&policy), now(), false).unwrap();
    assert_eq!(done.snapshots, dry.snapshots.clone());
    assert_eq!(seqs(&s), [1, 3, 4]);
    assert_eq!(s.tombstones().unwrap()[0].reason, "policy: keep-last 2");
}

#[test]
fn forget_refuses_held_and_locked_snapshots_shorter_locks_and_muddled_requests() {
    let disk = repository();
    let h = Head::new(open(disk)).unwrap();
    let s = Snapshots::of(&h);
    for _ in 0..3 {
        s.take(ADMIN, None).unwrap();
    }
    s.hold(ADMIN, 1, "case 9").unwrap();
    let none = RetentionConfig::default();
    let named = |seqs: &[u64], c: &RetentionConfig| {
        forget(&h, ADMIN, &Selection::These(seqs, c), now(), false)
    };
    match named(&[2, 1], &none) {
        Err(e @ ForgetError::Held { .. }) => {
            assert!(e.to_string().contains("snapshot 1 ("), "{e}");
            assert!(e.to_string().contains("\"case 9\""), "{e}");
            assert_eq!(
                strata::exit::ExitCode::exit_code(&e),
                strata::exit::PROTECTED
            );
        }
        other => panic!("{other:?}"),
    }
    let locked = rules("lock = \"30d\"\n");
    match named(&[3], &locked) {
        Err(e @ ForgetError::Locked { .. }) => {
            assert!(e.to_string().contains("retention lock until"), "{e}");
            assert_eq!(
                strata::exit::ExitCode::exit_code(&e),
                strata::exit::PROTECTED
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.repo().retention_lock().all,
        Some(30 * 86_400),
        "the lock was raised"
    );
    match named(&[3], &rules("lock = \"1d\"\n")) {
        Err(e @ ForgetError::Lock(RepoError::LockShortened(_))) => {
            assert_eq!(
                strata::exit::ExitCode::exit_code(&e),
                strata::exit::PROTECTED
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        forget(&h, ADMIN, &Selection::Policy(&none), now(), false),
        Err(ForgetError::NoPolicy)
    ));
    assert!(matches!(
        named(&[2], &rules("keep_daily = 3\n")),
        Err(ForgetError::RulesAndNames)
    ));
    assert!(matches!(
        forget(
            &h,
            ADMIN,
            &Selection::Policy(&rules("keep_daily = 0\n")),
            now(),
            false
        ),
        Err(ForgetError::Config(_))
    ));
    assert_eq!(seqs(&s), [1, 2, 3], "every refusal changed nothing");
    assert!(s.tombstones().unwrap().is_empty());
}
