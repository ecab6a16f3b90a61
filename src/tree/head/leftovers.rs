//! The marker that says head/ holds what a failed backup run left there
//! (a partial copy), so that nobody takes it for a good night: set when a
//! run fails after its copy wrote into head/, shown by `strata status`,
//! taken over (and cleared) by the next run's snapshot, cleared by
//! `strata head reset`.
//!
//! One sealed row in a table of its own. The first failed run's marker
//! stays until cleared: what head/ must be reset to is the last good
//! snapshot before it.

use redb::{Durability, ReadableDatabase, ReadableTable, WriteTransaction};

use super::records::{self, LEFTOVERS};
use super::Head;
use crate::store::crypto::Sealer;
use crate::store::format::Kind;
use crate::tree::record::Leftovers;
use crate::tree::types::FsError;

/// The row's key, also the context its value is sealed to (no key of the
/// run table, whose keys are 8 bytes, can equal it).
const KEY: &str = "marker";

fn sealed(sealer: &Sealer, l: &Leftovers) -> Vec<u8> {
    records::seal(sealer, Kind::IndexSnapshotRun, KEY.as_bytes(), l)
}

/// Forgets the marker in `tx`: a reset's transaction calls it, so head/
/// and the marker change together.
pub(super) fn clear(tx: &WriteTransaction) -> Result<(), FsError> {
    let mut t = tx.open_table(LEFTOVERS).map_err(records::db)?;
    t.remove(KEY).map_err(records::db)?;
    Ok(())
}

impl Head {
    /// The failed run whose leftovers head/ holds, if any.
    pub fn leftovers(&self) -> Result<Option<Leftovers>, FsError> {
        let db = self.repo.store().index().database();
        let tx = db.begin_read().map_err(records::db)?;
        let t = match tx.open_table(LEFTOVERS) {
            Ok(t) => t,
            // Never written in this repository.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(records::db(e)),
        };
        match t.get(KEY).map_err(records::db)? {
            None => Ok(None),
            Some(v) => records::open(
                &self.sealer,
                Kind::IndexSnapshotRun,
                KEY.as_bytes(),
                v.value(),
            )
            .map(Some),
        }
    }

    /// Records that head/ holds `l`'s leftovers, durably, unless it already
    /// holds an earlier failed run's (that one stays: the reset target is
    /// the same). Returns the marker in force.
    pub fn record_leftovers(&self, l: &Leftovers) -> Result<Leftovers, FsError> {
        let kept = self.change(|tx| {
            let mut t = tx.open_table(LEFTOVERS).map_err(records::db)?;
            let old = t.get(KEY).map_err(records::db)?.map(|v| v.value().to_vec());
            if let Some(old) = old {
                return records::open(&self.sealer, Kind::IndexSnapshotRun, KEY.as_bytes(), &old);
            }
            t.insert(KEY, sealed(&self.sealer, l).as_slice())
                .map_err(records::db)?;
            Ok(l.clone())
        })?;
        Ok(kept)
    }

    /// Clears the marker durably (its run's leftovers went into a snapshot
    /// that says so).
    pub fn clear_leftovers(&self) -> Result<(), FsError> {
        self.change(clear)
    }

    /// Runs `f` in a write transaction of its own and commits durably: a
    /// marker that a crash forgets would let leftovers pass unnoticed.
    fn change<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let db = self.repo.store().index().database();
        let mut tx = db.begin_write().map_err(records::db)?;
        tx.set_durability(Durability::None).map_err(records::db)?;
        let out = f(&tx)?;
        tx.commit().map_err(records::db)?;
        self.commit()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::snapshot::Snapshots;
    use crate::tree::types::Caller;

    fn marker(run: &str) -> Leftovers {
        Leftovers {
            run: run.into(),
            label: Some("nightly".into()),
            started: 1_700_000_000,
            why: "the copy command rsync: exit 23".into(),
            last_good: Some("2026-11-22T02:00:00Z".into()),
        }
    }

    fn open(disk: &crate::store::io::sim::SimDisk) -> Head {
        use crate::store::crypto::slot::{KdfParams, Secret, SlotKind};
        let disk: std::sync::Arc<dyn crate::store::io::Disk> = std::sync::Arc::new(disk.clone());
        let secret = || Secret::Passphrase(zeroize::Zeroizing::new("pw".to_owned()));
        if crate::store::repo::LockedRepo::open(disk.clone(), "test").is_err() {
            crate::store::repo::init(
                disk.clone(),
                crate::store::repo::InitOptions {
                    id: crate::store::id::RepoId::random(),
                    secret: Some((secret(), SlotKind::Passphrase)),
                    label: "test".into(),
                    kdf: KdfParams {
                        memory_kib: 64,
                        iterations: 1,
                        parallelism: 1,
                    },
                    chunker: crate::store::chunker::ChunkerParams::default(),
                    pack_size: 1 << 20,
                },
            )
            .unwrap();
        }
        let repo = crate::store::repo::LockedRepo::open(disk, "test")
            .unwrap()
            .unlock(Some(&secret()))
            .unwrap();
        Head::new(repo).unwrap()
    }

    #[test]
    fn the_first_failed_runs_marker_stays_until_cleared_and_survives_reopening() {
        let disk = crate::store::io::sim::SimDisk::new();
        let head = open(&disk);
        assert_eq!(head.leftovers().unwrap(), None);
        assert_eq!(head.record_leftovers(&marker("a")).unwrap(), marker("a"));
        assert_eq!(head.record_leftovers(&marker("b")).unwrap(), marker("a"));
        drop(head);
        let head = open(&disk);
        assert_eq!(head.leftovers().unwrap(), Some(marker("a")));
        Snapshots::of(&head).take(Caller::ROOT, None).unwrap();
        head.clear_leftovers().unwrap();
        assert_eq!(head.leftovers().unwrap(), None);
        head.clear_leftovers().unwrap();
    }

    #[test]
    fn a_reset_clears_the_marker_in_its_own_transaction() {
        let disk = crate::store::io::sim::SimDisk::new();
        let head = open(&disk);
        let seq = Snapshots::of(&head).take(Caller::ROOT, None).unwrap().seq;
        head.record_leftovers(&marker("a")).unwrap();
        Snapshots::of(&head).reset_head(Caller::ROOT, seq).unwrap();
        assert_eq!(head.leftovers().unwrap(), None);
        drop(head);
        assert_eq!(open(&disk).leftovers().unwrap(), None);
    }
}
