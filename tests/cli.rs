//! The `strata` binary: exit codes, messages, and that failures change nothing.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use strata::store::io::{Disk, LocalDisk};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(env.path("pw"), "correct horse\n").unwrap();
        std::fs::write(env.path("bad"), "wrong horse\n").unwrap();
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// Runs strata with a clean environment and no terminal.
    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// The run lock and the daemon sockets (STRATA_RUNTIME_DIR) and the
    /// run journal and alert state (STRATA_STATE_DIR) are the test's own,
    /// not the machine's /run/strata and /var/lib/strata.
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("STRATA_RUNTIME_DIR", self.path("run"))
            .env("STRATA_STATE_DIR", self.path("state"))
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn init(&self) {
        let out = self.run(&[
            "init",
            "--repo",
            s(&self.repo()),
            "--password-file",
            s(&self.path("pw")),
            "--kdf-memory-mib",
            "1",
            "--kdf-iterations",
            "1",
            "--chunk-size-kib",
            "16",
        ]);
        assert_ok(&out);
    }

    fn with_pw(&self, args: &[&str]) -> Output {
        let (repo, pw) = (self.repo(), self.path("pw"));
        let mut all = vec!["--repo", s(&repo), "--password-file", s(&pw)];
        all.extend_from_slice(args);
        self.run(&all)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_fails(out: &Output, code: i32, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        stderr.contains(message),
        "expected {message:?} in: {stderr}"
    );
}

/// Every file under `dir` with a digest of its bytes, to show a command changed nothing.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(p.clone(), "dir".into());
                stack.push(p);
            } else {
                out.insert(
                    p.clone(),
                    blake3::hash(&std::fs::read(&p).unwrap())
                        .to_hex()
                        .to_string(),
                );
            }
        }
    }
    out
}

/// Stores some data through the library so there are packs to damage.
fn add_data(env: &Env) -> Vec<strata::store::id::ChunkId> {
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(env.repo()));
    let repo = common::open(disk);
    let ids: Vec<_> = repo
        .ingest(&common::bytes(1, 400_000)[..])
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    repo.store().flush_pack().unwrap();
    ids
}

#[test]
fn init_check_stats_round_trip() {
    let env = Env::new();
    env.init();
    add_data(&env);
    assert_ok(&env.with_pw(&["check", "--read-data"]));
    assert_ok(&env.with_pw(&["check", "--read-data-subset", "1/2"]));
    let out = env.with_pw(&["stats", "--json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["chunks"].as_u64().unwrap() > 5);
    assert_eq!(v["suite"], "aes-256-gcm-siv");
}

#[test]
fn global_options_go_before_or_after_the_command_and_in_the_environment() {
    let env = Env::new();
    env.init();
    assert_ok(&env.run(&[
        "stats",
        "--repo",
        s(&env.repo()),
        "--password-file",
        s(&env.path("pw")),
    ]));
    assert_ok(&env.run_env(
        &["stats"],
        &[
            ("STRATA_REPO", s(&env.repo())),
            ("STRATA_PASSWORD_FILE", s(&env.path("pw"))),
        ],
    ));
    assert_ok(&env.run_env(
        &["stats"],
        &[
            ("STRATA_REPO", s(&env.repo())),
            ("STRATA_PASSWORD", "correct horse"),
        ],
    ));
    assert_ok(&env.run(&[
        "-r",
        s(&env.repo()),
        "stats",
        "--password-command",
        "echo correct horse",
    ]));
    assert_fails(
        &env.run(&[
            "-r",
            s(&env.repo()),
            "stats",
            "--password-command",
            "exit 3",
        ]),
        12,
        "password command failed",
    );
}

#[test]
fn wrong_or_missing_secret_is_refused_and_changes_nothing() {
    let env = Env::new();
    env.init();
    add_data(&env);
    let before = tree(&env.repo());
    assert_fails(
        &env.run(&[
            "-r",
            s(&env.repo()),
            "--password-file",
            s(&env.path("bad")),
            "check",
        ]),
        12,
        "wrong passphrase",
    );
    assert_fails(
        &env.run(&["-r", s(&env.repo()), "check"]),
        12,
        "the repository is encrypted",
    );
    // A password file that is missing or empty is the same refusal.
    assert_fails(
        &env.run(&[
            "-r",
            s(&env.repo()),
            "--password-file",
            s(&env.path("no-such-file")),
            "check",
        ]),
        12,
        "reading password file",
    );
    std::fs::write(env.path("empty"), "").unwrap();
    assert_fails(
        &env.run(&[
            "-r",
            s(&env.repo()),
            "--password-file",
            s(&env.path("empty")),
            "check",
        ]),
        12,
        "is empty",
    );
    assert_eq!(tree(&env.repo()), before);
}

#[test]
fn a_missing_repository_is_named() {
    let env = Env::new();
    assert_fails(
        &env.run(&["-r", s(&env.path("nothing")), "stats"]),
        10,
        "no strata repository at",
    );
    std::fs::create_dir(env.path("empty")).unwrap();
    assert_fails(
        &env.run(&["-r", s(&env.path("empty")), "stats"]),
        10,
        "strata init",
    );
}

#[test]
fn a_damaged_config_is_named_and_nothing_changes() {
    let env = Env::new();
    env.init();
    let config = env.repo().join("config");
    std::fs::write(&config, "format = \"strata-repository\"\nversion = \"x\"\n").unwrap();
    let before = tree(&env.repo());
    assert_fails(&env.with_pw(&["check"]), 13, "config is malformed");
    assert_eq!(tree(&env.repo()), before);
}

#[test]
fn an_edited_config_fails_its_integrity_check() {
    let env = Env::new();
    env.init();
    let config = env.repo().join("config");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("avg_size = 16384", "avg_size = 32768");
    std::fs::write(&config, text).unwrap();
    assert_fails(&env.with_pw(&["check"]), 13, "integrity check");
}

#[test]
fn a_flipped_pack_byte_is_found_by_check_and_nothing_changes() {
    let env = Env::new();
    env.init();
    add_data(&env);
    let packs: Vec<PathBuf> = tree(&env.repo().join("packs"))
        .into_iter()
        .filter(|(_, d)| d != "dir")
        .map(|(p, _)| p)
        .collect();
    let mut bytes = std::fs::read(&packs[0]).unwrap();
    bytes[100] ^= 0x10;
    std::fs::write(&packs[0], bytes).unwrap();
    let before = tree(&env.repo());
    assert_ok(&env.with_pw(&["check"])); // structure is intact
    let out = env.with_pw(&["check", "--read-data"]);
    assert_fails(&out, 13, "damaged");
    assert!(String::from_utf8_lossy(&out.stdout).contains("error: chunk "));
    // redb rewrites its own header on every open and close; what must not
    // change are the packs, key slots and config.
    let data = |t: BTreeMap<PathBuf, String>| {
        t.into_iter()
            .filter(|(p, _)| !p.ends_with("index.redb"))
            .collect::<Vec<_>>()
    };
    assert_eq!(data(tree(&env.repo())), data(before));
}

#[test]
fn a_lost_index_is_rebuilt_by_repair() {
    let env = Env::new();
    env.init();
    add_data(&env);
    std::fs::remove_file(env.repo().join("index.redb")).unwrap();
    assert_fails(&env.with_pw(&["check"]), 13, "strata repair index");
    let out = env.with_pw(&["repair", "index", "--json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["chunks"].as_u64().unwrap() > 5);
    assert_ok(&env.with_pw(&["check", "--read-data"]));
}

#[test]
fn a_repository_in_use_is_refused() {
    let env = Env::new();
    env.init();
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(env.repo()));
    let _held = common::open(disk);
    assert_fails(&env.with_pw(&["stats"]), 11, "in use by another process");
}

#[test]
fn init_refuses_a_non_empty_directory_and_touches_nothing() {
    let env = Env::new();
    std::fs::create_dir(env.repo()).unwrap();
    std::fs::write(env.repo().join("precious"), "data").unwrap();
    let before = tree(&env.repo());
    assert_fails(
        &env.run(&[
            "init",
            "-r",
            s(&env.repo()),
            "--password-file",
            s(&env.path("pw")),
        ]),
        1,
        "not empty",
    );
    assert_eq!(tree(&env.repo()), before);
}

#[test]
fn init_takes_a_pack_size_and_refuses_one_out_of_range() {
    let env = Env::new();
    let init = |size: &str| {
        env.run(&[
            "init",
            "-r",
            s(&env.repo()),
            "--password-file",
            s(&env.path("pw")),
            "--kdf-memory-mib",
            "1",
            "--kdf-iterations",
            "1",
            "--pack-size",
            size,
        ])
    };
    for bad in ["512KiB", "8GiB", "big"] {
        assert_fails(&init(bad), 2, "is not a size from 1MiB to 4GiB");
        assert!(!env.repo().exists(), "nothing created for {bad}");
    }
    assert_ok(&init("16MiB"));
    let config = std::fs::read_to_string(env.repo().join("config")).unwrap();
    assert!(config.contains("pack_size = 16777216"), "{config}");
}

#[test]
fn init_without_a_passphrase_generates_a_key_file_outside_the_repository() {
    let env = Env::new();
    let key = env.path("keys/repo.key");
    let out = env.run(&[
        "init",
        "-r",
        s(&env.repo()),
        "--key-file-out",
        s(&key),
        "--json",
    ]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("escrow"));
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o400
    );
    assert_ok(&env.run(&["stats", "-r", s(&env.repo()), "--key-file", s(&key)]));
    assert_ok(&env.run_env(
        &["stats", "-r", s(&env.repo())],
        &[("STRATA_KEY_FILE", s(&key))],
    ));
    // A second init must not overwrite the key file.
    assert_fails(
        &env.run(&[
            "init",
            "-r",
            s(&env.path("other")),
            "--key-file-out",
            s(&key),
        ]),
        1,
        "must not exist",
    );
    assert!(!env.path("other").exists());
}

#[test]
fn key_slots_are_added_listed_changed_and_removed() {
    let env = Env::new();
    env.init();
    std::fs::write(env.path("pw2"), "battery staple\n").unwrap();
    let cheap = ["--kdf-memory-mib", "1", "--kdf-iterations", "1"];
    let pw2 = env.path("pw2");
    let mut add = vec![
        "key",
        "add",
        "--new-password-file",
        s(&pw2),
        "--label",
        "second",
    ];
    add.extend_from_slice(&cheap);
    assert_ok(&env.with_pw(&add));
    let out = env.with_pw(&["key", "add", "--escrow", "--label", "safe", "--json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recovery = v["recovery_key"].as_str().unwrap().to_owned();
    std::fs::write(env.path("recovery"), format!("{recovery}\n")).unwrap();
    std::fs::set_permissions(env.path("recovery"), std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_ok(&env.run(&[
        "stats",
        "-r",
        s(&env.repo()),
        "--key-file",
        s(&env.path("recovery")),
    ]));
    let out = env.with_pw(&["key", "list", "--json"]);
    let slots: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(slots.as_array().unwrap().len(), 3);

    // passwd replaces the slot that was used.
    std::fs::write(env.path("pw3"), "new horse\n").unwrap();
    let pw3_path = env.path("pw3");
    let mut passwd = vec!["key", "passwd", "--new-password-file", s(&pw3_path)];
    passwd.extend_from_slice(&cheap);
    assert_ok(&env.with_pw(&passwd));
    assert_fails(&env.with_pw(&["stats"]), 12, "wrong passphrase");
    assert_ok(&env.run(&[
        "stats",
        "-r",
        s(&env.repo()),
        "--password-file",
        s(&env.path("pw3")),
    ]));

    // Remove all but one; the last is refused.
    let out = env.run(&[
        "key",
        "list",
        "--json",
        "-r",
        s(&env.repo()),
        "--password-file",
        s(&env.path("pw3")),
    ]);
    let slots: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (current, others): (Vec<_>, Vec<_>) = slots
        .as_array()
        .unwrap()
        .iter()
        .partition(|s| s["current"] == true);
    assert_eq!((current.len(), others.len()), (1, 2));
    let repo = env.repo();
    let pw3 = ["-r", s(&repo), "--password-file", s(&pw3_path)];
    for slot in &others {
        let mut args = pw3.to_vec();
        args.extend_from_slice(&["key", "remove", slot["id"].as_str().unwrap()]);
        assert_ok(&env.run(&args));
    }
    let mut args = pw3.to_vec();
    args.extend_from_slice(&["key", "remove", current[0]["id"].as_str().unwrap()]);
    assert_fails(&env.run(&args), 1, "last key slot");
}

#[test]
fn an_unencrypted_repository_needs_no_secret() {
    let env = Env::new();
    assert_ok(&env.run(&["init", "-r", s(&env.repo()), "--insecure-no-encryption"]));
    let out = env.run(&["stats", "-r", s(&env.repo()), "--json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["suite"], "none");
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    assert_eq!(env.run(&["check", "--no-such-flag"]).status.code(), Some(2));
    let out = env.run(&["-r", s(&env.repo()), "check", "--read-data-subset", "9/3"]);
    assert_fails(&out, 2, "names no part");
}

#[test]
fn help_output_is_pinned() {
    let env = Env::new();
    let out = env.run(&["--help"]);
    assert_ok(&out);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/help.txt");
    if std::env::var_os("STRATA_BLESS").is_some() {
        std::fs::write(&golden, &out.stdout).unwrap();
    }
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(golden).unwrap(),
        "run with STRATA_BLESS=1 to accept"
    );
}

#[test]
fn man_pages_are_generated_from_the_flag_definitions() {
    let env = Env::new();
    assert_ok(&env.run(&["man", s(&env.path("man"))]));
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for entry in std::fs::read_dir(env.path("man")).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap();
        if std::env::var_os("STRATA_BLESS").is_some() {
            std::fs::copy(&p, committed.join(name)).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            std::fs::read_to_string(committed.join(name)).unwrap_or_default(),
            "man/{} is stale: run with STRATA_BLESS=1",
            name.to_string_lossy()
        );
    }
}

#[test]
fn snapshots_are_created_listed_and_shown_offline() {
    let env = Env::new();
    env.init();
    let out = env.with_pw(&["snapshot", "create", "--label", "nightly", "--json"]);
    assert_ok(&out);
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first["seq"], 1);
    assert_ok(&env.with_pw(&["snapshot", "create"]));
    let out = env.with_pw(&["snapshot", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let out = env.with_pw(&["snapshot", "show", "latest", "--json"]);
    let latest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(latest["seq"], 2);
    assert_eq!(latest["prev"], first["id"], "records form a hash chain");
    let out = env.with_pw(&["snapshot", "show", "nightly", "--json"]);
    let by_label: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_label["seq"], 1);
    assert_fails(
        &env.with_pw(&["snapshot", "show", "weekly"]),
        1,
        "no snapshot \"weekly\"",
    );
    assert_ok(&env.with_pw(&["check", "--read-data"]));
}

#[test]
fn a_legal_hold_is_placed_shown_released_and_keeps_the_snapshot_meanwhile() {
    let env = Env::new();
    env.init();
    assert_ok(&env.with_pw(&["snapshot", "create", "--label", "before-upgrade"]));
    assert_ok(&env.with_pw(&["snapshot", "create"]));

    let out = env.with_pw(&["snapshot", "hold", "before-upgrade", "--reason", "case 117"]);
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some(format!("snapshot 1 ({}) is under a legal hold", name_of(&env, 1)).as_str())
    );
    let shown = env.with_pw(&["snapshot", "show", "1", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["hold"]["reason"], "case 117");
    assert_eq!(shown["hold"]["uid"], unsafe { libc::getuid() });
    let text =
        String::from_utf8_lossy(&env.with_pw(&["snapshot", "show", "1"]).stdout).into_owned();
    assert!(text.contains("legal hold since "), "{text}");
    assert!(text.contains(": case 117"), "{text}");
    let list = String::from_utf8_lossy(&env.with_pw(&["snapshot", "list"]).stdout).into_owned();
    let held: Vec<&str> = list.lines().filter(|l| l.contains(" held ")).collect();
    assert_eq!(held.len(), 1, "{list}");
    assert!(held[0].trim_start().starts_with("1 "), "{list}");

    // Refusals: each names the state, exits non-zero, and changes nothing.
    let state = || repository_state(&env);
    let before = state();
    assert_fails(
        &env.with_pw(&["snapshot", "hold", "1", "--reason", "again"]),
        1,
        "snapshot 1 is already under a legal hold (placed ",
    );
    assert_fails(
        &env.with_pw(&["snapshot", "release", "2", "--reason", "x"]),
        1,
        "snapshot 2 is not under a legal hold; nothing changed",
    );
    assert_fails(
        &env.with_pw(&["snapshot", "hold", "2", "--reason", " "]),
        2,
        "each need a reason (--reason TEXT)",
    );
    assert_fails(
        &env.with_pw(&["snapshot", "hold", "9", "--reason", "x"]),
        1,
        "no snapshot \"9\"",
    );
    assert_fails(&env.with_pw(&["snapshot", "hold", "2"]), 2, "--reason");
    assert_fails(&env.with_pw(&["forget", "1"]), 26, "is under a legal hold");
    assert!(state() == before, "the refusals changed nothing");

    let out = env.with_pw(&[
        "snapshot",
        "release",
        "1",
        "--reason",
        "case closed",
        "--json",
    ]);
    assert_ok(&out);
    let released: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(released.get("hold").is_none(), "{released}");
    let history = &released["hold_history"];
    assert_eq!(history[0]["held"], true, "{released}");
    assert_eq!(history[0]["reason"], "case 117");
    assert_eq!(history[1]["held"], false);
    assert_eq!(history[1]["reason"], "case closed");
    assert_eq!(history[1]["uid"], unsafe { libc::getuid() });
    let shown =
        String::from_utf8_lossy(&env.with_pw(&["snapshot", "show", "1"]).stdout).into_owned();
    assert!(
        shown.contains("hold history:") && shown.contains("released by uid"),
        "{shown}"
    );
    assert_ok(&env.with_pw(&["forget", "1"]));
    assert_ok(&env.with_pw(&["check", "--read-data"]));
}

/// What a refusal must leave as it was: every file but the index (which
/// every open rewrites), and the snapshots with their holds.
fn repository_state(env: &Env) -> (BTreeMap<PathBuf, String>, Vec<u8>) {
    let mut files = tree(&env.repo());
    files.retain(|p, _| !p.ends_with("index.redb"));
    let list = env.with_pw(&["snapshot", "list", "--json"]).stdout;
    (files, list)
}

fn name_of(env: &Env, seq: u64) -> String {
    let out = env.with_pw(&["snapshot", "show", &seq.to_string(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["name"].as_str().unwrap().to_owned()
}

#[test]
fn a_run_lock_that_cannot_be_read_is_named_and_no_snapshot_is_taken() {
    let env = Env::new();
    env.init();
    // The runtime directory is a file: the run lock cannot be opened.
    std::fs::write(env.path("run"), b"not a directory").unwrap();
    let out = env.with_pw(&["snapshot", "create"]);
    assert_fails(
        &out,
        1,
        "could not tell whether a backup run is in progress",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&env.path("run").display().to_string()),
        "{err}"
    );
    std::fs::remove_file(env.path("run")).unwrap();
    let out = env.with_pw(&["snapshot", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(list.as_array().unwrap().is_empty(), "nothing was taken");
}

#[test]
fn a_read_data_subset_naming_no_part_is_a_usage_error() {
    let env = Env::new();
    env.init();
    let before = tree(&env.repo());
    for bad in ["0/2", "3/2", "1/0"] {
        let out = env.with_pw(&["check", "--read-data-subset", bad]);
        assert_fails(&out, 2, "--read-data-subset");
        assert_fails(&out, 2, "n counts from 1 to t");
    }
    let out = env.with_pw(&["check", "--read-data-subset", "half"]);
    assert_fails(&out, 2, "neither n/t");
    assert_eq!(
        tree(&env.repo()),
        before,
        "a refused check changed the repository"
    );
    assert_ok(&env.with_pw(&["check", "--read-data-subset", "2/2"]));
}

/// Every `name(section)` a page refers to, as the roff source spells it.
fn references(page: &str) -> Vec<String> {
    let text = page
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "");
    let mut out = Vec::new();
    for (i, _) in text.match_indices("strata") {
        let rest = &text[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(end);
        let name = name.trim_end_matches('.');
        if after.len() > 2 && after.starts_with('(') && after.as_bytes()[2] == b')' {
            out.push(format!("{name}.{}", &after[1..2]));
        }
    }
    out
}

#[test]
fn man_pages_refer_only_to_pages_that_exist_and_end_with_see_also() {
    let env = Env::new();
    let dir = env.path("man");
    assert_ok(&env.run(&["man", s(&dir)]));
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let exists = |page: &str| dir.join(page).exists() || committed.join(page).exists();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let page = std::fs::read_to_string(&path).unwrap();
        assert!(page.contains(".SH \"SEE ALSO\""), "{name} has no SEE ALSO");
        for r in references(&page) {
            assert!(exists(&r), "{name} refers to {r}, which does not exist");
            seen += 1;
        }
    }
    assert!(seen > 50, "only {seen} references found");
    // What status and stats print is explained on their pages.
    let status = std::fs::read_to_string(dir.join("strata-status.1")).unwrap();
    for field in [
        "read_only_reason",
        "staging_bytes",
        "fuse_micros",
        "dead_mount",
    ] {
        assert!(status.contains(field), "strata-status(1) lacks {field}");
    }
    let stats = std::fs::read_to_string(dir.join("strata-stats.1")).unwrap();
    for field in [
        "stored_bytes",
        "compression_ratio",
        "pack_file_bytes",
        "key_slots",
    ] {
        assert!(stats.contains(field), "strata-stats(1) lacks {field}");
    }
}

/// A host configuration only root may change (as strata requires).
fn host_config(env: &Env, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = env.path(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn snapshot_seqs(env: &Env) -> Vec<u64> {
    let out = env.with_pw(&["snapshot", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn forget_applies_the_configured_or_given_rules_and_reports_every_reason() {
    let env = Env::new();
    env.init();
    assert_ok(&env.with_pw(&["snapshot", "create", "--label", "before-upgrade"]));
    for _ in 0..3 {
        assert_ok(&env.with_pw(&["snapshot", "create"]));
    }
    let cfg = host_config(
        &env,
        "strata.toml",
        "[retention]\nkeep_last = 1\ntimezone = \"UTC\"\n",
    );
    let out = env.with_pw(&["forget", "--dry-run", "--config", s(&cfg)]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("policy          keep-last 1 (time zone UTC)"),
        "{text}"
    );
    assert!(text.contains("retention lock  none"), "{text}");
    assert!(
        text.contains("keep    last 1, newest good snapshot"),
        "{text}"
    );
    assert!(
        text.contains("would forget 3 snapshot(s), kept 1 (dry run: nothing changed)"),
        "{text}"
    );
    assert_eq!(snapshot_seqs(&env), [1, 2, 3, 4]);

    // Flags replace the file's rules as a whole.
    let out = env.with_pw(&[
        "forget",
        "--keep-label",
        "before-upgrade",
        "--config",
        s(&cfg),
        "--json",
    ]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["policy"], "keep-label before-upgrade");
    assert_eq!(
        (report["forgotten"].as_u64(), report["kept"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(report["snapshots"][0]["reasons"][0]["rule"], "label");
    assert_eq!(report["snapshots"][1]["keep"], false);
    assert_eq!(snapshot_seqs(&env), [1, 4]);
    assert_ok(&env.with_pw(&["check", "--read-data"]));
}

#[test]
fn forget_refuses_muddled_requests_protected_snapshots_and_a_shorter_lock() {
    let env = Env::new();
    env.init();
    for _ in 0..3 {
        assert_ok(&env.with_pw(&["snapshot", "create"]));
    }
    let state = || repository_state(&env);
    let before = state();
    assert_fails(&env.with_pw(&["forget"]), 2, "no retention policy to apply");
    assert_fails(
        &env.with_pw(&["forget", "2", "--keep-last", "1"]),
        2,
        "not both",
    );
    assert_fails(
        &env.with_pw(&["forget", "--keep-daily", "0"]),
        2,
        "keep-daily is 0",
    );
    assert_fails(
        &env.with_pw(&["forget", "--keep-within", "a fortnight"]),
        2,
        "--keep-within = \"a fortnight\" is not a duration",
    );
    assert_fails(&env.with_pw(&["forget", "9"]), 1, "no snapshot \"9\"");
    assert_fails(
        &env.with_pw(&["forget", "no-such-label"]),
        1,
        "no snapshot \"no-such-label\"",
    );
    assert_fails(
        &env.with_pw(&["forget", "--keep-last", "1", "--timezone", "Mars/Olympus"]),
        2,
        "--timezone \"Mars/Olympus\" is not a time zone this system knows",
    );
    for (file, text, message) in [
        (
            "zone.toml",
            "[retention]\nkeep_last = 1\ntimezone = \"Mars/Olympus\"\n",
            "is not a time zone this system knows",
        ),
        (
            "lock.toml",
            "[retention]\nkeep_last = 1\nlock = \"forever\"\n",
            "lock = \"forever\" is not a duration",
        ),
    ] {
        let config = host_config(&env, file, text);
        assert_fails(
            &env.with_pw(&["forget", "--config", s(&config)]),
            15,
            message,
        );
    }
    assert!(state() == before, "the refusals changed nothing");

    let locked = host_config(&env, "locked.toml", "[retention]\nlock = \"30d\"\n");
    assert_fails(
        &env.with_pw(&["forget", "2", "--config", s(&locked)]),
        26,
        "inside the repository's retention lock until",
    );
    let config = std::fs::read_to_string(env.repo().join("config")).unwrap();
    assert!(
        config.contains("[retention_lock]\nall = 2592000"),
        "{config}"
    );
    let shorter = host_config(&env, "shorter.toml", "[retention]\nlock = \"1d\"\n");
    let before = state();
    assert_fails(
        &env.with_pw(&["forget", "2", "--config", s(&shorter)]),
        26,
        "refusing to shorten the retention lock: lock 1d is shorter than the repository's 30d",
    );
    assert_fails(
        &env.with_pw(&[
            "forget",
            "--dry-run",
            "--keep-last",
            "1",
            "--config",
            s(&shorter),
        ]),
        26,
        "refusing to shorten",
    );
    assert!(state() == before, "the refusals changed nothing");
    // Without a lock in the file, the repository's still applies.
    assert_fails(&env.with_pw(&["forget", "2"]), 26, "retention lock");
    let out = env.with_pw(&["forget", "--keep-last", "1", "--dry-run"]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("retention lock  30d for every snapshot"),
        "{text}"
    );
    assert!(
        text.contains("would forget 0 snapshot(s), kept 3"),
        "{text}"
    );
    assert_eq!(snapshot_seqs(&env), [1, 2, 3]);
}

/// Bytes of pack files, as `du` would count them.
fn pack_file_bytes(env: &Env) -> u64 {
    tree(&env.repo())
        .keys()
        .filter(|p| p.is_file() && p.components().any(|c| c.as_os_str() == "packs"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn prune_deletes_what_nothing_uses_and_refuses_bad_flags() {
    let env = Env::new();
    env.init();
    add_data(&env); // stored, but no snapshot or file uses it
    assert_ok(&env.with_pw(&["snapshot", "create"]));
    let before = repository_state(&env);
    assert_fails(
        &env.with_pw(&["prune", "--max-unused", "120"]),
        2,
        "--max-unused \"120\" is not a percentage from 0 to 100",
    );
    assert_fails(
        &env.with_pw(&["prune", "--max-repack-size", "2 parsecs"]),
        2,
        "--max-repack-size \"2 parsecs\" is not a size",
    );
    let out = env.with_pw(&["prune", "--dry-run", "--json"]);
    assert_ok(&out);
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry["dry_run"], true);
    assert!(dry["packs_deleted"].as_u64().unwrap() >= 1, "{dry}");
    assert!(
        repository_state(&env) == before,
        "a dry run changes nothing"
    );

    let packed = pack_file_bytes(&env);
    let out = env.with_pw(&["prune"]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("deleted 1 unused pack(s)"), "{text}");
    assert!(text.contains(" freed, "), "{text}");
    let left = pack_file_bytes(&env);
    assert!(left + 400_000 <= packed, "du shrank: {packed} -> {left}");
    assert_ok(&env.with_pw(&["check", "--read-data"]));
    let out = env.with_pw(&["prune", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["bytes_freed"], 0, "{again}");
}

#[test]
fn drills_run_unmounted_record_and_exit_by_their_verdict() {
    let env = Env::new();
    env.init();
    assert_ok(&env.with_pw(&["snapshot", "create", "--label", "nightly"]));
    // A restore into an empty directory, and a discard, both pass.
    let to = env.path("restored");
    let out = env.with_pw(&["drill", "nightly", "--to", s(&to), "--json"]);
    assert_ok(&out);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["result"].as_str(), r["through"].as_str()),
        (Some("passed"), Some("repository"))
    );
    assert!(to.is_dir());
    assert_ok(&env.with_pw(&["drill", "latest", "--discard"]));
    // Slower than the objective: 27; bad input: 2, nothing recorded.
    assert_fails(
        &env.with_pw(&["drill", "latest", "--discard", "--rto", "1ns"]),
        27,
        "longer than the objective",
    );
    std::fs::write(to.join("precious"), b"keep").unwrap();
    assert_fails(
        &env.with_pw(&["drill", "latest", "--to", s(&to)]),
        2,
        "is not empty",
    );
    assert_eq!(std::fs::read(to.join("precious")).unwrap(), b"keep");
    assert_fails(
        &env.with_pw(&["drill", "latest:/no/such", "--discard"]),
        2,
        "nothing at",
    );
    assert_fails(&env.with_pw(&["drill", "latest"]), 2, "--discard");
    let list = env.with_pw(&["drill", "list", "--json"]);
    assert_ok(&list);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let results: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["passed", "passed", "missed_rto"]);

    // [[drill]] entries: a service check that passes, one that fails (13),
    // and the schedule deciding what is due.
    let scratch = env.path("scratch");
    let check = "test -d \"$STRATA_DRILL_DIR\" && sleep 0.3 && echo ready_secs=0.25";
    let cfg = host_config(
        &env,
        "strata.toml",
        &format!(
            "[[drill]]\nname = \"svc\"\nto = \"{scratch}\"\nrto = \"1h\"\nvalidate = [\"/bin/sh\", \"-c\", {check:?}]\nschedule = \"7d\"\n\n[[drill]]\nname = \"broken\"\nto = \"{scratch}\"\nvalidate = [\"/bin/sh\", \"-c\", \"echo starting; exit 4\"]\n",
            scratch = scratch.display()
        ),
    );
    let out = env.with_pw(&["drill", "run", "svc", "--config", s(&cfg), "--json"]);
    assert_ok(&out);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r[0]["name"], "svc");
    assert_eq!(r[0]["service"]["ready_secs"], 0.25);
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "the copy is removed"
    );
    let out = env.with_pw(&["drill", "run", "broken", "--config", s(&cfg)]);
    assert_fails(
        &out,
        22,
        "the restored service failed its check (exit status 4)",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("| starting"),
        "the program's output is shown: {text}"
    );
    // svc ran a moment ago; broken has no schedule: nothing is due.
    let out = env.with_pw(&["drill", "run", "--due", "--config", s(&cfg)]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no drill is due"));
    assert_fails(
        &env.with_pw(&["drill", "run", "nope", "--config", s(&cfg)]),
        2,
        "no [[drill]] named \"nope\"; the configured ones: svc, broken",
    );
    let empty = host_config(&env, "empty.toml", "");
    assert_fails(
        &env.with_pw(&["drill", "run", "--config", s(&empty)]),
        2,
        "no [[drill]] entries",
    );
}

#[test]
fn the_verify_cycle_alerts_damage_and_resolves_when_it_reads_clean() {
    let env = Env::new();
    env.init();
    add_data(&env);
    let config = host_config(&env, "verify.toml", "[verify]\ncycle = \"1s\"\n");
    let pack = tree(&env.repo().join("packs"))
        .into_iter()
        .find(|(_, d)| d != "dir")
        .map(|(p, _)| p)
        .unwrap();
    let good = std::fs::read(&pack).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x08;
    std::fs::write(&pack, &bad).unwrap();
    let cycle = || env.with_pw(&["check", "--cycle", "--config", s(&config)]);
    assert_fails(&cycle(), 13, "damaged");
    let history = || {
        let state = std::fs::read_dir(env.path("state"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "json"))
            .expect("an alert state file");
        strata::policy::alert::state::history(&state)
    };
    let h = history();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(
        (h[0].kind.name(), h[0].class.to_string(), h[0].ended),
        ("verify_failed", "corruption".to_owned(), None)
    );
    // Repaired, the next run reads clean: the alert ends, resolved.
    std::fs::write(&pack, &good).unwrap();
    assert_ok(&cycle());
    let h = history();
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h[0].ended.is_some(), "{h:?}");
    assert_eq!(h[0].how.as_deref(), Some("resolved"));
    // The report shows it as a finding, and the page draws it.
    let page = env.path("report.html");
    let out = env.with_pw(&["report", "--html", s(&page)]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("report written to"));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<td>verify_failed</td>"), "{html}");
    assert!(html.contains("damage found"), "{html}");
}

#[test]
fn report_html_refuses_a_directory_or_a_missing_one_and_writes_nothing() {
    let env = Env::new();
    env.init();
    assert_ok(&env.with_pw(&["snapshot", "create"]));
    let before = tree(&env.path("."));
    assert_fails(
        &env.with_pw(&["report", "--html", s(&env.path("."))]),
        2,
        "that is a directory; name the file to write",
    );
    let missing = env.path("no/such/dir/report.html");
    assert_fails(
        &env.with_pw(&["report", "--html", s(&missing)]),
        1,
        "name a file in a directory that exists",
    );
    assert!(!env.path("no").exists());
    let data = |t: BTreeMap<PathBuf, String>| {
        t.into_iter()
            .filter(|(p, _)| !p.ends_with("index.redb"))
            .collect::<Vec<_>>()
    };
    assert_eq!(data(tree(&env.path("."))), data(before));
    // --json with --html: the data on stdout, the page written.
    let page = env.path("r.html");
    let out = env.with_pw(&["report", "--html", s(&page), "--json"]);
    assert_ok(&out);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["snapshots"].as_array().unwrap().len(), 1);
    assert!(std::fs::read_to_string(&page)
        .unwrap()
        .starts_with("<!doctype html>"));
}
