//! Where the verify cycle is (`strata check --cycle`): like a ZFS scrub,
//! a cursor over the finished packs, kept in the repository so that each
//! scheduled run reads on from where the last one stopped.

use crate::store::id::PackId;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::FsError;

/// Where pack `p` sits on the cycle's way: its id's first eight bytes.
pub fn pack_key(p: &PackId) -> u64 {
    u64::from_le_bytes(p.0[..8].try_into().expect("8 bytes"))
}

/// The verify cycle's state; all zero before the first run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scrub {
    /// The packs read so far in this cycle: those whose id's first eight
    /// bytes (little-endian) are at most this.
    pub cursor: u64,
    /// Whether the cursor is inside a cycle (false: the next run starts one).
    pub underway: bool,
    /// When the last run ended (seconds since the epoch).
    pub last_run: i64,
    /// When this cycle started.
    pub cycle_started: i64,
    /// Cycles completed: every pack read.
    pub cycles: u64,
    /// When the last cycle completed.
    pub last_completed: i64,
}

impl Scrub {
    /// How many of `packs` this cycle has read: those up to the cursor
    /// while it is under way; all once one completed and no other began.
    pub fn covered(&self, packs: &[PackId]) -> usize {
        if self.underway {
            packs.iter().filter(|p| pack_key(p) <= self.cursor).count()
        } else if self.cycles > 0 {
            packs.len()
        } else {
            0
        }
    }
}

impl Snapshots<'_> {
    /// The verify cycle's state.
    pub fn scrub(&self) -> Result<Scrub, FsError> {
        self.head.transact(|w| {
            Ok(Scrub {
                cursor: w.counter("scrub_cursor")?,
                underway: w.counter("scrub_underway")? != 0,
                last_run: w.counter("scrub_last_run")? as i64,
                cycle_started: w.counter("scrub_cycle_started")? as i64,
                cycles: w.counter("scrub_cycles")?,
                last_completed: w.counter("scrub_last_completed")? as i64,
            })
        })
    }

    /// Stores the verify cycle's state, durably.
    pub fn set_scrub(&self, s: &Scrub) -> Result<(), FsError> {
        self.head.transact(|w| {
            w.set_counter("scrub_cursor", s.cursor)?;
            w.set_counter("scrub_underway", u64::from(s.underway))?;
            w.set_counter("scrub_last_run", s.last_run.max(0) as u64)?;
            w.set_counter("scrub_cycle_started", s.cycle_started.max(0) as u64)?;
            w.set_counter("scrub_cycles", s.cycles)?;
            w.set_counter("scrub_last_completed", s.last_completed.max(0) as u64)
        })?;
        self.head.commit()
    }
}
