//! The real disk: a directory of ordinary files.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{Disk, DiskFile, IndexBackend};

/// A repository directory on a local filesystem.
#[derive(Debug, Clone)]
pub struct LocalDisk {
    root: PathBuf,
}

impl LocalDisk {
    /// Files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> LocalDisk {
        LocalDisk { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

struct LocalFile {
    file: File,
    /// A second open file description for [`DiskFile::write_back`]: the
    /// kernel reports a writeback error once per open file, so errors that
    /// writeback meets stay visible to `sync` on `file`.
    writeback: OnceLock<File>,
}

impl LocalFile {
    fn new(file: File) -> LocalFile {
        LocalFile {
            file,
            writeback: OnceLock::new(),
        }
    }
}

impl DiskFile for LocalFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn write_back(&self, offset: u64, len: u64) -> io::Result<()> {
        let file = match self.writeback.get() {
            Some(f) => f,
            None => {
                // Opening the descriptor's /proc link opens the same inode
                // anew, wherever the file has been renamed to since.
                let again = File::open(format!("/proc/self/fd/{}", self.file.as_raw_fd()))?;
                self.writeback.get_or_init(|| again)
            }
        };
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: a valid descriptor and plain integers.
        let rc =
            unsafe { libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, flags) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Disk for LocalDisk {
    /// Read-only, so that a repository on a filesystem that went read-only
    /// can still be opened, inspected and restored from.
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(path))
    }

    fn open(&self, path: &str, create: bool) -> io::Result<Box<dyn DiskFile>> {
        let full = self.path(path);
        let f = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&full)
        {
            // A filesystem that went read-only (errors=remount-ro) still
            // serves reads: what was committed stays restorable. A write
            // through this file fails, as it would anyway.
            Err(e) if !create && e.raw_os_error() == Some(libc::EROFS) => File::open(&full)?,
            other => other?,
        };
        Ok(Box::new(LocalFile::new(f)))
    }

    fn create_dir_all(&self, path: &str) -> io::Result<()> {
        let full = self.path(path);
        if full.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(&full)?;
        // Make every new level durable: sync each parent up to the root.
        let mut dir = full.as_path();
        while let Some(parent) = dir.parent() {
            File::open(parent)?.sync_all()?;
            if parent == self.root || !parent.starts_with(&self.root) {
                break;
            }
            dir = parent;
        }
        Ok(())
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.path(dir))? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        fs::remove_file(self.path(path))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from), self.path(to))
    }

    fn sync_dir(&self, dir: &str) -> io::Result<()> {
        File::open(self.path(dir))?.sync_all()
    }

    fn exists(&self, path: &str) -> bool {
        self.path(path).exists()
    }

    fn index_backend(&self, path: &str) -> io::Result<IndexBackend> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path(path))?;
        let backend = redb::backends::FileBackend::new(f).map_err(io::Error::other)?;
        Ok(IndexBackend::File(backend))
    }

    fn available(&self) -> Option<u64> {
        let st = nix_statvfs(&self.root)?;
        Some(st)
    }
}

fn nix_statvfs(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}
