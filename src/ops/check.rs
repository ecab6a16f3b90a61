//! `strata check`: the structure first (every pack the index knows is where
//! it says and its checkpoints open; every index row points at an object its
//! pack's TOC lists), then optionally the data (every chunk, or a subset of
//! packs, read, opened and hashed); and, for a human at a terminal, which
//! files of which snapshots use a damaged chunk ([`users`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

use serde::Serialize;

use crate::ops::repair::list_packs;
use crate::store::chunks::open_pack_path;
use crate::store::format::Kind;
use crate::store::id::{ChunkId, PackId};
use crate::store::index::{Location, PackState};
use crate::store::pack;
use crate::store::repo::{Repo, RepoError};
use crate::tree::head::txn::Reader;
use crate::tree::head::{Head, READDIR_BATCH};
use crate::tree::objects::Tree;
use crate::tree::snapshot::scrub::{pack_key, Scrub};
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{FileKind, FsError, InodeNo};

/// Which packs' data to read.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadData {
    /// Structure only.
    None,
    /// Every pack.
    All,
    /// Packs whose id falls in part `n` of `of` (1-based), like restic's n/t.
    Part {
        /// This part.
        n: u32,
        /// Of this many.
        of: u32,
    },
    /// A random fraction of the packs, 0 < f <= 1.
    Fraction(f64),
    /// The next slice of the verify cycle (`strata check --cycle`): sized
    /// so that every finished pack is read within `cycle_secs`, from where
    /// the last run stopped ([`Scrub`]).
    Cycle {
        /// The cycle's length.
        cycle_secs: u64,
    },
}

/// A `--read-data-subset` that names no subset.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReadData {
    /// Neither `n/t` nor a percentage in (0, 100].
    #[error("read-data subset {0:?} is neither n/t (e.g. 2/7) nor a percentage (e.g. 10%)")]
    Syntax(String),
    /// An `n/t` whose `n` is not one of the `t` parts.
    #[error("read-data subset {0:?} names no part: in n/t, t is at least 1 and n counts from 1 to t (1/2 and 2/2 are the two halves)")]
    NoPart(String),
}

impl std::str::FromStr for ReadData {
    type Err = InvalidReadData;
    /// Parses `n/t` or `P%`.
    fn from_str(s: &str) -> Result<ReadData, InvalidReadData> {
        let bad = || InvalidReadData::Syntax(s.to_owned());
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(ReadData::Fraction(p / 100.0));
        }
        let (n, of) = s.split_once('/').ok_or_else(bad)?;
        let (n, of): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            of.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || of == 0 || n > of {
            return Err(InvalidReadData::NoPart(s.to_owned()));
        }
        Ok(ReadData::Part { n, of })
    }
}

impl ReadData {
    fn selects(&self, pack: &PackId) -> bool {
        match *self {
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Part { n, of } => {
                let x = u32::from_le_bytes(pack.0[..4].try_into().expect("4 bytes"));
                x % of == n - 1
            }
            ReadData::Fraction(f) => rand::random::<f64>() < f,
            // Chosen by check_all, which knows the cursor.
            ReadData::Cycle { .. } => false,
        }
    }
}

/// What a check found.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct CheckReport {
    /// Packs whose structure was checked.
    pub packs: u64,
    /// Index rows checked against pack TOCs.
    pub chunks: u64,
    /// Snapshots whose trees were walked.
    pub snapshots: u64,
    /// Chunks read, opened and hashed.
    pub chunks_read: u64,
    /// Bytes read for that.
    pub bytes_read: u64,
    /// Damage: the repository is not as it should be.
    pub errors: Vec<String>,
    /// Harmless leftovers worth knowing about.
    pub warnings: Vec<String>,
    /// Chunks that could not be read back intact (named in `errors`).
    #[serde(skip)]
    pub damaged: Vec<ChunkId>,
    /// The files and snapshots that use them, in words (paths: for a
    /// terminal only, never for logs or JSON output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<String>,
    /// Packs being written while a daemon serves the repository, and
    /// index rows pointing into them: left out (checked once finished).
    pub open_packs_skipped: u64,
    /// Where the verify cycle is, after a `--cycle` run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<CycleReport>,
}

impl CheckReport {
    /// Whether no damage was found.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks `repo`; `progress` is told (done, total) while reading data.
///
/// `live`: a daemon writes into the repository meanwhile (and holds off
/// prune), so only finished packs are checked: they never change, while
/// an open pack's objects reach the index before its table of contents
/// lists them. The packs on disk are listed before the index's, so a pack
/// created meanwhile is not taken for one the index lost.
pub fn check(
    repo: &Repo,
    read: ReadData,
    live: bool,
    progress: impl FnMut(u64, u64),
) -> Result<CheckReport, RepoError> {
    check_packs(
        repo,
        read != ReadData::None,
        &|p| read.selects(p),
        live,
        progress,
    )
}

/// [`check`], reading the data of the packs `chosen` selects (when `read`).
fn check_packs(
    repo: &Repo,
    read: bool,
    chosen: &dyn Fn(&PackId) -> bool,
    live: bool,
    mut progress: impl FnMut(u64, u64),
) -> Result<CheckReport, RepoError> {
    let store = repo.store();
    let disk = repo.disk().as_ref();
    let sealer = store.codec().sealer();
    let mut report = CheckReport::default();
    let (finished, open) = list_packs(disk, store.backend().as_ref())?;
    let mut records = store.pack_records();
    if live {
        records.retain(|_, r| {
            let finished = r.state == PackState::Finished;
            report.open_packs_skipped += u64::from(!finished);
            finished
        });
    }
    // Per pack: every object its checkpoints list, with its kind.
    let mut tocs: HashMap<PackId, HashMap<(crate::store::id::ChunkId, u64, u32), Kind>> =
        HashMap::new();
    for (id, rec) in &records {
        report.packs += 1;
        let opened = match rec.state {
            PackState::Open => disk.open(&open_pack_path(*id), false),
            PackState::Finished => store.backend().open(*id),
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                report.errors.push(format!(
                    "pack {id}: the index refers to it but it cannot be opened: {e}"
                ));
                continue;
            }
        };
        let len = file.len().unwrap_or(0);
        if len < rec.len {
            report.errors.push(format!(
                "pack {id}: {len} bytes on disk, the index expects {} (synced data is missing)",
                rec.len
            ));
            continue;
        }
        match pack::read_toc(file.as_ref(), sealer, *id, rec.len) {
            Ok((entries, finished)) => {
                if rec.state == PackState::Finished && !finished {
                    report.errors.push(format!(
                        "pack {id}: in packs/ but its last checkpoint is not final"
                    ));
                }
                tocs.insert(
                    *id,
                    entries
                        .iter()
                        .map(|e| ((e.id, e.offset, e.len), e.kind))
                        .collect(),
                );
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    let known = store.pack_records();
    for id in finished.iter().chain(&open) {
        if !known.contains_key(id) {
            report.warnings.push(format!("pack {id} is not in the index (left by an interrupted write; `strata repair index` would index it)"));
        }
    }
    let chunks: Vec<(crate::store::id::ChunkId, Location)> = match store.index().chunks() {
        Ok(c) => c,
        Err(e) => {
            report.errors.push(e.to_string());
            return Ok(report);
        }
    };
    // Read from the index after its rows: a pack's record is committed
    // with (or before) its first rows, so every pack a row names is here.
    let known: HashSet<PackId> = match store.index().packs() {
        Ok(p) => p.into_iter().map(|(id, _)| id).collect(),
        Err(e) => {
            report.errors.push(e.to_string());
            return Ok(report);
        }
    };
    let mut kinds = HashMap::new();
    for (id, loc) in &chunks {
        report.chunks += 1;
        match tocs
            .get(&loc.pack)
            .map(|toc| toc.get(&(*id, loc.offset, loc.len)))
        {
            Some(Some(kind)) => {
                kinds.insert(*id, *kind);
            }
            Some(_) => {
                report.damaged.push(*id);
                report.errors.push(format!(
                    "chunk {id}: pack {} lists no such object at offset {}",
                    loc.pack, loc.offset
                ))
            }
            None if records.contains_key(&loc.pack) => {} // pack already reported
            None if live && known.contains(&loc.pack) => {} // open or new, skipped
            None => report.errors.push(format!(
                "chunk {id}: its pack {} is not in the index",
                loc.pack
            )),
        }
    }
    if read {
        let chosen: HashSet<PackId> = records.keys().filter(|p| chosen(p)).copied().collect();
        let selected: Vec<_> = chunks
            .iter()
            .filter(|(_, l)| chosen.contains(&l.pack))
            .collect();
        let total = selected.len() as u64;
        for (i, (id, loc)) in selected.into_iter().enumerate() {
            let kind = kinds.get(id).copied().unwrap_or(Kind::Chunk);
            match store.get_object(kind, id) {
                Ok(data) => {
                    report.chunks_read += 1;
                    report.bytes_read += data.as_slice().len() as u64;
                }
                Err(e) => {
                    report.damaged.push(*id);
                    report.errors.push(format!(
                        "chunk {id} (pack {}, offset {}): {e}",
                        loc.pack, loc.offset
                    ))
                }
            }
            progress(i as u64 + 1, total);
        }
    }
    Ok(report)
}

/// A verify cycle's run: what it read and how far the cycle is.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct CycleReport {
    /// Finished packs read by this run.
    pub packs_read: u64,
    /// Finished packs in the repository.
    pub packs: u64,
    /// Of them, read in this cycle (a cycle that just completed: all).
    pub packs_covered: u64,
    /// When this cycle started (seconds since the epoch).
    pub cycle_started: i64,
    /// Cycles completed.
    pub cycles: u64,
    /// When the last one completed (0: none yet).
    pub last_completed: i64,
}

/// The finished packs of `head`'s repository: what the verify cycle reads.
pub fn finished_packs(head: &Head) -> Vec<PackId> {
    head.repo()
        .store()
        .pack_records()
        .into_iter()
        .filter(|(_, r)| r.state == PackState::Finished)
        .map(|(id, _)| id)
        .collect()
}

/// A check that could not run to its report.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The store could not be read.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The snapshots or the head could not be read.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// A whole check of the repository `head` belongs to: the store
/// ([`check`]), then, if it is sound, every snapshot's trees and the hash
/// chain ([`Snapshots::verify`]) and what the head refers to; with damage,
/// the files it breaks ([`users`], in `users`).
pub fn check_all(
    head: &Head,
    caller: crate::tree::types::Caller,
    read: ReadData,
    live: bool,
    progress: impl FnMut(u64, u64),
) -> Result<CheckReport, CheckError> {
    let mut report = match read {
        ReadData::Cycle { cycle_secs } => cycle(head, cycle_secs, live, progress)?,
        _ => check(head.repo(), read, live, progress)?,
    };
    above_the_store(head, caller, &mut report)?;
    Ok(report)
}

/// The next slice of the verify cycle: the finished packs after the
/// cursor, as many as keep the cycle on time (the rest of the cycle's
/// packs in proportion to the time since the last run over the time the
/// cycle has left; all of them once it has run out; a first run counts a
/// day). The cursor moves only after a slice read clean, so damage is
/// read again by the next run until repaired.
fn cycle(
    head: &Head,
    cycle_secs: u64,
    live: bool,
    progress: impl FnMut(u64, u64),
) -> Result<CheckReport, CheckError> {
    let snapshots = Snapshots::of(head);
    let mut state = snapshots.scrub()?;
    let now = crate::tree::types::Timestamp::now().secs;
    let prefix = pack_key;
    let mut packs = finished_packs(head);
    packs.sort_by_key(prefix);
    if !state.underway {
        state = Scrub {
            cursor: 0,
            underway: true,
            cycle_started: now,
            ..state
        };
    }
    let left: Vec<PackId> = packs
        .iter()
        .filter(|p| prefix(p) > state.cursor)
        .copied()
        .collect();
    let since = if state.last_run == 0 {
        86_400
    } else {
        (now - state.last_run).max(1)
    };
    let time_left = state.cycle_started + cycle_secs as i64 - now;
    let count = if time_left <= since {
        left.len()
    } else {
        ((left.len() as f64 * since as f64 / time_left as f64).ceil() as usize).min(left.len())
    };
    let slice: HashSet<PackId> = left[..count].iter().copied().collect();
    let mut report = check_packs(head.repo(), true, &|p| slice.contains(p), live, progress)?;
    if report.ok() {
        if let Some(last) = left[..count].last() {
            state.cursor = prefix(last);
        }
        if count == left.len() {
            state.underway = false;
            state.cycles += 1;
            state.last_completed = now;
        }
        state.last_run = now;
        snapshots.set_scrub(&state)?;
    }
    report.cycle = Some(CycleReport {
        packs_read: count as u64,
        packs: packs.len() as u64,
        packs_covered: (packs.len() - left.len() + count) as u64,
        cycle_started: state.cycle_started,
        cycles: state.cycles,
        last_completed: state.last_completed,
    });
    Ok(report)
}

/// [`check_all`] of a repository no daemon serves: the store is checked
/// before the head is opened, so damage that keeps the head from opening
/// is still reported.
pub fn check_repo(
    repo: Repo,
    caller: crate::tree::types::Caller,
    read: ReadData,
    progress: impl FnMut(u64, u64),
) -> Result<CheckReport, CheckError> {
    check_repo_keeping(repo, caller, read, progress).map(|(report, _)| report)
}

/// [`check_repo`], which also returns the head when it opened (a damaged
/// index may keep it shut), for what comes after: the audit record.
pub fn check_repo_keeping(
    repo: Repo,
    caller: crate::tree::types::Caller,
    read: ReadData,
    progress: impl FnMut(u64, u64),
) -> Result<(CheckReport, Option<Head>), CheckError> {
    if let ReadData::Cycle { .. } = read {
        // The cycle's cursor is in the head's tables.
        let head = Head::new(repo)?;
        let report = check_all(&head, caller, read, false, progress)?;
        return Ok((report, Some(head)));
    }
    let mut report = check(&repo, read, false, progress)?;
    match Head::new(repo) {
        Ok(head) => {
            above_the_store(&head, caller, &mut report)?;
            Ok((report, Some(head)))
        }
        Err(e) if !report.ok() => {
            report.users = Some(format!(
                "the files that use the damaged chunk(s) could not be found: {e}\n"
            ));
            Ok((report, None))
        }
        Err(e) => Err(e.into()),
    }
}

/// The layer above the store: with the store sound, the snapshots, the
/// chain and the head's references; with damage, the files it breaks.
fn above_the_store(
    head: &Head,
    caller: crate::tree::types::Caller,
    report: &mut CheckReport,
) -> Result<(), CheckError> {
    if report.ok() {
        let snapshots = Snapshots::of(head);
        report.snapshots = snapshots.list()?.len() as u64;
        report.errors.extend(snapshots.verify(caller)?);
        report.errors.extend(head_references(head)?);
    } else if !report.damaged.is_empty() {
        report.users = Some(match users(head, &report.damaged) {
            Ok(u) if u.chunks.is_empty() => {
                format!("{u}no file in a snapshot or in head/ uses the damaged chunk(s)\n")
            }
            Ok(u) => u.to_string(),
            Err(e) => format!("the files that use the damaged chunk(s) could not be found: {e}\n"),
        });
    }
    Ok(())
}

/// What the head refers to that is missing: a chunk of a file in head/
/// that the index does not have, a directory's remembered tree that does
/// not read.
fn head_references(head: &Head) -> Result<Vec<String>, FsError> {
    let (chunks, trees) = head.rtx()?.references()?;
    let store = head.repo().store();
    let mut errors = Vec::new();
    for id in chunks {
        if !store.has(&id)? {
            errors.push(format!("head/: chunk {id} of a file is not stored"));
        }
    }
    for t in trees {
        if let Err(e) = Tree::load(head.repo().store(), &t) {
            errors.push(format!(
                "head/: the tree {} a directory stands for does not read: {e}",
                ChunkId(t)
            ));
        }
    }
    Ok(errors)
}

/// Paths named per damaged chunk; further uses are only counted.
pub const NAMES_PER_CHUNK: usize = 10;

/// Where damaged chunks are used, for `strata check` to show a human. The
/// paths are patient data: they go to the terminal, never to logs, JSON or
/// alerts, which keep the chunk ids.
#[derive(Debug, Default)]
pub struct Users {
    /// Per damaged chunk that some file uses.
    pub chunks: BTreeMap<ChunkId, ChunkUsers>,
    /// Snapshot trees that could not be read: files under them are not named.
    pub unreadable_trees: u64,
}

/// The files that use one chunk.
#[derive(Debug, Default)]
pub struct ChunkUsers {
    /// Up to [`NAMES_PER_CHUNK`] paths, each with where it has that chunk:
    /// snapshot names, and `head/`.
    pub paths: BTreeMap<String, Vec<String>>,
    /// Further (path, snapshot or head) uses, not named.
    pub more: u64,
}

impl ChunkUsers {
    fn add(&mut self, path: String, place: &str) {
        if let Some(places) = self.paths.get_mut(&path) {
            places.push(place.to_owned());
        } else if self.paths.len() < NAMES_PER_CHUNK {
            self.paths.insert(path, vec![place.to_owned()]);
        } else {
            self.more += 1;
        }
    }
}

/// The files in snapshots and in the head whose content uses one of
/// `damaged`. Each snapshot tree is read once however many snapshots share
/// it, and at most [`NAMES_PER_CHUNK`] paths are kept per chunk, so the
/// walk costs what `check` already reads and its answer stays short.
pub fn users(head: &Head, damaged: &[ChunkId]) -> Result<Users, FsError> {
    let damaged: HashSet<ChunkId> = damaged.iter().copied().collect();
    let mut out = Users::default();
    let mut walk = TreeWalk {
        head,
        damaged: &damaged,
        memo: HashMap::new(),
        unreadable: 0,
    };
    for row in Snapshots::of(head).list()? {
        let Some(root) = row.record.root.subtree else {
            continue;
        };
        let place = row.record.name();
        let hits = walk.hits(root);
        for (chunk, path) in &hits.named {
            out.chunks
                .entry(*chunk)
                .or_default()
                .add(String::from_utf8_lossy(path).into_owned(), &place);
        }
        for (chunk, n) in &hits.more {
            out.chunks.entry(*chunk).or_default().more += n;
        }
    }
    out.unreadable_trees = walk.unreadable;
    head_users(head, &damaged, &mut out)?;
    Ok(out)
}

/// The damaged chunks used under one snapshot tree, paths relative to it.
#[derive(Default)]
struct Hits {
    /// At most [`NAMES_PER_CHUNK`] per chunk.
    named: Vec<(ChunkId, Vec<u8>)>,
    more: HashMap<ChunkId, u64>,
}

impl Hits {
    fn add(&mut self, chunk: ChunkId, path: Vec<u8>) {
        if self.named.iter().filter(|(c, _)| *c == chunk).count() < NAMES_PER_CHUNK {
            self.named.push((chunk, path));
        } else {
            *self.more.entry(chunk).or_default() += 1;
        }
    }
}

struct TreeWalk<'a> {
    head: &'a Head,
    damaged: &'a HashSet<ChunkId>,
    /// Trees already walked (snapshots share unchanged directories).
    memo: HashMap<[u8; 32], Rc<Hits>>,
    unreadable: u64,
}

impl TreeWalk<'_> {
    fn hits(&mut self, id: [u8; 32]) -> Rc<Hits> {
        if let Some(h) = self.memo.get(&id) {
            return h.clone();
        }
        let mut hits = Hits::default();
        match Tree::load(self.head.repo().store(), &id) {
            Ok(tree) => {
                for e in tree.entries {
                    let mut seen = HashSet::new();
                    for (_, chunk, _) in &e.extents {
                        let chunk = ChunkId(*chunk);
                        if self.damaged.contains(&chunk) && seen.insert(chunk) {
                            hits.add(chunk, e.name.clone());
                        }
                    }
                    if let Some(sub) = e.subtree {
                        let below = self.hits(sub);
                        for (chunk, path) in &below.named {
                            hits.add(*chunk, join(&e.name, path));
                        }
                        for (chunk, n) in &below.more {
                            *hits.more.entry(*chunk).or_default() += n;
                        }
                    }
                }
            }
            Err(_) => self.unreadable += 1,
        }
        let hits = Rc::new(hits);
        self.memo.insert(id, hits.clone());
        hits
    }
}

/// Adds the head's files that use a damaged chunk, as `head/`.
fn head_users(head: &Head, damaged: &HashSet<ChunkId>, out: &mut Users) -> Result<(), FsError> {
    let r = head.rtx()?;
    let mut dirs = vec![(InodeNo::ROOT, Vec::new())];
    while let Some((dir, path)) = dirs.pop() {
        let mut after = None;
        loop {
            let rows = r.dirents_after(dir, after, READDIR_BATCH)?;
            let Some((last, _)) = rows.last() else { break };
            after = Some(*last);
            for (_, d) in rows {
                let p = join(&path, &d.name);
                match d.kind {
                    FileKind::Dir => dirs.push((InodeNo(d.ino), p)),
                    FileKind::File => {
                        let mut seen = HashSet::new();
                        for (_, chunk, _) in r.extents(InodeNo(d.ino), 0, u64::MAX)? {
                            if damaged.contains(&chunk) && seen.insert(chunk) {
                                out.chunks
                                    .entry(chunk)
                                    .or_default()
                                    .add(String::from_utf8_lossy(&p).into_owned(), "head/");
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = dir.to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

impl fmt::Display for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (chunk, u) in &self.chunks {
            writeln!(f, "chunk {chunk} is used by:")?;
            for (path, places) in &u.paths {
                let (snaps, head): (Vec<&String>, Vec<&String>) =
                    places.iter().partition(|p| *p != "head/");
                let mut at = Vec::new();
                if !snaps.is_empty() {
                    let names: Vec<&str> = snaps.iter().map(|s| s.as_str()).collect();
                    let word = if names.len() == 1 {
                        "snapshot"
                    } else {
                        "snapshots"
                    };
                    at.push(format!("{word} {}", names.join(", ")));
                }
                if !head.is_empty() {
                    at.push("head/".to_owned());
                }
                writeln!(f, "  {path}  (in {})", at.join(" and "))?;
            }
            if u.more > 0 {
                writeln!(f, "  and {} more", u.more)?;
            }
        }
        if self.unreadable_trees > 0 {
            writeln!(
                f,
                "{} snapshot directories could not be read; files under them are not named",
                self.unreadable_trees
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_per_chunk_are_bounded_and_the_rest_counted() {
        let mut u = ChunkUsers::default();
        for i in 0..NAMES_PER_CHUNK + 3 {
            u.add(format!("dir/f{i:02}"), "2026-01-01T00:00:00Z");
        }
        // A path already named gains places; it is not counted again.
        u.add("dir/f00".into(), "head/");
        assert_eq!(u.paths.len(), NAMES_PER_CHUNK);
        assert_eq!(u.more, 3);
        let mut users = Users::default();
        users.chunks.insert(ChunkId([7; 32]), u);
        let text = users.to_string();
        assert!(
            text.contains("dir/f00  (in snapshot 2026-01-01T00:00:00Z and head/)"),
            "{text}"
        );
        assert!(text.contains("  and 3 more\n"), "{text}");
        assert!(!text.contains("dir/f10"), "{text}");
    }

    #[test]
    fn subsets_parse() {
        assert_eq!(
            "2/7".parse::<ReadData>().unwrap(),
            ReadData::Part { n: 2, of: 7 }
        );
        assert_eq!("10%".parse::<ReadData>().unwrap(), ReadData::Fraction(0.1));
        for bad in ["0/3", "4/3", "x", "0%", "101%", "1/0"] {
            assert!(bad.parse::<ReadData>().is_err(), "{bad}");
        }
        assert_eq!(
            "x".parse::<ReadData>().unwrap_err().to_string(),
            "read-data subset \"x\" is neither n/t (e.g. 2/7) nor a percentage (e.g. 10%)"
        );
        assert_eq!(
            "4/3".parse::<ReadData>(),
            Err(InvalidReadData::NoPart("4/3".into()))
        );
        assert_eq!(
            "0%".parse::<ReadData>(),
            Err(InvalidReadData::Syntax("0%".into()))
        );
    }
}
