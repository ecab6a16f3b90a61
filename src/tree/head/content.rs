//! File content: sequential writes stream into the chunker, anything else
//! goes to a staging overlay that is re-chunked on flush.
//!
//! A file being appended to (rsync, tar, cp, pg_basebackup) keeps only the
//! chunker's look-ahead in memory; every chunk it cuts goes to the store's
//! write pipeline at once (hashed, compressed and sealed on its workers,
//! so the write is answered while that happens), and the chunks are
//! recorded in the head's rows, once stored, in batches (at flush, at a
//! checkpoint, before a read, or every [`ROWS_PER_RECORD`] chunks or
//! [`BYTES_PER_RECORD`]): a writer that seeks over zeros, as `rsync -S`
//! does, ends a chunk at every seek, and one transaction per page was most
//! of what such a file cost. A chunk that fails to store fails the file's
//! next record and its flush, so an acknowledged write's error is never
//! lost.
//!
//! The first write that is not an append moves that file to staging: the
//! written bytes are kept in memory (never on disk in the clear) over the
//! stored extents, and flush re-chunks only the regions around them, from
//! the start of the first extent they touch until the chunker cuts at an old
//! extent boundary again. So a 4 KiB overwrite in a 10 GiB file stores a
//! few new chunks, not the file. Chunks of zeros are stored as holes.
//!
//! [`Content`] owns the files' pending states and their locks; the head's
//! file calls (write, read, flush, fsync) at the end of this file hand it
//! the head whose transactions store what it cuts, and run the commit
//! cadence after it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use super::txn::Reader;
use super::{Head, COMMIT_BYTES};
use crate::store::chunker::StreamChunker;
use crate::store::chunks::Store;
use crate::store::format::Kind;
use crate::store::id::ChunkId;
use crate::store::pipeline::{Pipeline, Ticket};
use crate::sys::sync::Recover;
use crate::tree::classify::Facts;
use crate::tree::types::{Attr, Caller, Fault, FileKind, FsError, InodeNo, SetAttr, Timestamp};

/// Staged bytes past which a file is re-chunked without waiting for flush.
pub const STAGING_LIMIT: u64 = 64 << 20;

/// Stored chunks a stream keeps unrecorded before it records them anyway.
const ROWS_PER_RECORD: usize = 1024;
/// Bytes a stream keeps unrecorded before it records them anyway: a file
/// busy in a write while the committer checkpoints (it skips busy files)
/// leaves at most this, and its look-ahead, out of that durable commit.
const BYTES_PER_RECORD: u64 = COMMIT_BYTES / 8;

/// A file's size and mtime as its writes left them, written by flush in
/// the transaction that records its last chunks.
#[derive(Clone)]
struct Ending {
    size: u64,
    mtime: Option<Timestamp>,
    /// What classification made of the file's first bytes, when its writes
    /// touched them.
    facts: Option<Facts>,
}

impl Ending {
    fn of(st: &FileState) -> Ending {
        Ending {
            size: st.size,
            mtime: st.mtime,
            facts: None,
        }
    }

    /// Writes the size, mtime and facts to the inode, and dirties the
    /// directories above.
    fn apply(&self, w: &mut super::txn::Write<'_>, ino: InodeNo) -> Result<(), FsError> {
        let mut rec = w.get(ino)?;
        rec.meta.size = self.size;
        if let Some(t) = self.mtime {
            rec.meta.mtime = t;
            rec.meta.ctime = t;
        }
        if let Some(facts) = &self.facts {
            rec.facts = Some(facts.clone());
        }
        w.put(ino, &rec)?;
        w.dirty_parents(ino)
    }
}

enum Mode {
    /// Appending: bytes from `buf_start` on are in the chunker.
    Stream {
        chunker: StreamChunker,
        buf_start: u64,
    },
    /// Overwrites held over the stored extents.
    Staged {
        overlay: BTreeMap<u64, Vec<u8>>,
        dirty: Vec<(u64, u64)>,
        /// Stored extents at or past this offset were truncated away.
        cut: u64,
    },
}

/// The in-memory state of a file with unflushed writes.
pub struct FileState {
    ino: InodeNo,
    /// Flushed and taken out of the map: a writer that locked it late must
    /// start over with a fresh state.
    closed: bool,
    size: u64,
    mtime: Option<Timestamp>,
    mode: Mode,
    /// What streams cut and stored that the head's rows do not have yet
    /// (empty whenever the file is not streaming).
    unrecorded: Unrecorded,
    /// A write touched the bytes tier classification reads: the file is
    /// classified again at flush.
    reclassify: bool,
    /// Those bytes as written, while the writes run from the start of the
    /// file in order (what rsync, cp and tar do); otherwise they are read
    /// back at flush.
    sample: Vec<u8>,
}

/// A chunk a stream cut: its id once stored, or the pipeline's ticket for it.
enum Stored {
    Id(ChunkId),
    Pending(Ticket),
}

/// Chunks a stream cut and handed to the store, not yet recorded in the
/// head's rows. They live only here, under the file's lock, until
/// [`Content::record`] waits for them to be stored and writes them; so a
/// flush (which prune's flush of every file waits for) or a checkpoint
/// (before every durable commit) leaves none behind.
#[derive(Default)]
struct Unrecorded {
    /// Stored extents from here on are stale (a last chunk re-fed to the
    /// chunker, or a checkpoint's provisional one): dropped by the record.
    stale_from: Option<u64>,
    /// (offset, chunk, length) of each chunk; holes have none.
    rows: Vec<(u64, Stored, u32)>,
    /// Pieces cut since the last record, holes included, and their bytes.
    pieces: usize,
    bytes: u64,
    /// Where the last piece ends.
    end: u64,
    /// Why a chunk of this file failed to store. Every later record fails
    /// with it, so the write's error reaches the flush however many writes
    /// were acknowledged in between.
    failed: Option<FsError>,
}

impl Unrecorded {
    /// Adds the pieces a stream cut from `*at` on; moves `*at` past them.
    fn add(&mut self, at: &mut u64, pieces: Pieces) {
        for (len, stored) in pieces {
            if let Some(stored) = stored {
                self.rows.push((*at, stored, len));
            }
            *at += u64::from(len);
            self.pieces += 1;
            self.bytes += u64::from(len);
        }
        self.end = self.end.max(*at);
    }

    /// Whether enough is unrecorded to record it now.
    fn full(&self) -> bool {
        self.rows.len() >= ROWS_PER_RECORD || self.bytes >= BYTES_PER_RECORD
    }

    /// Stores a stream's last chunk on the calling thread, which would
    /// only wait for it otherwise (a flush): sealed while the pipeline
    /// seals the ones before it, appended after them.
    fn store_last(&mut self, store: &Store, at: &mut u64, chunk: &[u8]) -> Result<(), FsError> {
        let len = chunk.len() as u32;
        if is_zero(chunk) {
            self.add(at, vec![(len, None)]);
            return Ok(());
        }
        let prepared = store.prepare(Kind::Chunk, chunk);
        self.resolve(true)?;
        match prepared.and_then(|p| store.append_prepared(p)) {
            Ok((id, _)) => {
                self.add(at, vec![(len, Some(Stored::Id(id)))]);
                Ok(())
            }
            Err(e) => {
                let e = FsError::from(e);
                self.failed = Some(e.again());
                Err(e)
            }
        }
    }

    /// Turns tickets into ids, in order, waiting for each if `wait`;
    /// returns how many rows from the first on have their ids.
    fn resolve(&mut self, wait: bool) -> Result<usize, FsError> {
        if let Some(e) = &self.failed {
            return Err(e.again());
        }
        for (i, (_, stored, _)) in self.rows.iter_mut().enumerate() {
            let Stored::Pending(ticket) = stored else {
                continue;
            };
            let outcome = match wait {
                true => ticket.wait(),
                false => match ticket.try_take() {
                    Some(outcome) => outcome,
                    None => return Ok(i),
                },
            };
            match outcome {
                Ok(id) => *stored = Stored::Id(id),
                Err(e) => {
                    let e = FsError::from(e);
                    self.failed = Some(e.again());
                    return Err(e);
                }
            }
        }
        Ok(self.rows.len())
    }
}

impl FileState {
    /// Shows pending size and mtime in `attr`.
    pub fn overlay_attr(&self, attr: &mut Attr) {
        if self.closed {
            return;
        }
        attr.size = self.size;
        attr.blocks_bytes = self.size;
        if let Some(t) = self.mtime {
            attr.mtime = t;
            attr.ctime = attr.ctime.max(t);
        }
    }

    /// A setattr with an explicit mtime supersedes the writes' mtime.
    pub fn attrs_set(&mut self, set: &SetAttr) {
        if set.mtime.is_some() {
            self.mtime = None;
        }
    }

    /// Holds a write in the overlay, to be re-chunked on flush.
    fn stage(&mut self, offset: u64, data: &[u8]) {
        if let Mode::Staged { overlay, dirty, .. } = &mut self.mode {
            overlay_write(overlay, offset, data);
            dirty.push((offset, offset + data.len() as u64));
        }
    }

    /// Notes a write of `data` at `offset` for classification, which reads
    /// the first `limit` bytes (0: no classification).
    fn keep_sample(&mut self, limit: usize, offset: u64, data: &[u8]) {
        if offset >= limit as u64 {
            return;
        }
        self.reclassify = true;
        let at = offset as usize;
        if at > self.sample.len() {
            // A gap: the bytes before it are read back at flush.
            return;
        }
        let end = (at + data.len()).min(limit);
        if self.sample.len() < end {
            self.sample.resize(end, 0);
        }
        self.sample[at..end].copy_from_slice(&data[..end - at]);
    }

    fn staged_bytes(&self) -> u64 {
        match &self.mode {
            Mode::Staged { overlay, .. } => overlay.values().map(|v| v.len() as u64).sum(),
            Mode::Stream { .. } => 0,
        }
    }
}

fn is_zero(data: &[u8]) -> bool {
    data.iter().all(|&b| b == 0)
}

/// What one push into a stream cut: each chunk's length and, unless it
/// is all zeros (a hole), how it is stored.
type Pieces = Vec<(u32, Option<Stored>)>;

/// Hands chunk `c` to the write pipeline as the chunker emits it.
fn submit_cut(pipeline: &Pipeline, pieces: &mut Pieces, c: Cow<'_, [u8]>) {
    let len = c.len() as u32;
    let ticket = (!is_zero(&c)).then(|| Stored::Pending(pipeline.submit(c.into_owned())));
    pieces.push((len, ticket));
}

/// Writes `data` at `offset` into `overlay`, merging with what is there.
fn overlay_write(overlay: &mut BTreeMap<u64, Vec<u8>>, offset: u64, data: &[u8]) {
    let end = offset + data.len() as u64;
    let mut start = offset;
    let mut bytes = data.to_vec();
    // Merge with a run that starts before and reaches into or touches us.
    if let Some((&o, prev)) = overlay.range(..=offset).next_back() {
        let pend = o + prev.len() as u64;
        if pend >= offset {
            let mut merged = prev[..(offset - o) as usize].to_vec();
            merged.extend_from_slice(&bytes);
            if pend > end {
                merged.extend_from_slice(&prev[(end - o) as usize..]);
            }
            start = o;
            bytes = merged;
            overlay.remove(&o);
        }
    }
    // Absorb runs that start inside or right after us.
    let later: Vec<u64> = overlay
        .range(start..=start + bytes.len() as u64)
        .map(|(&o, _)| o)
        .collect();
    for o in later {
        let run = overlay.remove(&o).expect("listed");
        let rend = o + run.len() as u64;
        let cur_end = start + bytes.len() as u64;
        if rend > cur_end {
            bytes.extend_from_slice(&run[(cur_end - o) as usize..]);
        }
    }
    overlay.insert(start, bytes);
}

/// The pending writes of the files being written: one [`FileState`] per
/// file, each behind its own lock, in a map behind another. Its calls take
/// the head whose transactions store what they cut.
///
/// Lock order: a file's state before the map, never the reverse; the map is
/// never held across a transaction.
#[derive(Default)]
pub struct Content {
    files: Mutex<HashMap<InodeNo, Arc<Mutex<FileState>>>>,
}

impl Content {
    /// Lays a file's pending size and mtime over its stored attributes.
    pub(super) fn overlay_attr(&self, head: &Head, attr: &mut Attr) {
        let state = self.files.locked().get(&attr.ino).cloned();
        if let Some(state) = state {
            // A state lost to a panic was marked incomplete; `attr` stands.
            if let Ok(st) = self.lock_state(head, &state) {
                st.overlay_attr(attr);
            }
        }
    }

    /// A setattr with an explicit mtime supersedes the pending writes'.
    pub(super) fn attrs_set(
        &self,
        head: &Head,
        ino: InodeNo,
        set: &SetAttr,
    ) -> Result<(), FsError> {
        let state = self.files.locked().get(&ino).cloned();
        if let Some(state) = state {
            self.lock_state(head, &state)?.attrs_set(set);
        }
        Ok(())
    }

    /// Drops the state of a file that is gone (its pending writes with it).
    pub(super) fn forget(&self, ino: InodeNo) {
        self.files.locked().remove(&ino);
    }

    /// Drops every state (after a reset: closed files hold nothing pending).
    pub(super) fn clear(&self) {
        self.files.locked().clear();
    }

    fn file_state(&self, head: &Head, ino: InodeNo) -> Result<Arc<Mutex<FileState>>, FsError> {
        if let Some(s) = self.files.locked().get(&ino) {
            return Ok(s.clone());
        }
        let rec = head.rtx()?.get(ino)?;
        match rec.meta.kind {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsDir),
            _ => return Err(FsError::Invalid("not a regular file")),
        }
        let state = Arc::new(Mutex::new(FileState {
            ino,
            closed: false,
            size: rec.meta.size,
            mtime: None,
            mode: Mode::Staged {
                overlay: BTreeMap::new(),
                dirty: Vec::new(),
                cut: u64::MAX,
            },
            unrecorded: Unrecorded::default(),
            reclassify: false,
            sample: Vec::new(),
        }));
        let mut files = self.files.locked();
        Ok(files.entry(ino).or_insert(state).clone())
    }

    /// Runs `f` on the file's live state, locked. A state that a concurrent
    /// flush closed while we waited for its lock is skipped for a fresh one,
    /// so no write lands in a state nobody will flush.
    fn with_state<T>(
        &self,
        head: &Head,
        ino: InodeNo,
        mut f: impl FnMut(&mut FileState) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        loop {
            let state = self.file_state(head, ino)?;
            let mut st = self.lock_state(head, &state)?;
            if !st.closed {
                return f(&mut st);
            }
        }
    }

    /// Locks a file's state. A panic while it was held (a bug met by one
    /// request) may have left its pending writes half-applied: they are
    /// dropped, the file is marked incomplete as after a failed flush, and
    /// this request fails. Later requests start over from what is stored.
    fn lock_state<'a>(
        &self,
        head: &Head,
        state: &'a Mutex<FileState>,
    ) -> Result<MutexGuard<'a, FileState>, FsError> {
        let poisoned = match state.lock() {
            Ok(st) => return Ok(st),
            Err(poisoned) => poisoned,
        };
        let mut st = poisoned.into_inner();
        state.clear_poison();
        if st.closed {
            return Ok(st);
        }
        // Lock order: a file state before the map.
        st.closed = true;
        self.files.locked().remove(&st.ino);
        self.mark_incomplete(head, st.ino, st.size);
        tracing::error!(
            ino = st.ino.0,
            "pending writes dropped after an internal error; file marked incomplete"
        );
        Err(FsError::Io(Fault::new(format!(
            "the pending writes of inode {} were lost to an internal error",
            st.ino.0
        ))))
    }

    /// Leaves nothing that would make rsync's quick check skip a file whose
    /// pending writes were lost: its size falls back to what is stored (at
    /// most `size`) and its mtime becomes one no source has.
    fn mark_incomplete(&self, head: &Head, ino: InodeNo, size: u64) {
        let stored = head
            .rtx()
            .and_then(|r| r.extents(ino, 0, u64::MAX))
            .map(|e| e.last().map_or(0, |&(o, _, l)| o + l as u64))
            .unwrap_or(0);
        let _ = head.wtx_no_commit(|w| {
            let mut rec = w.get(ino)?;
            rec.meta.size = stored.min(size);
            rec.meta.mtime = Timestamp { secs: 0, nanos: 0 };
            w.put(ino, &rec)?;
            w.dirty_parents(ino)
        });
    }

    /// Turns a fresh state into a stream that continues the file at its
    /// end, re-feeding the last chunk so boundaries match a one-shot pass.
    fn start_stream(&self, head: &Head, st: &mut FileState) -> Result<(), FsError> {
        let mut chunker = head.repo.chunker().stream();
        let last = head
            .rtx()?
            .extents(st.ino, st.size.saturating_sub(1), st.size)?;
        // A last chunk cut at the maximum size is final whatever follows
        // (the chunker cuts there anyway), and re-fed it would fill the
        // look-ahead: the stream starts after it. A shorter one may grow.
        let max = head.repo.chunker().params().max_size;
        let buf_start = match last.first() {
            Some(&(off, id, len)) if off + len as u64 == st.size && len < max => {
                let bytes = head.repo.store().get(&id)?;
                chunker.push(bytes.as_slice(), |_| {
                    unreachable!("a chunk below the maximum never fills the look-ahead")
                });
                // Its extent is replaced by what the chunker cuts there.
                st.unrecorded.stale_from = Some(off);
                off
            }
            _ => st.size,
        };
        st.mode = Mode::Stream { chunker, buf_start };
        Ok(())
    }

    /// Records the chunks the file's streams stored in the head's rows,
    /// in one transaction, with the file's `ending` (flush) if given;
    /// waits for the pipeline to store them.
    fn record(
        &self,
        head: &Head,
        st: &mut FileState,
        ending: Option<Ending>,
    ) -> Result<(), FsError> {
        self.record_stored(head, st, ending, true)
    }

    /// Records the chunks already stored, from the first on, without
    /// waiting for the rest: a stream records as it goes without stalling
    /// the pipeline. (A stream's first record after it resumed replaces
    /// the old last extent, so it waits and records everything.)
    fn record_ready(&self, head: &Head, st: &mut FileState) -> Result<(), FsError> {
        self.record_stored(head, st, None, st.unrecorded.stale_from.is_some())
    }

    fn record_stored(
        &self,
        head: &Head,
        st: &mut FileState,
        ending: Option<Ending>,
        wait: bool,
    ) -> Result<(), FsError> {
        let ready = st.unrecorded.resolve(wait || ending.is_some())?;
        let u = &st.unrecorded;
        let all = ready == u.rows.len();
        if (u.pieces == 0 && ending.is_none()) || (ready == 0 && !all) {
            return Ok(());
        }
        let end = match all {
            true => u.end,
            false => u.rows[ready - 1].0 + u64::from(u.rows[ready - 1].2),
        };
        let ino = st.ino;
        head.wtx_no_commit(|w| {
            if let Some(from) = u.stale_from {
                w.drop_extents_from(ino, from)?;
            }
            for (off, stored, len) in &u.rows[..ready] {
                let Stored::Id(id) = stored else {
                    unreachable!("resolved")
                };
                w.put_extent(ino, *off, *id, *len)?;
            }
            if let Some(ending) = ending {
                return ending.apply(w, ino);
            }
            // The size grows with the recorded extents in the same
            // transaction, so after a crash no extent lies past the end.
            let mut rec = w.get(ino)?;
            if rec.meta.size < end {
                rec.meta.size = end;
                w.put(ino, &rec)?;
            }
            // The file changed: the next snapshot must not reuse its
            // directories' trees, even if a crash comes before the flush.
            w.dirty_parents(ino)
        })?;
        let u = &mut st.unrecorded;
        if all {
            *u = Unrecorded {
                end: u.end,
                ..Unrecorded::default()
            };
        } else {
            u.rows.drain(..ready);
            u.stale_from = None;
            u.pieces = u.rows.len();
            u.bytes = u.rows.iter().map(|r| u64::from(r.2)).sum();
        }
        Ok(())
    }

    /// Writes `data` at `offset`; returns the bytes written.
    fn write(&self, head: &Head, ino: InodeNo, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        self.with_state(head, ino, |st| self.write_locked(head, st, offset, data))
    }

    fn write_locked(
        &self,
        head: &Head,
        st: &mut FileState,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, FsError> {
        st.keep_sample(head.sample.load(Ordering::Relaxed), offset, data);
        if !matches!(st.mode, Mode::Stream { .. }) {
            // A stream that failed to end left its chunks for the overlay
            // to lie over: they are recorded first.
            self.record(head, st, None)?;
        }
        let fresh = matches!(&st.mode, Mode::Staged { overlay, dirty, cut } if overlay.is_empty() && dirty.is_empty() && *cut == u64::MAX);
        if fresh && offset == st.size {
            self.start_stream(head, st)?;
        }
        let size = st.size;
        match &mut st.mode {
            Mode::Stream { .. } if offset >= size => {
                if offset > size {
                    // A gap: what lies between stays a hole; a new stream starts.
                    self.end_chunker(head, st)?;
                    st.mode = Mode::Stream {
                        chunker: head.repo.chunker().stream(),
                        buf_start: offset,
                    };
                }
                let FileState {
                    mode: Mode::Stream { chunker, buf_start },
                    unrecorded,
                    ..
                } = &mut *st
                else {
                    unreachable!("streaming")
                };
                let mut pieces = Pieces::new();
                let pipeline = head.repo.pipeline();
                chunker.push(data, |c| {
                    submit_cut(pipeline, &mut pieces, Cow::Borrowed(c))
                });
                unrecorded.add(buf_start, pieces);
                if unrecorded.full() {
                    self.record_ready(head, st)?;
                }
            }
            Mode::Stream { .. } => {
                self.finish_stream(head, st, None)?;
                st.mode = Mode::Staged {
                    overlay: BTreeMap::new(),
                    dirty: Vec::new(),
                    cut: u64::MAX,
                };
                st.stage(offset, data);
            }
            Mode::Staged { .. } => st.stage(offset, data),
        }
        st.size = st.size.max(offset + data.len() as u64);
        st.mtime = Some(Timestamp::now());
        let staged = st.staged_bytes();
        head.counters.staging_bytes.store(staged, Ordering::Relaxed);
        if staged > STAGING_LIMIT {
            self.rebuild(head, st)?;
        }
        Ok(data.len())
    }

    /// Cuts a stream's look-ahead as its last chunks, stored and left
    /// unrecorded; the file is no longer streaming. The caller waits for
    /// them next, so the very last is stored here ([`Unrecorded::store_last`]).
    fn end_chunker(&self, head: &Head, st: &mut FileState) -> Result<(), FsError> {
        let fresh = Mode::Staged {
            overlay: BTreeMap::new(),
            dirty: Vec::new(),
            cut: u64::MAX,
        };
        if let Mode::Stream {
            chunker,
            mut buf_start,
        } = std::mem::replace(&mut st.mode, fresh)
        {
            let mut pieces = Pieces::new();
            let pipeline = head.repo.pipeline();
            let mut last: Option<Vec<u8>> = None;
            chunker.finish(|c| {
                if let Some(before) = last.replace(c.to_vec()) {
                    submit_cut(pipeline, &mut pieces, Cow::Owned(before));
                }
            });
            st.unrecorded.add(&mut buf_start, pieces);
            if let Some(last) = last {
                st.unrecorded
                    .store_last(head.repo.store(), &mut buf_start, &last)?;
            }
        }
        Ok(())
    }

    /// Ends a stream and records its chunks (with the file's `ending`, if
    /// given, in the same transaction).
    fn finish_stream(
        &self,
        head: &Head,
        st: &mut FileState,
        ending: Option<Ending>,
    ) -> Result<(), FsError> {
        if !matches!(st.mode, Mode::Stream { .. }) {
            return Ok(());
        }
        self.end_chunker(head, st)?;
        self.record(head, st, ending)
    }

    /// Reads up to `size` bytes at `offset`.
    fn read(&self, head: &Head, ino: InodeNo, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let state = self.files.locked().get(&ino).cloned();
        let st = match &state {
            Some(state) => Some(self.lock_state(head, state)?),
            None => None,
        };
        match st {
            Some(mut st) if !st.closed => {
                // What the stream cut is read from the head's rows.
                self.record(head, &mut st, None)?;
                let end = (offset + size as u64).min(st.size);
                if offset >= end {
                    return Ok(Vec::new());
                }
                match &st.mode {
                    Mode::Stream {
                        chunker, buf_start, ..
                    } => {
                        let mut out =
                            self.read_extents(head, ino, offset, end.min(*buf_start), u64::MAX)?;
                        if end > *buf_start {
                            let pending = chunker.pending_bytes();
                            let from = offset.max(*buf_start);
                            out.resize((from - offset) as usize, 0);
                            let a = (from - buf_start) as usize;
                            let b = ((end - buf_start) as usize).min(pending.len());
                            out.extend_from_slice(&pending[a..b]);
                            out.resize((end - offset) as usize, 0);
                        }
                        Ok(out)
                    }
                    Mode::Staged { overlay, cut, .. } => {
                        self.read_virtual(head, ino, offset, end, overlay, *cut)
                    }
                }
            }
            // No pending writes (or a flush just closed them): the stored file.
            _ => {
                let r = head.rtx()?;
                let rec = r.get(ino)?;
                match rec.meta.kind {
                    FileKind::File => {}
                    FileKind::Dir => return Err(FsError::IsDir),
                    _ => return Err(FsError::Invalid("not a regular file")),
                }
                let end = (offset + size as u64).min(rec.meta.size);
                if offset >= end {
                    return Ok(Vec::new());
                }
                self.read_extents(head, ino, offset, end, u64::MAX)
            }
        }
    }

    /// Bytes `from..to` of the stored extents (those below `cut`), zeros in holes.
    fn read_extents(
        &self,
        head: &Head,
        ino: InodeNo,
        from: u64,
        to: u64,
        cut: u64,
    ) -> Result<Vec<u8>, FsError> {
        let mut out = vec![0u8; to.saturating_sub(from) as usize];
        if to <= from {
            return Ok(out);
        }
        for (off, id, len) in head.rtx()?.extents(ino, from, to.min(cut))? {
            if off >= to || off >= cut {
                break;
            }
            let chunk = head.reader.chunk(head.repo.store(), &id)?;
            let a = from.max(off);
            let b = to.min(off + len as u64).min(cut);
            if a < b {
                out[(a - from) as usize..(b - from) as usize]
                    .copy_from_slice(&chunk.as_slice()[(a - off) as usize..(b - off) as usize]);
            }
        }
        Ok(out)
    }

    /// Bytes `from..to` of a staged file: stored extents with the overlay on top.
    fn read_virtual(
        &self,
        head: &Head,
        ino: InodeNo,
        from: u64,
        to: u64,
        overlay: &BTreeMap<u64, Vec<u8>>,
        cut: u64,
    ) -> Result<Vec<u8>, FsError> {
        let mut out = self.read_extents(head, ino, from, to, cut)?;
        let first = overlay.range(..from).next_back().map_or(from, |(&o, _)| o);
        for (&o, run) in overlay.range(first..to) {
            let a = from.max(o);
            let b = to.min(o + run.len() as u64);
            if a < b {
                out[(a - from) as usize..(b - from) as usize]
                    .copy_from_slice(&run[(a - o) as usize..(b - o) as usize]);
            }
        }
        Ok(out)
    }

    /// Sets a file's size: cuts stored content or extends with a hole.
    fn truncate(&self, head: &Head, ino: InodeNo, size: u64) -> Result<(), FsError> {
        self.with_state(head, ino, |st| self.truncate_locked(head, st, size))
    }

    fn truncate_locked(&self, head: &Head, st: &mut FileState, size: u64) -> Result<(), FsError> {
        if size < head.sample.load(Ordering::Relaxed) as u64 {
            st.reclassify = true;
            st.sample.truncate(size as usize);
        }
        if matches!(st.mode, Mode::Stream { .. }) {
            if size == st.size {
                return Ok(());
            }
            self.finish_stream(head, st, None)?;
        }
        if size < st.size {
            if let Mode::Staged {
                overlay,
                dirty,
                cut,
            } = &mut st.mode
            {
                let keys: Vec<u64> = overlay
                    .range(..)
                    .filter(|(&o, r)| o + r.len() as u64 > size)
                    .map(|(&o, _)| o)
                    .collect();
                for o in keys {
                    let mut run = overlay.remove(&o).expect("listed");
                    if o < size {
                        run.truncate((size - o) as usize);
                        overlay.insert(o, run);
                    }
                }
                *cut = (*cut).min(size);
                if size > 0 {
                    // Re-chunk the extent the new end falls in.
                    dirty.push((size - 1, size));
                }
            }
        }
        st.size = size;
        st.mtime = Some(Timestamp::now());
        self.rebuild(head, st)?;
        self.persist(head, st)?;
        Ok(())
    }

    /// Re-chunks the regions of a staged file around its dirty ranges.
    fn rebuild(&self, head: &Head, st: &mut FileState) -> Result<(), FsError> {
        // Left by a stream that failed to end; the old extents include them.
        self.record(head, st, None)?;
        let Mode::Staged {
            overlay,
            dirty,
            cut,
        } = &mut st.mode
        else {
            return Ok(());
        };
        if overlay.is_empty() && dirty.is_empty() && *cut == u64::MAX {
            return Ok(());
        }
        let ino = st.ino;
        let size = st.size;
        let old = head.rtx()?.extents(ino, 0, u64::MAX)?;
        let old: Vec<_> = old.into_iter().filter(|(o, _, _)| *o < *cut).collect();
        // Rebuilding may stop where an old extent starts or ends (below the cut).
        let boundary = |p: u64| {
            p >= size
                || old
                    .iter()
                    .any(|&(o, _, l)| (o == p || o + l as u64 == p) && p <= *cut)
        };
        let mut ranges: Vec<(u64, u64)> = dirty
            .iter()
            .map(|&(a, b)| (a.min(size), b.min(size)))
            .filter(|(a, b)| a < b)
            .collect();
        ranges.sort_unstable();
        let pipeline = head.repo.pipeline();
        let mut new_rows: Vec<(u64, Ticket, u32)> = Vec::new();
        let mut replaced: Vec<(u64, u64)> = Vec::new();
        let mut prev_stop = 0u64;
        let mut i = 0;
        while i < ranges.len() {
            let (a, mut h) = ranges[i];
            if a < prev_stop && h <= prev_stop {
                i += 1;
                continue;
            }
            let start = old
                .iter()
                .find(|&&(o, _, l)| o <= a && a < o + l as u64)
                .map_or(a, |&(o, _, _)| o)
                .max(prev_stop);
            let mut stream = head.repo.chunker().stream();
            let mut pos = start;
            let mut fed = start;
            let mut done = false;
            while !done {
                // Chunks are stored as they are cut, until one ends on a
                // boundary past the dirty range; the rest are not needed.
                let mut stopped = false;
                let mut store_chunk = |c: &[u8]| {
                    if stopped {
                        return;
                    }
                    if !is_zero(c) {
                        new_rows.push((pos, pipeline.submit(c.to_vec()), c.len() as u32));
                    }
                    pos += c.len() as u64;
                    while i + 1 < ranges.len() && ranges[i + 1].0 < pos {
                        i += 1;
                        h = h.max(ranges[i].1);
                    }
                    stopped = pos >= h && boundary(pos);
                };
                if fed < size {
                    let n = (size - fed).min(1 << 20);
                    let block = self.read_virtual(head, ino, fed, fed + n, overlay, *cut)?;
                    fed += n;
                    stream.push(&block, &mut store_chunk);
                } else {
                    let rest = std::mem::replace(&mut stream, head.repo.chunker().stream());
                    rest.finish(&mut store_chunk);
                    done = true;
                }
                done |= stopped;
            }
            replaced.push((start, pos));
            prev_stop = pos;
            i += 1;
        }
        let new_rows = new_rows
            .into_iter()
            .map(|(off, ticket, len)| Ok((off, ticket.wait()?, len)))
            .collect::<Result<Vec<_>, FsError>>()?;
        let cut_at = *cut;
        head.wtx_no_commit(|w| {
            if cut_at != u64::MAX {
                w.drop_extents_from(ino, cut_at)?;
            }
            for &(a, b) in &replaced {
                w.drop_extents_between(ino, a, b)?;
            }
            for &(off, id, len) in &new_rows {
                w.put_extent(ino, off, id, len)?;
            }
            // Size and extents change together, and the directories above
            // are dirtied with them (see store_stream_chunks).
            let mut rec = w.get(ino)?;
            if rec.meta.size != size {
                rec.meta.size = size;
                w.put(ino, &rec)?;
            }
            w.dirty_parents(ino)
        })?;
        overlay.clear();
        dirty.clear();
        *cut = u64::MAX;
        head.counters.staging_bytes.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Writes a file's pending size and mtime to its inode.
    fn persist(&self, head: &Head, st: &FileState) -> Result<(), FsError> {
        self.persist_ending(head, st.ino, &Ending::of(st))
    }

    fn persist_ending(&self, head: &Head, ino: InodeNo, ending: &Ending) -> Result<(), FsError> {
        head.wtx_no_commit(|w| ending.apply(w, ino))
    }

    /// Classifies a file whose writes touched its first bytes: from the
    /// bytes kept as written when they are all there, else (`Err(n)`) from
    /// its first `n` bytes, to be read back once stored.
    fn facts_of(&self, head: &Head, st: &FileState) -> Option<Result<Facts, u64>> {
        if !st.reclassify {
            return None;
        }
        let classifier = head.classifier()?;
        let n = st.size.min(classifier.sample() as u64);
        Some(match st.sample.get(..n as usize) {
            Some(first) => Ok(classifier.facts(first)),
            None => Err(n),
        })
    }

    /// Classifies a flushed file from its first `n` stored bytes.
    fn classify_stored(&self, head: &Head, ino: InodeNo, n: u64) -> Result<(), FsError> {
        let Some(classifier) = head.classifier() else {
            return Ok(());
        };
        let first = self.read_extents(head, ino, 0, n, u64::MAX)?;
        let facts = classifier.facts(&first);
        head.wtx_no_commit(|w| {
            let mut rec = w.get(ino)?;
            rec.facts = Some(facts.clone());
            w.put(ino, &rec)
        })
    }

    /// Makes the pending writes of every open file part of the next commit,
    /// so the crash window of the cadence holds for files still being
    /// written (an open file's last MiB used to wait for its close). A
    /// state busy in a request right now is left for the next commit: it
    /// may be this thread's own (a write that commits inline), and locking
    /// it would deadlock. A failure is logged and left in the state for
    /// the writer's flush to report.
    pub(super) fn checkpoint_open_files(&self, head: &Head) {
        let states: Vec<_> = self.files.locked().values().cloned().collect();
        for state in states {
            let Ok(mut st) = state.try_lock() else {
                continue;
            };
            if st.closed {
                continue;
            }
            if let Err(e) = self.checkpoint(head, &mut st) {
                tracing::warn!(ino = st.ino.0, error = %e, "checkpoint of an open file failed");
            }
        }
    }

    /// Stores a file's pending bytes and its size and mtime without ending
    /// its writes. A stream keeps its chunker: the look-ahead is stored as
    /// a provisional last chunk, replaced when the chunker cuts there (it
    /// is stale from then on), so chunk boundaries are as without the
    /// checkpoint.
    fn checkpoint(&self, head: &Head, st: &mut FileState) -> Result<(), FsError> {
        let Mode::Stream { chunker, buf_start } = &st.mode else {
            self.rebuild(head, st)?;
            return self.persist(head, st);
        };
        let pending = chunker.pending_bytes();
        let at = *buf_start;
        let provisional = match pending.is_empty() || is_zero(pending) {
            true => None,
            false => Some((head.repo.store().put(pending)?.0, pending.len() as u32)),
        };
        if let Some((id, len)) = provisional {
            st.unrecorded.rows.push((at, Stored::Id(id), len));
        }
        self.record(head, st, Some(Ending::of(st)))?;
        st.unrecorded.stale_from = provisional.map(|_| at);
        Ok(())
    }

    /// Finishes a file's pending writes: the stream's last chunks or the
    /// staged re-chunking, then size and mtime. Errors of writes already
    /// acknowledged are reported here.
    fn flush(&self, head: &Head, ino: InodeNo) -> Result<(), FsError> {
        let Some(state) = self.files.locked().get(&ino).cloned() else {
            return Ok(());
        };
        let mut st = self.lock_state(head, &state)?;
        if st.closed {
            return Ok(());
        }
        // One transaction: a stream's last chunks with the size, mtime and
        // what classification made of the file.
        let (facts, read_back) = match self.facts_of(head, &st) {
            Some(Ok(facts)) => (Some(facts), None),
            Some(Err(n)) => (None, Some(n)),
            None => (None, None),
        };
        let ending = Ending {
            facts,
            ..Ending::of(&st)
        };
        let result = match st.mode {
            Mode::Stream { .. } => self.finish_stream(head, &mut st, Some(ending)),
            Mode::Staged { .. } => self
                .rebuild(head, &mut st)
                .and_then(|_| self.persist_ending(head, ino, &ending)),
        };
        let result = match (result, read_back) {
            (Ok(()), Some(n)) => self.classify_stored(head, ino, n),
            (result, _) => result,
        };
        if let Err(e) = &result {
            tracing::error!(ino = ino.0, error = %e, "flush failed; file marked incomplete");
            self.mark_incomplete(head, ino, st.size);
        }
        // Closed and out of the map before the lock goes: a writer waiting
        // on this state starts over with a fresh one.
        st.closed = true;
        self.files.locked().remove(&ino);
        drop(st);
        result
    }

    /// Flushes every file with pending writes (before a snapshot or exit).
    fn flush_all(&self, head: &Head) -> Result<(), FsError> {
        let inos: Vec<InodeNo> = self.files.locked().keys().copied().collect();
        let mut first_err = None;
        for ino in inos {
            if let Err(e) = self.flush(head, ino) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// The head's file content API: each call works on the file's state in
/// [`Content`] and then lets the durable-commit cadence run.
impl Head {
    /// Writes `data` at `offset`; returns the bytes written.
    pub fn write(
        &self,
        caller: Caller,
        ino: InodeNo,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, FsError> {
        let _op = caller.span("write");
        let written = self.content.write(self, ino, offset, data)?;
        self.maybe_commit(written as u64)?;
        Ok(written)
    }

    /// Reads up to `size` bytes at `offset`.
    pub fn read(
        &self,
        caller: Caller,
        ino: InodeNo,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, FsError> {
        let _op = caller.span("read");
        self.content.read(self, ino, offset, size)
    }

    /// Sets a file's size: pending writes past it are dropped.
    pub(super) fn truncate(&self, ino: InodeNo, size: u64) -> Result<(), FsError> {
        self.content.truncate(self, ino, size)?;
        self.maybe_commit(0)
    }

    /// Finishes a file's pending writes (close): the stream's last chunks
    /// are stored, staging is re-chunked, size and mtime are written. A
    /// failure marks the file incomplete.
    pub fn flush(&self, caller: Caller, ino: InodeNo) -> Result<(), FsError> {
        let _op = caller.span("flush");
        self.content.flush(self, ino)?;
        // Noted outside the state's lock: a commit checkpoints file states.
        self.maybe_commit(0)
    }

    /// Makes a file durable, and with it everything written before: all
    /// pending writes are flushed, then one durable commit. (Stronger than
    /// POSIX asks; it keeps the crash state simple to reason about, and a
    /// stream resumed later re-feeds its last chunk, so boundaries do not
    /// suffer.) Errors of this file's acknowledged writes come first.
    pub fn fsync(&self, caller: Caller, ino: InodeNo) -> Result<(), FsError> {
        let _op = caller.span("fsync");
        self.flush(caller, ino)?;
        self.flush_all(caller)?;
        self.commit()
    }

    /// Flushes every file with pending writes (before a snapshot or exit).
    pub fn flush_all(&self, caller: Caller) -> Result<(), FsError> {
        let _op = caller.span("flush_all");
        self.content.flush_all(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_writes_merge() {
        let mut o = BTreeMap::new();
        overlay_write(&mut o, 10, b"abcd");
        overlay_write(&mut o, 12, b"XYZW");
        overlay_write(&mut o, 0, b"0123456789");
        assert_eq!(o.len(), 1);
        assert_eq!(o[&0], b"0123456789abXYZW");
        overlay_write(&mut o, 100, b"far");
        overlay_write(&mut o, 5, b"-");
        assert_eq!(o[&0], b"01234-6789abXYZW");
        assert_eq!(o[&100], b"far");
    }
}
