//! Replicas: copies of a repository in other directories and in a bucket,
//! made by `strata replicate` from a mounted repository, mounted and
//! restored from on their own; a diverged one refused, a killed copy
//! resumed without sending again what had arrived.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::common::s3::{FaultyProxy, Server};
use super::common::tier::{self, Tier};
use super::harness::{differences, fails, ok, rsync_into, run, Mount};
use super::{strata_at, tree};

/// Writes strata.toml with `text` and returns its path.
fn config(m: &Mount, text: &str) -> PathBuf {
    let path = m.path("strata.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// strata.toml with one `[[replica]]`, `name` at `to`, and `extra` lines.
fn one_replica(m: &Mount, name: &str, to: &Path, extra: &str) -> PathBuf {
    config(
        m,
        &format!(
            "[[replica]]\nname = \"{name}\"\nto = \"{}\"\n{extra}",
            to.display()
        ),
    )
}

/// `strata replicate --config CONFIG ARGS` on the test's repository.
fn replicate(m: &Mount, conf: &Path, args: &[&str]) -> Command {
    let mut c = m.strata();
    c.arg("replicate").arg("--config").arg(conf).args(args);
    c
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Mounts the repository at `repo` on `mnt`, runs `f`, unmounts.
fn mounted(m: &Mount, repo: &Path, mnt: &Path, f: impl FnOnce()) {
    std::fs::create_dir_all(mnt).unwrap();
    ok(strata_at(m, repo, &["mount", "--log-file"])
        .arg(m.path("replica-mountd.log"))
        .arg(mnt));
    f();
    ok(strata_at(m, repo, &["umount"]).arg(mnt));
}

#[test]
fn two_replicas_and_a_chain_restore_byte_identical_and_verify_clean() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    let src = m.path("src");
    tree::make(&src);
    rsync_into(&src, &m.head().join("data"));
    m.snapshot("nightly");
    let (near, far, chained) = (m.path("near"), m.path("far"), m.path("chained"));
    let conf = config(
        &m,
        &format!(
            "[[replica]]\nname = \"near\"\nto = \"{}\"\n\n[[replica]]\nname = \"far\"\nto = \"{}\"\n\n[[replica]]\nname = \"chained\"\nto = \"{}\"\nfrom = \"far\"\n",
            near.display(),
            far.display(),
            chained.display()
        ),
    );
    // Never made yet: behind by everything.
    fails(
        &run(&mut replicate(&m, &conf, &["--verify"])),
        29,
        "not in step",
    );
    // The chained one too, whose upstream does not exist yet.
    let v = json(&run(&mut replicate(&m, &conf, &["--verify", "--json"])));
    assert!(v.as_array().unwrap().iter().all(|o| o["exit"] == 29), "{v}");
    let out = run(&mut replicate(&m, &conf, &["--json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let names: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["near", "far", "chained"], "sources first");
    for o in v.as_array().unwrap() {
        assert_eq!(o["exit"], 0, "{o}");
        assert_eq!(o["result"]["created"], true, "{o}");
        assert_eq!(
            o["result"]["report"]["snapshots_sent"],
            serde_json::json!([1]),
            "{o}"
        );
    }
    ok(&mut replicate(&m, &conf, &["--verify"]));

    // A replica is a repository on its own: same passphrase, same bytes.
    for r in [&near, &chained] {
        ok(&mut strata_at(&m, r, &["check", "--read-data"]));
        let mnt = m.path("replica-mnt");
        mounted(&m, r, &mnt, || {
            assert_eq!(
                differences(&src, &mnt.join("snapshots/nightly/data")),
                "",
                "{}",
                r.display()
            );
        });
    }

    // The next night: only the new snapshot and what it adds are sent.
    std::fs::write(m.head().join("data/new-file"), tree::bytes(7, 300_000)).unwrap();
    m.snapshot("second");
    fails(
        &run(&mut replicate(&m, &conf, &["--verify"])),
        29,
        "not in step",
    );
    let out = run(&mut replicate(&m, &conf, &["--json", "near"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = &json(&out)[0]["result"]["report"];
    assert_eq!(r["snapshots_sent"], serde_json::json!([2]));
    let sent = r["bytes_sent"].as_u64().unwrap();
    assert!(
        (300_000..1_000_000).contains(&sent),
        "sent {sent} bytes for a 300 kB change"
    );
    ok(&mut replicate(&m, &conf, &[]));
    let verdict = ok(&mut replicate(&m, &conf, &["--verify"]));
    assert!(verdict.contains("chained: every snapshot"), "{verdict}");
}

#[test]
fn a_diverged_replica_is_refused_and_left_as_it_was() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::write(m.head().join("a"), b"first").unwrap();
    m.snapshot("one");
    let replica = m.path("replica");
    let conf = one_replica(&m, "r", &replica, "");
    ok(&mut replicate(&m, &conf, &[]));
    // Someone writes into the replica and snapshots it: its snapshot 2 is
    // not the source's.
    let mnt = m.path("replica-mnt");
    mounted(&m, &replica, &mnt, || {
        std::fs::write(mnt.join("head/mine"), b"replica's own").unwrap();
        std::fs::create_dir(mnt.join("snapshots/own")).unwrap();
    });
    std::fs::write(m.head().join("b"), b"second").unwrap();
    m.snapshot("two");
    let before = ok(&mut strata_at(
        &m,
        &replica,
        &["snapshot", "list", "--json"],
    ));
    fails(
        &run(&mut replicate(&m, &conf, &[])),
        28,
        "diverged from its source at snapshot 2",
    );
    fails(&run(&mut replicate(&m, &conf, &["--verify"])), 28, "r");
    let after = ok(&mut strata_at(
        &m,
        &replica,
        &["snapshot", "list", "--json"],
    ));
    assert_eq!(before, after, "the replica was changed");
    // A copy of another repository is not taken for a replica either.
    let other = Mount::unmounted();
    let conf2 = one_replica(&m, "x", &other.repo(), "");
    fails(&run(&mut replicate(&m, &conf2, &[])), 28, "not of");
    // Nor a directory with other files in it.
    std::fs::create_dir(m.path("junk")).unwrap();
    std::fs::write(m.path("junk/file"), b"x").unwrap();
    let conf3 = one_replica(&m, "j", &m.path("junk"), "");
    fails(
        &run(&mut replicate(&m, &conf3, &[])),
        2,
        "holds files but no strata repository",
    );
    // Named wrong, or none declared: usage.
    fails(
        &run(&mut replicate(&m, &conf3, &["nope"])),
        2,
        "no [[replica]] named \"nope\"",
    );
    let empty = config(&m, "");
    fails(&run(&mut replicate(&m, &empty, &[])), 2, "no [[replica]]");
}

#[test]
fn holds_retention_and_the_lock_follow_the_replicas_policy() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    for (i, label) in ["a", "b", "c"].iter().enumerate() {
        std::fs::write(m.head().join(label), vec![i as u8; 1000]).unwrap();
        m.snapshot(label);
    }
    ok(m.strata()
        .args(["snapshot", "hold", "1", "--reason", "audit"]));
    let replica = m.path("replica");
    let conf = one_replica(&m, "r", &replica, "[replica.retention]\nkeep_last = 1\n");
    let out = ok(&mut replicate(&m, &conf, &[]));
    // Its retention forgot 2; 1 is held, 3 the newest.
    assert!(out.contains("its retention forgot 2"), "{out}");
    let list = ok(&mut strata_at(&m, &replica, &["snapshot", "list"]));
    assert!(list.contains("held"), "{list}");
    // The source keeps all three: the replica is still in step.
    let verdict = ok(&mut replicate(&m, &conf, &["--verify"]));
    assert!(verdict.contains("forgot [2] the source keeps"), "{verdict}");
}

#[test]
fn a_killed_copy_resumes_without_sending_again_what_arrived() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    std::fs::write(m.head().join("big"), tree::bytes(3, 48 << 20)).unwrap();
    m.snapshot("one");
    m.umount();
    // What a whole copy sends.
    let whole = m.path("whole");
    let conf = one_replica(&m, "w", &whole, "");
    let total = json(&run(&mut replicate(&m, &conf, &["--json"])))[0]["result"]["report"]
        ["bytes_sent"]
        .as_u64()
        .unwrap();
    assert!(total > 48 << 20);
    // The same, held to 8 MiB/s and killed twice on the way.
    let replica = m.path("replica");
    let conf = one_replica(
        &m,
        "r",
        &replica,
        "[replica.bandwidth]\nrate = \"8MiB/s\"\n",
    );
    let stored = || -> u64 {
        if !replica.join("config").exists() {
            return 0;
        }
        let out = ok(&mut strata_at(&m, &replica, &["stats", "--json"]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["stored_bytes"]
            .as_u64()
            .unwrap()
    };
    let mut arrived = 0;
    for wait in [2500, 3000] {
        let mut child = replicate(&m, &conf, &[]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(wait));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        let now = stored();
        assert!(now >= arrived, "committed objects were lost");
        arrived = now;
        // A prefix: nothing diverged, nothing damaged.
        ok(&mut strata_at(&m, &replica, &["check"]));
    }
    assert!(
        arrived > 0 && arrived < total,
        "arrived {arrived} of {total}"
    );
    let out = run(&mut replicate(&m, &conf, &["--json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resent = json(&out)[0]["result"]["report"]["bytes_sent"]
        .as_u64()
        .unwrap();
    // Exactly what had not arrived: nothing committed is sent again.
    assert_eq!(
        resent + arrived,
        total,
        "resumed {resent} + arrived {arrived}"
    );
    eprintln!("killed twice: {arrived} of {total} bytes had arrived; the resumed run sent {resent}, so 0 were sent again");
    ok(&mut replicate(&m, &conf, &["--verify"]));
    ok(&mut strata_at(&m, &replica, &["check", "--read-data"]));
}

#[test]
fn a_replica_in_a_bucket_through_a_flaky_link_comes_back_whole() {
    if tier::missing(&[Tier::Mount, Tier::S3]) {
        return;
    }
    let s3 = Server::with_bucket("replicas");
    let proxy = FaultyProxy::start(&s3.endpoint, 6);
    let m = Mount::unmounted_with(&["--pack-size", "1MiB"]);
    let cache = m.path("cache");
    let env = |c: &mut Command| {
        c.env("STRATA_CACHE_DIR", &cache).envs(s3.env());
        c.env("AWS_ENDPOINT_URL", &proxy.endpoint);
    };
    let mut mount = m.strata();
    env(&mut mount);
    ok(mount
        .arg("mount")
        .arg(m.mnt())
        .arg("--log-file")
        .arg(m.path("mountd.log")));
    let src = m.path("src");
    tree::make(&src);
    rsync_into(&src, &m.head().join("data"));
    m.snapshot("nightly");
    let conf = config(
        &m,
        "[[replica]]\nname = \"offsite\"\nto = \"s3://replicas/site-b\"\n",
    );
    // The daemon copies (its environment reaches the bucket).
    let mut c = replicate(&m, &conf, &["--json"]);
    env(&mut c);
    let out = run(&mut c);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(proxy.injected(), 6, "every fault was met and retried");
    let packs = s3.sizes("replicas", "site-b/packs/");
    assert!(packs.len() >= 3, "{packs:?}");
    // Each pack went up once: what reached the server is the packs plus
    // the requests' own headers, not a second copy of any.
    let pack_bytes: u64 = packs.iter().map(|(_, n)| n).sum();
    let sent = proxy.sent();
    eprintln!(
        "{} faults injected and retried; {sent} bytes reached the server for {pack_bytes} bytes of packs",
        proxy.injected()
    );
    assert!(
        sent >= pack_bytes && sent < pack_bytes + pack_bytes / 10 + (256 << 10),
        "sent {sent} for {pack_bytes} bytes of packs"
    );
    m.umount();

    // Another machine with nothing but the bucket restores from it.
    std::fs::remove_dir_all(&cache).unwrap();
    let url = Path::new("s3://replicas/site-b");
    let at = |args: &[&str]| {
        let mut c = strata_at(&m, url, args);
        c.env("STRATA_CACHE_DIR", &cache).envs(s3.env());
        c
    };
    ok(&mut at(&["repair", "index"]));
    let mnt = m.path("replica-mnt");
    std::fs::create_dir(&mnt).unwrap();
    ok(at(&["mount", "--log-file"]).arg(m.path("r.log")).arg(&mnt));
    assert_eq!(differences(&src, &mnt.join("snapshots/nightly/data")), "");
    ok(at(&["umount"]).arg(&mnt));
    ok(&mut at(&["check", "--read-data"]));
}

/// The finished pack files of the repository at `repo`.
fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(repo.join("packs")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

/// Flips bytes in the middle of `file`.
fn damage(file: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    let mid = f.metadata().unwrap().len() / 2;
    f.write_all_at(&[0x5a; 64], mid).unwrap();
}

#[test]
fn damaged_and_missing_packs_are_repaired_from_a_replica() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::with_init(&["--pack-size", "1MiB"]);
    let src = m.path("src");
    tree::make(&src);
    rsync_into(&src, &m.head().join("data"));
    m.snapshot("nightly");
    let replica = m.path("replica");
    let conf = one_replica(&m, "r", &replica, "");
    ok(&mut replicate(&m, &conf, &[]));
    // Data the replica does not have yet, in packs of its own: not the
    // pack still open now, which holds replicated objects too and is
    // finished later with late ones.
    let before = packs(&m.repo());
    let open_now: Vec<_> = std::fs::read_dir(m.repo().join("open"))
        .unwrap()
        .map(|f| f.unwrap().file_name())
        .collect();
    std::fs::write(m.head().join("late"), tree::bytes(9, 3 << 20)).unwrap();
    m.snapshot("late");
    m.umount();
    let late: Vec<PathBuf> = packs(&m.repo())
        .into_iter()
        .filter(|p| !before.contains(p))
        .filter(|p| {
            !open_now
                .iter()
                .any(|o| Some(o.as_os_str()) == p.file_name())
        })
        .collect();
    assert!(!late.is_empty(), "no pack holds only late data");

    // One pack damaged, one gone: check finds both.
    damage(&before[0]);
    std::fs::remove_file(&before[1]).unwrap();
    fails(&run(m.strata().args(["check", "--read-data"])), 13, "");
    let out = ok(m
        .strata()
        .args(["repair", "packs", "--from", "r", "--config"])
        .arg(&conf));
    assert!(out.contains("2 bad"), "{out}");
    assert!(out.contains("replaced 2 pack(s)"), "{out}");
    ok(m.strata().args(["check", "--read-data"]));
    m.mount();
    assert_eq!(differences(&src, &m.snapshots().join("nightly/data")), "");
    m.umount();

    // A pack only this repository ever had cannot come back: said, exit
    // 13, and the pack is kept with what still reads in it. The largest
    // one: its middle is file content (a small one's may be an audit
    // record, which the index's audit rows bring back).
    let only_here = late
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    damage(only_here);
    let out = run(m
        .strata()
        .args(["repair", "packs", "--from", "r", "--config"])
        .arg(&conf));
    fails(&out, 13, "intact neither here nor in replica r");
    assert!(only_here.exists(), "the bad pack was deleted");
    // No such replica: usage.
    fails(
        &run(m
            .strata()
            .args(["repair", "packs", "--from", "nope", "--config"])
            .arg(&conf)),
        2,
        "no [[replica]] named \"nope\"",
    );
}

#[test]
fn a_damaged_read_on_the_mount_is_served_from_the_replica_and_alerted() {
    use std::os::unix::fs::PermissionsExt;
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted_with(&["--pack-size", "1MiB"]);
    let pager = m.path("pager");
    std::fs::write(
        &pager,
        "#!/bin/sh\ncat >> \"$0.events\"; echo >> \"$0.events\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&pager, std::fs::Permissions::from_mode(0o755)).unwrap();
    let replica = m.path("replica");
    let conf = one_replica(
        &m,
        "r",
        &replica,
        &format!(
            "[repair]\nfrom = \"r\"\n[alerts]\n[[alerts.channel]]\ntype = \"command\"\ncommand = [\"{}\"]\n",
            pager.display()
        ),
    );
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mount = |with_repair: bool| {
        let mut c = m.strata();
        c.arg("mount")
            .arg(m.mnt())
            .arg("--log-file")
            .arg(m.path("mountd.log"));
        if with_repair {
            c.arg("--config").arg(&conf);
        }
        ok(&mut c);
    };
    mount(true);
    let src = m.path("src");
    tree::make(&src);
    rsync_into(&src, &m.head().join("data"));
    m.snapshot("nightly");
    ok(&mut replicate(&m, &conf, &[]));
    m.umount();
    let packs = packs(&m.repo());
    damage(&packs[0]);
    std::fs::remove_file(&packs[1]).unwrap();
    let data = m.snapshots().join("nightly/data");
    // To a file: GNU tar reads nothing when it writes to /dev/null.
    let out = m.path("out.tar");
    let tar = || {
        run(Command::new("tar")
            .arg("-cf")
            .arg(&out)
            .arg("-C")
            .arg(&data)
            .arg("."))
    };

    // Without [repair], the damage is an error to the reader.
    mount(false);
    assert!(!tar().status.success(), "a damaged pack read without error");
    m.umount();

    // With it, every byte comes back as the snapshot holds it, and the
    // damage is alerted all the same.
    mount(true);
    assert_eq!(differences(&src, &data), "");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let events = loop {
        let text = std::fs::read_to_string(m.path("pager.events")).unwrap_or_default();
        if text.contains("corruption") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert!(events.contains("storage_error"), "{events}");
    assert!(m.log().contains("served from the replica"), "{}", m.log());
    m.umount();
}

#[test]
fn packs_in_a_locked_bucket_carry_the_retention_lock() {
    if tier::missing(&[Tier::Mount, Tier::S3]) {
        return;
    }
    let s3 = Server::start();
    s3.locked_bucket("vault");
    let m = Mount::new();
    std::fs::write(m.head().join("records"), tree::bytes(5, 2 << 20)).unwrap();
    m.snapshot("nightly");
    m.umount();
    let conf = config(
        &m,
        "[retention]\nkeep_last = 10\nlock = \"30d\"\n\n[[replica]]\nname = \"vault\"\nto = \"s3://vault/site-c\"\nobject_lock = \"compliance\"\n",
    );
    // The source's lock, raised by applying its retention.
    ok(m.strata().arg("forget").arg("--config").arg(&conf));
    let mut c = replicate(&m, &conf, &[]);
    c.env("STRATA_CACHE_DIR", m.path("cache")).envs(s3.env());
    ok(&mut c);
    let packs = s3.keys("vault", "site-c/packs/");
    assert!(!packs.is_empty());
    let soon = std::time::SystemTime::now() + std::time::Duration::from_secs(29 * 86_400);
    for key in &packs {
        let (mode, until) = s3
            .retention("vault", key)
            .unwrap_or_else(|| panic!("{key} is not locked"));
        assert_eq!(mode, "COMPLIANCE", "{key}");
        // e.g. 2027-01-07T00:00:00+00:00
        let until =
            humantime::parse_rfc3339_weak(&until[..19]).unwrap_or_else(|e| panic!("{until}: {e}"));
        assert!(until > soon, "{key} locked only until {until:?}");
    }
    // Not the config or a key slot: those change.
    assert_eq!(s3.retention("vault", "site-c/config"), None);
    // Object Lock asked of a replica in a directory: refused by name.
    let bad = one_replica(&m, "x", &m.path("x"), "object_lock = \"governance\"\n");
    fails(
        &run(&mut replicate(&m, &bad, &[])),
        15,
        "object_lock applies to a replica in a bucket",
    );
}
