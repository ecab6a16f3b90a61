//! What the kernel must forget, and when: the kernel caches entries and
//! attributes with long TTLs, so a change the kernel did not make (a new
//! snapshot, a forgotten one, a head reset) is followed by invalidations. They go out from
//! a thread of their own, never from a FUSE callback.

use strata::tree::namespace::{Namespace, LATEST, SNAPSHOTS_INO};

/// A kernel cache entry to drop, sent to the invalidation thread: the
/// kernel may hold the directory's lock while we serve a request in it,
/// so notifications never go out from a callback. (Symlink targets are
/// not cached by the kernel at all, so `latest` and labels read right
/// after a snapshot point at it even before the invalidation lands.)
pub enum Invalidate {
    /// A name in a directory.
    Entry(u64, Vec<u8>),
    /// An inode's attributes and data (a symlink's cached target).
    Inode(u64),
    /// Everything sent before has reached the kernel.
    Done(std::sync::mpsc::Sender<()>),
}

/// What the kernel must forget after a snapshot named by `label` appeared.
pub fn after_snapshot(ns: &Namespace, label: Option<&str>) -> Vec<Invalidate> {
    let mut out = vec![Invalidate::Inode(SNAPSHOTS_INO)];
    for name in std::iter::once(LATEST).chain(label) {
        out.push(Invalidate::Entry(SNAPSHOTS_INO, name.as_bytes().to_vec()));
        out.push(Invalidate::Inode(ns.snapshots_link(name).ino()));
    }
    out
}

/// What the kernel must forget after the snapshots `names` (with `labels`)
/// were forgotten: their directories, and `latest` and the labels, which
/// may now point elsewhere or nowhere.
pub fn after_forget(ns: &Namespace, names: &[String], labels: &[String]) -> Vec<Invalidate> {
    let mut out = vec![Invalidate::Inode(SNAPSHOTS_INO)];
    for name in names {
        out.push(Invalidate::Entry(SNAPSHOTS_INO, name.as_bytes().to_vec()));
    }
    for name in std::iter::once(LATEST).chain(labels.iter().map(String::as_str)) {
        out.push(Invalidate::Entry(SNAPSHOTS_INO, name.as_bytes().to_vec()));
        out.push(Invalidate::Inode(ns.snapshots_link(name).ino()));
    }
    out
}

/// Tells the kernel to drop one cached entry or inode.
pub fn send_invalidation(notifier: &fuser::Notifier, inv: &Invalidate) {
    let r = match inv {
        Invalidate::Entry(parent, name) => notifier.inval_entry(
            fuser::INodeNo(*parent),
            std::os::unix::ffi::OsStrExt::from_bytes(name.as_slice()),
        ),
        Invalidate::Inode(ino) => notifier.inval_inode(fuser::INodeNo(*ino), 0, 0),
        Invalidate::Done(done) => {
            let _ = done.send(());
            Ok(())
        }
    };
    if let Err(e) = r {
        // ENOENT: the kernel had nothing cached, which is fine.
        if e.raw_os_error() != Some(libc::ENOENT) {
            tracing::debug!(error = %e, "cache invalidation failed");
        }
    }
}
