//! Exit codes of `strata` and `strata-mountd`, and the codes of the errors
//! of the layers below: each top-level error decides its code by an
//! exhaustive match ([`ExitCode`]). The errors of `daemon/`, above, do the
//! same beside their definitions, and `daemon::exit_code` finds the error
//! that decides in a chain.

use crate::ops::check::CheckError;
use crate::ops::drill::plan::PlanError;
use crate::ops::drill::{DrillError, TargetError};
use crate::ops::forget::ForgetError;
use crate::ops::prune::PruneError;
use crate::ops::replicate::{OpenError, ReplicaFailed, ReplicateError};
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
/// Refused to protect a snapshot: forgetting one under a legal hold or
/// inside its retention lock, or shortening the retention lock. Nothing
/// was changed.
pub const PROTECTED: u8 = 26;
/// A restore drill read everything back as the snapshot holds it, but took
/// longer than its recovery-time objective. (A drill that found damage
/// exits 13, one whose target refused the restore 1, one whose restored
/// service failed its check 22.)
pub const DRILL_MISSED_RTO: u8 = 27;
/// A replica diverged from its source (it holds a snapshot the source does
/// not have under that number), or is a copy of another repository; it is
/// left as it is.
pub const REPLICA_DIVERGED: u8 = 28;
/// `strata replicate --verify`: a replica is a consistent prefix of its
/// source but lacks some of its snapshots or objects; `strata replicate`
/// brings it up to date.
pub const REPLICA_BEHIND: u8 = 29;
/// `strata audit verify`: a record of the audit log was edited, removed,
/// reordered or cut off, or is not the one a snapshot's anchor names.
pub const AUDIT_TAMPERED: u8 = 30;

/// An audit log that does not verify: its problems were reported, then
/// exit 30.
#[derive(Debug, thiserror::Error)]
#[error("the audit log does not verify: {0} problem(s) found; see above. Keep the repository as it is for the investigation, and compare its snapshots with a replica (`strata replicate --verify`)")]
pub struct Tampered(pub usize);

impl ExitCode for Tampered {
    fn exit_code(&self) -> u8 {
        AUDIT_TAMPERED
    }
}
/// `strata find` matched nothing, `strata versions` found the path in no
/// kept snapshot, `strata diff A B PATH` found PATH in neither snapshot.
/// Not 1 as grep has it: 1 already means that something failed, and a
/// script must tell "nothing there" from "could not look".
pub const NOT_FOUND: u8 = 31;

/// A check that found damage: reported, then exit 13.
#[derive(Debug, thiserror::Error)]
#[error("the repository is damaged: {0} problem(s) found; see above. `strata repair index` rebuilds a damaged index; damaged packs need a replica or the original data")]
pub struct Damaged(pub usize);

/// An error another process (the daemon) reported, with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{1}")]
pub struct Reported(pub u8, pub String);

/// An error that decides the exit code of the command it ends.
///
/// Implemented by the library's top-level errors, each with an exhaustive
/// `match` (no catch-all arm), so a new variant must be given a code.
/// [`crate::daemon::exit_code`] finds the first such error in a chain.
pub trait ExitCode {
    /// The code the process exits with when this error ends it.
    fn exit_code(&self) -> u8;
}

impl ExitCode for Damaged {
    fn exit_code(&self) -> u8 {
        DAMAGED
    }
}

impl ExitCode for Reported {
    fn exit_code(&self) -> u8 {
        self.0
    }
}

impl ExitCode for HostConfigError {
    fn exit_code(&self) -> u8 {
        match self {
            HostConfigError::Read { .. }
            | HostConfigError::Unsafe { .. }
            | HostConfigError::UnsafeProgram { .. }
            | HostConfigError::Invalid { .. } => HOST_CONFIG,
        }
    }
}

impl ExitCode for ForgetError {
    fn exit_code(&self) -> u8 {
        match self {
            ForgetError::NoPolicy
            | ForgetError::RulesAndNames
            | ForgetError::Policy(_)
            | ForgetError::Config(_) => USAGE,
            ForgetError::Held { .. } | ForgetError::Locked { .. } => PROTECTED,
            // The engine's own refusal, when a hold arrived between the
            // report and the transaction.
            ForgetError::Fs(crate::tree::types::FsError::Busy(_)) => PROTECTED,
            ForgetError::Lock(e) => e.exit_code(),
            ForgetError::Fs(_) => ERROR,
        }
    }
}

impl ExitCode for OpenError {
    fn exit_code(&self) -> u8 {
        match self {
            OpenError::Remote(crate::store::io::remote::RemoteError::Url(_))
            | OpenError::NotEmpty(_) => USAGE,
            OpenError::Missing(_) => REPLICA_BEHIND,
            OpenError::Repo(e) => e.exit_code(),
            OpenError::Remote(_)
            | OpenError::Bootstrap(_)
            | OpenError::Create(..)
            | OpenError::Fs(_) => ERROR,
        }
    }
}

impl ExitCode for ReplicaFailed {
    fn exit_code(&self) -> u8 {
        match self {
            ReplicaFailed::Open { source, .. } => source.exit_code(),
            ReplicaFailed::Copy { source, .. } => source.exit_code(),
            ReplicaFailed::Forget { source, .. } => source.exit_code(),
            ReplicaFailed::Upstream { never_made, .. } => {
                if *never_made {
                    REPLICA_BEHIND
                } else {
                    ERROR
                }
            }
            ReplicaFailed::Verify { source, .. } => match **source {
                crate::tree::types::FsError::Corrupt(_) => DAMAGED,
                _ => ERROR,
            },
        }
    }
}

impl ExitCode for ReplicateError {
    fn exit_code(&self) -> u8 {
        match self {
            ReplicateError::Diverged { .. } => REPLICA_DIVERGED,
            ReplicateError::Damaged { .. } => DAMAGED,
            ReplicateError::Lock(e) => e.exit_code(),
            ReplicateError::Store(e) => store(e),
            ReplicateError::Fs(crate::tree::types::FsError::Corrupt(_)) => DAMAGED,
            ReplicateError::Fs(_) => ERROR,
        }
    }
}

impl ExitCode for PruneError {
    fn exit_code(&self) -> u8 {
        match self {
            PruneError::Mark(_) | PruneError::Pack { .. } | PruneError::Damaged { .. } => DAMAGED,
            PruneError::Store(e) => store(e),
            PruneError::ReadOnly(_) | PruneError::Fs(_) => ERROR,
        }
    }
}

impl ExitCode for CheckError {
    fn exit_code(&self) -> u8 {
        match self {
            CheckError::Repo(e) => e.exit_code(),
            CheckError::Fs(crate::tree::types::FsError::Corrupt(_)) => DAMAGED,
            CheckError::Fs(_) => ERROR,
        }
    }
}

impl ExitCode for DrillError {
    fn exit_code(&self) -> u8 {
        match self {
            DrillError::Plan(
                PlanError::Outside(_) | PlanError::NoPath(_) | PlanError::NotADir(_),
            )
            | DrillError::Target(
                TargetError::NotEmpty(_) | TargetError::NotADir(_) | TargetError::Unsafe(_),
            ) => USAGE,
            DrillError::Plan(
                PlanError::Fs(crate::tree::types::FsError::Corrupt(_)) | PlanError::Malformed(..),
            ) => DAMAGED,
            DrillError::Plan(PlanError::Fs(_))
            | DrillError::Target(TargetError::Open(..) | TargetError::Create(..))
            | DrillError::Source { .. }
            | DrillError::Record { .. } => ERROR,
        }
    }
}

impl ExitCode for MountpointError {
    fn exit_code(&self) -> u8 {
        match self {
            MountpointError::Missing(_)
            | MountpointError::NotDir(_)
            | MountpointError::NotEmpty(..)
            | MountpointError::Busy(..)
            | MountpointError::Mount(..)
            | MountpointError::NotMounted(_) => MOUNTPOINT,
        }
    }
}

impl ExitCode for RepoError {
    fn exit_code(&self) -> u8 {
        match self {
            RepoError::NotARepository { .. } => NO_REPOSITORY,
            RepoError::NoSecret | RepoError::WrongSecret => WRONG_SECRET,
            RepoError::Config(_) | RepoError::IndexMissing => DAMAGED,
            RepoError::LockShortened(_) => PROTECTED,
            RepoError::OtherRepository { .. } => REPLICA_DIVERGED,
            RepoError::Index(e) => index(e),
            RepoError::Store(e) => store(e),
            RepoError::NotEmpty { .. }
            | RepoError::Slot { .. }
            | RepoError::Invalid(_)
            | RepoError::NoSuchSlot(_)
            | RepoError::LastSlot
            | RepoError::Io { .. } => ERROR,
        }
    }
}

/// The code of an index error a repository reported.
fn index(e: &IndexError) -> u8 {
    match e {
        IndexError::Locked => LOCKED,
        IndexError::Corrupt { .. } => DAMAGED,
        IndexError::Db(_) => ERROR,
    }
}

/// The code of a store error a repository reported.
fn store(e: &StoreError) -> u8 {
    match e {
        StoreError::Index(IndexError::Locked) => LOCKED,
        StoreError::Corrupt { .. } | StoreError::Pack(_) => DAMAGED,
        // A damaged index row met while storing or reading chunks has
        // always exited 1, unlike one met opening the repository (13).
        StoreError::Index(IndexError::Corrupt { .. } | IndexError::Db(_))
        | StoreError::NoSpace
        | StoreError::Failed(_)
        | StoreError::Io { .. }
        | StoreError::NotFound(_)
        | StoreError::TooLarge { .. } => ERROR,
    }
}
