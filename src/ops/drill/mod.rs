//! `strata drill`: a timed restore by ordinary file reads, checked against
//! the snapshot, and recorded.
//!
//! A drill reads every entry below a snapshot path the way a restore does
//! (through the mount when mounted, through the namespace the mount serves
//! from when not: [`source`]), starting cold (the daemon's decoded chunks
//! and the kernel's cached pages of each file are dropped first; the
//! repository's own files may still be in the page cache, which a
//! benchmark drops), and either restores it into an empty
//! directory with `cp -a` semantics ([`target`]) or discards it. Every
//! extent read is checked against its chunk id as it arrives, every
//! attribute against the snapshot's tree ([`check`]); a restore is then
//! flushed to the disk (which ends the timed part) and read back from the
//! disk: metadata, hard links, holes and bytes against the tree's chunk
//! ids and content digest. A discard drill writes nothing: no plaintext
//! reaches a disk.
//!
//! Files are read by several readers at once: a restore of many small
//! files is bound by the latency of each file (through the mount, a
//! lookup, an open, reads and a release, each a round trip to the daemon),
//! not by bandwidth. [`DEFAULT_READERS`] is twice the daemon's FUSE
//! threads, so each of them has the next request waiting while its reply
//! travels back.

pub mod check;
pub mod estimate;
pub mod plan;
pub mod source;
pub mod target;

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sys::sync::Recover;
use crate::tree::head::Head;
use crate::tree::objects::SnapshotRow;
use crate::tree::snapshot::drills::{DrillRecord, DrillResult};
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{Caller, FileKind, FsError, Timestamp};
use check::{Compare, Observed};
use plan::Plan;
use source::Source;
pub use target::TargetError;

/// Parallel readers unless told otherwise: twice the daemon's FUSE
/// request threads (see the module's documentation).
pub const DEFAULT_READERS: u32 = 8;

/// Problems a drill record keeps word for word; the count keeps the rest.
const KEPT_PROBLEMS: usize = 100;

/// What to drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillSpec {
    /// The snapshot, by number, name, label or "latest".
    pub snapshot: String,
    /// The path inside it ("/" for all of it).
    pub path: String,
    /// Restore into this directory (absolute, empty or new); `None` to
    /// read and discard.
    pub to: Option<PathBuf>,
    /// Parallel readers.
    pub readers: u32,
    /// The recovery-time objective, seconds.
    pub rto_secs: Option<f64>,
    /// The `[[drill]]` entry this is, if any.
    #[serde(default)]
    pub name: Option<String>,
    /// Return the record without storing it: the caller starts the
    /// restored service first, then stores it (`Snapshots::record_drill`).
    #[serde(default)]
    pub deferred: bool,
}

/// How far a drill is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DrillProgress {
    /// "restore", "read" (discarding) or "verify".
    pub phase: String,
    /// Files done.
    pub files_done: u64,
    /// Files in all.
    pub files: u64,
    /// Bytes done.
    pub bytes_done: u64,
    /// Bytes in all.
    pub bytes: u64,
}

/// Why a drill did not run to its verdict.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// The path names nothing to drill.
    #[error("nothing drilled: {0}")]
    Plan(#[from] plan::PlanError),
    /// The target cannot take the restore.
    #[error("nothing drilled: {0}")]
    Target(#[from] TargetError),
    /// The drill's root cannot be read at all.
    #[error("nothing drilled: the snapshot cannot be read through the {through}")]
    Source {
        /// "mount" or "repository".
        through: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The drill ran but its record could not be stored.
    #[error("the drill ran ({result}) but its record could not be stored")]
    Record {
        /// Its verdict.
        result: &'static str,
        /// Why.
        source: FsError,
    },
}

/// Reports progress, at most a few times a second.
#[derive(Default, Clone, Copy)]
pub struct DrillContext<'a> {
    /// Told how far the drill is.
    pub progress: Option<&'a (dyn Fn(&DrillProgress) + Sync)>,
}

/// Runs drill `spec` of `plan` (made from snapshot `row`) read through
/// `source`, on behalf of `caller`, and records it in `head`'s repository.
pub fn drill(
    head: &Head,
    caller: Caller,
    row: &SnapshotRow,
    spec: &DrillSpec,
    plan: &Plan,
    source: &dyn Source,
    cx: DrillContext<'_>,
) -> Result<DrillRecord, DrillError> {
    let _op = caller.span("drill");
    let started = Timestamp::now();
    let base = match &spec.to {
        Some(to) => Some(target::prepare(
            to,
            plan.items[0].entry.meta.kind,
            plan.root_name(),
        )?),
        None => None,
    };
    // The root must read, or there is nothing to time.
    source
        .item(plan, 0)
        .and_then(|i| i.stat())
        .map_err(|e| DrillError::Source {
            through: source.through(),
            source: e,
        })?;
    let run = Run::new(head, plan, source, base.as_deref(), spec.readers, false);
    // Cold, as a restore after a disaster is: nothing decoded is kept.
    head.reader().forget_decoded();
    let clock = Instant::now();
    run.restore(cx);
    let restore_secs = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    if base.is_some() {
        run.verify(cx);
    }
    let verify_secs = if base.is_some() {
        clock.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let (problems, problem_count, damage_count) = run.problems.take();
    let mut record = DrillRecord {
        number: 0,
        name: spec.name.clone(),
        started,
        caller: (caller.uid, caller.gid, caller.pid),
        snapshot: row.record.seq,
        snapshot_name: row.record.name(),
        snapshot_id: row.id,
        path: plan.path.clone(),
        to: spec.to.as_ref().map(|p| p.display().to_string()),
        through: source.through().to_owned(),
        readers: run.readers as u32,
        rto_secs: spec.rto_secs,
        restore_secs,
        verify_secs,
        files: plan.files,
        dirs: plan.dirs,
        others: plan.others,
        bytes: plan.bytes,
        result: DrillResult::Passed,
        problems,
        problem_count,
        damage_count,
        service: None,
    };
    record.result = record.judge();
    if spec.deferred {
        return Ok(record);
    }
    store(head, caller, record)
}

/// Stores a drill's record, durably; its number is given here.
pub fn store(head: &Head, caller: Caller, record: DrillRecord) -> Result<DrillRecord, DrillError> {
    let result = record.result;
    Snapshots::of(head)
        .record_drill(caller, record)
        .map_err(|source| DrillError::Record {
            result: result.as_str(),
            source,
        })
}

/// What went wrong, by path inside the snapshot.
#[derive(Default)]
struct Problems {
    kept: Mutex<Vec<String>>,
    count: AtomicU64,
    /// Of them, the repository's fault.
    damage: AtomicU64,
}

impl Problems {
    fn add(&self, what: String, damage: bool) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.damage.fetch_add(u64::from(damage), Ordering::Relaxed);
        let mut kept = self.kept.locked();
        if kept.len() < KEPT_PROBLEMS {
            kept.push(what);
        }
    }

    /// The problems kept, how many in all, and how many were damage.
    fn take(&self) -> (Vec<String>, u64, u64) {
        (
            std::mem::take(&mut *self.kept.locked()),
            self.count.load(Ordering::Relaxed),
            self.damage.load(Ordering::Relaxed),
        )
    }
}

/// One drill under way.
struct Run<'a> {
    head: &'a Head,
    plan: &'a Plan,
    source: &'a dyn Source,
    /// Where the root is restored; `None` when discarding.
    base: Option<&'a Path>,
    readers: usize,
    problems: Problems,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    compare: Compare,
    /// Every entry straight in `base`, named by its index (an estimate's
    /// sample, whose directories are not restored).
    flat: bool,
}

impl<'a> Run<'a> {
    /// A drill of `plan` read through `source` into `base` (`None`:
    /// discarded) by `readers`; `flat` for an estimate's sample.
    fn new(
        head: &'a Head,
        plan: &'a Plan,
        source: &'a dyn Source,
        base: Option<&'a Path>,
        readers: u32,
        flat: bool,
    ) -> Run<'a> {
        Run {
            head,
            plan,
            source,
            base,
            readers: readers.max(1) as usize,
            problems: Problems::default(),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            compare: Compare {
                owners: base.is_none() || target::is_root(),
            },
            flat,
        }
    }

    /// Entry `i`'s path inside the snapshot, for the problems.
    fn shown(&self, i: usize) -> String {
        let rel = &self.plan.items[i].rel;
        let base = self.plan.path.trim_end_matches('/');
        if rel.as_os_str().is_empty() {
            self.plan.path.clone()
        } else {
            format!("{base}/{}", rel.display())
        }
    }

    /// Entry `i` could not be restored: the target refused (space,
    /// permissions, a filesystem without xattrs), or the copy on it is
    /// not what was written.
    fn problem(&self, i: usize, what: impl std::fmt::Display) {
        self.problems
            .add(format!("{}: {what}", self.shown(i)), false);
    }

    /// Entry `i` could not be read, or was not what the snapshot holds:
    /// the repository (or the mount serving it) is at fault.
    fn damage(&self, i: usize, what: impl std::fmt::Display) {
        self.problems
            .add(format!("{}: {what}", self.shown(i)), true);
    }

    /// Where entry `i` is restored.
    fn dest(&self, base: &Path, i: usize) -> PathBuf {
        let rel = &self.plan.items[i].rel;
        if self.flat {
            base.join(i.to_string())
        } else if rel.as_os_str().is_empty() {
            base.to_owned()
        } else {
            base.join(rel)
        }
    }

    /// Reads (and restores) everything; the timed part.
    fn restore(&self, cx: DrillContext<'_>) {
        let phase = if self.base.is_some() {
            "restore"
        } else {
            "read"
        };
        let items = &self.plan.items;
        let kind = |i: usize| items[i].entry.meta.kind;
        // Directories first, so that everything has somewhere to go.
        let mut dir_meta = Vec::new();
        for i in (0..items.len()).filter(|&i| kind(i) == FileKind::Dir) {
            if let Some(seen) = self.read_meta(i) {
                // The root is the target directory itself, made ready.
                if let (Some(base), true) = (self.base, i > 0) {
                    if let Err(e) = target::mkdir(&self.dest(base, i)) {
                        self.problem(i, format!("cannot create the directory: {e}"));
                        continue;
                    }
                }
                dir_meta.push((i, seen));
            }
        }
        self.each_file(phase, cx, &|i| self.restore_file(i, None));
        for i in (0..items.len()).filter(|&i| !matches!(kind(i), FileKind::Dir | FileKind::File)) {
            self.restore_special(i);
        }
        for i in (0..items.len()).filter(|&i| items[i].link_of.is_some()) {
            self.restore_link(i);
        }
        if let Some(base) = self.base {
            // Deepest first: restoring into a directory changes its times.
            for (i, seen) in dir_meta.iter().rev() {
                if let Err(e) = target::apply(&self.dest(base, *i), &seen.attr, &seen.xattrs) {
                    self.problem(*i, format!("cannot set its attributes: {e}"));
                }
            }
            // The directory the target is (or is in) for a single entry.
            let dir = if items[0].entry.meta.kind == FileKind::Dir {
                base
            } else {
                base.parent().unwrap_or(base)
            };
            if let Err(e) = target::sync(dir) {
                self.problems.add(
                    format!("flushing the restore to the disk failed: {e}"),
                    false,
                );
            }
        }
    }

    /// Reads entry `i`'s attributes through the source and compares them
    /// with the snapshot.
    fn read_meta(&self, i: usize) -> Option<Observed> {
        let read = || -> std::io::Result<Observed> {
            let item = self.source.item(self.plan, i)?;
            let attr = item.stat()?;
            Ok(Observed {
                target: if attr.kind == FileKind::Symlink {
                    item.readlink()?
                } else {
                    Vec::new()
                },
                xattrs: item.xattrs()?,
                attr,
            })
        };
        match read() {
            Ok(seen) => {
                let entry = &self.plan.items[i].entry;
                for d in check::differences(entry, &seen, self.compare) {
                    self.damage(
                        i,
                        format!("read through the {}: {d}", self.source.through()),
                    );
                }
                Some(seen)
            }
            Err(e) => {
                self.damage(i, format!("cannot be read: {e}"));
                None
            }
        }
    }

    /// Looks entry `i` up and reads its attributes, and drops them: the
    /// way to an estimate's sampled entry, walked as the drill walks it.
    fn warm_meta(&self, i: usize) {
        if let Ok(item) = self.source.item(self.plan, i) {
            let _ = item.stat();
        }
    }

    /// Reads extents `part` of file `i` as a restore would and drops
    /// them: an estimate's lead-in, which leaves the source as warm as a
    /// drill leaves it (nothing is checked or counted).
    fn warm(&self, i: usize, part: &[usize]) {
        let Ok(mut item) = self.source.item(self.plan, i) else {
            return;
        };
        let mut buf = Vec::new();
        for &k in part {
            let Some(&(o, _, l)) = self.plan.items[i].entry.extents.get(k) else {
                continue;
            };
            buf.resize(l as usize, 0);
            if item.read_exact_at(&mut buf, o).is_err() {
                return;
            }
        }
    }

    /// Reads (and restores) file `i`; with `part`, only those extents
    /// (an estimate's sample).
    fn restore_file(&self, i: usize, part: Option<&[usize]>) {
        let entry = &self.plan.items[i].entry;
        let through = self.source.through();
        // Err((what, whether the source is at fault)).
        let run = || -> Result<(), (String, bool)> {
            let unreadable = |e: std::io::Error| (format!("cannot be read: {e}"), true);
            let mut item = self.source.item(self.plan, i).map_err(unreadable)?;
            let attr = item.stat().map_err(unreadable)?;
            let xattrs = item.xattrs().map_err(unreadable)?;
            let seen = Observed {
                attr,
                xattrs,
                target: Vec::new(),
            };
            for d in check::differences(entry, &seen, self.compare) {
                self.damage(i, format!("read through the {through}: {d}"));
            }
            let out = match self.base {
                Some(base) => Some(
                    target::create(&self.dest(base, i))
                        .map_err(|e| (format!("cannot be created: {e}"), false))?,
                ),
                None => None,
            };
            let store = self.head.repo().store();
            let mut read = |buf: &mut [u8], at: u64| item.read_exact_at(buf, at);
            let mut write = |bytes: &[u8], at: u64| {
                self.bytes_done
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                match &out {
                    Some(f) => f.write_all_at(bytes, at),
                    None => Ok(()),
                }
            };
            let which = match part {
                None => check::Extents::All { holes: false },
                Some(only) => check::Extents::Some(only),
            };
            check::content(
                entry,
                store.codec(),
                &self.head.repo().keys().id,
                which,
                &mut read,
                &mut write,
            )
            .map_err(|e| match e {
                check::ContentError::Source(e) => (e, true),
                check::ContentError::Target(e) => (e, false),
            })?;
            if let (Some(f), Some(base)) = (&out, self.base) {
                f.set_len(entry.meta.size)
                    .map_err(|e| (format!("cannot be written: {e}"), false))?;
                target::apply(&self.dest(base, i), &seen.attr, &seen.xattrs)
                    .map_err(|e| (format!("cannot set its attributes: {e}"), false))?;
            }
            Ok(())
        };
        match run() {
            Err((e, true)) => self.damage(i, e),
            Err((e, false)) => self.problem(i, e),
            Ok(()) => {}
        }
    }

    fn restore_special(&self, i: usize) {
        let Some(seen) = self.read_meta(i) else {
            return;
        };
        if let Some(base) = self.base {
            let dest = self.dest(base, i);
            if let Err(e) = target::special(&dest, &seen.attr, &seen.target)
                .and_then(|()| target::apply(&dest, &seen.attr, &seen.xattrs))
            {
                self.problem(i, format!("cannot be created: {e}"));
            }
        }
    }

    fn restore_link(&self, i: usize) {
        let first = self.plan.items[i].link_of.expect("a further name");
        if let Some(base) = self.base {
            if let Err(e) = std::fs::hard_link(self.dest(base, first), self.dest(base, i)) {
                self.problem(i, format!("cannot be linked to {}: {e}", self.shown(first)));
            }
        }
    }

    /// Runs `each` on every file with content, on the readers, telling
    /// `cx` how far they are.
    fn each_file(&self, phase: &str, cx: DrillContext<'_>, each: &(dyn Fn(usize) + Sync)) {
        let files = self.plan.contents();
        let next = AtomicUsize::new(0);
        self.files_done.store(0, Ordering::Relaxed);
        self.bytes_done.store(0, Ordering::Relaxed);
        let readers = self.readers.min(files.len()).max(1);
        let (finished, each_finished) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            for _ in 0..readers {
                let (finished, next, files) = (finished.clone(), &next, &files);
                s.spawn(move || {
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = files.get(k) else { break };
                        each(i);
                        self.files_done.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = finished.send(());
                });
            }
            drop(finished);
            let Some(tell) = cx.progress else { return };
            let mut left = readers;
            while left > 0 {
                tell(&DrillProgress {
                    phase: phase.to_owned(),
                    files_done: self.files_done.load(Ordering::Relaxed),
                    files: self.plan.files,
                    bytes_done: self.bytes_done.load(Ordering::Relaxed),
                    bytes: self.plan.bytes,
                });
                match each_finished.recv_timeout(Duration::from_millis(250)) {
                    Ok(()) => left -= 1,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        });
    }

    /// Reads the restore back from the disk and compares it with the
    /// snapshot.
    fn verify(&self, cx: DrillContext<'_>) {
        let base = self.base.expect("a restore");
        let items = &self.plan.items;
        let compare = self.compare;
        for (i, item) in items.iter().enumerate() {
            let entry = &item.entry;
            if entry.meta.kind == FileKind::File && item.link_of.is_none() {
                continue;
            }
            let dest = self.dest(base, i);
            match target::observe(&dest) {
                Ok(seen) => {
                    for d in check::differences(entry, &seen, compare) {
                        self.problem(i, format!("restored: {d}"));
                    }
                    if let Some(d) = check::dir_time_differs(entry, &seen.attr) {
                        self.problem(i, format!("restored: {d}"));
                    }
                    if let Some(first) = item.link_of {
                        let same = std::fs::symlink_metadata(self.dest(base, first))
                            .is_ok_and(|m| m.ino() == seen.attr.ino.0);
                        if !same {
                            self.problem(i, "restored: not a hard link of its other names");
                        }
                    }
                }
                Err(e) => self.problem(i, format!("restored: cannot be read back: {e}")),
            }
        }
        self.each_file("verify", cx, &|i| {
            let entry = &items[i].entry;
            let dest = self.dest(base, i);
            let run = || -> Result<(), String> {
                let seen =
                    target::observe(&dest).map_err(|e| format!("cannot be read back: {e}"))?;
                for d in check::differences(entry, &seen, compare) {
                    self.problem(i, format!("restored: {d}"));
                }
                let f =
                    std::fs::File::open(&dest).map_err(|e| format!("cannot be read back: {e}"))?;
                let mut read = |buf: &mut [u8], at: u64| f.read_exact_at(buf, at);
                let mut count = |bytes: &[u8], _at: u64| {
                    self.bytes_done
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    Ok(())
                };
                check::content(
                    entry,
                    self.head.repo().store().codec(),
                    &self.head.repo().keys().id,
                    check::Extents::All { holes: true },
                    &mut read,
                    &mut count,
                )
                .map_err(|e| match e {
                    check::ContentError::Source(e) | check::ContentError::Target(e) => e,
                })?;
                Ok(())
            };
            if let Err(e) = run() {
                self.problem(i, format!("restored: {e}"));
            }
        });
    }
}
