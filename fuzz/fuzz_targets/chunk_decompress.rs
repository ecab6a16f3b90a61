//! `ChunkCodec::decode_object` behind the seal: fuzzer-chosen plaintext
//! (compression byte, then payload; for lz4 a u32 size prefix and a block)
//! sealed with a known `none`-suite key, as anyone who can write to an
//! unencrypted repository can. Decoding must refuse it or return data whose
//! id matches; it must not panic, and lz4's size prefix must not make it
//! allocate past the limit (libFuzzer's -malloc_limit_mb catches that).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use strata::store::crypto::codec::ChunkCodec;
use strata::store::format::{Kind, Suite};
use strata::store::id::ChunkId;
use strata_fuzz::{pack_kind, sealer, KEY};

/// Largest object the codec accepts here (small keeps runs fast; the
/// allocation bound is what is tested).
const MAX_LEN: usize = 1 << 20;

#[derive(Arbitrary, Debug)]
enum Input {
    /// Hostile plaintext stored under a chosen id.
    Hostile {
        kind: u8,
        method: u8,
        payload: Vec<u8>,
        id: [u8; 32],
    },
    /// Hostile plaintext stored under the id of `claimed`, so that if it
    /// decodes to `claimed` decode must succeed.
    Claimed {
        kind: u8,
        method: u8,
        payload: Vec<u8>,
        claimed: Vec<u8>,
    },
    /// An lz4 payload with its size prefix replaced.
    Resized { kind: u8, data: Vec<u8>, size: u32 },
    /// A genuine object: must round-trip.
    Genuine { kind: u8, data: Vec<u8>, repeat: u8 },
}

fuzz_target!(|input: Input| {
    let codec = ChunkCodec::new(KEY, sealer(Suite::Plain), MAX_LEN);
    let seal = |kind: Kind, id: &ChunkId, method: u8, payload: &[u8]| {
        codec
            .sealer()
            .seal_parts(kind, id.as_bytes(), &[&[method], payload])
    };
    let decode = |kind: Kind, id: &ChunkId, sealed: &[u8]| {
        let r = if kind == Kind::Chunk {
            codec.decode(id, sealed)
        } else {
            codec.decode_object(kind, id, sealed, MAX_LEN)
        };
        if let Ok(v) = &r {
            assert!(v.as_slice().len() <= MAX_LEN.max(sealed.len()));
            assert_eq!(
                codec.object_id(kind, v.as_slice()),
                *id,
                "decode returned data of another id"
            );
        }
        r
    };
    match input {
        Input::Hostile {
            kind,
            method,
            payload,
            id,
        } => {
            let kind = pack_kind(kind);
            let id = ChunkId(id);
            let _ = decode(kind, &id, &seal(kind, &id, method % 4, &payload));
        }
        Input::Claimed {
            kind,
            method,
            payload,
            claimed,
        } => {
            let kind = pack_kind(kind);
            let id = codec.object_id(kind, &claimed);
            let r = decode(kind, &id, &seal(kind, &id, method % 4, &payload));
            if method % 4 == 0 && payload == claimed {
                r.expect("uncompressed object of its own id decodes");
            }
        }
        Input::Resized { kind, data, size } => {
            let kind = pack_kind(kind);
            let mut compressed = lz4_flex::compress_prepend_size(&data);
            compressed[..4].copy_from_slice(&size.to_le_bytes());
            let id = codec.object_id(kind, &data);
            let r = decode(kind, &id, &seal(kind, &id, 1, &compressed));
            if size as usize == data.len() && data.len() <= MAX_LEN {
                assert_eq!(r.expect("genuine lz4 object decodes").as_slice(), &data[..]);
            }
        }
        Input::Genuine { kind, data, repeat } => {
            let kind = pack_kind(kind);
            let data = data.repeat(1 + repeat as usize % 8);
            if data.len() > MAX_LEN {
                return;
            }
            let id = codec.object_id(kind, &data);
            let sealed = codec.encode_object(kind, &id, &data);
            let r = decode(kind, &id, &sealed);
            assert_eq!(r.expect("genuine object decodes").as_slice(), &data[..]);
        }
    }
});
