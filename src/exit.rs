//! Exit codes of `strata` and `strata-mountd`, and the one place errors
//! become them.

use crate::policy::hostconfig::HostConfigError;
use crate::store::chunks::StoreError;
use crate::store::index::IndexError;
use crate::store::repo::RepoError;
use crate::sys::mountpoint::MountpointError;

/// Any other error.
pub const ERROR: u8 = 1;
/// Wrong usage: an unknown flag, a missing argument, a value that does not
/// parse (clap's own code for the same).
pub const USAGE: u8 = 2;
/// No repository.
pub const NO_REPOSITORY: u8 = 10;
/// In use by another process.
pub const LOCKED: u8 = 11;
/// Wrong or missing secret.
pub const WRONG_SECRET: u8 = 12;
/// Damage found.
pub const DAMAGED: u8 = 13;
/// The mountpoint is missing, not a directory, or already mounted.
pub const MOUNTPOINT: u8 = 14;

/// The host configuration cannot be used.
pub const HOST_CONFIG: u8 = 15;
/// No good snapshot within the allowed age (`check --freshness`).
pub const BACKUP_MISSED: u8 = 16;
/// A backup run stopped because a hook failed or timed out.
pub const HOOK_FAILED: u8 = 20;
/// A backup run's copy command failed.
pub const COPY_FAILED: u8 = 21;
/// A backup run's snapshot failed validation.
pub const VALIDATION_FAILED: u8 = 22;
/// A backup run's snapshot is marked inconsistent.
pub const INCONSISTENT: u8 = 23;
/// Another backup run is in progress on the repository (`backup`,
/// `snapshot create`): refused before anything ran.
pub const RUN_IN_PROGRESS: u8 = 24;
/// Not everything written was committed: the head turned read-only after
/// a storage failure, or the daemon died (`umount`); no snapshot was taken
/// because of such a failure (`snapshot create`).
pub const NOT_COMMITTED: u8 = 25;

/// A check that found damage: reported, then exit 13.
#[derive(Debug, thiserror::Error)]
#[error("the repository is damaged: {0} problem(s) found; see above. `strata repair index` rebuilds a damaged index; damaged packs need a replica or the original data")]
pub struct Damaged(pub usize);

/// An error another process (the daemon) reported, with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{1}")]
pub struct Reported(pub u8, pub String);

/// The exit code for an error, from the first cause that has one.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<Damaged>().is_some() {
            return DAMAGED;
        }
        if let Some(r) = cause.downcast_ref::<Reported>() {
            return r.0;
        }
        if cause.downcast_ref::<HostConfigError>().is_some() {
            return HOST_CONFIG;
        }
        if cause.downcast_ref::<MountpointError>().is_some() {
            return MOUNTPOINT;
        }
        if let Some(e) = cause.downcast_ref::<RepoError>() {
            return match e {
                RepoError::NotARepository { .. } => NO_REPOSITORY,
                RepoError::NoSecret | RepoError::WrongSecret => WRONG_SECRET,
                RepoError::Index(IndexError::Locked)
                | RepoError::Store(StoreError::Index(IndexError::Locked)) => LOCKED,
                RepoError::Config(_)
                | RepoError::IndexMissing
                | RepoError::Index(IndexError::Corrupt { .. }) => DAMAGED,
                RepoError::Store(StoreError::Corrupt { .. } | StoreError::Pack(_)) => DAMAGED,
                _ => ERROR,
            };
        }
    }
    ERROR
}
