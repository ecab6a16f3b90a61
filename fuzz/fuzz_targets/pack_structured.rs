//! A valid pack written by `PackWriter` from fuzzer-chosen objects and
//! checkpoints, then damaged by fuzzer-chosen flips, overwrites, copies,
//! truncation and appended bytes. `read_toc` and `find_last_checkpoint` must
//! not panic; whatever they accept must lie inside the file; and damage that
//! only touches bytes after the last synced checkpoint must not change what
//! they find.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use strata::store::id::ChunkId;
use strata::store::io::Disk;
use strata::store::pack::{PackWriter, TocEntry};
use strata_fuzz::{pack_kind, read_pack, sealer, PACK, SUITES};

#[derive(Arbitrary, Debug)]
struct Object {
    kind: u8,
    id: u8,
    /// Payload length (mod 512), filled with `fill`.
    len: u16,
    fill: u8,
}

#[derive(Arbitrary, Debug)]
enum Damage {
    Flip {
        at: u32,
        xor: u8,
    },
    Overwrite {
        at: u32,
        bytes: Vec<u8>,
    },
    /// Copies `len` bytes from `from` to `to`: a trailer or TOC moved.
    Copy {
        from: u32,
        to: u32,
        len: u16,
    },
    Truncate {
        at: u32,
    },
    Append {
        bytes: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    aes: bool,
    /// Each inner list is followed by a checkpoint.
    segments: Vec<Vec<Object>>,
    /// Objects after the last checkpoint: an uncommitted tail, or with
    /// `finish` part of the final checkpoint.
    tail: Vec<Object>,
    finish: bool,
    damage: Vec<Damage>,
    end: u32,
}

fuzz_target!(|input: Input| {
    let suite = SUITES[input.aes as usize];
    let s = sealer(suite);
    let disk = strata::store::io::sim::SimDisk::new();
    let mut w = PackWriter::create(PACK, disk.open("p", true).unwrap(), suite).unwrap();
    let mut written: Vec<TocEntry> = Vec::new();
    let append = |w: &mut PackWriter, o: &Object| {
        let kind = pack_kind(o.kind);
        let id = ChunkId([o.id; 32]);
        let plain = vec![o.fill; o.len as usize % 512];
        let sealed = s.seal(kind, id.as_bytes(), &plain);
        w.append(kind, id, &sealed, plain.len() as u32).unwrap()
    };
    for seg in input.segments.iter().take(8) {
        for o in seg.iter().take(16) {
            written.push(append(&mut w, o));
        }
        w.checkpoint(&s, false).unwrap();
    }
    let mut durable_entries = written.clone();
    for o in input.tail.iter().take(16) {
        written.push(append(&mut w, o));
    }
    if input.finish {
        w.checkpoint(&s, true).unwrap();
        durable_entries = written.clone();
    }
    let durable = w.durable_len();
    let file = disk.open("p", false).unwrap();

    // The undamaged pack reads back as written.
    if durable > 0 {
        let (entries, finished) = strata::store::pack::read_toc(file.as_ref(), &s, PACK, durable)
            .expect("undamaged pack reads");
        assert_eq!(entries, durable_entries);
        assert_eq!(finished, input.finish);
    }
    assert_eq!(
        strata::store::pack::find_last_checkpoint(file.as_ref(), &s, PACK).unwrap(),
        (durable > 0).then_some(durable)
    );

    // Damage it, remembering the lowest byte that changed.
    let mut lowest = u64::MAX;
    for d in input.damage.iter().take(8) {
        let len = file.len().unwrap();
        if len == 0 {
            break;
        }
        match d {
            Damage::Flip { at, xor } => {
                let at = *at as u64 % len;
                let mut b = [0u8; 1];
                file.read_at(at, &mut b).unwrap();
                b[0] ^= xor;
                file.write_at(at, &b).unwrap();
                if *xor != 0 {
                    lowest = lowest.min(at);
                }
            }
            Damage::Overwrite { at, bytes } => {
                let at = *at as u64 % len;
                let bytes = &bytes[..bytes.len().min((len - at) as usize)];
                file.write_at(at, bytes).unwrap();
                if !bytes.is_empty() {
                    lowest = lowest.min(at);
                }
            }
            Damage::Copy { from, to, len: n } => {
                let from = *from as u64 % len;
                let to = *to as u64 % len;
                let n = (*n as u64).min(len - from).min(len - to);
                let mut buf = vec![0u8; n as usize];
                file.read_at(from, &mut buf).unwrap();
                file.write_at(to, &buf).unwrap();
                if n > 0 {
                    lowest = lowest.min(to);
                }
            }
            Damage::Truncate { at } => {
                let at = *at as u64 % len;
                file.set_len(at).unwrap();
                lowest = lowest.min(at);
            }
            Damage::Append { bytes } => {
                file.write_at(len, bytes).unwrap();
            }
        }
    }

    let len = file.len().unwrap();
    let end = input.end as u64 % (len + 1);
    read_pack(file.as_ref(), &s, end);
    let last = read_pack(file.as_ref(), &s, len).last;

    if durable > 0 && lowest >= durable {
        // Damage only after the last checkpoint: recovery finds it intact.
        let (entries, finished) = strata::store::pack::read_toc(file.as_ref(), &s, PACK, durable)
            .expect("pack with an intact checkpoint reads");
        assert_eq!(entries, durable_entries);
        assert_eq!(finished, input.finish);
        assert_eq!(last, Some(durable), "recovery lost an intact checkpoint");
    }
});
