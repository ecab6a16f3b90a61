//! A mounted repository's side of strata: the control socket the CLI talks
//! to ([`control`]), the storage watch that raises alerts ([`watch`]), the
//! daemon's command line ([`mount_args`]), the secrets handed to it
//! ([`secrets`]), replication as the daemon serves it ([`replicate`]), `strata tier show`
//! ([`tier`]), and the exit code an error chain ends a binary with
//! ([`exit_code`]). The FUSE adapter itself lives in the `strata-mountd`
//! package.
//!
//! The top of the library: it may use every layer below.

pub mod audit;
pub mod catalog;
pub mod control;
pub mod metrics_http;
pub mod mount_args;
pub mod replicate;
pub mod secrets;
pub mod tier;
pub mod watch;

use std::error::Error;

use crate::exit::{Damaged, ExitCode, Reported, Tampered};
use crate::policy::hostconfig::HostConfigError;
use crate::store::repo::RepoError;
use crate::sys::mountpoint::MountpointError;

/// The exit code for `err`: that of the first error in its chain (`err`,
/// then its sources) that is one of the library's top-level errors, each
/// of which decides its code by an exhaustive match ([`ExitCode`]); 1 if
/// none is.
///
/// The one place that downcasts. The binaries carry errors as
/// `anyhow::Error`, which keeps each error and its context but erases the
/// type, so the typed error has to be found again here. It lives at the
/// top of the library because it must know the errors of every layer.
pub fn exit_code(err: &(dyn Error + 'static)) -> u8 {
    fn code<E: ExitCode + Error + 'static>(e: &(dyn Error + 'static)) -> Option<u8> {
        e.downcast_ref::<E>().map(E::exit_code)
    }
    let mut cause = Some(err);
    while let Some(e) = cause {
        let found = code::<Reported>(e)
            .or_else(|| code::<Damaged>(e))
            .or_else(|| code::<Tampered>(e))
            .or_else(|| code::<RepoError>(e))
            .or_else(|| code::<HostConfigError>(e))
            .or_else(|| code::<MountpointError>(e))
            .or_else(|| code::<control::ControlError>(e))
            .or_else(|| code::<crate::ops::forget::ForgetError>(e))
            .or_else(|| code::<crate::ops::prune::PruneError>(e))
            .or_else(|| code::<crate::ops::replicate::ReplicaFailed>(e))
            .or_else(|| code::<crate::ops::replicate::ReplicateError>(e))
            .or_else(|| code::<crate::ops::drill::DrillError>(e))
            .or_else(|| code::<crate::ops::check::CheckError>(e))
            .or_else(|| code::<secrets::SecretsError>(e))
            .or_else(|| code::<mount_args::NoSuchGroup>(e));
        if let Some(c) = found {
            return c;
        }
        cause = e.source();
    }
    crate::exit::ERROR
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::*;
    use crate::store::chunks::StoreError;
    use crate::store::index::IndexError;
    use control::ControlError;

    /// An error that only adds context, as anyhow's `context` does.
    #[derive(Debug, thiserror::Error)]
    #[error("while doing something")]
    struct Context(#[source] Box<dyn Error + Send + Sync>);

    fn code(e: impl Error + Send + Sync + 'static) -> u8 {
        let direct = exit_code(&e);
        assert_eq!(
            exit_code(&Context(Box::new(e))),
            direct,
            "context does not change the code"
        );
        direct
    }

    /// Every documented exit code but clap's own (2 for a bad flag, which
    /// never becomes an error of ours) and the signals' is reachable from
    /// a typed error.
    #[test]
    fn each_exit_code_comes_from_its_typed_error() {
        let io = || std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(code(io()), ERROR);
        assert_eq!(code(ControlError::NoSnapshot("x".into())), ERROR);
        assert_eq!(code(ControlError::NoResetTarget("x".into())), USAGE);
        assert_eq!(
            code(RepoError::NotARepository { path: "/r".into() }),
            NO_REPOSITORY
        );
        assert_eq!(code(RepoError::Index(IndexError::Locked)), LOCKED);
        assert_eq!(
            code(RepoError::Store(StoreError::Index(IndexError::Locked))),
            LOCKED
        );
        assert_eq!(code(RepoError::NoSecret), WRONG_SECRET);
        assert_eq!(code(RepoError::WrongSecret), WRONG_SECRET);
        assert_eq!(code(Damaged(3)), DAMAGED);
        assert_eq!(code(RepoError::IndexMissing), DAMAGED);
        assert_eq!(
            code(RepoError::Index(IndexError::Corrupt {
                table: "chunks",
                key: "00".into(),
                what: "short".into()
            })),
            DAMAGED
        );
        assert_eq!(code(MountpointError::Missing("/m".into())), MOUNTPOINT);
        assert_eq!(code(ControlError::NotMounted), MOUNTPOINT);
        assert_eq!(
            code(ControlError::ResetBusy { mnt: "/m".into() }),
            MOUNTPOINT
        );
        assert_eq!(
            code(HostConfigError::Invalid {
                path: "/etc/strata/strata.toml".into(),
                source: crate::policy::hostconfig::InvalidHostConfig::HookName("a b".into())
            }),
            HOST_CONFIG
        );
        assert_eq!(
            code(ControlError::StoreFailed {
                reason: "sync failed".into()
            }),
            NOT_COMMITTED
        );
        for c in [
            BACKUP_MISSED,
            HOOK_FAILED,
            COPY_FAILED,
            VALIDATION_FAILED,
            INCONSISTENT,
            RUN_IN_PROGRESS,
        ] {
            assert_eq!(code(Reported(c, "m".into())), c);
            // As the daemon reports it over the control socket.
            assert_eq!(
                code(ControlError::DaemonReported(Reported(c, "m".into()))),
                c
            );
        }
    }

    /// The outermost error with a code decides, as it always has: a
    /// cause further down does not override it.
    #[test]
    fn the_outermost_error_with_a_code_decides() {
        use crate::tree::types::{Fault, FsError};
        let below = RepoError::NotARepository { path: "/r".into() };
        assert_eq!(code(Context(Box::new(below))), NO_REPOSITORY);
        let below = RepoError::NotARepository { path: "/r".into() };
        let e = ControlError::Fs(FsError::Io(Fault::of(below)));
        assert_eq!(code(e), ERROR);
    }
}
