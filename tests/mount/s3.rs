//! A repository whose packs live in an S3-compatible bucket (moto's server
//! on loopback): backed up through the mount, then brought back on a
//! machine that has nothing but the bucket, byte for byte.

use std::path::Path;
use std::process::Command;

use super::common::s3::Server;
use super::common::tier::{self, Tier};
use super::harness::{differences, fails, ok, rsync_into, Mount};
use super::{strata_at, tree};

const URL: &str = "s3://strata-tests/site-a";

/// `strata --repo s3://… ARGS` reaching `s3`, its local part under `cache`.
fn at_bucket(m: &Mount, s3: &Server, cache: &Path, args: &[&str]) -> Command {
    at_url(m, s3, cache, URL, args)
}

/// [`at_bucket`] for the repository at `url`.
fn at_url(m: &Mount, s3: &Server, cache: &Path, url: &str, args: &[&str]) -> Command {
    let mut c = strata_at(m, Path::new(url), args);
    c.env("STRATA_CACHE_DIR", cache).envs(s3.env());
    c
}

#[test]
fn a_bucket_repository_comes_back_from_the_bucket_alone() {
    if tier::missing(&[Tier::Mount, Tier::S3]) {
        return;
    }
    let s3 = Server::with_bucket("strata-tests");
    let m = Mount::unmounted();
    let cache = m.path("cache");
    let cmd = |args: &[&str]| at_bucket(&m, &s3, &cache, args);
    ok(&mut cmd(&[
        "init",
        "--kdf-memory-mib",
        "8",
        "--kdf-iterations",
        "1",
        "--pack-size",
        "1MiB",
    ]));
    ok(cmd(&["mount", "--log-file"])
        .arg(m.path("mountd.log"))
        .arg(m.mnt()));
    let src = m.path("src");
    // Every file kind, and 12 MiB of content: several packs.
    tree::make(&src);
    rsync_into(&src, &m.head().join("data"));
    ok(&mut cmd(&["snapshot", "create", "--label", "nightly"]));
    ok(cmd(&["umount"]).arg(m.mnt()));

    // The bucket holds the config, the key slot and every finished pack,
    // the snapshot's own among them.
    let keys = s3.keys("strata-tests", "site-a/");
    assert!(keys.iter().any(|k| k == "site-a/config"), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.starts_with("site-a/keys/")),
        "{keys:?}"
    );
    let packs = keys
        .iter()
        .filter(|k| k.starts_with("site-a/packs/"))
        .count();
    assert!(packs >= 3, "{keys:?}");

    // Another machine: nothing local but the password.
    std::fs::remove_dir_all(&cache).unwrap();
    let fetched = |c: &Path| {
        std::fs::read_dir(c.join("s3/strata-tests/site-a/packs")).map_or(0, |d| d.count())
    };
    fails(
        &cmd(&["snapshot", "list"]).output().unwrap(),
        13,
        "strata repair index",
    );
    ok(&mut cmd(&["repair", "index"]));
    // Repair read every pack and kept them; dropped again, the mount must
    // fetch what the restore reads.
    std::fs::remove_dir_all(cache.join("s3/strata-tests/site-a/packs")).unwrap();
    assert_eq!(fetched(&cache), 0);
    ok(cmd(&["mount", "--log-file"])
        .arg(m.path("mountd2.log"))
        .arg(m.mnt()));
    assert_eq!(
        differences(&src, &m.snapshots().join("nightly").join("data")),
        ""
    );
    ok(cmd(&["umount"]).arg(m.mnt()));
    // The packs the restore read were fetched from the bucket into the
    // new local directory, whole.
    assert!(fetched(&cache) > 0, "nothing fetched into the cache");
    ok(&mut cmd(&["check", "--read-data"]));
}

#[test]
fn a_bucket_url_that_is_wrong_taken_or_empty_is_named_and_nothing_is_made() {
    if tier::missing(&[Tier::Mount, Tier::S3]) {
        return;
    }
    let s3 = Server::with_bucket("strata-tests");
    let m = Mount::unmounted();
    let cache = m.path("cache");
    let mut bad = strata_at(&m, Path::new("s3://Bad_Bucket/x"), &["init"]);
    bad.env("STRATA_CACHE_DIR", &cache).envs(s3.env());
    fails(
        &bad.output().unwrap(),
        2,
        "is not an s3://BUCKET/PREFIX URL",
    );
    assert!(!cache.exists());
    // Nothing there yet: named as no repository.
    fails(
        &at_bucket(&m, &s3, &cache, &["snapshot", "list"])
            .output()
            .unwrap(),
        10,
        URL,
    );
    assert!(s3.keys("strata-tests", "").is_empty());
    let init = ["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"];
    ok(&mut at_bucket(&m, &s3, &cache, &init));
    let before = s3.keys("strata-tests", "");
    // A second init on the same prefix, from another machine: refused,
    // the bucket untouched.
    let other = m.path("other-cache");
    fails(
        &at_bucket(&m, &s3, &other, &init).output().unwrap(),
        1,
        "already holds a repository",
    );
    assert_eq!(s3.keys("strata-tests", ""), before);
}

#[test]
fn prune_in_a_locked_bucket_leaves_the_locked_packs_to_their_date() {
    if tier::missing(&[Tier::Mount, Tier::S3]) {
        return;
    }
    let s3 = Server::start();
    s3.locked_bucket("vault");
    let m = Mount::unmounted();
    let cache = m.path("cache");
    let cmd = |args: &[&str]| at_url(&m, &s3, &cache, "s3://vault/repo", args);
    ok(&mut cmd(&[
        "init",
        "--kdf-memory-mib",
        "8",
        "--kdf-iterations",
        "1",
        "--pack-size",
        "1MiB",
        "--object-lock",
        "compliance",
    ]));
    let conf = m.path("strata.toml");
    std::fs::write(&conf, "[retention]\nkeep_last = 1\nlock = \"1s\"\n").unwrap();
    // A lock of a second for every snapshot: each pack is locked until a
    // day boundary after its upload plus that second.
    ok(cmd(&["forget", "--config"]).arg(&conf));
    let mount = |log: &str| ok(cmd(&["mount", "--log-file"]).arg(m.path(log)).arg(m.mnt()));
    mount("mountd.log");
    std::fs::write(m.head().join("old"), tree::bytes(4, 3 << 20)).unwrap();
    ok(&mut cmd(&["snapshot", "create", "--label", "one"]));
    std::fs::remove_file(m.head().join("old")).unwrap();
    std::fs::write(m.head().join("new"), b"kept").unwrap();
    ok(&mut cmd(&["snapshot", "create", "--label", "two"]));
    ok(cmd(&["umount"]).arg(m.mnt()));
    std::thread::sleep(std::time::Duration::from_secs(2));
    // Snapshot one is out of its lock: forgotten, and prune deletes its
    // packs. The bucket keeps their locked versions until their date.
    let out = ok(cmd(&["forget", "--config"]).arg(&conf));
    assert!(out.contains("forgot 1"), "{out}");
    let out = ok(&mut cmd(&["prune"]));
    assert!(out.contains("deleted"), "{out}");
    let kept = s3.deleted_but_locked("vault", "repo/packs/");
    assert!(kept.len() >= 3, "{kept:?}");
    assert!(
        kept.iter().all(|(_, mode)| mode == "COMPLIANCE"),
        "{kept:?}"
    );
    ok(&mut cmd(&["check", "--read-data"]));
    mount("mountd2.log");
    assert_eq!(
        std::fs::read(m.snapshots().join("two/new")).unwrap(),
        b"kept"
    );
    ok(cmd(&["umount"]).arg(m.mnt()));
}
