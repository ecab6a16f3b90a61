//! Pack files built from pieces the fuzzer chooses and seals with the known
//! key: objects, tables of contents with arbitrary entries, trailers with
//! arbitrary fields, raw bytes. In a repository created without encryption
//! the key is in the config, so anyone who can write a pack can do this; in
//! an encrypted one it needs the key, but a reader should still not panic.
//! `read_toc` and `find_last_checkpoint` must refuse or return entries that
//! lie inside the file.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use strata::store::format::{Kind, PACK_HEADER_LEN, TRAILER_PLAIN_LEN};
use strata::store::id::ChunkId;
use strata::store::pack::{encode_toc, header, TocEntry, Trailer};
use strata_fuzz::{pack_file, pack_kind, read_pack, sealer, toc_context, PACK, SUITES};

/// A number that is either given or taken from an earlier piece, so valid
/// chains are easy to reach and invalid ones easy to vary.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    /// Start of piece `n` (counted back from the newest, mod the count).
    Start(u8),
    /// End of piece `n`.
    End(u8),
    /// Length of piece `n`.
    Len(u8),
    /// The header's end.
    Header,
    /// A position near one of the above.
    Near(u8, i8),
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
struct Entry {
    kind: u8,
    id: u8,
    offset: Num,
    len: Num,
    raw_len: u32,
}

#[derive(Arbitrary, Debug)]
enum Piece {
    Raw(Vec<u8>),
    Object {
        kind: u8,
        id: u8,
        len: u8,
    },
    Toc {
        seq: u32,
        entries: Vec<Entry>,
    },
    /// A TOC whose plaintext is arbitrary bytes.
    RawToc {
        seq: u32,
        plain: Vec<u8>,
    },
    Trailer {
        toc_offset: Num,
        toc_len: Num,
        seq: u32,
        prev_end: Num,
        flags: u8,
    },
    /// A trailer whose plaintext is arbitrary (padded or cut to 32 bytes).
    RawTrailer(Vec<u8>),
    /// A TOC and trailer as `PackWriter` would write them for the objects
    /// since the previous checkpoint, then bent by `tweaks`.
    Checkpoint {
        last: bool,
        tweaks: Vec<Tweak>,
    },
}

/// A change to an otherwise valid checkpoint (offsets and lengths wrap).
#[derive(Arbitrary, Debug)]
enum Tweak {
    TocOffset(i64),
    TocLen(i32),
    Seq(u32),
    TocSeq(u32),
    PrevEnd(i64),
    Flags(u8),
    EntryOffset(u8, i64),
    EntryLen(u8, i32),
    DropEntry(u8),
    DupEntry(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    aes: bool,
    /// Replaces the valid header when present.
    bad_header: Option<Vec<u8>>,
    pieces: Vec<Piece>,
    end: u32,
}

fuzz_target!(|input: Input| {
    let suite = SUITES[input.aes as usize];
    let s = sealer(suite);
    let mut bytes = match &input.bad_header {
        Some(h) => h.clone(),
        None => header(PACK, suite).to_vec(),
    };
    // (start, end) of every piece so far.
    let mut spans: Vec<(u64, u64)> = Vec::new();
    // Objects since the last `Checkpoint` piece, its number and end.
    let mut pending: Vec<TocEntry> = Vec::new();
    let mut seq = 0u32;
    let mut prev_end = bytes.len() as u64;
    let resolve = |spans: &[(u64, u64)], n: Num| -> u64 {
        let pick = |i: u8| {
            if spans.is_empty() {
                (PACK_HEADER_LEN as u64, PACK_HEADER_LEN as u64)
            } else {
                spans[spans.len() - 1 - i as usize % spans.len()]
            }
        };
        match n {
            Num::Start(i) => pick(i).0,
            Num::End(i) => pick(i).1,
            Num::Len(i) => pick(i).1 - pick(i).0,
            Num::Header => PACK_HEADER_LEN as u64,
            Num::Near(i, d) => pick(i).1.wrapping_add_signed(d as i64),
            Num::Raw(x) => x,
        }
    };
    for piece in input.pieces.iter().take(24) {
        let start = bytes.len() as u64;
        let sealed = match piece {
            Piece::Raw(b) => b.clone(),
            Piece::Object { kind, id, len } => {
                let sealed = s.seal(pack_kind(*kind), &[*id; 32], &vec![*id; *len as usize]);
                pending.push(TocEntry {
                    kind: pack_kind(*kind),
                    id: ChunkId([*id; 32]),
                    offset: start,
                    len: sealed.len() as u32,
                    raw_len: *len as u32,
                });
                sealed
            }
            Piece::Checkpoint { last, tweaks } => {
                let mut entries = std::mem::take(&mut pending);
                let mut t = Trailer {
                    toc_offset: start,
                    toc_len: 0,
                    seq,
                    prev_end,
                    flags: *last as u8,
                };
                let mut toc_seq = seq;
                let mut toc_len_delta = None;
                for tw in tweaks.iter().take(4) {
                    let n = entries.len().max(1);
                    match *tw {
                        Tweak::TocOffset(d) => t.toc_offset = t.toc_offset.wrapping_add_signed(d),
                        Tweak::TocLen(d) => toc_len_delta = Some(d),
                        Tweak::Seq(x) => t.seq = x,
                        Tweak::TocSeq(x) => toc_seq = x,
                        Tweak::PrevEnd(d) => t.prev_end = t.prev_end.wrapping_add_signed(d),
                        Tweak::Flags(f) => t.flags = f,
                        Tweak::EntryOffset(i, d) => {
                            if let Some(e) = entries.get_mut(i as usize % n) {
                                e.offset = e.offset.wrapping_add_signed(d);
                            }
                        }
                        Tweak::EntryLen(i, d) => {
                            if let Some(e) = entries.get_mut(i as usize % n) {
                                e.len = e.len.wrapping_add_signed(d);
                            }
                        }
                        Tweak::DropEntry(i) => {
                            if !entries.is_empty() {
                                entries.remove(i as usize % n);
                            }
                        }
                        Tweak::DupEntry(i) => {
                            if let Some(&e) = entries.get(i as usize % n) {
                                entries.insert(i as usize % n, e);
                            }
                        }
                    }
                }
                let mut out = s.seal(
                    Kind::PackToc,
                    &toc_context(PACK, toc_seq),
                    &encode_toc(&entries),
                );
                t.toc_len = (out.len() as u32).wrapping_add_signed(toc_len_delta.unwrap_or(0));
                out.extend_from_slice(&s.seal(Kind::PackTrailer, PACK.as_bytes(), &t.encode()));
                seq = seq.wrapping_add(1);
                prev_end = start + out.len() as u64;
                out
            }
            Piece::Toc { seq, entries } => {
                let entries: Vec<TocEntry> = entries
                    .iter()
                    .take(16)
                    .map(|e| TocEntry {
                        kind: pack_kind(e.kind),
                        id: ChunkId([e.id; 32]),
                        offset: resolve(&spans, e.offset),
                        len: resolve(&spans, e.len) as u32,
                        raw_len: e.raw_len,
                    })
                    .collect();
                s.seal(
                    Kind::PackToc,
                    &toc_context(PACK, *seq),
                    &encode_toc(&entries),
                )
            }
            Piece::RawToc { seq, plain } => s.seal(Kind::PackToc, &toc_context(PACK, *seq), plain),
            Piece::Trailer {
                toc_offset,
                toc_len,
                seq,
                prev_end,
                flags,
            } => {
                let t = Trailer {
                    toc_offset: resolve(&spans, *toc_offset),
                    toc_len: resolve(&spans, *toc_len) as u32,
                    seq: *seq,
                    prev_end: resolve(&spans, *prev_end),
                    flags: *flags,
                };
                s.seal(Kind::PackTrailer, PACK.as_bytes(), &t.encode())
            }
            Piece::RawTrailer(plain) => {
                let mut p = plain.clone();
                p.resize(TRAILER_PLAIN_LEN, 0);
                s.seal(Kind::PackTrailer, PACK.as_bytes(), &p)
            }
        };
        bytes.extend_from_slice(&sealed);
        spans.push((start, bytes.len() as u64));
    }
    let (_disk, file) = pack_file(&bytes);
    let len = bytes.len() as u64;
    read_pack(file.as_ref(), &s, input.end as u64 % (len + 1));
    read_pack(file.as_ref(), &s, len);
});
