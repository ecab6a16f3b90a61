//! The redb index: where every object lives and what every pack holds.
//!
//! Keys are ids that reveal nothing (keyed hashes, random pack names); every
//! value is sealed with the index key and bound to its table and key, so a
//! value copied to another row fails to open. See strata-format(5), "INDEX".

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::store::crypto::Sealer;
use crate::store::format::Kind;
use crate::store::id::{ChunkId, PackId};
use crate::store::io::IndexBackend;

const CHUNKS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("chunks");
const PACKS: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("packs");
/// Packs garbage collection has dropped from `packs` whose files may still
/// exist: deleted at the next open, then the row goes.
const DOOMED: TableDefinition<[u8; 16], ()> = TableDefinition::new("prune_doomed");

/// An index that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Another process holds the index open.
    #[error("the repository is in use by another process (is it mounted?)")]
    Locked,
    /// redb reported an error. Boxed, as a `redb::Error` would make this
    /// error, and every error holding it, larger by a third; the source is
    /// the box, whose text and source are the redb error's.
    #[error("index: {0}")]
    Db(#[source] Box<redb::Error>),
    /// A value did not open or decode.
    #[error("index row {table}/{key} is damaged: {what}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// Short key.
        key: String,
        /// What is wrong.
        what: String,
    },
}

/// Any redb error, as an [`IndexError::Db`].
pub(crate) fn db_err(e: impl Into<redb::Error>) -> IndexError {
    IndexError::Db(Box::new(e.into()))
}

/// Where a chunk's sealed bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The pack.
    pub pack: PackId,
    /// Offset in the pack.
    pub offset: u64,
    /// Sealed length.
    pub len: u32,
    /// Plaintext length.
    pub raw_len: u32,
}

impl Location {
    /// Encodes to 32 bytes.
    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(self.pack.as_bytes());
        b[16..24].copy_from_slice(&self.offset.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..32].copy_from_slice(&self.raw_len.to_le_bytes());
        b
    }
    /// Decodes; `None` when malformed.
    pub fn decode(b: &[u8]) -> Option<Location> {
        if b.len() != 32 {
            return None;
        }
        Some(Location {
            pack: PackId::from_slice(&b[..16])?,
            offset: u64::from_le_bytes(b[16..24].try_into().ok()?),
            len: u32::from_le_bytes(b[24..28].try_into().ok()?),
            raw_len: u32::from_le_bytes(b[28..32].try_into().ok()?),
        })
    }
}

/// Whether a pack still takes objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackState {
    /// In `open/`, appended to; `len` is the last synced checkpoint's end.
    Open = 0,
    /// Finished, in `packs/`.
    Finished = 1,
}

/// What the index knows of a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackRecord {
    /// Open or finished.
    pub state: PackState,
    /// Durable length: everything the index refers to lies below it.
    pub len: u64,
}

impl PackRecord {
    /// Encodes to 16 bytes.
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.state as u8;
        b[8..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }
    /// Decodes; `None` when malformed.
    pub fn decode(b: &[u8]) -> Option<PackRecord> {
        if b.len() != 16 || b[1..8].iter().any(|&x| x != 0) {
            return None;
        }
        let state = match b[0] {
            0 => PackState::Open,
            1 => PackState::Finished,
            _ => return None,
        };
        Some(PackRecord {
            state,
            len: u64::from_le_bytes(b[8..16].try_into().ok()?),
        })
    }
}

/// The index database and the key that seals its values.
pub struct Index {
    db: Database,
    sealer: Sealer,
}

impl Index {
    /// Opens (creating tables if new) the index on `backend`.
    pub fn open(backend: IndexBackend, sealer: Sealer) -> Result<Index, IndexError> {
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => IndexError::Locked,
                other => db_err(other),
            })?;
        // Create the tables only when they are missing, so opening an
        // existing index for reading writes nothing.
        let exists = {
            let tx = db.begin_read().map_err(db_err)?;
            tx.open_table(CHUNKS).is_ok() && tx.open_table(PACKS).is_ok()
        };
        if !exists {
            let tx = db.begin_write().map_err(db_err)?;
            tx.open_table(CHUNKS).map_err(db_err)?;
            tx.open_table(PACKS).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
        }
        Ok(Index { db, sealer })
    }

    fn open_value<T>(
        &self,
        kind: Kind,
        table: &'static str,
        key: &[u8],
        sealed: &[u8],
        decode: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<T, IndexError> {
        let corrupt = |what: String| IndexError::Corrupt {
            table,
            key: hex::encode(&key[..4]),
            what,
        };
        let plain = self
            .sealer
            .open(kind, key, sealed)
            .map_err(|e| corrupt(e.to_string()))?;
        decode(&plain).ok_or_else(|| corrupt("value does not decode".into()))
    }

    /// The database, for the tables of the layers above the store.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Where chunk `id` is, if indexed.
    pub fn chunk(&self, id: &ChunkId) -> Result<Option<Location>, IndexError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(CHUNKS).map_err(db_err)?;
        self.location(&table, id)
    }

    /// Where each of `ids` is, if indexed, as of one read transaction
    /// (cheaper than one each, for many).
    pub fn locate(&self, ids: &[ChunkId]) -> Result<Vec<Option<Location>>, IndexError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(CHUNKS).map_err(db_err)?;
        ids.iter().map(|id| self.location(&table, id)).collect()
    }

    fn location(
        &self,
        table: &impl ReadableTable<[u8; 32], &'static [u8]>,
        id: &ChunkId,
    ) -> Result<Option<Location>, IndexError> {
        match table.get(id.0).map_err(db_err)? {
            None => Ok(None),
            Some(v) => self
                .open_value(
                    Kind::IndexChunk,
                    "chunks",
                    id.as_bytes(),
                    v.value(),
                    Location::decode,
                )
                .map(Some),
        }
    }

    /// Every chunk and its location, in id order.
    pub fn chunks(&self) -> Result<Vec<(ChunkId, Location)>, IndexError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(CHUNKS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let id = ChunkId(k.value());
            out.push((
                id,
                self.open_value(
                    Kind::IndexChunk,
                    "chunks",
                    id.as_bytes(),
                    v.value(),
                    Location::decode,
                )?,
            ));
        }
        Ok(out)
    }

    /// Every pack the index knows.
    pub fn packs(&self) -> Result<Vec<(PackId, PackRecord)>, IndexError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(PACKS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let id = PackId(k.value());
            out.push((
                id,
                self.open_value(
                    Kind::IndexPack,
                    "packs",
                    id.as_bytes(),
                    v.value(),
                    PackRecord::decode,
                )?,
            ));
        }
        Ok(out)
    }

    /// Number of indexed chunks.
    pub fn chunk_count(&self) -> Result<u64, IndexError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        tx.open_table(CHUNKS).map_err(db_err)?.len().map_err(db_err)
    }

    /// Records chunks and pack states in one durable transaction. The caller
    /// has synced every pack byte these rows refer to.
    pub fn commit(
        &self,
        chunks: &[(ChunkId, Location)],
        packs: &[(PackId, PackRecord)],
    ) -> Result<(), IndexError> {
        self.commit_with(chunks, packs, &Doom::default())
    }

    /// [`Index::commit`], and in the same transaction drops the packs of
    /// `doom` and the chunk rows that point into them (before `chunks` are
    /// written, so a row moved to a new pack by this commit stays), and
    /// lists those packs in `prune_doomed` until their files are gone.
    pub fn commit_with(
        &self,
        chunks: &[(ChunkId, Location)],
        packs: &[(PackId, PackRecord)],
        doom: &Doom,
    ) -> Result<(), IndexError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(CHUNKS).map_err(db_err)?;
            let mut p = tx.open_table(PACKS).map_err(db_err)?;
            let mut d = tx.open_table(DOOMED).map_err(db_err)?;
            for id in &doom.chunks {
                let Some(v) = t.get(id.0).map_err(db_err)?.map(|v| v.value().to_vec()) else {
                    continue;
                };
                let loc = self.open_value(
                    Kind::IndexChunk,
                    "chunks",
                    id.as_bytes(),
                    &v,
                    Location::decode,
                )?;
                if doom.packs.contains(&loc.pack) {
                    t.remove(id.0).map_err(db_err)?;
                }
            }
            for pack in &doom.packs {
                p.remove(pack.0).map_err(db_err)?;
                d.insert(pack.0, ()).map_err(db_err)?;
            }
            drop((p, d));
            for (id, loc) in chunks {
                let v = self
                    .sealer
                    .seal(Kind::IndexChunk, id.as_bytes(), &loc.encode());
                t.insert(id.0, v.as_slice()).map_err(db_err)?;
            }
            let mut p = tx.open_table(PACKS).map_err(db_err)?;
            for (id, rec) in packs {
                let v = self
                    .sealer
                    .seal(Kind::IndexPack, id.as_bytes(), &rec.encode());
                p.insert(id.0, v.as_slice()).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Packs dropped by garbage collection whose files may still exist.
    pub fn doomed(&self) -> Result<Vec<PackId>, IndexError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let Ok(table) = tx.open_table(DOOMED) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            out.push(PackId(row.map_err(db_err)?.0.value()));
        }
        Ok(out)
    }

    /// Forgets doomed packs whose files are gone, durably.
    pub fn clear_doomed(&self, packs: &[PackId]) -> Result<(), IndexError> {
        if packs.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut d = tx.open_table(DOOMED).map_err(db_err)?;
            for pack in packs {
                d.remove(pack.0).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }
}

/// What a garbage-collection commit drops ([`Index::commit_with`]).
#[derive(Debug, Default)]
pub struct Doom {
    /// Packs to drop.
    pub packs: std::collections::HashSet<PackId>,
    /// Objects they hold: their rows go if they still point into them.
    pub chunks: Vec<ChunkId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::Suite;
    use crate::store::id::RepoId;
    use crate::store::io::{sim::SimDisk, Disk};

    #[test]
    fn values_are_sealed_and_round_trip() {
        let disk = SimDisk::new();
        let sealer = Sealer::new(Suite::Aes256GcmSiv, RepoId::random(), &rand::random());
        let idx = Index::open(disk.index_backend("i").unwrap(), sealer).unwrap();
        let loc = Location {
            pack: PackId([5; 16]),
            offset: 77,
            len: 1000,
            raw_len: 4000,
        };
        idx.commit(
            &[(ChunkId([1; 32]), loc)],
            &[(
                PackId([5; 16]),
                PackRecord {
                    state: PackState::Open,
                    len: 2000,
                },
            )],
        )
        .unwrap();
        assert_eq!(idx.chunk(&ChunkId([1; 32])).unwrap(), Some(loc));
        assert_eq!(idx.chunk(&ChunkId([2; 32])).unwrap(), None);
        assert_eq!(idx.packs().unwrap().len(), 1);
        let raw = disk.read("i").unwrap();
        assert!(
            !raw.windows(32).any(|w| *w == loc.encode()),
            "locations are not in the clear"
        );
    }

    #[test]
    fn decoders_reject_garbage() {
        assert!(Location::decode(&[0; 31]).is_none());
        assert!(PackRecord::decode(&[2; 16]).is_none());
    }

    #[test]
    fn a_redb_error_is_kept_as_the_source() {
        use crate::sys::chain::Chain;
        use std::error::Error;
        let disk = SimDisk::new();
        disk.write_atomic("i", &[0xa5; 8192]).unwrap();
        let sealer = Sealer::new(Suite::Aes256GcmSiv, RepoId::random(), &rand::random());
        let e = match Index::open(disk.index_backend("i").unwrap(), sealer) {
            Err(e) => e,
            Ok(_) => panic!("a file of garbage opened as an index"),
        };
        let IndexError::Db(db) = &e else {
            panic!("{e}")
        };
        let source = e.source().unwrap();
        assert!(source.downcast_ref::<Box<redb::Error>>().is_some());
        assert_eq!(source.to_string(), db.to_string());
        assert_eq!(e.to_string(), format!("index: {db}"));
        assert_eq!(Chain(&e).to_string(), e.to_string(), "quoted once");
    }
}
