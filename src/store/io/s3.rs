//! A repository whose finished packs live in an S3-compatible bucket: the
//! pack backend that uploads them write-once and reads them back by range,
//! and the repository directory (the bucket's local cache) that copies its
//! config and key slots to the bucket as they change.
//!
//! A pack is finished locally (under `open/`), uploaded (by the store's
//! upload thread, [`crate::store::uploads`]) with a conditional
//! create (`If-None-Match: *`: an object already there is never replaced),
//! and then kept in the local `packs/` as a cache, so reads of what this
//! machine wrote stay local. A pack not in the cache is fetched whole into
//! it the first time a chunk of it is read.

use std::io;
use std::sync::Arc;

use super::backend::{LocalBackend, PackBackend};
use super::remote::Remote;
use super::retry::{retrying, Operation};
use super::{Disk, DiskFile, IndexBackend, LocalDisk};
use crate::store::format::{CONFIG_FILE, KEYS_DIR, PACKS_DIR};
use crate::store::id::PackId;

/// Finished packs in the bucket, with the local ones as a cache.
#[derive(Debug)]
pub struct S3Backend {
    remote: Arc<Remote>,
    cache: LocalBackend,
    disk: Arc<dyn Disk>,
}

impl S3Backend {
    /// Packs in `remote`'s bucket, cached on `disk`.
    pub fn new(remote: Arc<Remote>, disk: Arc<dyn Disk>) -> S3Backend {
        S3Backend {
            remote,
            cache: LocalBackend::new(disk.clone()),
            disk,
        }
    }
}

impl S3Backend {
    /// With S3 Object Lock, until when a pack uploaded now is locked: now
    /// plus the repository's longest retention lock (read from its config
    /// at each upload, so a lock raised meanwhile counts). The data of a
    /// snapshot taken by now is in packs uploaded by now or later, so each
    /// is locked at least as long as the snapshot.
    fn locked_until(&self) -> Option<i64> {
        self.remote.object_lock()?;
        let text = self.disk.read(CONFIG_FILE).ok()?;
        let config = crate::store::config::Config::parse(std::str::from_utf8(&text).ok()?).ok()?;
        let lock = &config.retention_lock;
        let longest = lock
            .all
            .into_iter()
            .chain(lock.labels.values().copied())
            .max()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        i64::try_from(now.saturating_add(longest)).ok()
    }

    /// Copies pack `id` from the bucket into the cache: a reader that asks
    /// for one chunk of a pack mostly asks for its neighbours next (a
    /// restore reads whole trees), and one request for the pack costs far
    /// less than one per chunk. Written aside and renamed in, so the cache
    /// never holds part of a pack (a crash can leave a `.fetch-*` file
    /// beside it, which nothing reads).
    fn fetch(&self, id: PackId) -> io::Result<()> {
        let rel = LocalBackend::path(id);
        let data = retrying(Operation::Read, &rel, || self.remote.get(&rel))?;
        // A name of its own: two readers may fetch the same pack at once,
        // and one must not truncate the file the other has renamed in.
        let tmp = format!("{rel}.fetch-{:016x}", rand::random::<u64>());
        self.disk.create_dir_all(super::parent(&rel))?;
        let f = self.disk.open(&tmp, true)?;
        f.set_len(0)?;
        f.write_at(0, &data)?;
        f.sync()?;
        drop(f);
        self.disk.rename(&tmp, &rel)?;
        self.disk.sync_dir(super::parent(&rel))
    }
}

impl PackBackend for S3Backend {
    fn create(&self, id: PackId, local: &str) -> io::Result<()> {
        let rel = LocalBackend::path(id);
        let file = self.disk.open(local, false)?;
        let len = file.len()?;
        // The client retries what it knows to be safe; a conditional create
        // whose connection dropped it leaves alone, and it is safe here: a
        // retry that finds the object checks it is this pack.
        let until = self.locked_until();
        let created = retrying(Operation::WholeObjectUpload, &rel, || {
            self.remote.put_new_file(&rel, file.as_ref(), len, until)
        })?;
        if !created {
            // Already there: an upload whose record a crash lost. Packs are
            // named by a random id, so the same id is the same pack unless
            // its length says otherwise.
            let there = self.remote.size(&rel)?;
            if there != len {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "the bucket already holds a different pack {id} ({there} bytes, not {len}); it is left as it is: run `strata check`"
                    ),
                ));
            }
        }
        self.cache.create(id, local)
    }

    fn open(&self, id: PackId) -> io::Result<Box<dyn DiskFile>> {
        if !self.cache.exists(id) {
            self.fetch(id)?;
        }
        self.cache.open(id)
    }

    fn list(&self) -> io::Result<Vec<PackId>> {
        Ok(self
            .remote
            .list(PACKS_DIR)?
            .iter()
            .filter_map(|name| name.rsplit('/').next()?.parse().ok())
            .collect())
    }

    fn exists(&self, id: PackId) -> bool {
        self.cache.exists(id) || self.remote.size(&LocalBackend::path(id)).is_ok()
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn delete(&self, id: PackId) -> io::Result<()> {
        self.remote.delete(&LocalBackend::path(id))?;
        if self.cache.exists(id) {
            self.cache.delete(id)?;
        }
        Ok(())
    }
}

/// The repository directory of a bucket: a local directory like any other,
/// whose config and key slots are copied to the bucket whenever they are
/// written or removed, so the bucket alone can bring the repository back.
#[derive(Debug)]
pub struct MirroredDisk {
    local: LocalDisk,
    remote: Arc<Remote>,
}

impl MirroredDisk {
    /// `local`, mirrored to `remote`.
    pub fn new(local: LocalDisk, remote: Arc<Remote>) -> MirroredDisk {
        MirroredDisk { local, remote }
    }

    fn mirrored(path: &str) -> bool {
        path == CONFIG_FILE || super::parent(path) == KEYS_DIR && !path.ends_with(".tmp")
    }
}

impl Disk for MirroredDisk {
    fn open(&self, path: &str, create: bool) -> io::Result<Box<dyn DiskFile>> {
        self.local.open(path, create)
    }
    fn create_dir_all(&self, path: &str) -> io::Result<()> {
        self.local.create_dir_all(path)
    }
    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        self.local.list(dir)
    }
    fn remove(&self, path: &str) -> io::Result<()> {
        self.local.remove(path)?;
        if Self::mirrored(path) {
            self.remote.delete(path)?;
        }
        Ok(())
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.local.rename(from, to)
    }
    fn sync_dir(&self, dir: &str) -> io::Result<()> {
        self.local.sync_dir(dir)
    }
    fn exists(&self, path: &str) -> bool {
        self.local.exists(path)
    }
    fn index_backend(&self, path: &str) -> io::Result<IndexBackend> {
        self.local.index_backend(path)
    }
    fn available(&self) -> Option<u64> {
        self.local.available()
    }
    fn remote(&self) -> Option<Arc<Remote>> {
        Some(self.remote.clone())
    }
    fn write_atomic(&self, path: &str, data: &[u8]) -> io::Result<()> {
        self.local.write_atomic(path, data)?;
        if Self::mirrored(path) {
            self.remote.put(path, data.to_vec())?;
        }
        Ok(())
    }
}
