//! The head's sealed redb values and the snapshot objects, decoded by
//! `head::records::open` (postcard behind the seal): fuzzer-chosen plaintext
//! sealed with a known `none`-suite key, then opened as each record type. A
//! value that decodes must survive `records::seal` and `open` unchanged.
//!
//! Byte 0 picks the type; the rest is the plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};
use strata::store::format::{Kind, Suite};
use strata::tree::head::records::{self, DirentRecord, ExtentRecord, InodeRecord, XattrRecord};
use strata::tree::objects::{SnapshotRecord, SnapshotRow, Tree};
use strata_fuzz::sealer;

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(kind: Kind, plain: &[u8]) {
    let s = sealer(Suite::Plain);
    let key = b"row key";
    let sealed = s.seal(kind, key, plain);
    if let Ok(v) = records::open::<T>(&s, kind, key, &sealed) {
        let again = records::seal(&s, kind, key, &v);
        let back: T = records::open(&s, kind, key, &again).expect("a sealed record opens");
        assert_eq!(back, v);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, plain)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => check::<InodeRecord>(Kind::HeadInode, plain),
        1 => check::<DirentRecord>(Kind::HeadDirent, plain),
        2 => check::<XattrRecord>(Kind::HeadXattr, plain),
        3 => check::<ExtentRecord>(Kind::HeadExtent, plain),
        4 => check::<Tree>(Kind::Tree, plain),
        5 => check::<SnapshotRecord>(Kind::Snapshot, plain),
        _ => check::<SnapshotRow>(Kind::IndexSnapshot, plain),
    }
});
