//! The restore target: entries created as `cp -a` creates them (content
//! with its holes, owners, modes, nanosecond times, symlinks, hard links,
//! device nodes, fifos, extended attributes and so ACLs), and read back
//! for the check.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::check::Observed;
use super::source::{lstat, xattrs_at};
use crate::tree::types::{Attr, FileKind, Timestamp};

/// Where the drill's root goes: `to` itself for a directory (which must
/// be empty or new), `to/NAME` for anything else.
/// A directory that exists must be this process's own and writable by
/// nobody else: the restore creates, chowns and chmods paths below it,
/// which someone else could swap for symlinks meanwhile. A new one is
/// made private.
pub fn prepare(to: &Path, root_kind: FileKind, root_name: &Path) -> Result<PathBuf, TargetError> {
    match std::fs::symlink_metadata(to) {
        Ok(md) if md.is_dir() => {
            use std::os::unix::fs::MetadataExt;
            // SAFETY: geteuid cannot fail.
            let me = unsafe { libc::geteuid() };
            if md.uid() != me || md.mode() & 0o022 != 0 {
                return Err(TargetError::Unsafe(to.into()));
            }
            let mut entries = std::fs::read_dir(to).map_err(|e| TargetError::Open(to.into(), e))?;
            if entries.next().is_some() {
                return Err(TargetError::NotEmpty(to.into()));
            }
        }
        Ok(_) => return Err(TargetError::NotADir(to.into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(to)
                .map_err(|e| TargetError::Create(to.into(), e))?;
        }
        Err(e) => return Err(TargetError::Open(to.into(), e)),
    }
    Ok(if root_kind == FileKind::Dir {
        to.to_owned()
    } else {
        to.join(root_name)
    })
}

/// Why the target cannot take a restore.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// It holds something already.
    #[error("{0} is not empty: a drill restores into an empty or new directory, so that nothing is overwritten; name another with --to")]
    NotEmpty(PathBuf),
    /// It is a file.
    #[error("{0} is not a directory: name an empty or new directory with --to")]
    NotADir(PathBuf),
    /// Someone else owns it or may write into it.
    #[error("{0} is not yours alone (another owner, or writable by group or others): a restore into it could be redirected by someone who can write there; name a new directory with --to, or one you own with mode 0700")]
    Unsafe(PathBuf),
    /// It cannot be read.
    #[error("cannot read {0}")]
    Open(PathBuf, #[source] io::Error),
    /// It cannot be created.
    #[error("cannot create {0} (its parent must exist and be writable)")]
    Create(PathBuf, #[source] io::Error),
}

/// Creates directory `path` (which must not exist), private until its own
/// mode is set last.
pub fn mkdir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// Creates a new regular file for the content, private until its mode is set.
pub fn create(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Creates a symlink, device node, fifo or socket like `attr` (with
/// `target` for a symlink).
pub fn special(path: &Path, attr: &Attr, target: &[u8]) -> io::Result<()> {
    if attr.kind == FileKind::Symlink {
        return std::os::unix::fs::symlink(OsStr::from_bytes(target), path);
    }
    let c = cstring(path)?;
    let mode = attr.kind.type_bits() | 0o600;
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), mode, attr.rdev as libc::dev_t) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives `path` the owner, extended attributes, mode and times of `attr`
/// (in that order: chown clears setuid bits, and ACLs set the group bits
/// that the mode then restates). The owner is left when not running as
/// root, as `cp -a` does.
pub fn apply(path: &Path, attr: &Attr, xattrs: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    match std::os::unix::fs::lchown(path, Some(attr.uid), Some(attr.gid)) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !is_root() => {}
        other => other?,
    }
    for (name, value) in xattrs {
        xattr::set(path, OsStr::from_bytes(name), value)?;
    }
    // What the target added (a directory's default ACL inherited) goes,
    // as the copy is to hold what the snapshot holds; a security label is
    // the system's.
    for name in xattr::list(path)? {
        let name = name.as_bytes();
        if name != LABEL && !xattrs.iter().any(|(n, _)| n == name) {
            xattr::remove(path, OsStr::from_bytes(name))?;
        }
    }
    if attr.kind != FileKind::Symlink {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(attr.perm))?;
    }
    set_times(path, attr.atime, attr.mtime)
}

/// The security label the system gives every new file (SELinux), which
/// a restore leaves as the system set it.
pub const LABEL: &[u8] = b"security.selinux";

/// Whether this process may give files away (and so must have restored
/// owners).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn set_times(path: &Path, atime: Timestamp, mtime: Timestamp) -> io::Result<()> {
    let c = cstring(path)?;
    let ts = |t: Timestamp| libc::timespec {
        tv_sec: t.secs as libc::time_t,
        tv_nsec: t.nanos as libc::c_long,
    };
    let times = [ts(atime), ts(mtime)];
    // SAFETY: `c` is a valid path and `times` two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Flushes the filesystem directory `dir` is on: a restore is done when
/// its bytes are on the disk, not when they are in the page cache.
pub fn sync(dir: &Path) -> io::Result<()> {
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)?;
    // SAFETY: a valid open descriptor.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `path` as restored, for the check.
pub fn observe(path: &Path) -> io::Result<Observed> {
    let attr = lstat(path)?;
    Ok(Observed {
        target: if attr.kind == FileKind::Symlink {
            std::fs::read_link(path)?.as_os_str().as_bytes().to_vec()
        } else {
            Vec::new()
        },
        xattrs: xattrs_at(path)?,
        attr,
    })
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a path"))
}
