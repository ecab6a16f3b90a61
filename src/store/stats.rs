//! `strata stats`: what the repository holds and what it costs on disk.

use serde::Serialize;

use crate::store::format::INDEX_FILE;
use crate::store::index::PackState;
use crate::store::repo::{Repo, RepoError};

/// Repository statistics.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Cipher suite.
    pub suite: String,
    /// Distinct chunks stored.
    pub chunks: u64,
    /// Their plaintext bytes.
    pub chunk_bytes: u64,
    /// Their sealed (compressed, encrypted) bytes.
    pub stored_bytes: u64,
    /// Finished packs.
    pub packs: u64,
    /// Packs still open.
    pub open_packs: u64,
    /// Bytes of all pack files.
    pub pack_file_bytes: u64,
    /// Bytes of the index file.
    pub index_bytes: u64,
    /// stored_bytes / chunk_bytes.
    pub compression_ratio: f64,
    /// Key slots.
    pub key_slots: usize,
}

/// Computes the statistics of `repo`.
pub fn stats(repo: &Repo) -> Result<Stats, RepoError> {
    let store = repo.store();
    let chunks = store.index().chunks()?;
    let chunk_bytes: u64 = chunks.iter().map(|(_, l)| l.raw_len as u64).sum();
    let stored_bytes: u64 = chunks.iter().map(|(_, l)| l.len as u64).sum();
    let records = store.pack_records();
    let pack_file_bytes = records
        .keys()
        .map(|id| {
            crate::store::chunks::open_any_pack(repo.disk().as_ref(), store.backend().as_ref(), *id)
                .and_then(|f| f.len())
                .unwrap_or(0)
        })
        .sum();
    let index_bytes = repo
        .disk()
        .open(INDEX_FILE, false)
        .and_then(|f| f.len())
        .unwrap_or(0);
    Ok(Stats {
        suite: repo.config().suite.clone(),
        chunks: chunks.len() as u64,
        chunk_bytes,
        stored_bytes,
        packs: records
            .values()
            .filter(|r| r.state == PackState::Finished)
            .count() as u64,
        open_packs: records
            .values()
            .filter(|r| r.state == PackState::Open)
            .count() as u64,
        pack_file_bytes,
        index_bytes,
        compression_ratio: if chunk_bytes == 0 {
            1.0
        } else {
            stored_bytes as f64 / chunk_bytes as f64
        },
        key_slots: repo.list_keys().len(),
    })
}
