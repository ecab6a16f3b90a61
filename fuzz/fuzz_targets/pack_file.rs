//! A whole pack file of arbitrary bytes through `pack::read_toc` and
//! `pack::find_last_checkpoint`, for both suites.
//!
//! Byte 0: bit 0 picks the suite; bit 1 puts a valid header for the pack in
//! front of the rest, so the fuzzer gets past the header check at once.
//! Bytes 1..5: where `read_toc` is told the pack ends, taken modulo the file
//! length + 1 (callers never pass more than the file length).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::store::pack::header;
use strata_fuzz::{pack_file, read_pack, sealer, PACK, SUITES};

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let suite = SUITES[(data[0] & 1) as usize];
    let mut bytes = Vec::with_capacity(data.len() + 32);
    if data[0] & 2 != 0 {
        bytes.extend_from_slice(&header(PACK, suite));
    }
    bytes.extend_from_slice(&data[5..]);
    let (_disk, file) = pack_file(&bytes);
    let len = bytes.len() as u64;
    let end = u32::from_le_bytes(data[1..5].try_into().expect("4 bytes")) as u64 % (len + 1);
    let s = sealer(suite);
    read_pack(file.as_ref(), &s, end);
    read_pack(file.as_ref(), &s, len);
});
