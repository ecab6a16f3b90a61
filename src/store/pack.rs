//! Pack files: sealed objects appended one after another, closed by
//! checkpoints that make the pack self-describing.
//!
//! ```text
//! header (32)  | object | object | ... | TOC | trailer | object | ... | TOC | trailer(final)
//! ```
//! A checkpoint is a sealed table of contents of the objects since the
//! previous checkpoint, then a fixed-size sealed trailer that points at that
//! TOC and at the previous trailer. Nothing outside a seal says where one
//! object ends and the next begins. An open pack is synced at each checkpoint;
//! bytes after the last checkpoint are an uncommitted tail that recovery cuts
//! off. See strata-format(5), "PACKS".

use std::io;
use std::sync::Arc;

use crate::store::crypto::{SealError, Sealer};
use crate::store::format::*;
use crate::store::id::{ChunkId, PackId};
use crate::store::io::DiskFile;

/// A pack that cannot be read as one.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Reading failed.
    #[error("pack {pack}: {source}")]
    Io {
        /// The pack.
        pack: PackId,
        /// The cause.
        source: io::Error,
    },
    /// The plaintext header is not a strata pack header.
    #[error("pack {pack}: header is damaged or not a strata pack ({what})")]
    BadHeader {
        /// The pack.
        pack: PackId,
        /// What is wrong.
        what: &'static str,
    },
    /// A trailer or TOC did not open or decode.
    #[error("pack {pack}: checkpoint at offset {offset} is damaged: {what}")]
    BadCheckpoint {
        /// The pack.
        pack: PackId,
        /// Offset of the trailer or TOC.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

/// A checkpoint that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Writing the TOC or trailer failed; the pack was cut back to before it.
    #[error("writing checkpoint: {0}")]
    Write(io::Error),
    /// The sync failed: what the kernel held may be lost.
    #[error("syncing pack: {0}")]
    Sync(io::Error),
}

impl CheckpointError {
    /// The underlying I/O error.
    pub fn into_io(self) -> io::Error {
        match self {
            CheckpointError::Write(e) | CheckpointError::Sync(e) => e,
        }
    }
}

/// Where one object sits in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TocEntry {
    /// What it is.
    pub kind: Kind,
    /// Its id.
    pub id: ChunkId,
    /// Offset of the sealed bytes.
    pub offset: u64,
    /// Sealed length.
    pub len: u32,
    /// Plaintext length before compression.
    pub raw_len: u32,
}

impl TocEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Option<TocEntry> {
        if b.len() != TOC_ENTRY_LEN {
            return None;
        }
        Some(TocEntry {
            kind: Kind::from_byte(b[0])?,
            id: ChunkId::from_slice(&b[1..33])?,
            offset: u64::from_le_bytes(b[33..41].try_into().ok()?),
            len: u32::from_le_bytes(b[41..45].try_into().ok()?),
            raw_len: u32::from_le_bytes(b[45..49].try_into().ok()?),
        })
    }
}

/// Encodes a table of contents: count u32, entries.
pub fn encode_toc(entries: &[TocEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * TOC_ENTRY_LEN);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    entries.iter().for_each(|e| e.encode(&mut out));
    out
}

/// Decodes a table of contents; `None` when malformed.
pub fn decode_toc(b: &[u8]) -> Option<Vec<TocEntry>> {
    let count = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let body = &b[4..];
    if body.len() != count.checked_mul(TOC_ENTRY_LEN)? {
        return None;
    }
    body.chunks_exact(TOC_ENTRY_LEN)
        .map(TocEntry::decode)
        .collect()
}

/// A decoded trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Offset of this checkpoint's TOC.
    pub toc_offset: u64,
    /// Sealed length of the TOC.
    pub toc_len: u32,
    /// Checkpoint number, from 0.
    pub seq: u32,
    /// End of the previous trailer (the header's end for the first).
    pub prev_end: u64,
    /// Flags ([`TRAILER_FINAL`]).
    pub flags: u8,
}

impl Trailer {
    /// Encodes to exactly [`TRAILER_PLAIN_LEN`] bytes.
    pub fn encode(&self) -> [u8; TRAILER_PLAIN_LEN] {
        let mut out = [0u8; TRAILER_PLAIN_LEN];
        out[0..8].copy_from_slice(&self.toc_offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.toc_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.prev_end.to_le_bytes());
        out[24] = self.flags;
        out
    }

    /// Decodes; `None` when malformed.
    pub fn decode(b: &[u8]) -> Option<Trailer> {
        if b.len() != TRAILER_PLAIN_LEN || b[25..].iter().any(|&x| x != 0) || b[24] > TRAILER_FINAL
        {
            return None;
        }
        Some(Trailer {
            toc_offset: u64::from_le_bytes(b[0..8].try_into().ok()?),
            toc_len: u32::from_le_bytes(b[8..12].try_into().ok()?),
            seq: u32::from_le_bytes(b[12..16].try_into().ok()?),
            prev_end: u64::from_le_bytes(b[16..24].try_into().ok()?),
            flags: b[24],
        })
    }
}

/// The plaintext header of pack `id`.
pub fn header(id: PackId, suite: Suite) -> [u8; PACK_HEADER_LEN] {
    let mut h = [0u8; PACK_HEADER_LEN];
    h[..8].copy_from_slice(&PACK_MAGIC);
    h[8..10].copy_from_slice(&PACK_VERSION.to_le_bytes());
    h[10] = suite as u8;
    h[16..].copy_from_slice(id.as_bytes());
    h
}

/// Checks a pack header against the pack's name and the repository suite.
pub fn check_header(b: &[u8], id: PackId, suite: Suite) -> Result<(), PackError> {
    let bad = |what| PackError::BadHeader { pack: id, what };
    if b.len() < PACK_HEADER_LEN || b[..8] != PACK_MAGIC {
        return Err(bad("no pack magic"));
    }
    if u16::from_le_bytes([b[8], b[9]]) != PACK_VERSION {
        return Err(bad("unsupported pack version"));
    }
    if b[10] != suite as u8 {
        return Err(bad("cipher suite differs from the repository's"));
    }
    if b[11..16].iter().any(|&x| x != 0) {
        return Err(bad("reserved bytes are not zero"));
    }
    if b[16..PACK_HEADER_LEN] != id.0 {
        return Err(bad("pack id in header differs from its file name"));
    }
    Ok(())
}

fn toc_context(id: PackId, seq: u32) -> [u8; PACK_ID_LEN + 4] {
    let mut c = [0u8; PACK_ID_LEN + 4];
    c[..PACK_ID_LEN].copy_from_slice(id.as_bytes());
    c[PACK_ID_LEN..].copy_from_slice(&seq.to_le_bytes());
    c
}

/// Appends objects and checkpoints to one open pack.
pub struct PackWriter {
    id: PackId,
    file: Arc<dyn DiskFile>,
    len: u64,
    durable_len: u64,
    /// Bytes before this were handed to writeback already.
    written_back: u64,
    since_checkpoint: Vec<TocEntry>,
    seq: u32,
    prev_end: u64,
    finished: bool,
}

impl PackWriter {
    /// Starts a pack in `file` (empty) by writing its header.
    pub fn create(id: PackId, file: Box<dyn DiskFile>, suite: Suite) -> io::Result<PackWriter> {
        file.write_at(0, &header(id, suite))?;
        Ok(PackWriter {
            id,
            file: Arc::from(file),
            len: PACK_HEADER_LEN as u64,
            durable_len: 0,
            written_back: 0,
            since_checkpoint: Vec::new(),
            seq: 0,
            prev_end: PACK_HEADER_LEN as u64,
            finished: false,
        })
    }

    /// Continues a pack whose last intact checkpoint ends at `end` (the file
    /// must already be cut to that length).
    pub fn resume(
        id: PackId,
        file: Box<dyn DiskFile>,
        sealer: &Sealer,
        end: u64,
    ) -> Result<PackWriter, PackError> {
        let last = read_trailer(file.as_ref(), sealer, id, end)?;
        if last.flags & TRAILER_FINAL != 0 {
            return Err(PackError::BadCheckpoint {
                pack: id,
                offset: end,
                what: "pack is already finished".into(),
            });
        }
        Ok(PackWriter {
            id,
            file: Arc::from(file),
            len: end,
            durable_len: end,
            written_back: end,
            since_checkpoint: Vec::new(),
            seq: last.seq + 1,
            prev_end: end,
            finished: false,
        })
    }

    /// The pack's id.
    pub fn id(&self) -> PackId {
        self.id
    }

    /// Bytes written, synced or not.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether only the header is written.
    pub fn is_empty(&self) -> bool {
        self.len == PACK_HEADER_LEN as u64
    }

    /// The bytes appended since the last call, once there are at least
    /// `step` of them (or any, with `all`), to be written back early.
    pub fn take_writeback(
        &mut self,
        step: u64,
        all: bool,
    ) -> Option<(Arc<dyn DiskFile>, u64, u64)> {
        // A failed append cuts the pack back, possibly below the mark.
        let from = self.written_back.min(self.len);
        let new = self.len - from;
        if new == 0 || (new < step && !all) {
            return None;
        }
        self.written_back = self.len;
        Some((self.file.clone(), from, new))
    }

    /// Length as of the last synced checkpoint (0 before the first).
    pub fn durable_len(&self) -> u64 {
        self.durable_len
    }

    /// Appends one sealed object. On failure the pack is cut back to where it
    /// was, so no half object remains.
    pub fn append(
        &mut self,
        kind: Kind,
        id: ChunkId,
        sealed: &[u8],
        raw_len: u32,
    ) -> io::Result<TocEntry> {
        let entry = TocEntry {
            kind,
            id,
            offset: self.len,
            len: sealed.len() as u32,
            raw_len,
        };
        self.write(sealed)?;
        self.since_checkpoint.push(entry);
        Ok(entry)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self.file.write_at(self.len, bytes) {
            // Roll the tail back. If even that fails, the next write goes at
            // `len` over it, and recovery cuts it at the next open; the
            // caller gets the write's own error (with its errno) either way.
            if let Err(cut) = self.file.set_len(self.len) {
                tracing::warn!(error = %cut, "cannot cut back the tail of a failed pack write");
            }
            return Err(e);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Writes a checkpoint (TOC and trailer) and syncs the file. With
    /// `last`, the pack is finished and takes no more objects.
    pub fn checkpoint(&mut self, sealer: &Sealer, last: bool) -> Result<(), CheckpointError> {
        if self.finished || (self.since_checkpoint.is_empty() && !last) {
            return Ok(());
        }
        let start = self.len;
        let toc = sealer.seal(
            Kind::PackToc,
            &toc_context(self.id, self.seq),
            &encode_toc(&self.since_checkpoint),
        );
        let trailer = Trailer {
            toc_offset: self.len,
            toc_len: toc.len() as u32,
            seq: self.seq,
            prev_end: self.prev_end,
            flags: if last { TRAILER_FINAL } else { 0 },
        };
        let sealed_trailer = sealer.seal(Kind::PackTrailer, self.id.as_bytes(), &trailer.encode());
        debug_assert_eq!(sealed_trailer.len(), TRAILER_LEN);
        let mut both = toc;
        both.extend_from_slice(&sealed_trailer);
        self.write(&both).map_err(CheckpointError::Write)?;
        if let Err(e) = self.file.sync() {
            // Whether the checkpoint reached the disk is unknown; the caller
            // stops writing, and recovery finds the last intact one.
            self.len = start;
            return Err(CheckpointError::Sync(e));
        }
        self.since_checkpoint.clear();
        self.seq += 1;
        self.prev_end = self.len;
        self.durable_len = self.len;
        self.finished = last;
        Ok(())
    }
}

/// Reads one sealed object.
pub fn read_object(
    file: &dyn DiskFile,
    pack: PackId,
    offset: u64,
    len: u32,
) -> Result<Vec<u8>, PackError> {
    let mut buf = vec![0u8; len as usize];
    file.read_at(offset, &mut buf)
        .map_err(|source| PackError::Io { pack, source })?;
    Ok(buf)
}

/// Reads and opens the trailer that ends at `end`.
pub fn read_trailer(
    file: &dyn DiskFile,
    sealer: &Sealer,
    pack: PackId,
    end: u64,
) -> Result<Trailer, PackError> {
    let offset = end
        .checked_sub(TRAILER_LEN as u64)
        .filter(|&o| o >= PACK_HEADER_LEN as u64)
        .ok_or(PackError::BadCheckpoint {
            pack,
            offset: end,
            what: "pack too short for a trailer".into(),
        })?;
    let sealed = read_object(file, pack, offset, TRAILER_LEN as u32)?;
    let bad = |what: String| PackError::BadCheckpoint { pack, offset, what };
    let plain = sealer
        .open(Kind::PackTrailer, pack.as_bytes(), &sealed)
        .map_err(|e: SealError| bad(e.to_string()))?;
    let t = Trailer::decode(&plain).ok_or_else(|| bad("trailer fields are invalid".into()))?;
    if t.prev_end < PACK_HEADER_LEN as u64
        || t.toc_offset < t.prev_end
        || t.toc_offset.checked_add(t.toc_len as u64) != Some(offset)
    {
        return Err(bad("trailer points outside its segment".into()));
    }
    Ok(t)
}

/// Every object recorded by the checkpoints of a pack that ends (durably)
/// at `end`, in pack order, and whether the pack is finished.
pub fn read_toc(
    file: &dyn DiskFile,
    sealer: &Sealer,
    pack: PackId,
    end: u64,
) -> Result<(Vec<TocEntry>, bool), PackError> {
    let mut hdr = [0u8; PACK_HEADER_LEN];
    file.read_at(0, &mut hdr)
        .map_err(|source| PackError::Io { pack, source })?;
    check_header(&hdr, pack, sealer.suite())?;
    let mut segments = Vec::new();
    let mut end = end;
    let mut finished = None;
    let mut expected_seq: Option<u32> = None;
    while end > PACK_HEADER_LEN as u64 {
        let t = read_trailer(file, sealer, pack, end)?;
        let bad = |what: String| PackError::BadCheckpoint {
            pack,
            offset: t.toc_offset,
            what,
        };
        if let Some(seq) = expected_seq {
            if t.seq != seq || t.flags & TRAILER_FINAL != 0 {
                return Err(bad("checkpoint chain is out of order".into()));
            }
        }
        finished.get_or_insert(t.flags & TRAILER_FINAL != 0);
        let sealed = read_object(file, pack, t.toc_offset, t.toc_len)?;
        let plain = sealer
            .open(Kind::PackToc, &toc_context(pack, t.seq), &sealed)
            .map_err(|e| bad(e.to_string()))?;
        let entries =
            decode_toc(&plain).ok_or_else(|| bad("table of contents is malformed".into()))?;
        let mut at = t.prev_end;
        for e in &entries {
            if e.offset != at {
                return Err(bad(format!(
                    "object {} does not follow the previous one",
                    e.id.short()
                )));
            }
            at += e.len as u64;
        }
        if at != t.toc_offset {
            return Err(bad("objects do not fill the segment".into()));
        }
        segments.push(entries);
        if t.seq == 0 {
            if t.prev_end != PACK_HEADER_LEN as u64 {
                return Err(bad(
                    "first checkpoint does not start after the header".into()
                ));
            }
            break;
        }
        expected_seq = Some(t.seq - 1);
        end = t.prev_end;
    }
    segments.reverse();
    Ok((segments.concat(), finished.unwrap_or(false)))
}

/// The end of the last intact checkpoint of a pack whose tail may be torn,
/// found by trying candidate trailer positions from the end; an error if
/// the first few trailers that open all belong to broken chains.
pub fn find_last_checkpoint(
    file: &dyn DiskFile,
    sealer: &Sealer,
    pack: PackId,
) -> Result<Option<u64>, PackError> {
    let len = file
        .len()
        .map_err(|source| PackError::Io { pack, source })?;
    let min_end = (PACK_HEADER_LEN + TRAILER_LEN) as u64;
    if len < min_end {
        return Ok(None);
    }
    // Scan the tail in blocks, newest first; a trailer starts with the suite byte.
    const BLOCK: u64 = 1 << 20;
    const MAX_CANDIDATES: u32 = 8;
    let mut tries = 0;
    let mut hi = len;
    while hi >= min_end {
        let lo = hi.saturating_sub(BLOCK).max(min_end) - TRAILER_LEN as u64;
        let mut buf = vec![0u8; (hi - lo) as usize];
        file.read_at(lo, &mut buf)
            .map_err(|source| PackError::Io { pack, source })?;
        for start in (0..=buf.len() - TRAILER_LEN).rev() {
            if buf[start] != sealer.suite() as u8 {
                continue;
            }
            let end = lo + (start + TRAILER_LEN) as u64;
            let trailer = &buf[start..start + TRAILER_LEN];
            if sealer
                .open(Kind::PackTrailer, pack.as_bytes(), trailer)
                .is_ok()
            {
                // A trailer that opens but whose chain fails (a copy left in
                // a torn tail, or damage further back) is skipped, a few
                // times at most: each try walks the chain, and unbounded
                // tries would let a forged pack cost quadratic time.
                match read_toc(file, sealer, pack, end) {
                    Ok(_) => return Ok(Some(end)),
                    Err(e) if tries + 1 >= MAX_CANDIDATES => return Err(e),
                    Err(_) => tries += 1,
                }
            }
        }
        if lo + (TRAILER_LEN as u64) <= min_end {
            break;
        }
        hi = lo + TRAILER_LEN as u64 - 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::id::RepoId;
    use crate::store::io::{sim::SimDisk, Disk};

    fn sealer() -> Sealer {
        Sealer::new(Suite::Aes256GcmSiv, RepoId::random(), &rand::random())
    }

    #[test]
    fn golden_pack_header() {
        let id = PackId([0xab; 16]);
        let h = header(id, Suite::Aes256GcmSiv);
        let expected = format!(
            "{}{}{}{}{}",
            "535452415441504b",
            "0100",
            "01",
            "0000000000",
            "ab".repeat(16)
        );
        assert_eq!(hex::encode(h), expected);
        check_header(&h, id, Suite::Aes256GcmSiv).unwrap();
        assert!(check_header(&h, PackId([0; 16]), Suite::Aes256GcmSiv).is_err());
    }

    #[test]
    fn checkpoints_chain_and_torn_tails_are_found() {
        let s = sealer();
        let disk = SimDisk::new();
        let id = PackId::random();
        let mut w = PackWriter::create(id, disk.open("p", true).unwrap(), s.suite()).unwrap();
        let mut all = Vec::new();
        for round in 0..3u8 {
            for i in 0..4u8 {
                let obj = s.seal(Kind::Chunk, &[round, i], &vec![i; 100 + i as usize]);
                all.push(
                    w.append(Kind::Chunk, ChunkId([round * 10 + i; 32]), &obj, 100)
                        .unwrap(),
                );
            }
            w.checkpoint(&s, false).unwrap();
        }
        let durable = w.durable_len();
        w.append(
            Kind::Chunk,
            ChunkId([99; 32]),
            &s.seal(Kind::Chunk, b"", b"tail"),
            4,
        )
        .unwrap();
        let f = disk.open("p", false).unwrap();
        let (entries, finished) = read_toc(f.as_ref(), &s, id, durable).unwrap();
        assert_eq!(entries, all);
        assert!(!finished);
        assert!(
            read_toc(f.as_ref(), &s, id, f.len().unwrap()).is_err(),
            "torn tail is no checkpoint"
        );
        assert_eq!(
            find_last_checkpoint(f.as_ref(), &s, id).unwrap(),
            Some(durable)
        );
        w.checkpoint(&s, true).unwrap();
        let (entries, finished) = read_toc(f.as_ref(), &s, id, f.len().unwrap()).unwrap();
        assert_eq!(entries.len(), 13);
        assert!(finished);
    }

    #[test]
    fn toc_decoder_rejects_garbage() {
        assert!(decode_toc(&[]).is_none());
        assert!(decode_toc(&[1, 0, 0, 0]).is_none());
        assert!(decode_toc(&[0xff, 0xff, 0xff, 0xff, 1]).is_none());
        assert_eq!(decode_toc(&[0, 0, 0, 0]), Some(vec![]));
    }
}
