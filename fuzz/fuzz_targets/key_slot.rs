//! `KeySlot::parse` over arbitrary text; a slot that parses must render and
//! parse back to itself, and `open` must not panic. A key-file secret never
//! runs Argon2; a passphrase is tried only on slots whose Argon2id cost is
//! tiny (a slot may legitimately ask for gigabytes and hours).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::store::crypto::slot::{KeySlot, Secret};
use strata::store::id::RepoId;
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(slot) = KeySlot::parse(text) else {
        return;
    };
    let again = KeySlot::parse(&slot.render()).expect("a rendered slot parses");
    assert_eq!(again, slot, "slot does not survive render and parse");
    let repo = RepoId([0; 16]);
    let _ = slot.open(repo, &Secret::KeyFile(Zeroizing::new([0x11; 32])));
    let cheap = slot
        .kdf
        .is_none_or(|k| k.memory_kib <= 64 && k.iterations <= 4 && k.parallelism <= 4);
    if cheap {
        let _ = slot.open(repo, &Secret::Passphrase(Zeroizing::new("pw".into())));
    }
});
