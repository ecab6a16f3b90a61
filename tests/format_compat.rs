//! Repositories written by each released format version must still open
//! and read back. `tests/fixtures/repo-v1` was written by format version 1;
//! set STRATA_BLESS_FIXTURE=1 to write it again (only when the format
//! version changes, as a new fixture beside the old one).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use strata::store::id::ChunkId;
use strata::store::io::{Disk, LocalDisk};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repo-v1")
}

/// The content stored in the fixture.
fn content() -> Vec<u8> {
    let mut data = b"format version 1 fixture\n".repeat(4000);
    data.extend_from_slice(&bytes(77, 300_000));
    data
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn format_v1_fixture_opens_and_reads_back() {
    let manifest = fixture().with_extension("chunks");
    if std::env::var_os("STRATA_BLESS_FIXTURE").is_some() {
        let _ = std::fs::remove_dir_all(fixture());
        std::fs::create_dir_all(fixture()).unwrap();
        let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(fixture()));
        init_encrypted(disk.clone());
        let repo = open(disk);
        // A finished pack and an open one, as a running repository has.
        let data = content();
        let (first, rest) = data.split_at(200_000);
        let mut ids = repo.ingest(first).unwrap();
        repo.store().flush_pack().unwrap();
        ids.extend(repo.ingest(rest).unwrap());
        repo.store().commit().unwrap();
        let lines: Vec<String> = ids.iter().map(|(id, _)| id.to_string()).collect();
        std::fs::write(&manifest, lines.join("\n") + "\n").unwrap();
    }
    // Work on a copy: opening a repository may rewrite redb's header.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), dir.path());
    let repo = open(Arc::new(LocalDisk::new(dir.path())));
    let mut back = Vec::new();
    for line in std::fs::read_to_string(manifest).unwrap().lines() {
        let id: ChunkId = line.parse().unwrap();
        back.extend_from_slice(repo.store().get(&id).unwrap().as_slice());
    }
    assert!(back == content(), "fixture content differs");
    let report =
        strata::ops::check::check(&repo, strata::ops::check::ReadData::All, false, |_, _| {})
            .unwrap();
    assert!(report.ok(), "{:?}", report.errors);
}
