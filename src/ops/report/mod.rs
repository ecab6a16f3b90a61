//! `strata report`: how the backups have gone, over time, from what the
//! repository records: per snapshot the bytes it holds and the bytes it
//! added to the store, its backup run and what the write throttle held
//! back; every drill against its objective; where the verify cycle is;
//! the alerts, outstanding and past. [`html`] draws it for a person.

pub mod html;
mod plot;

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::policy::alert;
use crate::store::id::ChunkId;
use crate::store::index::Location;
use crate::tree::head::Head;
use crate::tree::objects::Tree;
use crate::tree::record::RunIo;
use crate::tree::snapshot::drills::DrillResult;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{FileKind, Timestamp};

use super::metrics::{coverage, outstanding, MetricsError};

/// One snapshot in the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotPoint {
    /// Its number.
    pub seq: u64,
    /// Its directory name.
    pub name: String,
    /// When it was taken (seconds since the epoch).
    pub time: i64,
    /// Its label.
    pub label: Option<String>,
    /// Files it holds.
    pub files: u64,
    /// Bytes of file content it holds.
    pub logical_bytes: u64,
    /// Bytes as stored (compressed, encrypted) of the objects no earlier
    /// kept snapshot had: what this night cost the store.
    pub new_stored_bytes: u64,
    /// Its backup run's status, if a run took it.
    pub run_status: Option<String>,
    /// Seconds from the run's start to the snapshot.
    pub run_secs: Option<i64>,
    /// What the write throttle saw during the run.
    pub run_io: Option<RunIo>,
}

/// One drill in the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrillPoint {
    /// Its number.
    pub number: u64,
    /// Its `[[drill]]` name, if any.
    pub name: Option<String>,
    /// When it started.
    pub time: i64,
    /// The restore plus the service ready, seconds.
    pub recovery_secs: f64,
    /// Its objective, seconds.
    pub rto_secs: Option<f64>,
    /// Its verdict.
    pub result: DrillResult,
}

/// The report's data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// When it was made (seconds since the epoch).
    pub generated: i64,
    /// The repository's id.
    pub repository: String,
    /// Kept snapshots, oldest first.
    pub snapshots: Vec<SnapshotPoint>,
    /// Distinct chunk bytes before compression, and as stored.
    pub chunk_bytes: u64,
    /// Bytes as stored.
    pub stored_bytes: u64,
    /// Every drill, oldest first.
    pub drills: Vec<DrillPoint>,
    /// Verify cycles completed.
    pub verify_cycles: u64,
    /// When the verify cycle last ran (0: never).
    pub verify_last_run: i64,
    /// Share of the finished packs the current cycle has read.
    pub verify_coverage: f64,
    /// Alerts outstanding, by kind name.
    pub alerts_outstanding: Vec<String>,
    /// Every alert this host remembers for the repository: those that
    /// ended, oldest first, then those outstanding.
    pub alerts: Vec<alert::state::Span>,
}

/// The report of `head`'s repository.
pub fn report(head: &Head) -> Result<Report, MetricsError> {
    let snapshots = Snapshots::of(head);
    let rows = snapshots.list()?;
    let runs = snapshots.runs()?;
    let store = head.repo().store();
    let stats = crate::store::stats::stats(head.repo())?;
    let located: HashMap<ChunkId, Location> = store
        .index()
        .chunks()
        .map_err(crate::store::repo::RepoError::Index)?
        .into_iter()
        .collect();
    let mut seen_trees = HashSet::new();
    let mut seen_chunks = HashSet::new();
    let mut points = Vec::new();
    for row in &rows {
        let mut p = SnapshotPoint {
            seq: row.record.seq,
            name: row.record.name(),
            time: row.record.time.secs,
            label: row.record.label.clone(),
            files: 0,
            logical_bytes: 0,
            new_stored_bytes: 0,
            run_status: runs
                .get(&row.record.seq)
                .map(|r| r.status.as_str().to_owned()),
            run_secs: runs
                .get(&row.record.seq)
                .map(|r| (row.record.time.secs - r.started).max(0)),
            run_io: runs.get(&row.record.seq).and_then(|r| r.io),
        };
        let stored = |id: &ChunkId| located.get(id).map_or(0, |l| u64::from(l.len));
        if seen_chunks.insert(ChunkId(row.id)) {
            p.new_stored_bytes += stored(&ChunkId(row.id));
        }
        let mut stack: Vec<[u8; 32]> = row.record.root.subtree.into_iter().collect();
        // Every tree is read for the counts; only trees and chunks not
        // seen in an earlier snapshot add to what this one cost.
        while let Some(t) = stack.pop() {
            if seen_trees.insert(t) {
                p.new_stored_bytes += stored(&ChunkId(t));
            }
            for e in Tree::load(store, &t)?.entries {
                if e.meta.kind == FileKind::File {
                    p.files += 1;
                    p.logical_bytes += e.meta.size;
                    for (_, c, _) in &e.extents {
                        if seen_chunks.insert(ChunkId(*c)) {
                            p.new_stored_bytes += stored(&ChunkId(*c));
                        }
                    }
                }
                stack.extend(e.subtree);
            }
        }
        points.push(p);
    }
    let drills = snapshots
        .drills()?
        .into_iter()
        .map(|d| DrillPoint {
            number: d.number,
            name: d.name.clone(),
            time: d.started.secs,
            recovery_secs: d.recovery_secs(),
            rto_secs: d.rto_secs,
            result: d.result,
        })
        .collect();
    let scrub = snapshots.scrub()?;
    Ok(Report {
        generated: Timestamp::now().secs,
        repository: head.repo().config().id.clone(),
        snapshots: points,
        chunk_bytes: stats.chunk_bytes,
        stored_bytes: stats.stored_bytes,
        drills,
        verify_cycles: scrub.cycles,
        verify_last_run: scrub.last_run,
        verify_coverage: coverage(head, &scrub),
        alerts_outstanding: outstanding(head)
            .into_iter()
            .map(|k| k.name().to_owned())
            .collect(),
        alerts: head
            .repo()
            .config()
            .id
            .parse()
            .map(|id| alert::state::history(&alert::state_path(&id)))
            .unwrap_or_default(),
    })
}
