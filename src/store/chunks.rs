//! The chunk store: deduplicated, sealed chunks in packs, found through the
//! index.
//!
//! Write order (strata-format(5), "DURABILITY"): objects are appended to the
//! open pack; [`Store::commit`] writes a checkpoint, syncs the pack (and the
//! `open/` directory for a new pack), and only then commits the index rows
//! that refer to it, durably. A failed sync makes the store refuse all further
//! writes (the page cache may have dropped the data, so a retry could
//! acknowledge bytes that are gone); a full disk cuts the pack back to its last
//! object and reports [`StoreError::NoSpace`].

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::store::crypto::codec::{ChunkCodec, DecodeError, Verified};
use crate::store::format::{Kind, MAX_OBJECT_LEN, OPEN_DIR, TRAILER_FINAL};
use crate::store::id::{ChunkId, PackId};
use crate::store::index::{Doom, Index, IndexError, Location, PackRecord, PackState};
use crate::store::io::backend::PackBackend;
use crate::store::io::writeback::{self, Writeback, WritebackStatus};
use crate::store::io::{Disk, DiskFile};
use crate::store::pack::{self, CheckpointError, PackError, PackWriter};
use crate::sys::ioprio::IoClass;
use crate::sys::sync::{Recover, RecoverRw};

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk is full; nothing of the failed write was kept.
    #[error("no space left for the repository's packs; free space or move the repository, nothing was half-stored")]
    NoSpace,
    /// An earlier sync failed; the store takes no writes until restarted and checked.
    #[error(
        "the store is read-only after a failed write or sync ({0}); restart and run `strata check`"
    )]
    Failed(String),
    /// An I/O error.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Repository-relative path.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// No such chunk.
    #[error("chunk {0} is not in the repository")]
    NotFound(ChunkId),
    /// An object larger than any reader accepts.
    #[error("an object of {len} bytes is larger than the format allows (32 MiB)")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Stored bytes of a chunk are damaged.
    #[error("chunk {chunk} in pack {pack} at offset {offset} is damaged: {source}")]
    Corrupt {
        /// The chunk.
        chunk: ChunkId,
        /// Its pack.
        pack: PackId,
        /// Its offset.
        offset: u64,
        /// What failed.
        source: DecodeError,
    },
    /// A pack's structure is damaged.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

fn io_err(op: &'static str, path: &str) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { op, path, source }
}

/// Path of an open pack.
pub fn open_pack_path(id: PackId) -> String {
    format!("{OPEN_DIR}/{id}")
}

/// A read handle on a pack wherever it is: with the backend once finished,
/// under `open/` before.
pub fn open_any_pack(
    disk: &dyn Disk,
    backend: &dyn PackBackend,
    id: PackId,
) -> io::Result<Box<dyn DiskFile>> {
    match backend.open(id) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => disk.open(&open_pack_path(id), false),
        other => other,
    }
}

/// Counters of this process's work, for `strata stats`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Chunks offered.
    pub chunks_in: AtomicU64,
    /// Of those, new ones written.
    pub chunks_new: AtomicU64,
    /// Plaintext bytes offered.
    pub bytes_in: AtomicU64,
    /// Sealed bytes appended to packs.
    pub bytes_written: AtomicU64,
    /// Index commits.
    pub commits: AtomicU64,
    /// Objects read and decoded.
    pub objects_read: AtomicU64,
    /// Objects read whose bytes were damaged (they failed to decode or
    /// verify, and the reader got an error instead).
    pub damaged_reads: AtomicU64,
    /// Of those, and of reads of missing packs, the objects fetched again
    /// from the [`Refetch`] and served intact.
    pub repaired_reads: AtomicU64,
}

/// Where an object that reads damaged (or whose pack is missing) can be
/// fetched again, sealed: a replica. What it returns is checked against
/// the object's id like any read.
pub type Refetch = Arc<dyn Fn(Kind, &ChunkId) -> Option<Sealed> + Send + Sync>;

struct Writer {
    pack: Option<PackWriter>,
    /// Packs that reached their target size, finished at the next commit.
    full: Vec<PackWriter>,
    /// The open pack's name is not yet durable in `open/`.
    pack_is_new: bool,
    failed: Option<String>,
    /// The errno of that failure, when the OS gave one (EIO, EROFS, ...).
    failed_errno: Option<i32>,
}

/// An object as sealed in a pack, with what storing it elsewhere needs.
#[derive(Clone, Debug)]
pub struct Sealed {
    /// What it is.
    pub kind: Kind,
    /// Its id.
    pub id: ChunkId,
    /// Its sealed bytes.
    pub bytes: Vec<u8>,
    /// Its plaintext length.
    pub raw_len: u32,
}

/// An object hashed and, unless the store has it, sealed: what
/// [`Store::append_prepared`] appends.
pub struct Prepared {
    kind: Kind,
    id: ChunkId,
    /// `None` when the store already holds it.
    sealed: Option<Vec<u8>>,
    raw_len: u32,
}

/// The chunk store of one unlocked repository.
pub struct Store {
    disk: Arc<dyn Disk>,
    backend: Arc<dyn PackBackend>,
    codec: ChunkCodec,
    index: Index,
    pack_target: u64,
    writer: Mutex<Writer>,
    /// Written but not yet committed to the index. Changed under the writer
    /// lock, but read without it, so reads never wait for a commit's syncs.
    pending: RwLock<HashMap<ChunkId, Location>>,
    /// Early writeback of pack bytes, once the daemon starts it.
    writeback: OnceLock<Writeback>,
    packs: RwLock<HashMap<PackId, PackRecord>>,
    files: Mutex<HashMap<PackId, Arc<dyn DiskFile>>>,
    /// Finished packs on their way to a remote backend.
    uploads: Option<crate::store::uploads::Uploads>,
    /// Where damaged objects are fetched again, once set.
    refetch: OnceLock<Refetch>,
    /// Objects garbage collection is about to drop: a write of one stores
    /// a fresh copy instead of deduplicating against the doomed one.
    doomed: RwLock<std::collections::HashSet<ChunkId>>,
    /// Set with `Writer::failed`, readable without the writer lock.
    read_only: std::sync::atomic::AtomicBool,
    /// Writes refused for lack of space, for the storage watch.
    nospace: std::sync::atomic::AtomicU64,
    /// This process's counters.
    pub counters: Counters,
}

impl Store {
    /// Opens the store and brings it to a clean state after a crash: an open
    /// pack is cut back to its durable length and resumed, packs the index
    /// never referred to are removed, and packs finished just before a crash
    /// are published and recorded as such.
    pub fn open(
        disk: Arc<dyn Disk>,
        backend: Arc<dyn PackBackend>,
        codec: ChunkCodec,
        index: Index,
        pack_target: u64,
    ) -> Result<Store, StoreError> {
        let packs: HashMap<PackId, PackRecord> = index.packs()?.into_iter().collect();
        let mut store = Store {
            disk,
            backend,
            codec,
            index,
            pack_target,
            writer: Mutex::new(Writer {
                pack: None,
                full: Vec::new(),
                pack_is_new: false,
                failed: None,
                failed_errno: None,
            }),
            pending: RwLock::new(HashMap::new()),
            writeback: OnceLock::new(),
            packs: RwLock::new(packs),
            files: Mutex::new(HashMap::new()),
            doomed: RwLock::new(Default::default()),
            refetch: OnceLock::new(),
            uploads: None,
            read_only: std::sync::atomic::AtomicBool::new(false),
            nospace: std::sync::atomic::AtomicU64::new(0),
            counters: Counters::default(),
        };
        let resumed = store.recover()?;
        if store.backend.is_remote() {
            let uploads = crate::store::uploads::Uploads::start(store.backend.clone())
                .map_err(io_err("start", "the upload thread"))?;
            store.uploads = Some(uploads);
        }
        store.writer().pack = resumed;
        // A garbage collection interrupted after its commit left packs to
        // delete; nothing refers to them any more, so failing here only
        // leaves them for the next open.
        if let Err(e) = store.delete_doomed() {
            tracing::warn!(error = %e, "could not delete packs garbage collection dropped; trying again at the next open");
        }
        Ok(store)
    }

    /// Returns the open pack to keep appending to, if one survived.
    fn recover(&self) -> Result<Option<PackWriter>, StoreError> {
        let known = self.packs.read_locked().clone();
        let mut resumed: Option<PackWriter> = None;
        if !self.disk.exists(OPEN_DIR) {
            self.disk
                .create_dir_all(OPEN_DIR)
                .map_err(io_err("mkdir", OPEN_DIR))?;
        }
        for name in self.disk.list(OPEN_DIR).map_err(io_err("list", OPEN_DIR))? {
            let Ok(id) = name.parse::<PackId>() else {
                continue;
            };
            let path = open_pack_path(id);
            match known.get(&id) {
                // Nothing durable refers to it: an interrupted pack.
                None => self.disk.remove(&path).map_err(io_err("remove", &path))?,
                Some(rec) if rec.state == PackState::Open => {
                    let Some(mut writer) = self.recover_open(id, rec.len)? else {
                        continue;
                    };
                    if resumed.is_none() {
                        resumed = Some(writer);
                    } else {
                        writer
                            .checkpoint(self.codec.sealer(), true)
                            .map_err(|e| e.into_io())
                            .map_err(io_err("sync", &path))?;
                        self.publish(id, writer.len())?;
                    }
                }
                // Finished and renamed, but the old name survived the crash.
                Some(_) if self.backend.exists(id) => {
                    self.disk.remove(&path).map_err(io_err("remove", &path))?
                }
                // Recorded as finished but the rename was lost: move it again.
                Some(rec) => self.publish(id, rec.len)?,
            }
        }
        self.disk
            .sync_dir(OPEN_DIR)
            .map_err(io_err("sync", OPEN_DIR))?;
        for (id, rec) in known {
            if rec.state == PackState::Open
                && !self.disk.exists(&open_pack_path(id))
                && self.backend.exists(id)
            {
                // Handed to the backend just before a crash; take it as
                // finished only if its last checkpoint says so.
                let name = id.to_string();
                let file = self.backend.open(id).map_err(io_err("open pack", &name))?;
                let len = file.len().map_err(io_err("stat pack", &name))?;
                // A damaged pack does not keep the repository from opening;
                // `strata check` reports it.
                match pack::read_trailer(file.as_ref(), self.codec.sealer(), id, len) {
                    Ok(last) if last.flags & TRAILER_FINAL != 0 => {}
                    _ => {
                        tracing::error!(pack = %id.short(), "pack in packs/ is not a finished pack; run `strata check`");
                        continue;
                    }
                }
                let rec = PackRecord {
                    state: PackState::Finished,
                    len,
                };
                self.index.commit(&[], &[(id, rec)])?;
                self.packs.write_locked().insert(id, rec);
            }
        }
        Ok(resumed)
    }

    /// Cuts an open pack left by an earlier process back to its durable
    /// length; returns a writer to continue it, or publishes it if it was
    /// already finished.
    fn recover_open(&self, id: PackId, durable: u64) -> Result<Option<PackWriter>, StoreError> {
        let path = open_pack_path(id);
        let file = self
            .disk
            .open(&path, false)
            .map_err(io_err("open", &path))?;
        let len = file.len().map_err(io_err("stat", &path))?;
        if len < durable {
            // Synced bytes are missing: leave it for `strata check` to report.
            tracing::error!(pack = %id.short(), len, durable, "open pack is shorter than its synced length");
            return Ok(None);
        }
        if len > durable {
            file.set_len(durable).map_err(io_err("truncate", &path))?;
            file.sync().map_err(io_err("sync", &path))?;
            tracing::info!(
                pack = %id.short(),
                bytes = len - durable,
                "recovery: cut an open pack back to its last synced length (an unclean shutdown)"
            );
        }
        let last = match pack::read_trailer(file.as_ref(), self.codec.sealer(), id, durable) {
            Ok(last) => last,
            Err(e) => {
                tracing::error!(pack = %id.short(), error = %e, "open pack is damaged; run `strata check`");
                return Ok(None);
            }
        };
        if last.flags & TRAILER_FINAL != 0 {
            // Finished, but the move to packs/ did not happen before the crash.
            self.publish(id, durable)?;
            return Ok(None);
        }
        Ok(Some(PackWriter::resume(
            id,
            file,
            self.codec.sealer(),
            durable,
        )?))
    }

    /// Hands a finished pack to the backend and records it.
    fn publish(&self, id: PackId, len: u64) -> Result<(), StoreError> {
        let from = open_pack_path(id);
        self.backend
            .create(id, &from)
            .map_err(io_err("publish", &from))?;
        let rec = PackRecord {
            state: PackState::Finished,
            len,
        };
        self.index.commit(&[], &[(id, rec)])?;
        self.packs.write_locked().insert(id, rec);
        self.files.locked().remove(&id);
        Ok(())
    }

    /// The chunk codec (ids, sealing).
    pub fn codec(&self) -> &ChunkCodec {
        &self.codec
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Where finished packs live.
    pub fn backend(&self) -> &Arc<dyn PackBackend> {
        &self.backend
    }

    /// The disk.
    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }

    /// Stores one chunk unless it is already stored; returns its id and
    /// whether it was new. Not durable until [`Store::commit`].
    pub fn put(&self, data: &[u8]) -> Result<(ChunkId, bool), StoreError> {
        self.put_object(Kind::Chunk, data)
    }

    /// Stores an object of `kind` (chunk, tree or snapshot record) unless
    /// it is already stored; see [`Store::put`].
    pub fn put_object(&self, kind: Kind, data: &[u8]) -> Result<(ChunkId, bool), StoreError> {
        let prepared = self.prepare(kind, data)?;
        self.append_prepared(prepared)
    }

    /// The part of [`Store::put_object`] that takes no lock: hashes `data`,
    /// looks it up, and seals it unless it is stored already. The write
    /// pipeline runs it on its workers, many at a time.
    pub fn prepare(&self, kind: Kind, data: &[u8]) -> Result<Prepared, StoreError> {
        if data.len() + 64 > MAX_OBJECT_LEN {
            return Err(StoreError::TooLarge { len: data.len() });
        }
        self.counters.chunks_in.fetch_add(1, Ordering::Relaxed);
        let len = data.len() as u64;
        self.counters.bytes_in.fetch_add(len, Ordering::Relaxed);
        let id = self.codec.object_id(kind, data);
        let sealed = match self.is_pending(&id)
            || (self.index.chunk(&id)?.is_some() && !self.doomed.read_locked().contains(&id))
        {
            true => None,
            false => Some(self.codec.encode_object(kind, &id, data)),
        };
        Ok(Prepared {
            kind,
            id,
            sealed,
            raw_len: data.len() as u32,
        })
    }

    /// Appends what [`Store::prepare`] sealed to the open pack; returns the
    /// object's id and whether it was new.
    pub fn append_prepared(&self, prepared: Prepared) -> Result<(ChunkId, bool), StoreError> {
        let Prepared {
            kind,
            id,
            sealed,
            raw_len,
        } = prepared;
        match sealed {
            Some(sealed) => {
                self.append(kind, id, &sealed, raw_len, true)?;
                Ok((id, true))
            }
            None => Ok((id, false)),
        }
    }

    /// Appends an object already sealed (read from another pack by garbage
    /// collection) to the open pack, even though the index has it: the
    /// index moves to the new copy at the next commit.
    pub fn copy_object(
        &self,
        kind: Kind,
        id: ChunkId,
        sealed: &[u8],
        raw_len: u32,
    ) -> Result<(), StoreError> {
        self.append(kind, id, sealed, raw_len, false)
    }

    /// Stores an object sealed by another store of the same repository (a
    /// replica's copy, or a repair's) unless it is already stored; returns
    /// whether it was new. The caller verified it ([`Store::get_sealed`]).
    pub fn put_sealed(&self, sealed: &Sealed) -> Result<bool, StoreError> {
        let id = sealed.id;
        if self.is_pending(&id)
            || (self.index.chunk(&id)?.is_some() && !self.doomed.read_locked().contains(&id))
        {
            return Ok(false);
        }
        self.append(sealed.kind, id, &sealed.bytes, sealed.raw_len, true)?;
        Ok(true)
    }

    /// Appends sealed object `id` to the open pack (starting one if need
    /// be) and records its location as pending; a duplicate of a pending
    /// object is skipped when `dedup`.
    fn append(
        &self,
        kind: Kind,
        id: ChunkId,
        sealed: &[u8],
        raw_len: u32,
        dedup: bool,
    ) -> Result<(), StoreError> {
        let mut w = self.writer();
        if let Some(reason) = &w.failed {
            return Err(StoreError::Failed(reason.clone()));
        }
        if dedup && self.is_pending(&id) {
            return Ok(());
        }
        if w.pack.is_none() {
            let pid = PackId::random();
            let path = open_pack_path(pid);
            let created = self.disk.open(&path, true).and_then(|file| {
                PackWriter::create(pid, file, self.codec.sealer().suite()).inspect_err(|_| {
                    // No half pack: a file without a header would not parse.
                    let _ = self.disk.remove(&path);
                })
            });
            let writer = created.map_err(|e| self.write_failed(&mut w, &path, e))?;
            w.pack = Some(writer);
            w.pack_is_new = true;
        }
        let pack = w.pack.as_mut().expect("open pack");
        let pid = pack.id();
        let entry = match pack.append(kind, id, sealed, raw_len) {
            Ok(e) => e,
            Err(e) => return Err(self.write_failed(&mut w, &open_pack_path(pid), e)),
        };
        self.counters.chunks_new.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_written
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        let full = pack.len() >= self.pack_target;
        let loc = Location {
            pack: pid,
            offset: entry.offset,
            len: entry.len,
            raw_len: entry.raw_len,
        };
        self.pending.write_locked().insert(id, loc);
        // Only file data waits for the writeback queue: trees and records
        // are stored inside index transactions, which must not wait on
        // low-priority I/O; their bytes go with the next chunk's range.
        let early = self.writeback.get().filter(|_| kind == Kind::Chunk);
        let early = early.and_then(|wb| Some((wb, pack.take_writeback(writeback::STEP, full)?)));
        if full {
            // Finished at the next commit; new objects go to a new pack.
            let pack = w.pack.take().expect("open pack");
            w.full.push(pack);
        }
        drop(w);
        if let Some((wb, (file, offset, len))) = early {
            // Outside the writer lock: this waits while the queue is full.
            wb.submit(file, offset, len);
        }
        Ok(())
    }

    /// Classifies a failed write: a full disk leaves the store usable (the
    /// pack was cut back), anything else stops writes.
    fn write_failed(&self, w: &mut Writer, path: &str, e: io::Error) -> StoreError {
        if e.kind() == io::ErrorKind::StorageFull {
            self.nospace
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return StoreError::NoSpace;
        }
        let reason = format!("writing {path}: {e}");
        tracing::error!(%reason, "store write failed; refusing further writes");
        w.failed = Some(reason.clone());
        w.failed_errno = e.raw_os_error();
        self.read_only
            .store(true, std::sync::atomic::Ordering::Release);
        StoreError::Failed(reason)
    }

    /// The writer, locked. A panic while it was held may have left the
    /// open pack half-appended, so the store stops writing as after a
    /// failed sync: committed data stays readable, and a restart with
    /// `strata check` starts clean.
    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|poisoned| {
            let mut w = poisoned.into_inner();
            if w.failed.is_none() {
                let reason = "an internal error interrupted a pack write".to_string();
                tracing::error!(%reason, "refusing further writes");
                w.failed = Some(reason);
                self.read_only
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            self.writer.clear_poison();
            w
        })
    }

    fn sync_failed(
        &self,
        w: &mut Writer,
        what: &str,
        e: impl std::error::Error + 'static,
    ) -> StoreError {
        let reason = format!("{what}: {e}");
        tracing::error!(%reason, "store sync failed; refusing further writes");
        w.failed = Some(reason.clone());
        w.failed_errno = errno_of(&e);
        self.read_only
            .store(true, std::sync::atomic::Ordering::Release);
        StoreError::Failed(reason)
    }

    /// Makes every object stored so far durable: finished packs get their
    /// final checkpoint, the open pack a checkpoint, all are synced, then
    /// one durable index commit records them; finished packs then move to
    /// `packs/`. The only place the store writes the index, so a caller may
    /// store objects while it holds a write transaction of its own.
    pub fn commit(&self) -> Result<(), StoreError> {
        self.commit_packs(false, &Doom::default())
    }

    /// Like [`Store::commit`], and finishes the open pack too.
    pub fn flush_pack(&self) -> Result<(), StoreError> {
        self.commit_packs(true, &Doom::default())
    }

    /// Garbage collection's commit: finishes the open pack (holding the
    /// objects copied out of `doom`'s packs) and, in the same durable index
    /// commit, drops `doom`'s packs and the rows that still point into them.
    /// Only then are their files deleted ([`Store::delete_doomed`]), so a
    /// crash at any point leaves every indexed object in a pack on disk.
    pub fn commit_dropping(&self, doom: &Doom) -> Result<(), StoreError> {
        self.commit_packs(true, doom)?;
        self.packs
            .write_locked()
            .retain(|id, _| !doom.packs.contains(id));
        // Their rows are gone: nothing can deduplicate against them now.
        self.doom_objects(Default::default());
        self.delete_doomed()
    }

    /// Makes writes of `ids` store fresh copies instead of deduplicating
    /// against the copies garbage collection is about to drop (an empty
    /// set ends that). A write that deduplicated before this call is the
    /// caller's to find, after it, in the trees' references.
    pub fn doom_objects(&self, ids: std::collections::HashSet<ChunkId>) {
        *self.doomed.write_locked() = ids;
    }

    /// Deletes the files of packs a durable commit dropped, then forgets
    /// them; at open, this finishes what a crash interrupted.
    pub fn delete_doomed(&self) -> Result<(), StoreError> {
        let doomed = self.index.doomed()?;
        for &id in &doomed {
            self.files.locked().remove(&id);
            match self.backend.delete(id) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("delete pack", &id.to_string())(e)),
            }
        }
        self.index.clear_doomed(&doomed)?;
        Ok(())
    }

    /// The objects of finished pack `id`, from its table of contents.
    pub fn pack_contents(&self, id: PackId) -> Result<Vec<pack::TocEntry>, StoreError> {
        let file = self.pack_file(id)?;
        let len = file.len().map_err(io_err("stat pack", &id.to_string()))?;
        let (entries, _) = pack::read_toc(file.as_ref(), self.codec.sealer(), id, len)?;
        Ok(entries)
    }

    fn commit_packs(&self, finish_open: bool, doom: &Doom) -> Result<(), StoreError> {
        self.commit_packs_locked(finish_open, doom)?;
        if finish_open {
            self.wait_uploads()?;
        }
        Ok(())
    }

    /// Waits until every finished pack queued for upload is uploaded, and
    /// records them as finished; a failed upload stops writes as a failed
    /// sync does.
    fn wait_uploads(&self) -> Result<(), StoreError> {
        if let Some(u) = &self.uploads {
            u.wait();
        }
        self.record_uploaded()
    }

    /// Records the packs uploaded since the last call as finished.
    fn record_uploaded(&self) -> Result<(), StoreError> {
        let Some(u) = &self.uploads else {
            return Ok(());
        };
        let (done, failed) = u.take_done();
        if !done.is_empty() {
            let records: Vec<(PackId, PackRecord)> = done
                .iter()
                .map(|&(id, len)| {
                    let rec = PackRecord {
                        state: PackState::Finished,
                        len,
                    };
                    (id, rec)
                })
                .collect();
            self.index.commit(&[], &records)?;
            let mut files = self.files.locked();
            for (id, rec) in records {
                self.packs.write_locked().insert(id, rec);
                files.remove(&id);
            }
        }
        if let Some(reason) = failed {
            let mut w = self.writer();
            if w.failed.is_none() {
                return Err(self.sync_failed(
                    &mut w,
                    "publishing a finished pack",
                    io::Error::other(reason),
                ));
            }
        }
        Ok(())
    }

    fn commit_packs_locked(&self, finish_open: bool, doom: &Doom) -> Result<(), StoreError> {
        self.record_uploaded()?;
        let mut w = self.writer();
        if let Some(reason) = &w.failed {
            return Err(StoreError::Failed(reason.clone()));
        }
        if finish_open && w.pack.as_ref().is_some_and(|p| !p.is_empty()) {
            let pack = w.pack.take().expect("checked");
            w.full.push(pack);
        }
        let sealer = self.codec.sealer();
        let mut records = Vec::new();
        for i in 0..w.full.len() {
            let result = w.full[i].checkpoint(sealer, true);
            let pid = w.full[i].id();
            self.checkpointed(&mut w, pid, result)?;
            records.push((
                pid,
                PackRecord {
                    state: PackState::Open,
                    len: w.full[i].len(),
                },
            ));
        }
        if let Some(pack) = w.pack.as_mut() {
            let result = pack.checkpoint(sealer, false);
            let (pid, len) = (pack.id(), pack.durable_len());
            self.checkpointed(&mut w, pid, result)?;
            if len > 0 {
                records.push((
                    pid,
                    PackRecord {
                        state: PackState::Open,
                        len,
                    },
                ));
            }
        }
        if w.pack_is_new {
            if let Err(e) = self.disk.sync_dir(OPEN_DIR) {
                return Err(self.sync_failed(&mut w, "syncing open/", e));
            }
            w.pack_is_new = false;
        }
        // Always one durable index commit, under the writer lock: it also
        // makes the layers' earlier non-durable transactions durable, and
        // every object those refer to was stored before the lock was taken,
        // so it is in a pack synced above.
        let rows: Vec<_> = self
            .pending
            .read_locked()
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        if let Err(e) = self.index.commit_with(&rows, &records, doom) {
            return Err(self.sync_failed(&mut w, "committing the index", e));
        }
        self.pending.write_locked().clear();
        self.packs.write_locked().extend(records);
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        let full = std::mem::take(&mut w.full);
        for pack in full {
            if let Some(u) = &self.uploads {
                u.queue(pack.id(), pack.len());
                continue;
            }
            if let Err(e) = self.publish(pack.id(), pack.len()) {
                return Err(self.sync_failed(&mut w, "publishing a finished pack", e));
            }
        }
        Ok(())
    }

    /// Classifies a checkpoint's outcome: a full disk cut the checkpoint
    /// back and leaves the objects pending; anything else stops writes.
    fn checkpointed(
        &self,
        w: &mut Writer,
        pack: PackId,
        result: Result<(), CheckpointError>,
    ) -> Result<(), StoreError> {
        match result {
            Ok(()) => Ok(()),
            Err(CheckpointError::Write(e)) if e.kind() == io::ErrorKind::StorageFull => {
                Err(StoreError::NoSpace)
            }
            Err(e) => Err(self.sync_failed(
                w,
                &format!("checkpointing pack {}", pack.short()),
                e.into_io(),
            )),
        }
    }

    /// Reads a chunk; its bytes are returned only after their id checked out.
    pub fn get(&self, id: &ChunkId) -> Result<Verified, StoreError> {
        self.get_object(Kind::Chunk, id)
    }

    /// Reads an object of `kind`, verified like [`Store::get`].
    pub fn get_object(&self, kind: Kind, id: &ChunkId) -> Result<Verified, StoreError> {
        self.counters.objects_read.fetch_add(1, Ordering::Relaxed);
        let got = self.get_object_once(kind, id);
        let missing = matches!(got, Err(StoreError::Pack(_) | StoreError::Io { .. }));
        let damaged = matches!(got, Err(StoreError::Corrupt { .. }));
        let Some(refetch) = self.refetch.get().filter(|_| damaged || missing) else {
            if damaged {
                self.counters.damaged_reads.fetch_add(1, Ordering::Relaxed);
            }
            return got;
        };
        // Counted either way, so the storage watch raises its alert.
        self.counters.damaged_reads.fetch_add(1, Ordering::Relaxed);
        let again = refetch(kind, id).and_then(|sealed| {
            let max = if kind == Kind::Chunk {
                self.codec.max_len()
            } else {
                MAX_OBJECT_LEN
            };
            self.codec.decode_owned(kind, id, sealed.bytes, max).ok()
        });
        match again {
            Some(v) => {
                self.counters.repaired_reads.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(object = %id.short(), "damaged object served from the replica");
                Ok(v)
            }
            None => got,
        }
    }

    /// Sets where damaged objects are fetched again (`[repair] from`).
    pub fn set_refetch(&self, refetch: Refetch) {
        let _ = self.refetch.set(refetch);
    }

    fn get_object_once(&self, kind: Kind, id: &ChunkId) -> Result<Verified, StoreError> {
        let loc = self.locate(id)?;
        match self.get_at(kind, id, loc) {
            // Garbage collection moved the object and deleted the pack
            // between the lookup and the read: read it where it is now.
            Err(StoreError::Pack(_) | StoreError::Io { .. }) if self.locate(id)? != loc => {
                self.get_at(kind, id, self.locate(id)?)
            }
            other => other,
        }
    }

    /// Reads object `id` of `kind` as it is sealed, after checking it as
    /// [`Store::get_object`] does: what a replica stores unchanged.
    pub fn get_sealed(&self, kind: Kind, id: &ChunkId) -> Result<Sealed, StoreError> {
        let loc = self.locate(id)?;
        let read = |loc: Location| -> Result<Sealed, StoreError> {
            let bytes = self.read_object(loc.pack, loc.offset, loc.len)?;
            self.decode_at(kind, id, loc, bytes.clone())?;
            Ok(Sealed {
                kind,
                id: *id,
                bytes,
                raw_len: loc.raw_len,
            })
        };
        let got = match read(loc) {
            Err(StoreError::Pack(_) | StoreError::Io { .. }) if self.locate(id)? != loc => {
                read(self.locate(id)?)
            }
            other => other,
        };
        if let Err(StoreError::Corrupt { .. }) = &got {
            self.counters.damaged_reads.fetch_add(1, Ordering::Relaxed);
        }
        got
    }

    /// Whether object `id` is stored: pending (written, its index row not
    /// yet committed), or in the index. Pending is asked first, so an
    /// object committed meanwhile is found in the index.
    pub fn has(&self, id: &ChunkId) -> Result<bool, StoreError> {
        match self.locate(id) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Where object `id` is: pending, or as the index says.
    fn locate(&self, id: &ChunkId) -> Result<Location, StoreError> {
        let pending = self.pending.read_locked().get(id).copied();
        match pending {
            Some(loc) => Ok(loc),
            None => Ok(self.index.chunk(id)?.ok_or(StoreError::NotFound(*id))?),
        }
    }

    fn get_at(&self, kind: Kind, id: &ChunkId, loc: Location) -> Result<Verified, StoreError> {
        if loc.len as usize > MAX_OBJECT_LEN {
            return Err(StoreError::Corrupt {
                chunk: *id,
                pack: loc.pack,
                offset: loc.offset,
                source: DecodeError::Compression(format!("index claims {} sealed bytes", loc.len)),
            });
        }
        let sealed = self.read_object(loc.pack, loc.offset, loc.len)?;
        self.decode_at(kind, id, loc, sealed)
    }

    /// Opens and checks sealed object `id` read from `loc`.
    fn decode_at(
        &self,
        kind: Kind,
        id: &ChunkId,
        loc: Location,
        sealed: Vec<u8>,
    ) -> Result<Verified, StoreError> {
        let max = if kind == Kind::Chunk {
            self.codec.max_len()
        } else {
            MAX_OBJECT_LEN
        };
        self.codec
            .decode_owned(kind, id, sealed, max)
            .map_err(|source| StoreError::Corrupt {
                chunk: *id,
                pack: loc.pack,
                offset: loc.offset,
                source,
            })
    }

    /// Reads sealed bytes from a pack, wherever it is now. A read that
    /// fails with a transient I/O error is tried again, a few times with
    /// backoff (reads are the only store operation that is retried: see
    /// [`super::io::retry::may_retry`]).
    pub fn read_object(&self, pack: PackId, offset: u64, len: u32) -> Result<Vec<u8>, StoreError> {
        use super::io::retry::{failure_of, may_retry, retry_delay, Operation};
        let mut attempt = 0;
        loop {
            let err = match self.read_object_once(pack, offset, len) {
                Err(StoreError::Pack(PackError::Io { source, .. }))
                    if may_retry(Operation::Read, failure_of(&source)) =>
                {
                    source
                }
                other => return other,
            };
            attempt += 1;
            match retry_delay(attempt) {
                Some(pause) => {
                    tracing::warn!(pack = %pack.short(), offset, attempt, error = %err, "pack read failed; retrying");
                    std::thread::sleep(pause);
                }
                None => return Err(StoreError::Pack(PackError::Io { pack, source: err })),
            }
        }
    }

    fn read_object_once(&self, pack: PackId, offset: u64, len: u32) -> Result<Vec<u8>, StoreError> {
        let file = self.pack_file(pack)?;
        match pack::read_object(file.as_ref(), pack, offset, len) {
            Ok(b) => Ok(b),
            Err(e) => {
                // The pack may have moved from open/ to packs/ since it was opened.
                self.files.locked().remove(&pack);
                let file = self.pack_file(pack)?;
                pack::read_object(file.as_ref(), pack, offset, len).map_err(|_| StoreError::Pack(e))
            }
        }
    }

    /// An open handle on a pack, from whichever directory holds it.
    pub fn pack_file(&self, pack: PackId) -> Result<Arc<dyn DiskFile>, StoreError> {
        if let Some(f) = self.files.locked().get(&pack) {
            return Ok(f.clone());
        }
        let file: Arc<dyn DiskFile> =
            open_any_pack(self.disk.as_ref(), self.backend.as_ref(), pack)
                .map(Arc::from)
                .map_err(io_err("open pack", &pack.to_string()))?;
        let mut files = self.files.locked();
        if files.len() >= 256 {
            files.clear();
        }
        files.insert(pack, file.clone());
        Ok(file)
    }

    /// What the index knows of each pack.
    pub fn pack_records(&self) -> HashMap<PackId, PackRecord> {
        self.packs.read_locked().clone()
    }

    fn is_pending(&self, id: &ChunkId) -> bool {
        self.pending.read_locked().contains_key(id)
    }

    /// Starts writing pack bytes back early on a thread of their own, at
    /// `priority` if given ([`writeback`]); the daemon does, tools that
    /// open a repository briefly need not. Once per store.
    pub fn start_writeback(&self, priority: Option<IoClass>) -> io::Result<()> {
        let wb = Writeback::spawn(priority)?;
        self.writeback
            .set(wb)
            .map_err(|_| io::Error::other("pack writeback is already running"))
    }

    /// Ends the writeback thread after its queue (see [`Writeback::stop`]);
    /// pack bytes then reach the disk through commits alone.
    pub fn stop_writeback(&self) {
        if let Some(wb) = self.writeback.get() {
            wb.stop();
        }
    }

    /// The writeback thread's priority and counters, once started.
    pub fn writeback_status(&self) -> Option<WritebackStatus> {
        self.writeback.get().map(Writeback::status)
    }

    /// Whether writes are refused after a failure (cheap: no lock).
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How many writes were refused for lack of space since the store opened.
    pub fn nospace_errors(&self) -> u64 {
        self.nospace.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Why writes are refused after a failure, if they are.
    pub fn failed(&self) -> Option<String> {
        self.writer().failed.clone()
    }

    /// The errno of that failure, when the OS gave one.
    pub fn failed_errno(&self) -> Option<i32> {
        self.writer().failed_errno
    }
}

/// The first OS error number in `e`'s chain of sources.
fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(errno) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(errno);
        }
        next = e.source();
    }
    None
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.commit() {
            tracing::warn!(error = %e, "final commit failed; uncommitted chunks are not in the index");
        }
        if let Err(e) = self.wait_uploads() {
            tracing::warn!(error = %e, "a finished pack was not uploaded; the next open uploads it");
        }
    }
}
