//! `pack::Trailer::decode` over arbitrary bytes (a trailer's plaintext).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::store::pack::Trailer;

fuzz_target!(|data: &[u8]| {
    if let Some(t) = Trailer::decode(data) {
        assert_eq!(&t.encode()[..], data, "trailer encoding is canonical");
    }
});
