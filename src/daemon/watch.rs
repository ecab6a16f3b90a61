//! The daemon's storage watch: every few seconds it looks at the store and
//! the filesystem holding the repository, and raises an alert when writes
//! failed (the store turned read-only, or the disk filled), reads met
//! damaged pack data, or the filesystem is fuller than the threshold. A failure is therefore heard
//! of within [`INTERVAL`] plus the channel's timeout, whether or not anyone
//! is running a backup at the time.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::policy::alert::{self, Alerter, Class, Event, Fields, Kind, Severity};
use crate::store::id::RepoId;
use crate::tree::namespace::Namespace;

/// How often the watch looks.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// What the watch has already reported, so each change is raised once
/// (the alerter's de-duplication covers repeats over longer spans).
#[derive(Default)]
struct Seen {
    failed: bool,
    nospace: u64,
    damaged: u64,
    /// The fill alert in force: none while below the threshold, else its
    /// severity (warning, then error from 95 %).
    fill: Option<Severity>,
    /// The fill dropped back below the threshold since the last look.
    fill_cleared: bool,
}

/// Watches `ns`'s store and the filesystem of `repo_dir` until the process
/// ends, raising alerts through `alerter`.
pub fn spawn(
    ns: Arc<Namespace>,
    alerter: Alerter,
    repository: RepoId,
    repo_dir: PathBuf,
    fill_threshold: u8,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("storage-watch".into())
        .spawn(move || {
            let mut seen = Seen::default();
            loop {
                let events = look(&ns, &repo_dir, fill_threshold, &mut seen);
                alert::raise_all(&alerter, repository, events);
                if std::mem::take(&mut seen.fill_cleared) {
                    if let Err(e) = alerter.resolve(Kind::StorageFull, Some(repository)) {
                        tracing::warn!(error = %e, "the storage_full alert could not be resolved");
                    }
                }
                std::thread::sleep(INTERVAL);
            }
        })?;
    Ok(())
}

/// One look: the events that are new since the last.
fn look(ns: &Namespace, repo_dir: &std::path::Path, threshold: u8, seen: &mut Seen) -> Vec<Event> {
    let store = ns.head().repo().store();
    let mut out = Vec::new();
    if store.failed().is_some() && !seen.failed {
        seen.failed = true;
        // Classed by its errno (EROFS: corruption, EIO: transient I/O, ...);
        // without one, as transient I/O.
        let errno = store.failed_errno();
        let class = errno.map_or(Class::TransientIo, alert::classify_errno);
        tracing::error!(?errno, %class, "storage failure: raising an alert");
        out.push(
            Event::new(Kind::StorageError, class, SystemTime::now()).with_fields(Fields {
                errno,
                ..Fields::default()
            }),
        );
    }
    let nospace = store.nospace_errors();
    if nospace > seen.nospace {
        out.push(
            Event::new(Kind::StorageError, Class::Capacity, SystemTime::now()).with_fields(
                Fields {
                    errno: Some(libc::ENOSPC),
                    attempts: Some((nospace - seen.nospace) as u32),
                    ..Fields::default()
                },
            ),
        );
        seen.nospace = nospace;
    }
    let damaged = store.counters.damaged_reads.load(Ordering::Relaxed);
    if damaged > seen.damaged {
        tracing::error!(damaged, "damaged pack data read: raising an alert");
        out.push(
            Event::new(Kind::StorageError, Class::Corruption, SystemTime::now()).with_fields(
                Fields {
                    attempts: Some((damaged - seen.damaged) as u32),
                    ..Fields::default()
                },
            ),
        );
        seen.damaged = damaged;
    }
    if let Ok((used, total)) = usage(repo_dir) {
        out.extend(fill_change(alert::fill_check(used, total, threshold), seen));
    }
    out
}

/// The fill alert `now` only when it is news: the disk crossed the
/// threshold, or 95 %. A disk that stays full is not raised again every
/// few seconds (that would count towards escalation by count); `strata
/// check --freshness` repeats it on its own timer.
fn fill_change(now: Option<Event>, seen: &mut Seen) -> Option<Event> {
    let level = now.as_ref().map(Event::severity);
    if level == seen.fill {
        return None;
    }
    seen.fill_cleared = level.is_none();
    let rose = level > seen.fill;
    seen.fill = level;
    now.filter(|_| rose)
}

/// Bytes used and total on the filesystem holding `path`.
pub fn usage(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: statvfs writes one struct into `st`.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize;
    let total = st.f_blocks * frsize;
    Ok((total - st.f_bfree * frsize, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(seen: &mut Seen, used: u64) -> Option<Event> {
        fill_change(alert::fill_check(used, 100, 80), seen)
    }

    #[test]
    fn a_fill_alert_is_raised_on_crossing_not_on_every_look() {
        let s = &mut Seen::default();
        assert!(look(s, 50).is_none());
        let first = look(s, 85).expect("crossing 80 % is news");
        assert_eq!(first.severity(), Severity::Warning);
        assert!(look(s, 86).is_none(), "still full: not raised again");
        assert_eq!(
            look(s, 96).expect("crossing 95 %").severity(),
            Severity::Error
        );
        assert!(look(s, 97).is_none());
        assert!(look(s, 90).is_none(), "easing back is not news");
        assert!(!s.fill_cleared);
        assert!(look(s, 10).is_none());
        assert!(s.fill_cleared, "below the threshold: resolved");
        assert!(look(s, 85).is_some(), "full again is news again");
    }
}
