//! Records of restore drills: a row of the `drills` table per drill, and
//! each also as an object in the packs, so an index rebuilt from packs
//! keeps the history an auditor asks for. A record is JSON inside its
//! seal, so that fields can be added without losing the history.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::store::format::Kind;
use crate::tree::head::records;
use crate::tree::head::txn::Reader;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{Caller, FsError, Timestamp};

/// How a drill ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillResult {
    /// Everything read back as the snapshot holds it, within the objective.
    Passed,
    /// Everything read back as the snapshot holds it, but slower than the
    /// objective.
    MissedRto,
    /// Something could not be read, or did not match the snapshot.
    Failed,
}

impl DrillResult {
    /// The name used in text and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillResult::Passed => "passed",
            DrillResult::MissedRto => "missed_rto",
            DrillResult::Failed => "failed",
        }
    }
}

/// One drill, as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// Number, from 1; never reused.
    pub number: u64,
    /// The `[[drill]]` entry it ran, if it ran one.
    pub name: Option<String>,
    /// When it started.
    pub started: Timestamp,
    /// Who asked: uid, gid, pid.
    pub caller: (u32, u32, u32),
    /// The snapshot's sequence number, directory name and record id.
    pub snapshot: u64,
    /// The snapshot's directory name.
    pub snapshot_name: String,
    /// Id of the snapshot record object.
    pub snapshot_id: [u8; 32],
    /// The path inside the snapshot ("/" for all of it).
    pub path: String,
    /// Where the files went; `None` for a discard drill.
    pub to: Option<String>,
    /// What the files were read through: "mount" or "repository".
    pub through: String,
    /// Parallel readers.
    pub readers: u32,
    /// The recovery-time objective, seconds.
    pub rto_secs: Option<f64>,
    /// Seconds until every file was in place (or read, when discarding).
    pub restore_secs: f64,
    /// Seconds the check of the restored copy took (0 when discarding:
    /// each byte is checked as it is read).
    pub verify_secs: f64,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, devices, fifos and sockets.
    pub others: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// The verdict.
    pub result: DrillResult,
    /// What went wrong, the first ones.
    pub problems: Vec<String>,
    /// How many things went wrong in all.
    pub problem_count: u64,
    /// Of them, how many were the repository's fault: something that could
    /// not be read, or was not what the snapshot holds (the rest are the
    /// target's: space, permissions, a filesystem without xattrs).
    #[serde(default)]
    pub damage_count: u64,
    /// The restored service, started and checked (a `[[drill]]` with a
    /// `validate` program).
    #[serde(default)]
    pub service: Option<ServiceCheck>,
}

/// A `validate` program's run on a restore: it starts the service on the
/// restored files, waits until it is ready, checks it and stops it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceCheck {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Its exit status (`None`: killed, timed out, or not started).
    pub exit: Option<i32>,
    /// Why it did not pass, if it did not.
    pub error: Option<String>,
    /// Seconds it ran.
    pub secs: f64,
    /// Seconds until the service was ready, as it reported them
    /// (`ready_secs=` on its standard output); else `secs`.
    pub ready_secs: f64,
    /// The end of its output.
    pub output: String,
}

impl ServiceCheck {
    /// Whether the service came up and passed its checks.
    pub fn passed(&self) -> bool {
        self.exit == Some(0) && self.error.is_none()
    }
}

impl DrillRecord {
    /// The stored form: JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a drill record serializes")
    }

    /// A record from its stored form.
    pub fn decode(bytes: &[u8]) -> Result<DrillRecord, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Seconds until the system was back: the restore, and the service
    /// ready on it when one was started.
    pub fn recovery_secs(&self) -> f64 {
        self.restore_secs + self.service.as_ref().map_or(0.0, |s| s.ready_secs)
    }

    /// The verdict from what the drill found: anything wrong fails it;
    /// else a recovery slower than the objective misses it.
    pub fn judge(&self) -> DrillResult {
        if self.problem_count > 0 || self.service.as_ref().is_some_and(|s| !s.passed()) {
            DrillResult::Failed
        } else if self.rto_secs.is_some_and(|rto| self.recovery_secs() > rto) {
            DrillResult::MissedRto
        } else {
            DrillResult::Passed
        }
    }

    /// Bytes per second of the restore.
    pub fn bytes_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64, self.restore_secs)
    }

    /// Files per second of the restore.
    pub fn files_per_sec(&self) -> f64 {
        per_sec(self.files as f64, self.restore_secs)
    }
}

fn per_sec(n: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        n / secs
    } else {
        0.0
    }
}

impl Snapshots<'_> {
    /// Records drill `record` (its number is given here), durably.
    pub fn record_drill(
        &self,
        caller: Caller,
        mut record: DrillRecord,
    ) -> Result<DrillRecord, FsError> {
        let _op = caller.span("record_drill");
        let store = self.head.repo().store();
        // Under the commit serialization: the transaction stores an object,
        // so a store commit must not wait on it (see `Head::serial`).
        let serial = self.head.serial();
        let record = serial.transact(|w| {
            let number = w.counter("drill_seq")? + 1;
            w.set_counter("drill_seq", number)?;
            record.number = number;
            let bytes = record.encode();
            store.put_object(Kind::Drill, &bytes)?;
            let v = records::seal(w.sealer(), Kind::IndexDrill, &number.to_le_bytes(), &bytes);
            w.drills_mut()?
                .insert(number, v.as_slice())
                .map_err(records::db)?;
            Ok(record)
        })?;
        serial.commit()?;
        drop(serial);
        tracing::info!(
            drill = record.number,
            snapshot = record.snapshot,
            result = record.result.as_str(),
            uid = caller.uid,
            pid = caller.pid,
            "drill recorded"
        );
        Ok(record)
    }

    /// Every drill recorded, oldest first.
    pub fn drills(&self) -> Result<Vec<DrillRecord>, FsError> {
        let r = self.head.rtx()?;
        let Some(table) = r.drills()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(records::db)? {
            let (k, v) = row.map_err(records::db)?;
            let bytes: Vec<u8> = records::open(
                r.sealer(),
                Kind::IndexDrill,
                &k.value().to_le_bytes(),
                v.value(),
            )?;
            out.push(DrillRecord::decode(&bytes).map_err(|e| {
                FsError::Corrupt(crate::tree::types::Fault::caused(
                    format!("drill record {}", k.value()),
                    e,
                ))
            })?);
        }
        Ok(out)
    }
}
