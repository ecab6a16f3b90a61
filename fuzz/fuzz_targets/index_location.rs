//! `index::Location::decode` over arbitrary bytes (an index value's plaintext).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::store::index::Location;

fuzz_target!(|data: &[u8]| {
    if let Some(loc) = Location::decode(data) {
        assert_eq!(&loc.encode()[..], data, "location encoding is canonical");
    }
});
