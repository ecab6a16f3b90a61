//! `ChunkCodec::decode` / `decode_object` over arbitrary sealed bytes, for
//! both suites and every kind a pack stores.
//!
//! Byte 0: bit 0 picks the suite, the bits above it the kind (0 = chunk).
//! Bytes 1..33: the object id. Rest: the sealed object. Neither suite's tag
//! can be forged by mutation, so this covers the seal checks;
//! `chunk_decompress` covers what lies behind them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::store::chunker::ChunkerParams;
use strata::store::crypto::codec::ChunkCodec;
use strata::store::format::{Kind, MAX_OBJECT_LEN};
use strata::store::id::ChunkId;
use strata_fuzz::{pack_kind, sealer, KEY, SUITES};

fuzz_target!(|data: &[u8]| {
    if data.len() < 33 {
        return;
    }
    let suite = SUITES[(data[0] & 1) as usize];
    let kind = pack_kind(data[0] >> 1);
    let id = ChunkId::from_slice(&data[1..33]).expect("32 bytes");
    let sealed = &data[33..];
    let max_len = ChunkerParams::default().max_size as usize;
    let codec = ChunkCodec::new(KEY, sealer(suite), max_len);
    let result = if kind == Kind::Chunk {
        codec.decode(&id, sealed)
    } else {
        // As the store reads trees and snapshot records.
        codec.decode_object(kind, &id, sealed, MAX_OBJECT_LEN)
    };
    if let Ok(v) = result {
        assert_eq!(codec.object_id(kind, v.as_slice()), id);
    }
});
