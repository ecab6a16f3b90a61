//! `strata check`: the structure first (every pack the index knows is where
//! it says and its checkpoints open; every index row points at an object its
//! pack's TOC lists), then optionally the data (every chunk, or a subset of
//! packs, read, opened and hashed).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::format::Kind;
use crate::id::PackId;
use crate::index::{Location, PackState};
use crate::pack;
use crate::repair::list_packs;
use crate::repo::{Repo, RepoError};
use crate::store::open_pack_path;

/// Which packs' data to read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    /// Structure only.
    None,
    /// Every pack.
    All,
    /// Packs whose id falls in part `n` of `of` (1-based), like restic's n/t.
    Part {
        /// This part.
        n: u32,
        /// Of this many.
        of: u32,
    },
    /// A random fraction of the packs, 0 < f <= 1.
    Fraction(f64),
}

impl std::str::FromStr for ReadData {
    type Err = String;
    /// Parses `n/t` or `P%`.
    fn from_str(s: &str) -> Result<ReadData, String> {
        let bad = || {
            format!("read-data subset {s:?} is neither n/t (e.g. 2/7) nor a percentage (e.g. 10%)")
        };
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(ReadData::Fraction(p / 100.0));
        }
        let (n, of) = s.split_once('/').ok_or_else(bad)?;
        let (n, of): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            of.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || of == 0 || n > of {
            return Err(format!(
                "read-data subset {s:?} names no part: in n/t, t is at least 1 and n counts from 1 to t (1/2 and 2/2 are the two halves)"
            ));
        }
        Ok(ReadData::Part { n, of })
    }
}

impl ReadData {
    fn selects(&self, pack: &PackId) -> bool {
        match *self {
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Part { n, of } => {
                let x = u32::from_le_bytes(pack.0[..4].try_into().expect("4 bytes"));
                x % of == n - 1
            }
            ReadData::Fraction(f) => rand::random::<f64>() < f,
        }
    }
}

/// What a check found.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    /// Packs whose structure was checked.
    pub packs: u64,
    /// Index rows checked against pack TOCs.
    pub chunks: u64,
    /// Snapshots whose trees were walked.
    pub snapshots: u64,
    /// Chunks read, opened and hashed.
    pub chunks_read: u64,
    /// Bytes read for that.
    pub bytes_read: u64,
    /// Damage: the repository is not as it should be.
    pub errors: Vec<String>,
    /// Harmless leftovers worth knowing about.
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// Whether no damage was found.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks `repo`; `progress` is told (done, total) while reading data.
pub fn check(
    repo: &Repo,
    read: ReadData,
    mut progress: impl FnMut(u64, u64),
) -> Result<CheckReport, RepoError> {
    let store = repo.store();
    let disk = repo.disk().as_ref();
    let sealer = store.codec().sealer();
    let mut report = CheckReport::default();
    let records = store.pack_records();
    // Per pack: every object its checkpoints list, with its kind.
    let mut tocs: HashMap<PackId, HashMap<(crate::id::ChunkId, u64, u32), Kind>> = HashMap::new();
    for (id, rec) in &records {
        report.packs += 1;
        let opened = match rec.state {
            PackState::Open => disk.open(&open_pack_path(*id), false),
            PackState::Finished => store.backend().open(*id),
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                report.errors.push(format!(
                    "pack {id}: the index refers to it but it cannot be opened: {e}"
                ));
                continue;
            }
        };
        let len = file.len().unwrap_or(0);
        if len < rec.len {
            report.errors.push(format!(
                "pack {id}: {len} bytes on disk, the index expects {} (synced data is missing)",
                rec.len
            ));
            continue;
        }
        match pack::read_toc(file.as_ref(), sealer, *id, rec.len) {
            Ok((entries, finished)) => {
                if rec.state == PackState::Finished && !finished {
                    report.errors.push(format!(
                        "pack {id}: in packs/ but its last checkpoint is not final"
                    ));
                }
                tocs.insert(
                    *id,
                    entries
                        .iter()
                        .map(|e| ((e.id, e.offset, e.len), e.kind))
                        .collect(),
                );
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    let (finished, open) = list_packs(disk, store.backend().as_ref())?;
    for id in finished.iter().chain(&open) {
        if !records.contains_key(id) {
            report.warnings.push(format!("pack {id} is not in the index (left by an interrupted write; `strata repair index` would index it)"));
        }
    }
    let chunks: Vec<(crate::id::ChunkId, Location)> = match store.index().chunks() {
        Ok(c) => c,
        Err(e) => {
            report.errors.push(e.to_string());
            return Ok(report);
        }
    };
    let mut kinds = HashMap::new();
    for (id, loc) in &chunks {
        report.chunks += 1;
        match tocs
            .get(&loc.pack)
            .map(|toc| toc.get(&(*id, loc.offset, loc.len)))
        {
            Some(Some(kind)) => {
                kinds.insert(*id, *kind);
            }
            Some(_) => report.errors.push(format!(
                "chunk {id}: pack {} lists no such object at offset {}",
                loc.pack, loc.offset
            )),
            None if records.contains_key(&loc.pack) => {} // pack already reported
            None => report.errors.push(format!(
                "chunk {id}: its pack {} is not in the index",
                loc.pack
            )),
        }
    }
    if read != ReadData::None {
        let chosen: HashSet<PackId> = records
            .keys()
            .filter(|p| read.selects(p))
            .copied()
            .collect();
        let selected: Vec<_> = chunks
            .iter()
            .filter(|(_, l)| chosen.contains(&l.pack))
            .collect();
        let total = selected.len() as u64;
        for (i, (id, loc)) in selected.into_iter().enumerate() {
            let kind = kinds.get(id).copied().unwrap_or(Kind::Chunk);
            match store.get_object(kind, id) {
                Ok(data) => {
                    report.chunks_read += 1;
                    report.bytes_read += data.as_slice().len() as u64;
                }
                Err(e) => report.errors.push(format!(
                    "chunk {id} (pack {}, offset {}): {e}",
                    loc.pack, loc.offset
                )),
            }
            progress(i as u64 + 1, total);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse() {
        assert_eq!(
            "2/7".parse::<ReadData>().unwrap(),
            ReadData::Part { n: 2, of: 7 }
        );
        assert_eq!("10%".parse::<ReadData>().unwrap(), ReadData::Fraction(0.1));
        for bad in ["0/3", "4/3", "x", "0%", "101%", "1/0"] {
            assert!(bad.parse::<ReadData>().is_err(), "{bad}");
        }
    }
}
