//! `strata report`'s data: per snapshot what it holds and what it added
//! to the store (a night that copies a file already stored adds almost
//! nothing), and the drills against their objectives.

mod common;

use std::sync::Arc;

use common::*;
use strata::daemon::control::run_drill;
use strata::ops::drill::{DrillContext, DrillSpec};
use strata::ops::report::report;
use strata::store::io::{Disk, LocalDisk};
use strata::tree::head::Head;
use strata::tree::namespace::{Access, Namespace};
use strata::tree::snapshot::drills::DrillResult;
use strata::tree::types::{Caller, InodeNo};

const ME: Caller = Caller::ROOT;

#[test]
fn each_snapshot_shows_what_it_holds_and_what_it_added() {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(dir.path()));
    init_encrypted(disk.clone());
    let ns = Namespace::new(Head::new(open(disk)).unwrap(), Access::default()).unwrap();
    let h = ns.head();
    let scan = bytes(4, 1_500_000);
    let write = |name: &str, data: &[u8]| {
        let f = h.create(ME, InodeNo::ROOT, &n(name), 0o644, 0).unwrap().ino;
        h.write(ME, f, 0, data).unwrap();
    };
    write("scan", &scan);
    ns.snapshot(ME, None).unwrap();
    write("scan-copy", &scan);
    write("note", b"seen");
    ns.snapshot(ME, None).unwrap();
    let spec = DrillSpec {
        snapshot: "latest".into(),
        path: "/".into(),
        to: None,
        readers: 2,
        rto_secs: Some(3600.0),
        name: None,
        deferred: false,
    };
    run_drill(&ns, ME, &spec, None, DrillContext::default()).unwrap();

    let r = report(h).unwrap();
    let [first, second] = &r.snapshots[..] else {
        panic!("{:?}", r.snapshots)
    };
    assert_eq!((first.files, first.logical_bytes), (1, 1_500_000));
    assert!(first.new_stored_bytes >= 1_400_000, "{first:?}");
    assert_eq!((second.files, second.logical_bytes), (3, 3_000_004));
    assert!(
        second.new_stored_bytes < 20_000,
        "the copy was deduplicated: {second:?}"
    );
    assert!(r.stored_bytes >= first.new_stored_bytes + second.new_stored_bytes - 1_000);
    assert_eq!(r.drills.len(), 1);
    assert_eq!(
        (r.drills[0].result, r.drills[0].rto_secs),
        (DrillResult::Passed, Some(3600.0))
    );
}
