//! The directory a repository is mounted on: is it usable, is something
//! already mounted there (alive or dead), and the immutable flag that makes
//! writers fail on the bare directory while nothing is mounted.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The mount source prefix that marks a strata mount in /proc/self/mountinfo.
pub const SOURCE_PREFIX: &str = "strata:";

/// Where daemons put their control sockets, unless STRATA_RUNTIME_DIR says otherwise.
pub const RUNTIME_DIR: &str = "/run/strata";

/// Why a directory cannot be mounted on.
#[derive(Debug, thiserror::Error)]
pub enum MountpointError {
    /// It does not exist.
    #[error("mountpoint {0} does not exist: create it with mkdir first")]
    Missing(PathBuf),
    /// It is not a directory.
    #[error("mountpoint {0} is not a directory")]
    NotDir(PathBuf),
    /// It holds files, which the mount would hide (the first one named).
    #[error("mountpoint {0} is not empty (it holds {1}): the mount would hide what is there. Choose an empty directory, or pass --nonempty if you mean to mount over it")]
    NotEmpty(PathBuf, String),
    /// A live filesystem is mounted there.
    #[error("{0} is already mounted ({1}): unmount it first (strata umount {0})")]
    Busy(PathBuf, String),
    /// Mounting failed.
    #[error("cannot mount on {0}: {1}")]
    Mount(PathBuf, String),
    /// Nothing of ours is mounted there.
    #[error("{0} is not a strata mount")]
    NotMounted(PathBuf),
}

/// One line of /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The filesystem's device number (major, minor); anonymous (0, N)
    /// for tmpfs, overlay, btrfs and FUSE.
    pub dev: (u32, u32),
    /// Where it is mounted.
    pub target: PathBuf,
    /// Filesystem type, e.g. "fuse".
    pub fstype: String,
    /// Source, for strata "strata:<repository id>".
    pub source: String,
}

impl MountEntry {
    /// Whether strata-mountd made this mount.
    pub fn is_strata(&self) -> bool {
        self.fstype.starts_with("fuse") && self.source.starts_with(SOURCE_PREFIX)
    }

    /// The repository id of a strata mount.
    pub fn repo_id(&self) -> Option<&str> {
        self.source.strip_prefix(SOURCE_PREFIX)
    }
}

/// Undoes the octal escapes of /proc/self/mountinfo (`\040` is a space).
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Parses mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let (major, minor) = fields.get(2)?.split_once(':')?;
            let target = fields.get(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?.to_owned();
            let source = String::from_utf8_lossy(&unescape(r.next()?)).into_owned();
            Some(MountEntry {
                dev: (major.parse().ok()?, minor.parse().ok()?),
                target: PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(target))),
                fstype,
                source,
            })
        })
        .collect()
}

/// The topmost mount on `dir` (already canonical), if any.
pub fn mounted_on(dir: &Path) -> Option<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.target == dir)
}

/// The strata mounts of repository `id` whose daemon has died.
pub fn dead_mounts_of(id: &str) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.is_strata() && m.repo_id() == Some(id) && is_dead(&m.target))
        .map(|m| m.target)
        .collect()
}

/// The path as the kernel records mounts: absolute, without symlinks. A
/// dead FUSE mount cannot be stat'ed, so only the parent is resolved.
pub fn canonical(dir: &Path) -> PathBuf {
    if let Ok(p) = dir.canonicalize() {
        return p;
    }
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            parent
                .canonicalize()
                .map(|p| p.join(name))
                .unwrap_or_else(|_| dir.to_path_buf())
        }
        _ => dir.to_path_buf(),
    }
}

/// Whether a FUSE mount on `dir` has lost its daemon. statfs always
/// reaches the daemon (stat may be answered from the kernel's cache).
pub fn is_dead(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct; `c` is NUL-terminated.
    let rc = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st)
    };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOTCONN)
}

/// Detaches whatever is mounted on `dir` (lazy unmount).
pub fn detach(dir: &Path) -> std::io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts `dir` now, not lazily: EBUSY while a process has a file or its
/// working directory in it, and the mount then stays as it was. A `dir`
/// that is no longer a mountpoint is not an error.
pub fn unmount(dir: &Path) -> std::io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    Ok(())
}

/// Checks that `dir` can take a mount: an empty directory, or with
/// `nonempty` any directory. A dead strata mount left by a killed daemon
/// is detached, and its note returned for the user.
pub fn prepare(dir: &Path, nonempty: bool) -> Result<Option<String>, MountpointError> {
    let dir = canonical(dir);
    if let Some(m) = mounted_on(&dir) {
        if m.is_strata() && is_dead(&dir) {
            detach(&dir).map_err(|e| {
                MountpointError::Mount(dir.clone(), format!("detaching the dead mount: {e}"))
            })?;
            return Ok(Some(format!(
                "{} had a dead strata mount (its daemon had stopped); it was detached",
                dir.display()
            )));
        }
        return Err(MountpointError::Busy(
            dir,
            format!("{} from {}", m.fstype, m.source),
        ));
    }
    match std::fs::metadata(&dir) {
        Err(_) => Err(MountpointError::Missing(dir)),
        Ok(m) if !m.is_dir() => Err(MountpointError::NotDir(dir)),
        Ok(_) if nonempty => Ok(None),
        Ok(_) => {
            let mut entries = std::fs::read_dir(&dir).into_iter().flatten().flatten();
            let Some(first) = entries.next() else {
                return Ok(None);
            };
            let first = first.file_name().to_string_lossy().into_owned();
            let what = match entries.count() {
                0 => first,
                n => format!("{first} and {n} more"),
            };
            Err(MountpointError::NotEmpty(dir, what))
        }
    }
}

/// Where repository `repo_id` is mounted, if a strata mount of it exists.
pub fn mount_of(repo_id: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&text)
        .into_iter()
        .find(|m| m.is_strata() && m.repo_id() == Some(repo_id))
        .map(|m| m.target)
}

/// Unmounts `dir` as [`unmount`] does, trying again every 100 ms while it
/// is busy, so that a stop asked for while a file is open in the mount
/// (`systemctl stop` during a copy) happens once it is closed. `busy` is
/// called once, at the first refusal.
pub fn unmount_when_free(dir: &Path, busy: impl FnOnce()) -> std::io::Result<()> {
    let mut busy = Some(busy);
    loop {
        match unmount(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if let Some(busy) = busy.take() {
                    busy();
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

const FS_IMMUTABLE_FL: libc::c_long = 0x10;

/// Sets or clears the immutable flag of the bare directory `dir`, so that
/// while nothing is mounted a writer fails instead of filling it; whether
/// the flag changed.
pub fn set_immutable(dir: &Path, on: bool) -> std::io::Result<bool> {
    let f = std::fs::File::open(dir)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one long through the pointer.
    unsafe {
        if libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let new = if on {
            flags | FS_IMMUTABLE_FL
        } else {
            flags & !FS_IMMUTABLE_FL
        };
        if new != flags && libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &new) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(new != flags)
    }
}

/// What to tell the administrator when strata made a directory it did not
/// create immutable.
pub fn immutable_note(dir: &Path) -> String {
    format!(
        "made the mountpoint {0} immutable (chattr +i), so that a writer fails on the bare directory while nothing is mounted instead of filling the disk below; it stays so after `strata umount`. To remove or reuse the directory: chattr -i {0}",
        dir.display()
    )
}

/// The directory of control sockets.
pub fn runtime_dir() -> PathBuf {
    std::env::var_os("STRATA_RUNTIME_DIR").map_or_else(|| PathBuf::from(RUNTIME_DIR), PathBuf::from)
}

/// The control socket of the daemon serving repository `repo_id`.
pub fn socket_path(repo_id: &str) -> PathBuf {
    runtime_dir().join(format!("{repo_id}.sock"))
}

/// Where the daemon serving repository `repo_id` leaves the outcome of
/// its final commit for `strata umount`, which waits for it to exit.
pub fn outcome_path(repo_id: &str) -> PathBuf {
    runtime_dir().join(format!("{repo_id}.outcome"))
}

/// The mount source naming repository `repo_id`.
pub fn source_of(repo_id: &str) -> String {
    format!("{SOURCE_PREFIX}{repo_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse() {
        let text =
            "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - fuse.strata strata:abc rw,user_id=0\n\
                    22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].dev, (98, 0));
        assert_eq!((m[1].dev, m[1].source.as_str()), ((8, 1), "/dev/sda1"));
        assert_eq!((m[2].dev, m[2].fstype.as_str()), ((0, 38), "cgroup2"));
        assert_eq!(m[0].target, PathBuf::from("/mnt/a b"));
        assert!(m[0].is_strata());
        assert_eq!(m[0].repo_id(), Some("abc"));
        assert!(!m[1].is_strata());
        assert_eq!(m[0].source, "strata:abc");
        assert_eq!(m[1].target, PathBuf::from("/"));
    }

    #[test]
    fn a_missing_mountpoint_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = prepare(&missing, false).unwrap_err();
        assert!(matches!(e, MountpointError::Missing(_)));
        assert!(e.to_string().contains("nope"));
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            prepare(&file, false),
            Err(MountpointError::NotDir(_))
        ));
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(prepare(&empty, false).unwrap().is_none());
        // `dir` holds "f" and "empty".
        let e = prepare(dir.path(), false).unwrap_err();
        assert!(matches!(e, MountpointError::NotEmpty(..)));
        assert!(e.to_string().contains("--nonempty"), "{e}");
        assert!(prepare(dir.path(), true).unwrap().is_none());
    }
}
