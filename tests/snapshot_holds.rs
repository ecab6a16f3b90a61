//! Legal holds through the engine: placed and released with a reason and
//! a caller, kept across reopening and both kinds of index repair, and a
//! held snapshot cannot be removed.

mod common;

use std::sync::Arc;

use common::*;
use strata::store::io::sim::SimDisk;
use strata::store::io::Disk;
use strata::tree::head::Head;
use strata::tree::snapshot::Snapshots;
use strata::tree::types::{Caller, FsError};

const ADMIN: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 4242,
};

fn repository() -> Arc<dyn Disk> {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
    init_encrypted(disk.clone());
    disk
}

#[test]
fn a_hold_keeps_a_snapshot_until_it_is_released_and_both_are_recorded() {
    let disk = repository();
    let h = Head::new(open(disk)).unwrap();
    let s = Snapshots::of(&h);
    let one = s.take(ADMIN, None).unwrap().seq;
    let two = s.take(ADMIN, None).unwrap().seq;

    let placed = s.hold(ADMIN, one, "case 2026-117: litigation").unwrap();
    assert!(placed.held);
    assert_eq!((placed.seq, placed.revision), (one, 1));
    assert_eq!(placed.reason, "case 2026-117: litigation");
    assert_eq!(placed.caller, (0, 0, 4242));
    assert_eq!(s.holds().unwrap().keys().collect::<Vec<_>>(), [&one]);

    let refused = s.forget(ADMIN, &[one], "test").unwrap_err();
    assert!(matches!(refused, FsError::Busy(_)), "{refused:?}");
    assert!(refused.to_string().contains("legal hold"), "{refused}");
    assert_eq!(s.list().unwrap().len(), 2, "nothing was removed");

    let released = s.release(ADMIN, one, "case closed").unwrap();
    assert!(!released.held);
    assert_eq!(released.revision, 2);
    assert!(s.holds().unwrap().is_empty());
    let history = s.hold_history(one).unwrap();
    assert_eq!(history, [placed, released]);
    assert!(s.hold_history(two).unwrap().is_empty());

    s.forget(ADMIN, &[one], "test").unwrap();
    assert_eq!(s.list().unwrap().len(), 1, "released, it may go");
}

#[test]
fn holding_twice_releasing_what_is_not_held_a_missing_snapshot_or_no_reason_is_refused() {
    let disk = repository();
    let h = Head::new(open(disk)).unwrap();
    let s = Snapshots::of(&h);
    let seq = s.take(ADMIN, None).unwrap().seq;
    let invalid = |r: Result<_, FsError>, what: &str| match r {
        Err(FsError::Invalid(m)) => assert!(m.contains(what), "{m}"),
        other => panic!("{other:?}"),
    };
    invalid(s.release(ADMIN, seq, "nothing to release"), "not held");
    invalid(s.hold(ADMIN, seq, "  "), "need a reason");
    s.hold(ADMIN, seq, "audit").unwrap();
    invalid(s.hold(ADMIN, seq, "again"), "already held");
    invalid(s.release(ADMIN, seq, ""), "need a reason");
    assert!(matches!(
        s.hold(ADMIN, seq + 7, "no such snapshot"),
        Err(FsError::NotFound)
    ));
    assert_eq!(
        s.hold_history(seq).unwrap().len(),
        1,
        "refusals record nothing"
    );
}

#[test]
fn holds_survive_reopening_and_both_kinds_of_index_repair() {
    let disk = repository();
    let (one, two) = {
        let h = Head::new(open(disk.clone())).unwrap();
        let s = Snapshots::of(&h);
        let one = s.take(ADMIN, None).unwrap().seq;
        let two = s.take(ADMIN, None).unwrap().seq;
        s.hold(ADMIN, one, "first").unwrap();
        s.release(ADMIN, one, "done").unwrap();
        s.hold(ADMIN, one, "again").unwrap();
        s.hold(ADMIN, two, "second").unwrap();
        (one, two)
    };
    let check = |disk: &Arc<dyn Disk>| {
        let h = Head::new(open(disk.clone())).unwrap();
        let s = Snapshots::of(&h);
        let holds = s.holds().unwrap();
        assert_eq!(holds.keys().collect::<Vec<_>>(), [&one, &two]);
        assert_eq!(holds[&one].reason, "again");
        let reasons: Vec<String> = s
            .hold_history(one)
            .unwrap()
            .into_iter()
            .map(|e| e.reason)
            .collect();
        assert_eq!(reasons, ["first", "done", "again"]);
        assert!(matches!(
            s.forget(ADMIN, &[two], "test"),
            Err(FsError::Busy(_))
        ));
    };
    check(&disk);
    // An index that still opens: its tables are copied.
    let report = repair(&disk);
    assert!(report.head_preserved);
    check(&disk);
    // A lost index: the events come back from the packs.
    disk.remove(strata::store::format::INDEX_FILE).unwrap();
    let report = repair(&disk);
    assert!(!report.head_preserved);
    check(&disk);
}
