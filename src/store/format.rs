//! Constants of the on-disk format, mirrored from strata-format(5).
//!
//! Every number that decides where a byte goes on disk lives here, so the man
//! page and the code can be compared line by line. Change nothing here without
//! bumping [`FORMAT_VERSION`] and describing the change in `man/strata-format.5`.

/// Version of the repository format written by this build.
pub const FORMAT_VERSION: u32 = 1;

/// Name of the plaintext repository configuration file.
pub const CONFIG_FILE: &str = "config";
/// Directory of key slots, one file per slot.
pub const KEYS_DIR: &str = "keys";
/// Directory of finished, immutable packs (`packs/XX/<pack id>`).
pub const PACKS_DIR: &str = "packs";
/// Directory of packs still being appended to (local disk only).
pub const OPEN_DIR: &str = "open";
/// The redb index.
pub const INDEX_FILE: &str = "index.redb";

/// First bytes of every pack file.
pub const PACK_MAGIC: [u8; 8] = *b"STRATAPK";
/// Version of the pack layout.
pub const PACK_VERSION: u16 = 1;
/// Pack header: magic, version u16, suite u8, reserved u8, reserved u32, pack id.
pub const PACK_HEADER_LEN: usize = 8 + 2 + 1 + 1 + 4 + PACK_ID_LEN;

/// Length of a repository id.
pub const REPO_ID_LEN: usize = 16;
/// Length of a pack id.
pub const PACK_ID_LEN: usize = 16;
/// Length of a chunk (or any object) id: a keyed BLAKE3 hash.
pub const OBJECT_ID_LEN: usize = 32;

/// Sealed object: suite u8, nonce, ciphertext, tag.
pub const NONCE_LEN: usize = 12;
/// Authentication tag length of every suite.
pub const TAG_LEN: usize = 16;
/// Bytes a seal adds to its plaintext.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Plaintext length of a pack trailer; a sealed trailer is fixed-size so it
/// can be found from the end of a pack.
pub const TRAILER_PLAIN_LEN: usize = 32;
/// Sealed length of a pack trailer.
pub const TRAILER_LEN: usize = TRAILER_PLAIN_LEN + SEAL_OVERHEAD;
/// Trailer flag: this checkpoint is the last, the pack is finished.
pub const TRAILER_FINAL: u8 = 1;
/// One table-of-contents entry: kind u8, id, offset u64, sealed len u32, raw len u32.
pub const TOC_ENTRY_LEN: usize = 1 + OBJECT_ID_LEN + 8 + 4 + 4;

/// Default of the config's `pack_size`: a pack is finished once it reaches
/// that many bytes.
pub const PACK_TARGET_SIZE: u64 = 64 << 20;

/// The pack sizes a config may set: 1 MiB to 4 GiB.
pub const PACK_SIZES: std::ops::RangeInclusive<u64> = 1 << 20..=1 << 32;
/// Upper bound of any single sealed object, so a corrupt length cannot make a
/// reader allocate without bound.
pub const MAX_OBJECT_LEN: usize = 32 << 20;

/// Chunk payload compression, the first plaintext byte of a chunk object.
pub const COMPRESSION_NONE: u8 = 0;
/// lz4 block format with the uncompressed length as a u32 prefix.
pub const COMPRESSION_LZ4: u8 = 1;

/// Domain string at the start of every piece of associated data.
pub const AD_DOMAIN: &[u8; 8] = b"strata/1";

/// Cipher suites. A repository uses one; every sealed object names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Suite {
    /// No confidentiality: payload in the clear, a keyed BLAKE3 tag that
    /// detects corruption (its key is stored in the config, so it does not
    /// stop a forger).
    Plain = 0,
    /// AES-256-GCM-SIV with a random 96-bit nonce per seal.
    Aes256GcmSiv = 1,
}

impl Suite {
    /// Decodes a suite byte.
    pub fn from_byte(b: u8) -> Option<Suite> {
        match b {
            0 => Some(Suite::Plain),
            1 => Some(Suite::Aes256GcmSiv),
            _ => None,
        }
    }

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Plain => "none",
            Suite::Aes256GcmSiv => "aes-256-gcm-siv",
        }
    }

    /// Parses a config-file name.
    pub fn from_name(name: &str) -> Option<Suite> {
        match name {
            "none" => Some(Suite::Plain),
            "aes-256-gcm-siv" => Some(Suite::Aes256GcmSiv),
            _ => None,
        }
    }
}

/// What a sealed object is; part of its associated data, so an object of one
/// kind can never be accepted as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// File content.
    Chunk = 1,
    /// A directory of a snapshot.
    Tree = 2,
    /// A snapshot record.
    Snapshot = 3,
    /// A pack's table of contents (one per checkpoint).
    PackToc = 4,
    /// A pack's fixed-size trailer.
    PackTrailer = 5,
    /// A value of the index's chunk table.
    IndexChunk = 6,
    /// A value of the index's pack table.
    IndexPack = 7,
    /// The master key wrapped in a key slot.
    KeySlot = 8,
    /// A value of the head's inode table.
    HeadInode = 9,
    /// A value of the head's directory-entry table.
    HeadDirent = 10,
    /// A value of the head's extended-attribute table.
    HeadXattr = 11,
    /// A value of the head's file-extent table.
    HeadExtent = 12,
    /// A value of the index's snapshot table.
    IndexSnapshot = 13,
    /// A backup run's record of a snapshot (status, hook outcomes).
    SnapshotRun = 14,
    /// A value of the index's run table.
    IndexSnapshotRun = 15,
    /// A legal hold placed on or released from a snapshot.
    SnapshotHold = 16,
    /// A value of the index's hold table.
    IndexSnapshotHold = 17,
    /// What is left of a forgotten snapshot: its link in the hash chain.
    SnapshotTombstone = 18,
    /// A value of the index's tombstone table.
    IndexSnapshotTombstone = 19,
    /// A restore drill's record: what was read, how long it took, the verdict.
    Drill = 20,
    /// A value of the index's drill table.
    IndexDrill = 21,
    /// A value of the catalog's directory table: one directory path and
    /// the versions of its entries across snapshots.
    IndexCatalogDir = 22,
    /// The catalog's tip: the newest snapshot it has taken in.
    IndexCatalogTip = 23,
    /// A record of the audit log (22 and 23 belong to the catalog).
    Audit = 24,
    /// A record of the index's audit table.
    IndexAudit = 25,
    /// The audit log's head: its newest record's number and chain hash.
    IndexAuditHead = 26,
}

impl Kind {
    /// Decodes a kind byte; objects stored in packs only.
    pub fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Chunk),
            2 => Some(Kind::Tree),
            3 => Some(Kind::Snapshot),
            14 => Some(Kind::SnapshotRun),
            16 => Some(Kind::SnapshotHold),
            18 => Some(Kind::SnapshotTombstone),
            20 => Some(Kind::Drill),
            24 => Some(Kind::Audit),
            _ => None,
        }
    }
}

/// Contexts of the BLAKE3 key derivation from the master key.
pub mod derive {
    /// Key of chunk ids (keyed BLAKE3 of the plaintext).
    pub const ID: &str = "strata 2026-11 object id key";
    /// Key sealing objects in packs.
    pub const BLOB: &str = "strata 2026-11 blob key";
    /// Key sealing index values.
    pub const INDEX: &str = "strata 2026-11 index value key";
    /// Key of the names hashed into index keys.
    pub const NAME: &str = "strata 2026-11 name hash key";
    /// Seed of the chunker's gear table.
    pub const CHUNKER: &str = "strata 2026-11 chunker gear";
    /// Key authenticating the config file.
    pub const CONFIG: &str = "strata 2026-11 config mac";
    /// Per-tier data keys: input is master key || tier number (u32 LE).
    pub const TIER: &str = "strata 2026-11 tier data key";
    /// Id key of objects other than chunks: input is the id key || kind byte.
    pub const KIND_ID: &str = "strata 2026-11 object id key per kind";
    /// Key of a key-file slot: input is the key file's 32 secret bytes.
    pub const KEY_FILE: &str = "strata 2026-11 key file";
}
