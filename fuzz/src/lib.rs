//! Helpers shared by the fuzz targets: fixed keys and ids, a simulated pack
//! file, and the checks every pack reader result must pass.

use strata::store::crypto::Sealer;
use strata::store::format::{Kind, Suite, PACK_HEADER_LEN};
use strata::store::id::{PackId, RepoId};
use strata::store::io::sim::SimDisk;
use strata::store::io::{Disk, DiskFile};
use strata::store::pack::TocEntry;

/// The pack every pack target reads.
pub const PACK: PackId = PackId([0x5a; 16]);

/// The key of every sealer. With the `none` suite this key is stored in the
/// repository config, so anyone who can write to a repository can forge.
pub const KEY: [u8; 32] = [0; 32];

/// Both suites, in the order a selector bit picks them.
pub const SUITES: [Suite; 2] = [Suite::Plain, Suite::Aes256GcmSiv];

/// A sealer of `suite` with the fixed repository id and key.
pub fn sealer(suite: Suite) -> Sealer {
    Sealer::new(suite, RepoId([0; 16]), &KEY)
}

/// Every kind, including those never stored in packs.
pub const KINDS: [Kind; 13] = [
    Kind::Chunk,
    Kind::Tree,
    Kind::Snapshot,
    Kind::PackToc,
    Kind::PackTrailer,
    Kind::IndexChunk,
    Kind::IndexPack,
    Kind::KeySlot,
    Kind::HeadInode,
    Kind::HeadDirent,
    Kind::HeadXattr,
    Kind::HeadExtent,
    Kind::IndexSnapshot,
];

/// Every kind by a selector byte.
pub fn any_kind(b: u8) -> Kind {
    KINDS[b as usize % KINDS.len()]
}

/// The kinds a pack stores, by a selector byte.
pub fn pack_kind(b: u8) -> Kind {
    match b % 3 {
        0 => Kind::Chunk,
        1 => Kind::Tree,
        _ => Kind::Snapshot,
    }
}

/// Associated-data context of the TOC of checkpoint `seq` (mirrors the
/// private `pack::toc_context`: pack id, then seq as u32 LE).
pub fn toc_context(pack: PackId, seq: u32) -> [u8; 20] {
    let mut c = [0u8; 20];
    c[..16].copy_from_slice(pack.as_bytes());
    c[16..].copy_from_slice(&seq.to_le_bytes());
    c
}

/// A simulated disk holding `bytes` as the pack file `p`.
pub fn pack_file(bytes: &[u8]) -> (SimDisk, Box<dyn DiskFile>) {
    let disk = SimDisk::new();
    let f = disk.open("p", true).expect("sim open");
    if !bytes.is_empty() {
        f.write_at(0, bytes).expect("sim write");
    }
    (disk, f)
}

/// What `read_toc` promises when it accepts a pack ending at `end`: objects
/// follow the header and each other without gaps, and lie inside the file
/// below `end`.
pub fn check_entries(entries: &[TocEntry], end: u64, file_len: u64) {
    assert!(
        end <= file_len,
        "read_toc accepted end {end} past the file ({file_len})"
    );
    let mut at = PACK_HEADER_LEN as u64;
    for e in entries {
        assert!(
            e.offset >= at,
            "entry {e:?} overlaps the previous one or the header"
        );
        let stop = e
            .offset
            .checked_add(e.len as u64)
            .unwrap_or_else(|| panic!("entry {e:?} wraps around"));
        assert!(stop <= end, "entry {e:?} ends past {end}");
        at = stop;
    }
}

/// What the pack readers made of a file.
pub struct Reads {
    /// `read_toc` at the given end.
    pub at_end: Result<(Vec<TocEntry>, bool), strata::store::pack::PackError>,
    /// `find_last_checkpoint`.
    pub last: Option<u64>,
}

/// Runs both pack readers over `file`, as `strata check` and `strata repair`
/// do: `read_toc` at `end` (at most the file length, as every caller passes),
/// then `find_last_checkpoint` and `read_toc` at what it found, checking
/// what they accept.
pub fn read_pack(file: &dyn DiskFile, sealer: &Sealer, end: u64) -> Reads {
    let len = file.len().expect("sim len");
    let at_end = strata::store::pack::read_toc(file, sealer, PACK, end);
    if let Ok((entries, _)) = &at_end {
        check_entries(entries, end, len);
    }
    // A damaged chain below the newest trailer is an error (the pack is
    // damaged), never a panic; only I/O errors cannot happen on this file.
    let last = match strata::store::pack::find_last_checkpoint(file, sealer, PACK) {
        Ok(last) => last,
        Err(strata::store::pack::PackError::Io { source, .. }) => {
            panic!("I/O error on a readable file: {source}")
        }
        Err(_) => None,
    };
    if let Some(e) = last {
        assert!(e <= len, "checkpoint end {e} past the file ({len})");
        let (entries, _) = strata::store::pack::read_toc(file, sealer, PACK, e)
            .expect("find_last_checkpoint returned an end read_toc refuses");
        check_entries(&entries, e, len);
    }
    Reads { at_end, last }
}
