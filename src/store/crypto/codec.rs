//! The chunk codec: id, compression and sealing of one chunk, and the
//! reverse, which yields data only after its id checked out.

use crate::store::crypto::{SealError, Sealer};
use crate::store::format::{Kind, COMPRESSION_LZ4, COMPRESSION_NONE, NONCE_LEN};
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
/// The bytes may be a window of the buffer they were read and opened in,
/// so that an uncompressed chunk is never copied out of it.
#[derive(Clone)]
pub struct Verified {
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
}

impl Verified {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
    /// The bytes, owned.
    pub fn into_vec(mut self) -> Vec<u8> {
        self.buf.truncate(self.range.end);
        self.buf.drain(..self.range.start);
        self.buf
    }
}

impl PartialEq for Verified {
    fn eq(&self, other: &Verified) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Verified {}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verified({} bytes)", self.range.len())
    }
}

/// Whether `packed` bytes standing for `len` save at least 1/16.
fn saves(packed: usize, len: usize) -> bool {
    packed + len / 16 < len
}

/// Bytes of each sample that predicts whether a chunk compresses.
const SAMPLE: usize = 8 << 10;

/// Whether `data` is worth trying to compress whole: a chunk of more than
/// a few samples is first tried on its start and its middle (as borg's
/// auto mode predicts its compressor), so an incompressible chunk (media,
/// encrypted or already compressed files) costs two small compressions
/// instead of a whole one. A chunk whose samples do not compress but whose
/// rest would is stored as it is; it only takes more room.
fn worth_compressing(data: &[u8]) -> bool {
    if data.len() < 4 * SAMPLE {
        return true;
    }
    let mid = data.len() / 2;
    [&data[..SAMPLE], &data[mid..mid + SAMPLE]]
        .iter()
        .any(|s| saves(lz4_flex::block::compress(s).len(), s.len()))
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

    /// Seals chunk `data` under `id`, compressed when that saves at least
    /// 1/16 (and its samples say it may, see [`worth_compressing`]).
    pub fn encode(&self, id: &ChunkId, data: &[u8]) -> Vec<u8> {
        self.encode_object(Kind::Chunk, id, data)
    }

    /// Seals an object of `kind` (see [`ChunkCodec::encode`]). The
    /// compressor writes into the sealed object's buffer, which is then
    /// encrypted in place; an object that does not compress is copied
    /// there once.
    pub fn encode_object(&self, kind: Kind, id: &ChunkId, data: &[u8]) -> Vec<u8> {
        if kind == Kind::Chunk && !worth_compressing(data) {
            return self
                .sealer
                .seal_with(kind, id.as_bytes(), 1 + data.len(), |out| {
                    out.push(COMPRESSION_NONE);
                    out.extend_from_slice(data);
                });
        }
        let bound = lz4_flex::block::get_maximum_output_size(data.len());
        self.sealer
            .seal_with(kind, id.as_bytes(), 1 + 4 + bound, |out| {
                let start = out.len();
                out.push(COMPRESSION_LZ4);
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                let body = out.len();
                out.resize(body + bound, 0);
                let n = lz4_flex::block::compress_into(data, &mut out[body..])
                    .expect("the output holds the compressor's bound");
                if saves(4 + n, data.len()) {
                    out.truncate(body + n);
                } else {
                    out.truncate(start);
                    out.push(COMPRESSION_NONE);
                    out.extend_from_slice(data);
                }
            })
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
        self.decode_owned(kind, id, sealed.to_vec(), max_len)
    }

    /// [`ChunkCodec::decode_object`] of a buffer the caller gives up (just
    /// read from a pack): it is opened in place, and an uncompressed object
    /// is returned as a window of it, never copied.
    pub fn decode_owned(
        &self,
        kind: Kind,
        id: &ChunkId,
        mut sealed: Vec<u8>,
        max_len: usize,
    ) -> Result<Verified, DecodeError> {
        let plain = self
            .sealer
            .open_in_place(kind, id.as_bytes(), &mut sealed)?;
        let plain_len = plain.len();
        let (&method, payload) = plain
            .split_first()
            .ok_or_else(|| DecodeError::Compression("empty plaintext".into()))?;
        let verified = match method {
            COMPRESSION_NONE => {
                // The plaintext starts after the suite byte and the nonce;
                // its payload after the method byte.
                let start = 1 + NONCE_LEN + 1;
                Verified {
                    buf: sealed,
                    range: start..start + plain_len - 1,
                }
            }
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
                let data = lz4_flex::decompress_size_prepended(payload)
                    .map_err(|e| DecodeError::Compression(e.to_string()))?;
                Verified {
                    range: 0..data.len(),
                    buf: data,
                }
            }
            other => return Err(DecodeError::Compression(format!("unknown method {other}"))),
        };
        if self.object_id(kind, verified.as_slice()) != *id {
            return Err(DecodeError::HashMismatch);
        }
        Ok(verified)
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

    /// A chunk whose samples do not compress is stored as it is, without
    /// compressing it whole; one whose samples do is compressed.
    #[test]
    fn samples_decide_whether_a_chunk_is_compressed() {
        let c = codec(Suite::Aes256GcmSiv);
        let noise = crate::store::chunker::tests::xorshift_bytes(9, 200_000);
        let method = |data: &[u8]| {
            let id = c.id(data);
            let sealed = c.encode(&id, data);
            assert_eq!(c.decode(&id, &sealed).unwrap().as_slice(), data);
            c.sealer.open(Kind::Chunk, id.as_bytes(), &sealed).unwrap()[0]
        };
        assert_eq!(method(&noise), COMPRESSION_NONE);
        // Text after noisy samples is not looked at: stored as it is.
        let mut mixed = noise.clone();
        for (i, b) in mixed[SAMPLE..100_000 - SAMPLE].iter_mut().enumerate() {
            *b = b"abcdefgh"[i % 8];
        }
        assert!(!worth_compressing(&mixed));
        // Database pages half zeros, and small chunks, are compressed.
        let mut pages = noise.clone();
        for page in pages.chunks_mut(8192) {
            let half = page.len() / 2;
            page[half..].fill(0);
        }
        assert_eq!(method(&pages), COMPRESSION_LZ4);
        assert_eq!(method(&vec![7u8; 3 * SAMPLE]), COMPRESSION_LZ4);
    }

    #[test]
    fn a_chunk_stored_under_another_id_is_rejected() {
        let c = codec(Suite::Plain);
        let (a, b) = (b"first".to_vec(), b"second".to_vec());
        let sealed = c.encode(&c.id(&a), &a);
        assert!(c.decode(&c.id(&b), &sealed).is_err());
    }

    /// The encoder writes what the format has always said (method byte,
    /// then for lz4 the size as u32 LE and the block): an object sealed the
    /// plain way decodes, and a new object opens and decompresses the plain
    /// way.
    #[test]
    fn in_place_coding_keeps_the_format() {
        let c = codec(Suite::Aes256GcmSiv);
        for data in [
            vec![b'z'; 70_000],
            crate::store::chunker::tests::xorshift_bytes(7, 70_000),
        ] {
            let id = c.id(&data);
            let compressed = lz4_flex::compress_prepend_size(&data);
            let old = if compressed.len() + data.len() / 16 < data.len() {
                c.sealer.seal_parts(
                    Kind::Chunk,
                    id.as_bytes(),
                    &[&[COMPRESSION_LZ4], &compressed],
                )
            } else {
                c.sealer
                    .seal_parts(Kind::Chunk, id.as_bytes(), &[&[COMPRESSION_NONE], &data])
            };
            assert_eq!(c.decode(&id, &old).unwrap().as_slice(), &data[..]);
            let new = c.encode(&id, &data);
            assert_eq!(new.len(), old.len(), "same method, same length");
            let plain = c.sealer.open(Kind::Chunk, id.as_bytes(), &new).unwrap();
            let decoded = match plain[0] {
                COMPRESSION_LZ4 => lz4_flex::decompress_size_prepended(&plain[1..]).unwrap(),
                _ => plain[1..].to_vec(),
            };
            assert_eq!(decoded, data);
        }
    }

    #[test]
    fn an_uncompressed_chunk_is_a_window_of_its_read_buffer() {
        let c = codec(Suite::Aes256GcmSiv);
        let data = crate::store::chunker::tests::xorshift_bytes(3, 50_000);
        let id = c.id(&data);
        let sealed = c.encode(&id, &data);
        let v = c
            .decode_owned(Kind::Chunk, &id, sealed.clone(), 1 << 20)
            .unwrap();
        assert_eq!(v.as_slice(), &data[..]);
        assert_eq!(v.buf.len(), sealed.len(), "no copy: the read buffer itself");
        assert_eq!(v.into_vec(), data);
        let mut forged = sealed;
        forged[40] ^= 1;
        assert!(c.decode_owned(Kind::Chunk, &id, forged, 1 << 20).is_err());
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
