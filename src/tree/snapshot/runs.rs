//! Backup-run records kept beside snapshots: a row of the `snapshot_runs`
//! table per snapshot, and each revision also as an object in the packs,
//! so an index rebuilt from packs recovers the newest one.

use serde::{Deserialize, Serialize};

use crate::store::chunks::Store;
use crate::store::format::Kind;
use crate::tree::head::records;
use crate::tree::head::txn::{Reader, Write};
use crate::tree::record::RunRecord;
use crate::tree::types::FsError;

/// A run record as stored: which snapshot it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRun {
    /// Id of the snapshot record object.
    pub snapshot: [u8; 32],
    /// The snapshot's sequence number.
    pub seq: u64,
    /// The run.
    pub run: RunRecord,
}

/// Stores `run` for snapshot `seq` (record object `snapshot`) in `w`,
/// replacing an older revision.
pub(super) fn put_run(
    w: &mut Write<'_>,
    store: &Store,
    snapshot: &[u8; 32],
    seq: u64,
    run: &RunRecord,
) -> Result<(), FsError> {
    let stored = StoredRun {
        snapshot: *snapshot,
        seq,
        run: run.clone(),
    };
    let bytes = postcard::to_allocvec(&stored).expect("run record serializes");
    store.put_object(Kind::SnapshotRun, &bytes)?;
    let v = records::seal(
        w.sealer(),
        Kind::IndexSnapshotRun,
        &seq.to_le_bytes(),
        &stored,
    );
    w.runs_mut()?
        .insert(seq, v.as_slice())
        .map_err(records::db)?;
    Ok(())
}
