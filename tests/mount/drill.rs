//! `strata drill` against a mounted repository: the daemon reads the
//! snapshot through the mount, the restore is what rsync -aHAXc calls the
//! same tree (ACLs, xattrs, hard links, nanosecond times), a discard reads
//! through FUSE and writes nothing, objectives raise and resolve
//! drill_missed_rto, and damage exits 13 with drill_failed and the path.

use std::time::Duration;

use crate::common::tier::{self, Tier};
use crate::common::webhook::receiver;
use crate::harness::{differences, fails, ok, sh, Mount};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A tree with one of everything a restore must bring back.
fn populate(m: &Mount) {
    sh(&format!(
        "set -e; cd {head}; mkdir -p ward/notes ward/empty
         head -c 3000000 /dev/urandom > ward/scan.dcm
         for i in $(seq 1 40); do echo \"note $i\" > ward/notes/n$i.txt; done
         ln ward/scan.dcm ward/scan-link.dcm
         ln -s notes/n1.txt ward/first
         mkfifo ward/pipe
         truncate -s 8M ward/sparse; printf end | dd of=ward/sparse bs=1 seek=6000000 conv=notrunc 2>/dev/null
         setfacl -m u:nobody:r ward/notes/n2.txt
         setfacl -d -m g:nogroup:rx ward/notes
         setfattr -n user.origin -v radiology ward/scan.dcm
         chown 1234:99 ward/notes/n3.txt
         chmod 4750 ward/notes/n4.txt
         touch -h -d '2024-02-29 12:34:56.123456789' ward/first ward/notes/n5.txt ward/empty",
        head = m.head().display()
    ));
}

#[test]
fn a_drill_through_the_mount_restores_the_snapshot_and_is_recorded() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let (config, next) = alerted(&m);
    populate(&m);
    let snap = m.snapshot("nightly");
    let drill = |args: &[&str]| {
        let mut c = m.strata();
        c.arg("drill").args(args).arg("--config").arg(&config);
        c
    };

    // A restore through the mount is the snapshot, as rsync sees it.
    let to = m.path("restore");
    let reads_before = fuse_reads(&m);
    let to_arg = to.to_str().unwrap();
    let r = json(&ok(&mut drill(&[
        "nightly:/ward",
        "--json",
        "--to",
        to_arg,
    ])));
    assert_eq!(r["result"], "passed", "{r}");
    assert_eq!(r["through"], "mount");
    assert_eq!(r["path"], "/ward");
    assert_eq!(r["files"], 1 + 40 + 1, "{r}");
    assert_eq!(r["readers"], 8);
    assert!(r["restore_secs"].as_f64().unwrap() > 0.0);
    assert!(r["started"].is_u64(), "times are seconds: {r}");
    assert_eq!(differences(&snap.join("ward"), &to), "");
    assert!(
        fuse_reads(&m) > reads_before,
        "the daemon read through FUSE"
    );

    // A discard reads everything through the mount and writes nothing.
    let reads_before = fuse_reads(&m);
    let r = json(&ok(&mut drill(&["nightly", "--discard", "--json"])));
    assert_eq!(
        (r["result"].as_str(), r["to"].is_null()),
        (Some("passed"), true)
    );
    let notes = 9 * 7 + 31 * 8;
    assert_eq!(
        r["bytes"].as_u64().unwrap(),
        3_000_000 + 8 * 1024 * 1024 + notes
    );
    assert!(fuse_reads(&m) > reads_before);

    // Slower than the objective: exit 27 and drill_missed_rto; a drill
    // that meets its objective resolves it.
    fails(
        &crate::harness::run(&mut drill(&["latest", "--discard", "--rto", "1ns"])),
        27,
        "longer than the objective",
    );
    let e = next();
    assert_eq!(e["kind"], "drill_missed_rto");
    assert_eq!(
        e["fields"]["snapshot"],
        snap.file_name().unwrap().to_str().unwrap()
    );
    ok(&mut drill(&["latest", "--discard", "--rto", "1h"]));
    let resolved = next();
    assert_eq!(
        (resolved["kind"].as_str(), resolved["state"].as_str()),
        (Some("drill_missed_rto"), Some("resolved"))
    );

    // Every drill is recorded, and the record reads the same unmounted.
    let mounted = json(&ok(m.strata().args(["drill", "list", "--json"])));
    assert_eq!(mounted.as_array().unwrap().len(), 4, "{mounted}");
    assert_eq!(mounted[2]["result"], "missed_rto");
    let status = json(&ok(m.strata().args(["status", "--json"])));
    assert!(status.get("drill").is_none(), "no drill running: {status}");
    m.umount();
    let unmounted = json(&ok(m.strata().args(["drill", "list", "--json"])));
    assert_eq!(unmounted, mounted);
    let one = json(&ok(m.strata().args(["drill", "show", "1", "--json"])));
    assert_eq!(one, mounted[0]);
    fails(
        &crate::harness::run(m.strata().args(["drill", "show", "99"])),
        2,
        "no drill 99",
    );
}

#[test]
fn a_drill_that_meets_damage_names_the_file_and_exits_13() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::with_init(&["--pack-size", "1MiB"]);
    let (config, next) = alerted(&m);
    sh(&format!(
        "set -e; mkdir {h}/records; head -c 4000000 /dev/urandom > {h}/records/scan; echo fine > {h}/records/note",
        h = m.head().display()
    ));
    m.snapshot("nightly");
    m.umount();
    // Flip a byte in the middle of every finished pack: the scan's chunks
    // fill them, the trees sit in the open pack.
    let packs = sh(&format!("find {}/packs -type f", m.repo().display()));
    assert!(!packs.trim().is_empty(), "finished packs");
    for pack in packs.lines() {
        let mut bytes = std::fs::read(pack).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(pack, bytes).unwrap();
    }
    m.mount();
    let out = crate::harness::run(
        m.strata()
            .args(["drill", "nightly", "--discard", "--config"])
            .arg(&config),
    );
    fails(&out, 13, "problem(s) found");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("problem:   /records/scan:"), "{text}");
    assert!(!text.contains("/records/note"), "{text}");
    let e = next();
    assert_eq!(
        (e["kind"].as_str(), e["class"].as_str()),
        (Some("drill_failed"), Some("corruption"))
    );
    assert!(!m.log().contains("records"), "logs carry no paths");
}

/// A host configuration whose alerts go to a webhook receiver here; and
/// the next alert it receives.
fn alerted(m: &Mount) -> (std::path::PathBuf, impl Fn() -> serde_json::Value) {
    let (url, alerts) = receiver(200);
    let config = m.path("strata.toml");
    std::fs::write(
        &config,
        format!("[[alerts.channel]]\ntype = \"webhook\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let next = move || -> serde_json::Value {
        let r = alerts
            .recv_timeout(Duration::from_secs(30))
            .expect("an alert");
        serde_json::from_str(&r.body).unwrap()
    };
    (config, next)
}

/// FUSE read requests the daemon served so far.
fn fuse_reads(m: &Mount) -> u64 {
    let s = json(&ok(m.strata().args(["status", "--json"])));
    s["fuse_requests"]["read"].as_u64().unwrap_or(0)
}

#[test]
fn a_forget_waits_for_the_drill_reading_its_snapshot() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    for i in 0..4u64 {
        std::fs::write(
            m.head().join(format!("f{i}")),
            crate::common::bytes(i, 40 << 20),
        )
        .unwrap();
    }
    let snap = m.snapshot("old");
    let name = snap.file_name().unwrap().to_str().unwrap().to_owned();
    std::fs::write(m.head().join("newer"), b"x").unwrap();
    m.snapshot("new");
    let mut drill = m.strata();
    drill.args(["drill", &name, "--discard", "--readers", "1", "--json"]);
    let drilling = std::thread::spawn(move || crate::harness::run(&mut drill));
    // Once the daemon says the drill is under way, forget its snapshot.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = json(&ok(m.strata().args(["status", "--json"])));
        if s.get("drill").is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline && !drilling.is_finished(),
            "the drill was never seen under way"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    ok(m.strata().args(["forget", &name]));
    let out = drilling.join().unwrap();
    assert!(
        out.status.success(),
        "the drill read its snapshot to the end: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        json(&String::from_utf8_lossy(&out.stdout))["result"],
        "passed"
    );
    assert!(!snap.exists(), "forgotten once the drill ended");
}
