//! `pack::check_header` over arbitrary bytes: byte 0 picks the suite, bytes
//! 1..17 the pack id the header must name, the rest is the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::store::format::PACK_HEADER_LEN;
use strata::store::id::PackId;
use strata::store::pack::{check_header, header};
use strata_fuzz::SUITES;

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let suite = SUITES[(data[0] & 1) as usize];
    let id = PackId::from_slice(&data[1..17]).expect("16 bytes");
    let hdr = &data[17..];
    if check_header(hdr, id, suite).is_ok() {
        // Only the header that `header` writes is accepted (trailing bytes
        // past it are the pack's objects).
        assert_eq!(&hdr[..PACK_HEADER_LEN], &header(id, suite)[..]);
    }
});
