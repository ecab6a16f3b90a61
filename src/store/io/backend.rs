//! Where finished packs live: a write-once object store.
//!
//! The engine reaches finished packs only through [`PackBackend`]: create a
//! pack once, read it, list them, delete one (garbage collection only). A
//! pack is written locally under `open/` until it is finished, so the
//! backend never sees a partial object; that is what lets an S3-compatible
//! store (with its write-once lock backing the retention lock) slot in
//! without touching anything above it. [`LocalBackend`] keeps packs in the
//! repository directory as `packs/XX/<pack id>`.

use std::fmt::Debug;
use std::io;
use std::sync::Arc;

use crate::store::format::PACKS_DIR;
use crate::store::id::PackId;
use crate::store::io::{Disk, DiskFile};

/// A write-once store of finished packs.
pub trait PackBackend: Debug + Send + Sync {
    /// Stores finished pack `id` from the local file `local` (repository
    /// relative); durable when this returns. The object never changes after.
    fn create(&self, id: PackId, local: &str) -> io::Result<()>;
    /// A read-only handle on pack `id`.
    fn open(&self, id: PackId) -> io::Result<Box<dyn DiskFile>>;
    /// Every stored pack.
    fn list(&self) -> io::Result<Vec<PackId>>;
    /// Whether pack `id` is stored.
    fn exists(&self, id: PackId) -> bool;
    /// Deletes pack `id`. Only garbage collection, honouring retention, calls this.
    fn delete(&self, id: PackId) -> io::Result<()>;
    /// Whether the packs leave the machine: a snapshot then finishes the
    /// open pack, so that the snapshot is whole where the packs are.
    fn is_remote(&self) -> bool {
        false
    }
}

/// Finished packs in the repository directory.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    disk: Arc<dyn Disk>,
}

impl LocalBackend {
    /// Packs under `packs/` of `disk`.
    pub fn new(disk: Arc<dyn Disk>) -> LocalBackend {
        LocalBackend { disk }
    }

    fn dir(id: PackId) -> String {
        format!("{PACKS_DIR}/{}", &id.to_string()[..2])
    }

    /// Repository-relative path of pack `id`.
    pub fn path(id: PackId) -> String {
        format!("{}/{id}", Self::dir(id))
    }
}

impl PackBackend for LocalBackend {
    fn create(&self, id: PackId, local: &str) -> io::Result<()> {
        let dir = Self::dir(id);
        self.disk.create_dir_all(&dir)?;
        // A rename moves the finished file in whole; both directories are
        // synced so neither name survives a crash without the other's change.
        self.disk.rename(local, &Self::path(id))?;
        self.disk.sync_dir(&dir)?;
        self.disk.sync_dir(crate::store::io::parent(local))
    }

    fn open(&self, id: PackId) -> io::Result<Box<dyn DiskFile>> {
        self.disk.open(&Self::path(id), false)
    }

    fn list(&self) -> io::Result<Vec<PackId>> {
        let mut out = Vec::new();
        let subs = match self.disk.list(PACKS_DIR) {
            Ok(s) => s,
            // Copies of a repository may drop an empty packs/ directory.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for sub in subs {
            for name in self.disk.list(&format!("{PACKS_DIR}/{sub}"))? {
                if let Ok(id) = name.parse::<PackId>() {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    fn exists(&self, id: PackId) -> bool {
        self.disk.exists(&Self::path(id))
    }

    fn delete(&self, id: PackId) -> io::Result<()> {
        self.disk.remove(&Self::path(id))?;
        self.disk.sync_dir(&Self::dir(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::io::sim::SimDisk;

    #[test]
    fn packs_are_created_whole_listed_read_and_deleted() {
        let sim = SimDisk::new();
        let disk: Arc<dyn Disk> = Arc::new(sim.clone());
        disk.create_dir_all("open").unwrap();
        let f = disk.open("open/p", true).unwrap();
        f.write_at(0, b"finished pack").unwrap();
        f.sync().unwrap();
        let backend = LocalBackend::new(disk.clone());
        let id = PackId([0xab; 16]);
        backend.create(id, "open/p").unwrap();
        assert!(!disk.exists("open/p"));
        assert_eq!(backend.list().unwrap(), vec![id]);
        let mut buf = [0u8; 8];
        backend.open(id).unwrap().read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"finished");
        // Durable on return: a crash right after keeps it.
        assert!(LocalBackend::new(Arc::new(sim.crash_images(1, 0).remove(0))).exists(id));
        backend.delete(id).unwrap();
        assert!(backend.list().unwrap().is_empty());
    }
}
