//! Durable I/O: every byte strata keeps goes through the [`Disk`] trait.
//!
//! Contract: a write is durable only after `sync` of its file; a new, renamed
//! or removed name is durable only after `sync_dir` of its directory. Paths are
//! relative to the repository root and use `/`. [`LocalDisk`] is the real
//! thing; [`sim::SimDisk`] keeps in memory exactly what this contract promises,
//! builds the images a power cut could leave, and fails the N-th write or sync
//! on request.

pub mod backend;
pub mod local;
pub mod remote;
pub mod retry;
pub mod s3;
pub mod sim;
pub mod writeback;

use std::fmt::Debug;
use std::io;
use std::ops::Bound;

pub use local::LocalDisk;

/// A directory tree of files with explicit durability.
pub trait Disk: Debug + Send + Sync + 'static {
    /// Opens an existing file, or creates it (empty) when `create` is set.
    fn open(&self, path: &str, create: bool) -> io::Result<Box<dyn DiskFile>>;
    /// Creates a directory and its parents, durably.
    fn create_dir_all(&self, path: &str) -> io::Result<()>;
    /// Names in a directory (files and directories), sorted.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// Removes a file; durable after `sync_dir`.
    fn remove(&self, path: &str) -> io::Result<()>;
    /// Renames a file, replacing the target; durable after `sync_dir` of both parents.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes the names in `dir` durable.
    fn sync_dir(&self, dir: &str) -> io::Result<()>;
    /// Whether a file or directory exists.
    fn exists(&self, path: &str) -> bool;
    /// The storage backend of the redb index file at `path`.
    fn index_backend(&self, path: &str) -> io::Result<IndexBackend>;
    /// Bytes free for new data, if known.
    fn available(&self) -> Option<u64> {
        None
    }
    /// The bucket that holds this repository's finished packs, if any.
    fn remote(&self) -> Option<std::sync::Arc<remote::Remote>> {
        None
    }

    /// Reads a whole (small) file.
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let f = self.open(path, false)?;
        let mut buf = vec![0u8; f.len()? as usize];
        f.read_at(0, &mut buf)?;
        Ok(buf)
    }

    /// Replaces a small file atomically and durably: temp file, sync, rename,
    /// directory sync.
    fn write_atomic(&self, path: &str, data: &[u8]) -> io::Result<()> {
        let tmp = format!("{path}.tmp");
        let f = self.open(&tmp, true)?;
        f.set_len(0)?;
        f.write_at(0, data)?;
        f.sync()?;
        drop(f);
        self.rename(&tmp, path)?;
        self.sync_dir(parent(path))
    }
}

/// An open file with positioned I/O.
pub trait DiskFile: Send + Sync {
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`; short files are an `UnexpectedEof` error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or zero-extends.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data and length durable.
    fn sync(&self) -> io::Result<()>;
    /// Writes a range of the file to the device from the calling thread and
    /// waits for it, so the I/O is submitted at that thread's I/O priority.
    /// A hint only: it promises nothing, and its errors are left for `sync`
    /// to report (the default does nothing).
    fn write_back(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

/// The repository directory at `root`: mirrored to its bucket when its
/// `remote.toml` names one, else a plain local one.
pub fn open_dir(root: &std::path::Path) -> Result<std::sync::Arc<dyn Disk>, remote::RemoteError> {
    let local = LocalDisk::new(root);
    let text = match std::fs::read_to_string(root.join(remote::REMOTE_FILE)) {
        Ok(t) => t,
        Err(_) => return Ok(std::sync::Arc::new(local)),
    };
    let r = remote::Remote::connect(&remote::RemoteConfig::parse(&text)?)?;
    Ok(std::sync::Arc::new(s3::MirroredDisk::new(local, r)))
}

/// Where `disk`'s repository keeps its finished packs: its bucket, or its
/// own `packs/` directory.
pub fn pack_backend(disk: &std::sync::Arc<dyn Disk>) -> std::sync::Arc<dyn backend::PackBackend> {
    match disk.remote() {
        Some(r) => std::sync::Arc::new(s3::S3Backend::new(r, disk.clone())),
        None => std::sync::Arc::new(backend::LocalBackend::new(disk.clone())),
    }
}

/// The parent directory of a relative path ("" for the root).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// The redb storage of one index file: redb's own locked file backend on a
/// real disk, a simulated file in tests.
#[derive(Debug)]
pub enum IndexBackend {
    /// redb's file backend; takes the lock that keeps a repository to one process.
    File(redb::backends::FileBackend),
    /// Any other [`DiskFile`].
    Disk(DiskBackend),
}

/// Adapts a [`DiskFile`] to redb.
pub struct DiskBackend(pub Box<dyn DiskFile>);

impl Debug for DiskBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiskBackend")
    }
}

impl redb::StorageBackend for IndexBackend {
    fn len(&self) -> io::Result<u64> {
        match self {
            IndexBackend::File(b) => b.len(),
            IndexBackend::Disk(b) => b.0.len(),
        }
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        match self {
            IndexBackend::File(b) => b.read(offset, out),
            IndexBackend::Disk(b) => b.0.read_at(offset, out),
        }
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        match self {
            IndexBackend::File(b) => b.set_len(len),
            IndexBackend::Disk(b) => b.0.set_len(len),
        }
    }
    fn sync_data(&self) -> io::Result<()> {
        match self {
            IndexBackend::File(b) => b.sync_data(),
            IndexBackend::Disk(b) => b.0.sync(),
        }
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        match self {
            IndexBackend::File(b) => b.write(offset, data),
            IndexBackend::Disk(b) => b.0.write_at(offset, data),
        }
    }
    fn close(&self) -> io::Result<()> {
        match self {
            IndexBackend::File(b) => b.close(),
            IndexBackend::Disk(_) => Ok(()),
        }
    }
    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        match self {
            IndexBackend::File(b) => b.try_lock_range(start, end),
            IndexBackend::Disk(_) => Err(redb::BackendError::Unsupported),
        }
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        match self {
            IndexBackend::File(b) => b.try_lock_shared_range(start, end),
            IndexBackend::Disk(_) => Err(redb::BackendError::Unsupported),
        }
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        match self {
            IndexBackend::File(b) => b.lock_range(start, end),
            IndexBackend::Disk(_) => Err(redb::BackendError::Unsupported),
        }
    }
    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        match self {
            IndexBackend::File(b) => b.lock_shared_range(start, end),
            IndexBackend::Disk(_) => Err(redb::BackendError::Unsupported),
        }
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        match self {
            IndexBackend::File(b) => b.unlock_range(start, end),
            IndexBackend::Disk(_) => Err(redb::BackendError::Unsupported),
        }
    }
    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        match self {
            IndexBackend::File(b) => b.query_lock_range(start, end),
            IndexBackend::Disk(_) => Err(redb::BackendError::Unsupported),
        }
    }
}
