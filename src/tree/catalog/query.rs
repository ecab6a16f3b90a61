//! Questions the catalog answers: which paths match a pattern and in
//! which snapshots ([`Catalog::find`]), the distinct versions of one path
//! ([`Catalog::versions`]), and what changed between two snapshots
//! ([`diff`], from the trees themselves).
//!
//! Snapshots are counted as the kept ones only: a version's range may span
//! forgotten snapshots, and a range that holds no kept one is skipped.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::record::{open_dir, path_hash, Content, Version};
use super::Catalog;
use crate::store::chunks::Store;
use crate::tree::diff::{join, Attribute, Walker};
use crate::tree::head::records::db;
use crate::tree::objects::SnapshotRow;
use crate::tree::types::{FileKind, FsError, Timestamp};

/// A size test, as find(1) writes it: `+N` more than N bytes, `-N` fewer,
/// `N` exactly; N may end in k, M, G or T (powers of 1024). Unlike find(1),
/// sizes are compared in bytes, not rounded up to the unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeTest {
    /// More than.
    Over(u64),
    /// Fewer than.
    Under(u64),
    /// Exactly.
    Exactly(u64),
}

impl SizeTest {
    /// Parses `+N`, `-N` or `N` with an optional unit.
    pub fn parse(text: &str) -> Result<SizeTest, String> {
        let bad = || {
            format!("{text:?} is not a size: write +N (more than), -N (fewer than) or N (exactly) bytes, N may end in k, M, G or T, e.g. +10M")
        };
        let (make, rest): (fn(u64) -> SizeTest, &str) = match text.as_bytes().first() {
            Some(b'+') => (SizeTest::Over, &text[1..]),
            Some(b'-') => (SizeTest::Under, &text[1..]),
            _ => (SizeTest::Exactly, text),
        };
        let (digits, shift) = match rest.as_bytes().last() {
            Some(b'k' | b'K') => (&rest[..rest.len() - 1], 10),
            Some(b'M') => (&rest[..rest.len() - 1], 20),
            Some(b'G') => (&rest[..rest.len() - 1], 30),
            Some(b'T') => (&rest[..rest.len() - 1], 40),
            Some(b'c') => (&rest[..rest.len() - 1], 0),
            _ => (rest, 0),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let bytes = n.checked_mul(1 << shift).ok_or_else(bad)?;
        Ok(make(bytes))
    }

    fn holds(self, size: u64) -> bool {
        match self {
            SizeTest::Over(n) => size > n,
            SizeTest::Under(n) => size < n,
            SizeTest::Exactly(n) => size == n,
        }
    }
}

/// Parses a `--type` letter as find(1) has them: f d l p s c b.
pub fn parse_kind(text: &str) -> Result<FileKind, String> {
    Ok(match text {
        "f" => FileKind::File,
        "d" => FileKind::Dir,
        "l" => FileKind::Symlink,
        "p" => FileKind::Fifo,
        "s" => FileKind::Socket,
        "c" => FileKind::CharDevice,
        "b" => FileKind::BlockDevice,
        _ => {
            return Err(format!(
                "{text:?} is not a type: use f (file), d (directory), l (symlink), p (fifo), s (socket), c or b (device)"
            ))
        }
    })
}

/// The letter of a kind, as `ls -l` and find(1) write it.
pub fn kind_letter(k: FileKind) -> char {
    match k {
        FileKind::File => 'f',
        FileKind::Dir => 'd',
        FileKind::Symlink => 'l',
        FileKind::Fifo => 'p',
        FileKind::Socket => 's',
        FileKind::CharDevice => 'c',
        FileKind::BlockDevice => 'b',
    }
}

/// A `strata find` as the command line and the control socket carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindSpec {
    /// A glob (default) or a regular expression.
    pub pattern: String,
    /// `pattern` is a regular expression (matched anywhere, as grep does).
    pub regex: bool,
    /// Match full paths ("/a/b/c") instead of base names.
    pub path: bool,
    /// Only this snapshot (number, name, label or "latest"; resolved by the caller).
    pub snapshot: Option<String>,
    /// Only snapshots taken at or after.
    pub since: Option<Timestamp>,
    /// Only snapshots taken at or before.
    pub until: Option<Timestamp>,
    /// Only versions of this size.
    pub size: Option<SizeTest>,
    /// Only versions modified after.
    pub newer: Option<Timestamp>,
    /// Only versions owned by.
    pub uid: Option<u32>,
    /// Only versions of this kind.
    pub kind: Option<FileKind>,
}

/// A compiled pattern.
#[derive(Clone, Debug)]
pub enum Pattern {
    /// A shell glob; `*` and `?` never match `/` (`**` does).
    Glob(globset::GlobMatcher),
    /// A regular expression, matched anywhere in the name or path.
    Regex(regex::bytes::Regex),
}

impl Pattern {
    /// Compiles `spec`'s pattern; the error says what is wrong with it.
    pub fn new(spec: &FindSpec) -> Result<Pattern, String> {
        if spec.regex {
            regex::bytes::Regex::new(&spec.pattern)
                .map(Pattern::Regex)
                .map_err(|e| {
                    format!(
                        "the pattern {:?} is not a regular expression: {e}",
                        spec.pattern
                    )
                })
        } else {
            globset::GlobBuilder::new(&spec.pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map(|g| Pattern::Glob(g.compile_matcher()))
                .map_err(|e| format!("the pattern {:?} is not a glob: {e} (use --regex for a regular expression)", spec.pattern))
        }
    }

    /// Whether `text` matches.
    pub fn is_match(&self, text: &[u8]) -> bool {
        match self {
            Pattern::Glob(g) => {
                use std::os::unix::ffi::OsStrExt;
                g.is_match(std::ffi::OsStr::from_bytes(text))
            }
            Pattern::Regex(r) => r.is_match(text),
        }
    }
}

/// A run of kept snapshots: the first and last, and how many.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// The first's number.
    pub first_seq: u64,
    /// The first's name.
    pub first: String,
    /// The last's number.
    pub last_seq: u64,
    /// The last's name.
    pub last: String,
    /// Kept snapshots from first to last (forgotten ones between are not counted).
    pub count: u64,
}

/// A path `find` matched and the snapshots holding a version of it that
/// passed the filters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    /// The path from the snapshot's root, "/a/b" (bytes that are not
    /// UTF-8 shown as U+FFFD).
    pub path: String,
    /// Its kind in the newest of those versions.
    pub kind: FileKind,
    /// The snapshots, as runs.
    pub snapshots: Vec<Span>,
}

/// One distinct version of a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Kind.
    pub kind: FileKind,
    /// Size (0 for a directory).
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// A file's content digest, hex (keyed: equal digests, equal content).
    pub digest: Option<String>,
    /// A symlink's target.
    pub target: Option<String>,
    /// The kept snapshots that hold it.
    pub snapshots: Span,
}

/// Indices `lo..=hi` into the selected snapshots that a version spans.
fn span_of(seqs: &[u64], v: &Version) -> Option<(usize, usize)> {
    let lo = seqs.partition_point(|&s| s < v.first);
    let hi = match v.last {
        Some(last) => seqs.partition_point(|&s| s <= last),
        None => seqs.len(),
    };
    (lo < hi).then(|| (lo, hi - 1))
}

fn span(rows: &[&SnapshotRow], (lo, hi): (usize, usize)) -> Span {
    Span {
        first_seq: rows[lo].record.seq,
        first: rows[lo].record.name(),
        last_seq: rows[hi].record.seq,
        last: rows[hi].record.name(),
        count: (hi - lo + 1) as u64,
    }
}

/// "/a/b/" -> "/a/b"; `None` for anything not absolute.
pub fn normalize(path: &str) -> Option<Vec<u8>> {
    if !path.starts_with('/') {
        return None;
    }
    let mut out = Vec::new();
    for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        out.push(b'/');
        out.extend_from_slice(c.as_bytes());
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Some(out)
}

impl Catalog<'_> {
    /// Every path matching `pattern` and the filters of `spec` in the kept
    /// snapshots (only `only` when given), sorted by path. Catches up first.
    pub fn find(
        &self,
        spec: &FindSpec,
        pattern: &Pattern,
        only: Option<u64>,
    ) -> Result<Vec<Found>, FsError> {
        self.catch_up()?;
        let rows = crate::tree::snapshot::Snapshots::of(self.head).list()?;
        let selected: Vec<&SnapshotRow> = rows
            .iter()
            .filter(|r| only.is_none_or(|s| r.record.seq == s))
            .filter(|r| spec.since.is_none_or(|t| r.record.time >= t))
            .filter(|r| spec.until.is_none_or(|t| r.record.time <= t))
            .collect();
        let seqs: Vec<u64> = selected.iter().map(|r| r.record.seq).collect();
        let passes = |v: &Version| {
            spec.size.is_none_or(|t| t.holds(v.size))
                && spec.newer.is_none_or(|t| v.mtime > t)
                && spec.uid.is_none_or(|u| v.uid == u)
                && spec.kind.is_none_or(|k| v.kind == k)
        };
        let mut out = Vec::new();
        if seqs.is_empty() {
            return Ok(out);
        }
        let r = self.head.rtx()?;
        for row in r.catalog_dirs()?.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let rec = open_dir(&r, k.value(), v.value())?;
            for group in rec.versions.chunk_by(|a, b| a.name == b.name) {
                let name = &group[0].name;
                // A base name is tested before its path is built: most
                // names do not match.
                let full = if spec.path {
                    let full = join(&rec.path, name);
                    if !pattern.is_match(&full) {
                        continue;
                    }
                    full
                } else if pattern.is_match(name) {
                    join(&rec.path, name)
                } else {
                    continue;
                };
                let mut spans: Vec<(usize, usize)> = Vec::new();
                let mut kind = None;
                for v in group.iter().filter(|v| passes(v)) {
                    if let Some(s) = span_of(&seqs, v) {
                        spans.push(s);
                        kind = Some(v.kind);
                    }
                }
                let Some(kind) = kind else {
                    continue;
                };
                spans.sort_unstable();
                let mut merged: Vec<(usize, usize)> = Vec::new();
                for (lo, hi) in spans {
                    match merged.last_mut() {
                        Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
                        _ => merged.push((lo, hi)),
                    }
                }
                out.push(Found {
                    path: String::from_utf8_lossy(&full).into_owned(),
                    kind,
                    snapshots: merged.into_iter().map(|s| span(&selected, s)).collect(),
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The distinct versions of `path` ("/a/b") in the kept snapshots,
    /// oldest first: a new one whenever its content or attributes change
    /// (two equal versions with no kept snapshot between are one). Empty
    /// when no kept snapshot holds it. Catches up first.
    pub fn versions(&self, path: &[u8]) -> Result<Vec<VersionInfo>, FsError> {
        self.catch_up()?;
        let rows = crate::tree::snapshot::Snapshots::of(self.head).list()?;
        let kept: Vec<&SnapshotRow> = rows.iter().collect();
        let seqs: Vec<u64> = rows.iter().map(|r| r.record.seq).collect();
        let cut = match path.iter().rposition(|&c| c == b'/') {
            Some(i) if path.len() > 1 => i,
            _ => return Ok(Vec::new()),
        };
        let (dir, name) = (
            if cut == 0 { &b"/"[..] } else { &path[..cut] },
            &path[cut + 1..],
        );
        let r = self.head.rtx()?;
        let hash = path_hash(r_name_key(&r), dir);
        let Some(number) = r.catalog_paths()?.get(hash).map_err(db)?.map(|v| v.value()) else {
            return Ok(Vec::new());
        };
        let Some(sealed) = r.catalog_dirs()?.get(number).map_err(db)? else {
            return Err(super::record::broken(format!(
                "catalog record {number} is missing"
            )));
        };
        let rec = open_dir(&r, number, sealed.value())?;
        let mut out: Vec<(&Version, (usize, usize))> = Vec::new();
        for v in rec.versions.iter().filter(|v| v.name == name) {
            let Some(s) = span_of(&seqs, v) else {
                continue;
            };
            match out.last_mut() {
                Some((prev, p)) if prev.same(v) && p.1 + 1 == s.0 => p.1 = s.1,
                _ => out.push((v, s)),
            }
        }
        Ok(out
            .into_iter()
            .map(|(v, s)| VersionInfo {
                kind: v.kind,
                size: v.size,
                mtime: v.mtime,
                uid: v.uid,
                gid: v.gid,
                mode: v.perm,
                digest: match &v.content {
                    Content::Digest(d) => Some(hex::encode(d)),
                    _ => None,
                },
                target: match &v.content {
                    Content::Target(t) => Some(String::from_utf8_lossy(t).into_owned()),
                    _ => None,
                },
                snapshots: span(&kept, s),
            })
            .collect())
    }
}

fn r_name_key<'a>(r: &'a crate::tree::head::txn::Read<'_>) -> &'a [u8; 32] {
    use crate::tree::head::txn::Reader;
    r.name_key()
}

/// How an entry differs between two snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only the newer snapshot has it.
    Added,
    /// Only the older one has it.
    Removed,
    /// Both have it, with different attributes.
    Changed,
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// The path, "/a/b".
    pub path: String,
    /// Added, removed or changed.
    pub change: Change,
    /// Its kind (in the newer snapshot, when it has it).
    pub kind: FileKind,
    /// For a change, what changed.
    pub what: Vec<Attribute>,
}

/// What differs between snapshots `a` and `b`, below `path` (all of them
/// when `None`), sorted by path; `None` when neither holds `path`. Reads
/// only the trees that differ.
pub fn diff(
    store: &Store,
    a: &SnapshotRow,
    b: &SnapshotRow,
    path: Option<&[u8]>,
) -> Result<Option<Vec<Difference>>, FsError> {
    let mut out = Vec::new();
    let mut visit = |c: crate::tree::diff::DirChange| {
        let at = |name: &[u8]| String::from_utf8_lossy(&join(&c.path, name)).into_owned();
        for e in &c.added {
            out.push(Difference {
                path: at(&e.name),
                change: Change::Added,
                kind: e.meta.kind,
                what: Vec::new(),
            });
        }
        for e in &c.removed {
            out.push(Difference {
                path: at(&e.name),
                change: Change::Removed,
                kind: e.meta.kind,
                what: Vec::new(),
            });
        }
        for ch in &c.changed {
            out.push(Difference {
                path: at(&ch.new.name),
                change: Change::Changed,
                kind: ch.new.meta.kind,
                what: ch.what.clone(),
            });
        }
        Ok(())
    };
    let mut walker = Walker::new(store);
    let (ra, rb) = (a.record.root.subtree, b.record.root.subtree);
    let found = walker.walk_path(ra.as_ref(), rb.as_ref(), path.unwrap_or(b"/"), &mut visit)?;
    if found.is_none() {
        return Ok(None);
    }
    out.sort_by(|x, y| x.path.cmp(&y.path));
    Ok(Some(out))
}
