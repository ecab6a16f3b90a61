//! Helpers shared by the engine tests.
#![allow(dead_code)]

pub mod audit;
pub mod nights;
pub mod postgres;
pub mod s3;
pub mod tier;
pub mod webhook;

use std::sync::Arc;

use strata::store::chunker::ChunkerParams;
use strata::store::crypto::slot::{KdfParams, Secret, SlotKind};
use strata::store::io::Disk;
use strata::store::repo::{init, InitOptions, LockedRepo, Repo};
use strata::tree::record::{HookOutcome, RunRecord, RunStatus};
use zeroize::Zeroizing;

/// Argon2id cheap enough for tests that unlock hundreds of times.
pub const CHEAP_KDF: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// Small chunks so a few hundred KiB exercise many chunks and packs.
pub const SMALL_CHUNKS: ChunkerParams = ChunkerParams {
    min_size: 4096,
    avg_size: 16384,
    max_size: 65536,
};

pub fn passphrase(s: &str) -> Secret {
    Secret::Passphrase(Zeroizing::new(s.to_owned()))
}

/// Creates an encrypted repository with passphrase "correct horse".
pub fn init_encrypted(disk: Arc<dyn Disk>) {
    init(
        disk,
        InitOptions {
            id: strata::store::id::RepoId::random(),
            secret: Some((passphrase("correct horse"), SlotKind::Passphrase)),
            label: "test".into(),
            kdf: CHEAP_KDF,
            chunker: SMALL_CHUNKS,
            pack_size: 1 << 20,
        },
    )
    .expect("init");
}

pub fn open(disk: Arc<dyn Disk>) -> Repo {
    LockedRepo::open(disk, "test repository")
        .expect("open")
        .unlock(Some(&passphrase("correct horse")))
        .expect("unlock")
}

/// `strata repair index` on the repository `init_encrypted` made.
pub fn repair(disk: &Arc<dyn Disk>) -> strata::ops::repair::RepairReport {
    strata::ops::repair::repair_index(
        &LockedRepo::open(disk.clone(), "test repository").expect("open"),
        Some(&passphrase("correct horse")),
    )
    .expect("repair")
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// A file name from a test string.
pub fn n(s: &str) -> strata::tree::types::FileName {
    strata::tree::types::FileName::new(s.as_bytes()).unwrap()
}

/// Runs a command; returns its output.
pub fn run(cmd: &mut std::process::Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(cmd: &mut std::process::Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The record of a backup run "run-1" with one hook that reported a
/// consistency point; `latest` may point at it when its status is good.
pub fn run_record(status: RunStatus, revision: u32) -> RunRecord {
    RunRecord {
        run: "run-1".into(),
        revision,
        status,
        latest: status.is_good(),
        started: 1_700_000_000,
        copy: HookOutcome {
            name: "copy".into(),
            exit: Some(0),
            ..HookOutcome::default()
        },
        hooks: vec![HookOutcome {
            name: "pg".into(),
            points: [("lsn".to_owned(), "0/A".to_owned())].into(),
            ..HookOutcome::default()
        }],
        leftovers: None,
        io: None,
    }
}

/// Tier rules of the classification tests: `*.dcm` by name (rule 1), PDF
/// and HL7 by type (rule 2), national ids by pattern (rule 3), else "general".
pub const TIER_RULES: &str = r#"
[[tier]]
name = "phi"
[[tier]]
name = "general"
[classification]
default = "general"
[[classify]]
tier = "phi"
paths = ["*.dcm"]
[[classify]]
tier = "phi"
types = ["pdf", "hl7"]
[[classify]]
tier = "phi"
patterns = ["us-ssn"]
"#;
