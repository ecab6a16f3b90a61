//! Runs that took no snapshot, kept on this host: their record has no
//! snapshot to be stored with, yet is what explains a failed night
//! (`strata runs list|show`). The newest [`KEEP`] are kept per repository.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Failure;
use crate::tree::record::RunRecord;

/// Failed runs kept per repository.
pub const KEEP: usize = 50;

/// A run that failed before its snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeptRun {
    /// Its record: hook outcomes with the end of their output.
    pub record: RunRecord,
    /// Why it failed.
    pub failure: String,
}

/// `$STRATA_STATE_DIR/runs-<repository id>`, /var/lib/strata by default.
pub fn dir(repo_id: &str) -> PathBuf {
    std::env::var_os("STRATA_STATE_DIR")
        .map_or_else(|| PathBuf::from("/var/lib/strata"), PathBuf::from)
        .join(format!("runs-{repo_id}"))
}

/// Keeps `record` of a run that failed with `failure` and took no
/// snapshot; forgets the oldest beyond [`KEEP`].
pub fn keep(repo_id: &str, record: &RunRecord, failure: &Failure) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = dir(repo_id);
    // Hook output can say more than the alerts may: root's only.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let kept = KeptRun {
        record: record.clone(),
        failure: failure.to_string(),
    };
    let tmp = dir.join(format!(".{}.tmp", record.run));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&kept)?)?;
    std::fs::rename(&tmp, dir.join(format!("{}.json", record.run)))?;
    for old in load(repo_id).iter().rev().skip(KEEP) {
        let _ = std::fs::remove_file(dir.join(format!("{}.json", old.record.run)));
    }
    Ok(())
}

/// The kept runs of `repo_id`, oldest first; unreadable files are skipped.
pub fn load(repo_id: &str) -> Vec<KeptRun> {
    let Ok(entries) = std::fs::read_dir(dir(repo_id)) else {
        return Vec::new();
    };
    let mut runs: Vec<KeptRun> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    runs.sort_by(|a, b| (a.record.started, &a.record.run).cmp(&(b.record.started, &b.record.run)));
    runs
}
