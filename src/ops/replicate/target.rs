//! Opening a replica, or making one: a directory, or a bucket with its
//! local cache directory.
//!
//! A new replica is a copy of the source's config (with an instance name
//! of its own) and key slots ([`init_replica`]). A bucket that holds the
//! replica already but whose cache directory was lost is fetched again and
//! its index rebuilt from its packs, as `strata repair index` does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::store::format::CONFIG_FILE;
use crate::store::io::remote::{
    self, BootstrapError, ObjectLock, RemoteConfig, RemoteError, REMOTE_FILE,
};
use crate::store::io::{Disk, LocalDisk};
use crate::store::repo::{init_replica, LockedRepo, Repo, RepoError, RepoKey};
use crate::tree::head::Head;
use crate::tree::types::FsError;

/// Why a replica could not be opened or made.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL or the bucket's client settings are not usable.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The bucket could not be read.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The directory could not be made.
    #[error("creating {}", .0.display())]
    Create(PathBuf, #[source] std::io::Error),
    /// There is no replica yet.
    #[error("{} holds no replica yet: `strata replicate` makes it", .0.display())]
    Missing(PathBuf),
    /// The directory holds something that is not a replica.
    #[error("{} holds files but no strata repository; a replica needs an empty or missing directory", .0.display())]
    NotEmpty(PathBuf),
    /// Opening or creating it failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Its head could not be opened.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// How a replica is made when there is none yet.
#[derive(Clone, Copy, Debug, Default)]
pub struct Made {
    /// The S3 Object Lock mode of a replica in a bucket.
    pub object_lock: Option<ObjectLock>,
}

/// Where a replica keeps its files on this host: `to` itself, or the
/// bucket's cache directory.
pub fn local_dir(to: &str) -> Result<PathBuf, RemoteError> {
    if to.starts_with("s3://") {
        remote::cache_dir(to)
    } else {
        Ok(PathBuf::from(to))
    }
}

/// The replica at `to` (a directory or `s3://BUCKET/PREFIX`) of `source`,
/// unlocked with `source`'s keys; made if there is none and `make` says
/// so. Also returns whether it was made now.
pub fn open(to: &str, source: &Repo, make: Option<Made>) -> Result<(Head, bool), OpenError> {
    let dir = local_dir(to)?;
    let mut created = false;
    if !dir.join(CONFIG_FILE).exists() {
        if make.is_none() && !to.starts_with("s3://") {
            return Err(OpenError::Missing(dir));
        }
        created = fetch_or_make(to, &dir, source, make)?;
    }
    let disk = crate::store::io::open_dir(&dir)?;
    let locked = LockedRepo::open(disk.clone(), &dir.display().to_string())?;
    if !disk.exists(crate::store::format::INDEX_FILE) {
        let keys = locked.keys_as(source)?;
        let backend = crate::store::io::pack_backend(&disk);
        crate::ops::repair::rebuild_index(disk.as_ref(), backend.as_ref(), &keys.codec()?, || {
            keys.index_sealer()
        })?;
    }
    let repo = locked.unlock_as(source)?;
    Ok((Head::new(repo)?, created))
}

/// The existing replica at `to`, opened with `key` (no head: what reading
/// one object needs).
pub fn open_repo(to: &str, key: &RepoKey) -> Result<Repo, OpenError> {
    let dir = local_dir(to)?;
    if !dir.join(CONFIG_FILE).exists() {
        return Err(OpenError::Missing(dir));
    }
    let disk = crate::store::io::open_dir(&dir)?;
    Ok(LockedRepo::open(disk, &dir.display().to_string())?.unlock_with(key)?)
}

/// Makes the replica's local directory: fetched from its bucket when the
/// bucket has it, else a new replica (if `make`). Returns whether it is new.
fn fetch_or_make(
    to: &str,
    dir: &Path,
    source: &Repo,
    make: Option<Made>,
) -> Result<bool, OpenError> {
    let listed = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(_) => false,
    };
    let remote = match to.starts_with("s3://") {
        true => Some(RemoteConfig {
            object_lock: make.and_then(|m| m.object_lock),
            ..RemoteConfig::from_env(to)?
        }),
        false => None,
    };
    if listed && !(remote.is_some() && only_remote_file(dir)) {
        return Err(OpenError::NotEmpty(dir.to_owned()));
    }
    if let Some(config) = &remote {
        if remote::bootstrap(config, dir)? {
            return Ok(false);
        }
    }
    if make.is_none() {
        return Err(OpenError::Missing(dir.to_owned()));
    }
    std::fs::create_dir_all(dir).map_err(|e| OpenError::Create(dir.to_owned(), e))?;
    let local = LocalDisk::new(dir);
    if let Some(config) = &remote {
        local
            .write_atomic(REMOTE_FILE, config.render().as_bytes())
            .map_err(|e| OpenError::Create(dir.join(REMOTE_FILE), e))?;
    }
    let disk: Arc<dyn Disk> = crate::store::io::open_dir(dir)?;
    init_replica(disk, source, &instance_name())?;
    Ok(true)
}

/// Whether `dir` holds nothing but a `remote.toml` (a replica made in a
/// bucket that stopped before its config).
fn only_remote_file(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .all(|e| e.file_name() == std::ffi::OsStr::new(REMOTE_FILE))
    })
}

/// A new replica's instance name: 8 random hex digits.
fn instance_name() -> String {
    hex::encode(rand::random::<[u8; 4]>())
}
