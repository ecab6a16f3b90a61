//! `pack::decode_toc` over arbitrary bytes (a TOC's plaintext after opening).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::store::pack::{decode_toc, encode_toc};

fuzz_target!(|data: &[u8]| {
    if let Some(entries) = decode_toc(data) {
        // The encoding is canonical: what decodes re-encodes to the same bytes.
        assert_eq!(encode_toc(&entries), data);
    }
});
