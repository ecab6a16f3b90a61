//! `index::PackRecord::decode` over arbitrary bytes (an index value's plaintext).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::store::index::PackRecord;

fuzz_target!(|data: &[u8]| {
    if let Some(rec) = PackRecord::decode(data) {
        assert_eq!(&rec.encode()[..], data, "pack record encoding is canonical");
    }
});
