//! Content-defined chunking: FastCDC (2020) with a gear table drawn from the
//! repository key.
//!
//! With the published gear table, chunk boundaries of a known file are the
//! same in every repository, and the sequence of chunk sizes fingerprints the
//! file. Deriving all 256 gear values from the key makes boundaries
//! unpredictable to anyone without it. [`StreamChunker`] takes data in pieces
//! of any size and cuts exactly where a one-shot pass over the whole input
//! would.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use fastcdc::v2020::{cut_gear, select_masks, Normalization};

/// Chunk size bounds, fixed at `strata init`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    /// No chunk is smaller, except a file's last.
    pub min_size: u32,
    /// Target average.
    pub avg_size: u32,
    /// No chunk is larger.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 64 KiB / 256 KiB / 1 MiB. Measured with scripts/bench-store on a
    /// mixed 1 GiB dataset and its nightly change: against 1 MiB average
    /// chunks, 256 KiB stores 47 % less per night (61 vs 114 MiB; in-place
    /// page rewrites of database files dominate), at the same ingest speed
    /// and an index of about 1 GB per TB stored.
    fn default() -> Self {
        ChunkerParams {
            min_size: 64 << 10,
            avg_size: 256 << 10,
            max_size: 1 << 20,
        }
    }
}

impl ChunkerParams {
    /// Checks the bounds FastCDC accepts: even sizes, min < avg < max, and
    /// each within the crate's limits.
    pub fn validate(&self) -> Result<(), InvalidChunkerParams> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let (min, avg, max) = (
            self.min_size as usize,
            self.avg_size as usize,
            self.max_size as usize,
        );
        if !(MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            || !(AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            || !(MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
        {
            return Err(InvalidChunkerParams::OutOfRange(*self));
        }
        if !(min < avg && avg < max) || min % 2 + avg % 2 + max % 2 != 0 {
            return Err(InvalidChunkerParams::NotEvenAndIncreasing(*self));
        }
        Ok(())
    }
}

/// Chunk size bounds FastCDC does not accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChunkerParams {
    /// A size outside the crate's limits.
    #[error(
        "chunk sizes {}/{}/{} are outside {}..{} / {}..{} / {}..{}",
        .0.min_size, .0.avg_size, .0.max_size,
        fastcdc::v2020::MINIMUM_MIN, fastcdc::v2020::MINIMUM_MAX,
        fastcdc::v2020::AVERAGE_MIN, fastcdc::v2020::AVERAGE_MAX,
        fastcdc::v2020::MAXIMUM_MIN, fastcdc::v2020::MAXIMUM_MAX
    )]
    OutOfRange(ChunkerParams),
    /// Odd sizes, or not min < avg < max.
    #[error(
        "chunk sizes {}/{}/{} must be even and increasing",
        .0.min_size, .0.avg_size, .0.max_size
    )]
    NotEvenAndIncreasing(ChunkerParams),
}

/// A keyed FastCDC cutter; cheap to share between streams.
pub struct Chunker {
    params: ChunkerParams,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    masks: (u64, u64),
}

impl Chunker {
    /// A chunker for `params` whose gear table is drawn from `key`.
    pub fn new(params: ChunkerParams, key: &[u8; 32]) -> Chunker {
        let mut bytes = [0u8; 256 * 8];
        blake3::Hasher::new_keyed(key)
            .finalize_xof()
            .fill(&mut bytes);
        let mut gear = Box::new([0u64; 256]);
        for (g, b) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
            *g = u64::from_le_bytes(b.try_into().expect("8 bytes"));
        }
        // The FastCDC loop reads two bytes per step; the first uses the table
        // shifted left by one.
        let gear_ls = Box::new(gear.map(|g| g << 1));
        Chunker {
            params,
            gear,
            gear_ls,
            masks: select_masks(params.avg_size as usize, Normalization::Level2),
        }
    }

    /// The size bounds.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the chunk at the start of `window`. The answer is final
    /// only when the window holds `max_size` bytes or is the end of input.
    fn cut(&self, window: &[u8]) -> usize {
        let (mask_s, mask_l) = self.masks;
        let (_, len) = cut_gear(
            window,
            self.params.min_size as usize,
            self.params.avg_size as usize,
            self.params.max_size as usize,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
            self.gear.as_slice(),
            self.gear_ls.as_slice(),
        );
        len.max(1).min(window.len())
    }

    /// Chunk lengths of a whole input in one pass.
    pub fn lengths(&self, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let n = self.cut(&data[at..]);
            out.push(n);
            at += n;
        }
        out
    }

    /// A stream that takes input in pieces.
    pub fn stream(self: &Arc<Self>) -> StreamChunker {
        StreamChunker {
            chunker: self.clone(),
            buf: Vec::new(),
            start: 0,
        }
    }
}

/// Push-based chunking of one file's bytes.
pub struct StreamChunker {
    chunker: Arc<Chunker>,
    buf: Vec<u8>,
    start: usize,
}

impl StreamChunker {
    /// Adds `data`; calls `emit` with every chunk that is now final.
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) {
        self.buf.extend_from_slice(data);
        let max = self.chunker.params.max_size as usize;
        while self.buf.len() - self.start >= max {
            let n = self.chunker.cut(&self.buf[self.start..]);
            emit(&self.buf[self.start..self.start + n]);
            self.start += n;
        }
        // Compact only after a whole max_size has been consumed, so each byte
        // is moved at most once.
        if self.start >= max {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// The bytes held back.
    pub fn pending_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Ends the input; emits the remaining chunks.
    pub fn finish(mut self, mut emit: impl FnMut(&[u8])) {
        while self.start < self.buf.len() {
            let n = self.chunker.cut(&self.buf[self.start..]);
            emit(&self.buf[self.start..self.start + n]);
            self.start += n;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic input independent of any crate's RNG, for golden tests.
    pub(crate) fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn small() -> ChunkerParams {
        ChunkerParams {
            min_size: 2048,
            avg_size: 8192,
            max_size: 32768,
        }
    }

    fn streamed(c: &Arc<Chunker>, data: &[u8], pieces: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut s = c.stream();
        let mut at = 0;
        for &p in pieces.iter().cycle() {
            if at >= data.len() {
                break;
            }
            let end = (at + p.max(1)).min(data.len());
            s.push(&data[at..end], |c| out.push(c.len()));
            at = end;
        }
        s.finish(|c| out.push(c.len()));
        out
    }

    #[test]
    fn golden_boundaries_of_seeded_input() {
        let c = Arc::new(Chunker::new(small(), &[7u8; 32]));
        let data = xorshift_bytes(42, 200_000);
        let lengths = c.lengths(&data);
        assert_eq!(lengths.iter().sum::<usize>(), data.len());
        assert_eq!(lengths, GOLDEN);
    }

    /// Chunk lengths of `xorshift_bytes(42, 200_000)` under key [7; 32] with
    /// 2/8/32 KiB bounds. A change here changes every repository's chunking.
    const GOLDEN: &[usize] = &[
        3811, 10092, 8458, 5111, 9925, 8278, 10992, 2545, 11118, 6741, 8910, 2568, 2437, 14818,
        3919, 11209, 11220, 10637, 8245, 11524, 8464, 11309, 4381, 9215, 4073,
    ];

    #[test]
    fn the_key_moves_boundaries() {
        let data = xorshift_bytes(1, 300_000);
        let a = Chunker::new(small(), &[1u8; 32]).lengths(&data);
        let b = Chunker::new(small(), &[2u8; 32]).lengths(&data);
        assert_ne!(a, b);
    }

    #[test]
    fn defaults_are_valid() {
        ChunkerParams::default().validate().unwrap();
        assert!(ChunkerParams {
            min_size: 10,
            avg_size: 5,
            max_size: 1
        }
        .validate()
        .is_err());
    }

    #[test]
    fn invalid_bounds_say_which_rule_they_break() {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let p = |min_size, avg_size, max_size| ChunkerParams {
            min_size,
            avg_size,
            max_size,
        };
        let e = p(2, 4096, 8192).validate().unwrap_err();
        assert_eq!(e, InvalidChunkerParams::OutOfRange(p(2, 4096, 8192)));
        assert_eq!(
            e.to_string(),
            format!("chunk sizes 2/4096/8192 are outside {MINIMUM_MIN}..{MINIMUM_MAX} / {AVERAGE_MIN}..{AVERAGE_MAX} / {MAXIMUM_MIN}..{MAXIMUM_MAX}")
        );
        let e = p(4096, 2048, 8192).validate().unwrap_err();
        assert_eq!(
            e,
            InvalidChunkerParams::NotEvenAndIncreasing(p(4096, 2048, 8192))
        );
        assert_eq!(
            e.to_string(),
            "chunk sizes 4096/2048/8192 must be even and increasing"
        );
        assert_eq!(
            p(2048, 4097, 16384).validate(),
            Err(InvalidChunkerParams::NotEvenAndIncreasing(p(
                2048, 4097, 16384
            )))
        );
    }

    #[test]
    fn zeroes_cut_at_max() {
        let c = Chunker::new(small(), &[0u8; 32]);
        assert!(c
            .lengths(&vec![0u8; 100_000])
            .iter()
            .all(|&n| n == 32768 || n == 100_000 % 32768));
    }

    proptest! {
        #[test]
        fn streaming_cuts_where_one_shot_does(seed in any::<u64>(), len in 0usize..150_000, pieces in proptest::collection::vec(1usize..70_000, 1..6)) {
            let c = Arc::new(Chunker::new(small(), &[3u8; 32]));
            let data = xorshift_bytes(seed, len);
            prop_assert_eq!(streamed(&c, &data, &pieces), c.lengths(&data));
        }
    }
}
