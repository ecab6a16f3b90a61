//! `Sealer::open` over arbitrary sealed bytes, for both suites and every kind.
//!
//! Byte 0: bit 0 picks the suite. Byte 1 picks the kind. Byte 2: context
//! length (mod 49). Then the context, then the sealed object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::store::crypto::SealError;
use strata::store::format::SEAL_OVERHEAD;
use strata_fuzz::{any_kind, sealer, SUITES};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let suite = SUITES[(data[0] & 1) as usize];
    let kind = any_kind(data[1]);
    let ctx_len = (data[2] as usize % 49).min(data.len() - 3);
    let (context, sealed) = data[3..].split_at(ctx_len);
    let s = sealer(suite);
    match s.open(kind, context, sealed) {
        Ok(plain) => {
            assert_eq!(plain.len() + SEAL_OVERHEAD, sealed.len());
            // What opened opens nowhere else.
            let other = any_kind(data[1].wrapping_add(1));
            assert_eq!(s.open(other, context, sealed), Err(SealError::Forged));
        }
        Err(SealError::Truncated { len }) => assert!(len < SEAL_OVERHEAD),
        Err(_) => {}
    }
    // Sealing the sealed bytes as plaintext opens back to them.
    let again = s.seal(kind, context, sealed);
    assert_eq!(s.open(kind, context, &again).as_deref(), Ok(sealed));
});
