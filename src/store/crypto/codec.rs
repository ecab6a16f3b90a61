//! The chunk codec: id, compression and sealing of one chunk, and the
//! reverse, which yields data only after its id checked out.

use crate::store::crypto::{SealError, Sealer};
use crate::store::format::{Kind, COMPRESSION_LZ4, COMPRESSION_NONE};
use crate::store::id::ChunkId;

/// A chunk that cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The seal did not open.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The compression byte or the compressed stream is invalid.
    #[error("compressed payload is invalid: {0}")]
    Compression(String),
    /// Decoded bytes do not hash to the id they are stored under.
    #[error("content does not match its id")]
    HashMismatch,
}

/// Chunk bytes whose keyed hash matched their id. Only [`ChunkCodec::decode`]
/// makes one, so holding a `Verified` means the bytes are the ones stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Verified(Vec<u8>);

impl Verified {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
    /// The bytes, owned.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verified({} bytes)", self.0.len())
    }
}

/// Keys and limits needed to encode and decode chunks.
pub struct ChunkCodec {
    id_key: [u8; 32],
    sealer: Sealer,
    max_len: usize,
}

impl Drop for ChunkCodec {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.id_key);
    }
}

impl ChunkCodec {
    /// A codec with the id key, the blob sealer, and the largest chunk it accepts.
    pub fn new(id_key: [u8; 32], sealer: Sealer, max_len: usize) -> ChunkCodec {
        ChunkCodec {
            id_key,
            sealer,
            max_len,
        }
    }

    /// The id of chunk `data`: keyed BLAKE3.
    pub fn id(&self, data: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.id_key, data).as_bytes())
    }

    /// The id of an object of `kind`: chunks as [`ChunkCodec::id`]; other
    /// kinds are hashed under a key of their own (derived from the id key
    /// and the kind), so a tree can never share an id with a chunk.
    pub fn object_id(&self, kind: Kind, data: &[u8]) -> ChunkId {
        match kind {
            Kind::Chunk => self.id(data),
            other => {
                let mut input = [0u8; 33];
                input[..32].copy_from_slice(&self.id_key);
                input[32] = other as u8;
                let mut key = blake3::derive_key(crate::store::format::derive::KIND_ID, &input);
                let id = ChunkId(*blake3::keyed_hash(&key, data).as_bytes());
                zeroize::Zeroize::zeroize(&mut input);
                zeroize::Zeroize::zeroize(&mut key);
                id
            }
        }
    }

    /// The largest chunk accepted.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The sealer of pack objects.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Seals chunk `data` under `id`, compressed when that saves at least 1/16.
    pub fn encode(&self, id: &ChunkId, data: &[u8]) -> Vec<u8> {
        self.encode_object(Kind::Chunk, id, data)
    }

    /// Seals an object of `kind` (see [`ChunkCodec::encode`]).
    pub fn encode_object(&self, kind: Kind, id: &ChunkId, data: &[u8]) -> Vec<u8> {
        let compressed = lz4_flex::compress_prepend_size(data);
        if compressed.len() + data.len() / 16 < data.len() {
            let parts: [&[u8]; 2] = [&[COMPRESSION_LZ4], &compressed];
            self.sealer.seal_parts(kind, id.as_bytes(), &parts)
        } else {
            self.sealer
                .seal_parts(kind, id.as_bytes(), &[&[COMPRESSION_NONE], data])
        }
    }

    /// Opens, decompresses and verifies a sealed chunk.
    pub fn decode(&self, id: &ChunkId, sealed: &[u8]) -> Result<Verified, DecodeError> {
        self.decode_object(Kind::Chunk, id, sealed, self.max_len)
    }

    /// Opens, decompresses and verifies an object of `kind` of at most
    /// `max_len` bytes.
    pub fn decode_object(
        &self,
        kind: Kind,
        id: &ChunkId,
        sealed: &[u8],
        max_len: usize,
    ) -> Result<Verified, DecodeError> {
        let plain = self.sealer.open(kind, id.as_bytes(), sealed)?;
        let (&method, payload) = plain
            .split_first()
            .ok_or_else(|| DecodeError::Compression("empty plaintext".into()))?;
        let data = match method {
            COMPRESSION_NONE => payload.to_vec(),
            COMPRESSION_LZ4 => {
                let size = payload
                    .get(..4)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
                    .ok_or_else(|| DecodeError::Compression("no size prefix".into()))?;
                if size > max_len {
                    return Err(DecodeError::Compression(format!(
                        "claims {size} bytes, more than the largest object ({max_len})"
                    )));
                }
                lz4_flex::decompress_size_prepended(payload)
                    .map_err(|e| DecodeError::Compression(e.to_string()))?
            }
            other => return Err(DecodeError::Compression(format!("unknown method {other}"))),
        };
        if self.object_id(kind, &data) != *id {
            return Err(DecodeError::HashMismatch);
        }
        Ok(Verified(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::Suite;
    use crate::store::id::RepoId;
    use proptest::prelude::*;

    fn codec(suite: Suite) -> ChunkCodec {
        ChunkCodec::new(
            rand::random(),
            Sealer::new(suite, RepoId::random(), &rand::random()),
            1 << 20,
        )
    }

    #[test]
    fn compressible_chunks_shrink() {
        let c = codec(Suite::Aes256GcmSiv);
        let data = vec![b'a'; 100_000];
        let id = c.id(&data);
        let sealed = c.encode(&id, &data);
        assert!(sealed.len() < 2_000);
        assert_eq!(c.decode(&id, &sealed).unwrap().as_slice(), &data[..]);
    }

    #[test]
    fn a_chunk_stored_under_another_id_is_rejected() {
        let c = codec(Suite::Plain);
        let (a, b) = (b"first".to_vec(), b"second".to_vec());
        let sealed = c.encode(&c.id(&a), &a);
        assert!(c.decode(&c.id(&b), &sealed).is_err());
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(data in proptest::collection::vec(any::<u8>(), 0..20_000), repeat in 1usize..4) {
            let data = data.repeat(repeat);
            for suite in [Suite::Plain, Suite::Aes256GcmSiv] {
                let c = codec(suite);
                let id = c.id(&data);
                prop_assert_eq!(c.decode(&id, &c.encode(&id, &data)).unwrap().into_vec(), data.clone());
            }
        }
    }
}
