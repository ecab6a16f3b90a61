//! `Config::parse` over arbitrary text, then `verify`, and a render/parse
//! round trip of whatever parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::store::config::Config;
use strata_fuzz::KEY;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = Config::parse(text) else {
        return;
    };
    let _ = c.verify(&KEY);
    let _ = c.verify(&[0xff; 32]);
    let rendered = c.render();
    let again = Config::parse(&rendered).expect("a rendered config parses");
    assert_eq!(again, c, "config does not survive render and parse");
    let mut signed = c.clone();
    signed.sign(&KEY);
    signed
        .verify(&KEY)
        .expect("a config verifies under the key it was signed with");
});
