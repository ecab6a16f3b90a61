//! What a drill compares: an entry as it was read or restored against the
//! snapshot's tree entry, and file bytes against the chunk ids and the
//! content digest the tree holds.

use std::io;

use crate::store::crypto::codec::ChunkCodec;
use crate::tree::objects::{content_digest, TreeEntry};
use crate::tree::types::{Attr, FileKind};

/// An entry as observed: through the source, or as restored.
pub struct Observed {
    /// Its attributes.
    pub attr: Attr,
    /// Its extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A symlink's target.
    pub target: Vec<u8>,
}

/// Which attributes to compare.
#[derive(Clone, Copy)]
pub struct Compare {
    /// Owner and group (a restore by someone other than root cannot set
    /// them, as with `cp -a`).
    pub owners: bool,
}

/// How `seen` differs from `entry`, in words; empty when it does not.
pub fn differences(entry: &TreeEntry, seen: &Observed, how: Compare) -> Vec<String> {
    let (m, a) = (&entry.meta, &seen.attr);
    let mut out = Vec::new();
    if a.kind != m.kind {
        out.push(format!(
            "is a {:?}, the snapshot has a {:?}",
            a.kind, m.kind
        ));
        return out;
    }
    if m.kind != FileKind::Symlink && a.perm != m.perm {
        out.push(format!("mode {:o}, the snapshot has {:o}", a.perm, m.perm));
    }
    if how.owners && (a.uid, a.gid) != (m.uid, m.gid) {
        out.push(format!(
            "owner {}:{}, the snapshot has {}:{}",
            a.uid, a.gid, m.uid, m.gid
        ));
    }
    if m.kind == FileKind::File && a.size != m.size {
        out.push(format!("{} bytes, the snapshot has {}", a.size, m.size));
    }
    if m.kind != FileKind::Dir && a.mtime != m.mtime {
        out.push(format!(
            "modified at {}.{:09}, the snapshot has {}.{:09}",
            a.mtime.secs, a.mtime.nanos, m.mtime.secs, m.mtime.nanos
        ));
    }
    if matches!(m.kind, FileKind::CharDevice | FileKind::BlockDevice) && a.rdev != m.rdev {
        out.push(format!("device {}, the snapshot has {}", a.rdev, m.rdev));
    }
    if m.kind == FileKind::Symlink && seen.target != entry.target {
        out.push("points elsewhere than in the snapshot".to_owned());
    }
    // A security label the system gave a restored file is not a difference.
    let label = super::target::LABEL;
    let seen_xattrs = seen
        .xattrs
        .iter()
        .filter(|(n, _)| n != label || entry.xattrs.iter().any(|(m, _)| m == label));
    if !seen_xattrs.eq(entry.xattrs.iter()) {
        out.push(format!(
            "{} extended attribute(s) (ACLs included) differ from the snapshot's {}",
            seen.xattrs.len(),
            entry.xattrs.len()
        ));
    }
    out
}

/// Directory times are compared apart: restoring entries into a directory
/// changes its mtime, so they are set last and checked last.
pub fn dir_time_differs(entry: &TreeEntry, attr: &Attr) -> Option<String> {
    (entry.meta.kind == FileKind::Dir && attr.mtime != entry.meta.mtime).then(|| {
        format!(
            "modified at {}.{:09}, the snapshot has {}.{:09}",
            attr.mtime.secs, attr.mtime.nanos, entry.meta.mtime.secs, entry.meta.mtime.nanos
        )
    })
}

/// Which of a file's extents to read.
#[derive(Clone, Copy)]
pub enum Extents<'a> {
    /// All of them, checked against the content digest too; with `holes`,
    /// the bytes between them must read as zeros.
    All {
        /// Check the holes.
        holes: bool,
    },
    /// Only these (indexes into the entry's extents), as an estimate
    /// samples them.
    Some(&'a [usize]),
}

/// Why a file's content did not come through.
pub enum ContentError {
    /// Reading failed, or what was read is not what the snapshot holds.
    Source(String),
    /// `each` (the restore's write) failed.
    Target(String),
}

/// Reads a file's content with `read` (exact reads at an offset) and
/// checks each extent against its chunk id. Calls `each` with every
/// extent's bytes once they verified. Returns the bytes read, or what
/// differs.
pub fn content(
    entry: &TreeEntry,
    codec: &ChunkCodec,
    id_key: &[u8; 32],
    which: Extents<'_>,
    read: &mut dyn FnMut(&mut [u8], u64) -> io::Result<()>,
    each: &mut dyn FnMut(&[u8], u64) -> io::Result<()>,
) -> Result<u64, ContentError> {
    use ContentError::Source;
    let (holes, only) = match which {
        Extents::All { holes } => (holes, None),
        Extents::Some(only) => (false, Some(only)),
    };
    if only.is_none() && content_digest(id_key, entry.meta.size, &entry.extents) != entry.digest {
        return Err(Source(
            "its extents do not match the snapshot's content digest".to_owned(),
        ));
    }
    let mut buf = Vec::new();
    let mut at = 0u64;
    let mut read_bytes = 0u64;
    let chosen: Vec<&(u64, [u8; 32], u32)> = match only {
        None => entry.extents.iter().collect(),
        Some(only) => only.iter().filter_map(|&k| entry.extents.get(k)).collect(),
    };
    for &&(o, chunk, l) in &chosen {
        if holes && o > at {
            zeros(read, at, o, &mut buf).map_err(Source)?;
        }
        buf.resize(l as usize, 0);
        read(&mut buf, o).map_err(|e| Source(format!("reading at offset {o}: {e}")))?;
        if codec.id(&buf).0 != chunk {
            return Err(Source(format!(
                "the {l} bytes at offset {o} differ from the snapshot"
            )));
        }
        each(&buf, o).map_err(|e| ContentError::Target(format!("writing at offset {o}: {e}")))?;
        read_bytes += u64::from(l);
        at = o + u64::from(l);
    }
    if holes && only.is_none() && entry.meta.size > at {
        zeros(read, at, entry.meta.size, &mut buf).map_err(Source)?;
    }
    Ok(read_bytes)
}

/// Checks that `from..to` reads as zeros.
fn zeros(
    read: &mut dyn FnMut(&mut [u8], u64) -> io::Result<()>,
    from: u64,
    to: u64,
    buf: &mut Vec<u8>,
) -> Result<(), String> {
    let mut o = from;
    while o < to {
        let n = (to - o).min(1 << 20) as usize;
        buf.resize(n, 0);
        read(buf, o).map_err(|e| format!("reading at offset {o}: {e}"))?;
        if buf.iter().any(|&b| b != 0) {
            return Err(format!(
                "bytes at offset {o} are not the hole the snapshot has"
            ));
        }
        o += n as u64;
    }
    Ok(())
}
