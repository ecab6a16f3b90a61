//! Backup-run records kept beside snapshots: a row of the `snapshot_runs`
//! table per snapshot, and each revision also as an object in the packs,
//! so an index rebuilt from packs recovers the newest one.

use std::collections::BTreeMap;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::records;
use super::txn::{Reader, Write};
use super::types::{Caller, FsError};
use super::Head;
use crate::store::chunks::Store;
use crate::store::format::Kind;
use crate::tree::record::RunRecord;

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

impl Head {
    /// Replaces the run record of snapshot `seq` with a newer revision
    /// (after validation), durably.
    pub fn set_run(&self, caller: Caller, seq: u64, run: &RunRecord) -> Result<(), FsError> {
        let _op = caller.span("set_run");
        let row = self.snapshot_by_seq(seq)?;
        if let Some(old) = self.runs()?.get(&seq) {
            if old.run != run.run || old.revision >= run.revision {
                return Err(FsError::Invalid(
                    "a run record replaces only an older revision of the same run",
                ));
            }
        }
        let store = self.repo.store();
        self.wtx(|w| put_run(w, store, &row.id, seq, run))?;
        self.commit()
    }

    /// Run records by snapshot sequence number (snapshots taken outside a
    /// backup run have none).
    pub fn runs(&self) -> Result<BTreeMap<u64, RunRecord>, FsError> {
        let r = self.rtx()?;
        let mut out = BTreeMap::new();
        for row in r.runs()?.iter().map_err(records::db)? {
            let (k, v) = row.map_err(records::db)?;
            let stored: StoredRun = records::open(
                r.sealer(),
                Kind::IndexSnapshotRun,
                &k.value().to_le_bytes(),
                v.value(),
            )?;
            out.insert(k.value(), stored.run);
        }
        Ok(out)
    }
}
