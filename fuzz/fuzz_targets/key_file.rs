//! `crypto::slot::decode_key_file` over arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::store::crypto::slot::{decode_key_file, encode_key_file};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(secret) = decode_key_file(text) {
        let again = decode_key_file(&encode_key_file(&secret)).expect("encoded key file decodes");
        assert_eq!(*again, *secret);
    }
});
