//! I/O priority through cgroup v2: `io.weight` and `io.max`.
//!
//! The daemon's pack writes are buffered. Most reach the disk from its own
//! writeback thread at the class of [`crate::sys::ioprio`], but whatever the
//! kernel's flusher threads write back is beyond `ioprio_set`. The cgroup v2
//! io controller covers that too (writeback is charged to the cgroup that
//! dirtied the pages), and weighs reads as well. [`place`] creates a child cgroup next to where the process is,
//! sets `io.weight` and/or `io.max` for the repository's block device in it,
//! reads them back, and only then moves the process in, so a failure leaves
//! the process where it was. Each failure says what is missing:
//! no cgroup v2, the io controller held by cgroup v1 (a hybrid setup), a
//! parent that does not delegate io, no permission, or a repository on a
//! filesystem without a block device.
//!
//! `io.weight` takes effect only under the io.cost controller or the BFQ
//! scheduler; `io.max` works with any scheduler.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::rate::ByteRate;
use crate::sys::ioprio::IoClass;
use crate::sys::mountpoint::{parse_mountinfo, MountEntry};

/// The validated `[throttle.io]` table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoPolicy {
    /// `io.weight` (1..=10000, the kernel's default is 100).
    pub weight: Option<u16>,
    /// `io.max` wbps on the repository's device.
    pub max_write: Option<ByteRate>,
    /// `io.max` rbps on the repository's device.
    pub max_read: Option<ByteRate>,
    /// The I/O scheduling class of the pack writeback thread (not a cgroup
    /// setting: see [`crate::sys::ioprio`]).
    pub class: Option<IoClass>,
}

impl IoPolicy {
    /// Whether any io controller setting is asked for.
    pub fn needs_io_controller(&self) -> bool {
        self.weight.is_some() || self.needs_device()
    }

    fn needs_device(&self) -> bool {
        self.max_write.is_some() || self.max_read.is_some()
    }
}

/// A block device number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceId {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
}

impl DeviceId {
    fn from_dev(dev: u64) -> DeviceId {
        DeviceId {
            major: libc::major(dev),
            minor: libc::minor(dev),
        }
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Why the I/O priority could not be set.
#[derive(Debug, thiserror::Error)]
pub enum IoPriorityError {
    /// This system cannot do it (no cgroup v2, no io controller there).
    #[error("cgroup I/O priority not available: {0}")]
    NotAvailable(String),
    /// The kernel refused us.
    #[error("cgroup I/O priority not permitted: {path}: {source}; {hint}")]
    NotPermitted {
        /// The file written.
        path: PathBuf,
        /// The error.
        source: io::Error,
        /// What would allow it.
        hint: String,
    },
    /// The repository has no block device to limit.
    #[error("cgroup io.max needs a block device, but {path} has none: {reason}")]
    NoBlockDevice {
        /// The repository path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another I/O error on a cgroup or sysfs file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Read back, the setting is not what was written.
    #[error("{path}: wrote {wrote:?} but it reads back as {read:?}")]
    NotApplied {
        /// The file.
        path: PathBuf,
        /// What was written.
        wrote: String,
        /// What it reads.
        read: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> IoPriorityError + '_ {
    move |source| IoPriorityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`place`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoPlacement {
    /// The child cgroup's directory.
    pub cgroup: PathBuf,
    /// The cgroup the process was in before.
    pub previous: PathBuf,
    /// Whether this call created the cgroup (rather than reusing it).
    pub created: bool,
    /// The process moved.
    pub pid: u32,
    /// The device `io.max` applies to.
    pub device: Option<DeviceId>,
    /// The `io.weight` file's content after writing.
    pub io_weight: Option<String>,
    /// The device's `io.max` line after writing.
    pub io_max: Option<String>,
}

impl fmt::Display for IoPlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} in cgroup {}", self.pid, self.cgroup.display())?;
        if let Some(w) = &self.io_weight {
            write!(f, ", io.weight {}", w.replace('\n', "; "))?;
        }
        if let Some(m) = &self.io_max {
            write!(f, ", io.max {m}")?;
        }
        Ok(())
    }
}

impl IoPlacement {
    /// Moves every process of the cgroup back to where the placed process
    /// was and removes the cgroup (when this placement created it).
    pub fn undo(&self) -> Result<(), IoPriorityError> {
        let procs = self.cgroup.join("cgroup.procs");
        let text = fs::read_to_string(&procs).map_err(io_err(&procs))?;
        let back = self.previous.join("cgroup.procs");
        for pid in text.split_whitespace() {
            match fs::write(&back, pid) {
                Ok(()) => {}
                // The process exited meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(io_err(&back)(e)),
            }
        }
        if self.created {
            fs::remove_dir(&self.cgroup).map_err(io_err(&self.cgroup))?;
        }
        Ok(())
    }
}

fn mountinfo() -> Result<Vec<MountEntry>, IoPriorityError> {
    let p = Path::new("/proc/self/mountinfo");
    Ok(parse_mountinfo(&fs::read_to_string(p).map_err(io_err(p))?))
}

/// Where the cgroup v2 hierarchy is mounted.
pub fn cgroup2_mount() -> Result<PathBuf, IoPriorityError> {
    mountinfo()?
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.target)
        .ok_or_else(|| {
            IoPriorityError::NotAvailable(
                "no cgroup v2 hierarchy is mounted (none in /proc/self/mountinfo)".into(),
            )
        })
}

/// The cgroup v2 path ("/system.slice/x.service") of process `pid`.
pub fn cgroup_of(pid: u32) -> Result<String, IoPriorityError> {
    let p = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = fs::read_to_string(&p).map_err(io_err(&p))?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
        .ok_or_else(|| {
            IoPriorityError::NotAvailable(format!(
                "process {pid} is in no cgroup v2 hierarchy ({} has no \"0::\" line)",
                p.display()
            ))
        })
}

/// The whole-disk block device holding `path`: io.max accepts disks, not
/// partitions, so a partition is mapped to its disk.
pub fn device_of(path: &Path) -> Result<DeviceId, IoPriorityError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    let mut dev = DeviceId::from_dev(meta.dev());
    if dev.major == 0 {
        // An anonymous device (tmpfs, overlayfs, btrfs, ...): a btrfs or
        // similar mount may still name its block device as the source.
        let mounts = mountinfo()?;
        let m = mounts
            .iter()
            .rev()
            .find(|m| m.dev == (dev.major, dev.minor));
        let src = m.map(|m| m.source.clone()).unwrap_or_default();
        let rdev = fs::metadata(&src)
            .ok()
            .filter(|s| {
                use std::os::unix::fs::FileTypeExt;
                s.file_type().is_block_device()
            })
            .map(|s| s.rdev());
        dev = match rdev {
            Some(r) => DeviceId::from_dev(r),
            None => {
                return Err(IoPriorityError::NoBlockDevice {
                    path: path.to_path_buf(),
                    reason: format!(
                    "its filesystem ({}, device {dev}, source {src:?}) is not on a block device",
                    m.map_or("unknown", |m| m.fstype.as_str())
                ),
                })
            }
        };
    }
    let sys = PathBuf::from(format!("/sys/dev/block/{dev}"));
    if sys.join("partition").exists() {
        let disk = fs::canonicalize(&sys).map_err(io_err(&sys))?;
        let parent_dev = disk.parent().map(|p| p.join("dev")).unwrap_or_default();
        let text = fs::read_to_string(&parent_dev).map_err(io_err(&parent_dev))?;
        let (maj, min) = text.trim().split_once(':').unwrap_or_default();
        dev = match (maj.parse(), min.parse()) {
            (Ok(major), Ok(minor)) => DeviceId { major, minor },
            _ => {
                return Err(IoPriorityError::NotAvailable(format!(
                    "{}: {text:?} is not a device number",
                    parent_dev.display()
                )))
            }
        };
    }
    Ok(dev)
}

fn controllers(path: &Path) -> Result<Vec<String>, IoPriorityError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    Ok(text.split_whitespace().map(str::to_string).collect())
}

/// Why the io controller is missing in `parent`, in words an operator can act on.
fn io_missing_reason(root: &Path, parent: &Path) -> String {
    let root_has_io = controllers(&root.join("cgroup.controllers"))
        .map(|c| c.iter().any(|x| x == "io"))
        .unwrap_or(false);
    let v1_blkio = fs::read_to_string("/proc/cgroups")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("blkio\t"))
                .and_then(|l| l.split('\t').nth(1).map(|h| h != "0"))
        })
        .unwrap_or(false);
    if !root_has_io && v1_blkio {
        format!(
            "the io controller is bound to the cgroup v1 blkio hierarchy (a hybrid cgroup setup; \
             cgroup v2 at {} has no io controller), and cgroup v1 blkio throttling does not govern \
             buffered writeback; boot with systemd.unified_cgroup_hierarchy=1 or cgroup_no_v1=blkio",
            root.display()
        )
    } else if !root_has_io {
        format!(
            "the kernel offers no io controller in cgroup v2 at {} (CONFIG_BLK_CGROUP off?)",
            root.display()
        )
    } else {
        format!(
            "the io controller is not delegated to {}: its parent's cgroup.subtree_control lacks \
             io (under systemd, set IOWeight= / IOWriteBandwidthMax= or Delegate=io in the unit)",
            parent.display()
        )
    }
}

fn classify(path: &Path, source: io::Error) -> IoPriorityError {
    match source.raw_os_error() {
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => IoPriorityError::NotPermitted {
            path: path.to_path_buf(),
            source,
            hint: "strata-mountd must run as root or in a cgroup delegated to it".into(),
        },
        _ => IoPriorityError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn write_setting(path: &Path, value: &str) -> Result<(), IoPriorityError> {
    fs::write(path, value).map_err(|source| classify(path, source))
}

/// Puts process `pid` into the cgroup v2 child `name` of its current cgroup,
/// with `policy`'s io.weight and io.max for the block device of `repo`.
/// Settings are written and read back before the process moves.
pub fn place(
    pid: u32,
    name: &str,
    policy: &IoPolicy,
    repo: &Path,
) -> Result<IoPlacement, IoPriorityError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(IoPriorityError::NotAvailable(format!(
            "{name:?} is not a usable cgroup name"
        )));
    }
    let root = cgroup2_mount()?;
    let rel = cgroup_of(pid)?;
    let parent = root.join(rel.trim_start_matches('/'));
    let device = if policy.needs_device() {
        Some(device_of(repo)?)
    } else {
        None
    };
    if policy.needs_io_controller() {
        let have = controllers(&parent.join("cgroup.controllers"))?;
        if !have.iter().any(|c| c == "io") {
            return Err(IoPriorityError::NotAvailable(io_missing_reason(
                &root, &parent,
            )));
        }
        let subtree = parent.join("cgroup.subtree_control");
        if !controllers(&subtree)?.iter().any(|c| c == "io") {
            fs::write(&subtree, "+io").map_err(|source| {
                if source.raw_os_error() == Some(libc::EBUSY) {
                    IoPriorityError::NotPermitted {
                        path: subtree.clone(),
                        source,
                        hint: format!(
                            "{} holds processes, and cgroup v2 lets only the root cgroup both \
                             hold processes and delegate controllers; start strata-mountd in a \
                             cgroup of its own (as systemd does for a service)",
                            parent.display()
                        ),
                    }
                } else {
                    classify(&subtree, source)
                }
            })?;
        }
    }
    let cgroup = parent.join(name);
    let created = match fs::create_dir(&cgroup) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(classify(&cgroup, e)),
    };
    let placement = configure(&cgroup, policy, device).and_then(|(io_weight, io_max)| {
        write_setting(&cgroup.join("cgroup.procs"), &pid.to_string())?;
        Ok(IoPlacement {
            cgroup: cgroup.clone(),
            previous: parent.clone(),
            created,
            pid,
            device,
            io_weight,
            io_max,
        })
    });
    if placement.is_err() && created {
        let _ = fs::remove_dir(&cgroup);
    }
    placement
}

type Settings = (Option<String>, Option<String>);

fn configure(
    cgroup: &Path,
    policy: &IoPolicy,
    device: Option<DeviceId>,
) -> Result<Settings, IoPriorityError> {
    let mut io_weight = None;
    if let Some(w) = policy.weight {
        let p = cgroup.join("io.weight");
        write_setting(&p, &format!("default {w}"))?;
        let read = fs::read_to_string(&p).map_err(io_err(&p))?;
        if !read.lines().any(|l| l.trim() == format!("default {w}")) {
            return Err(IoPriorityError::NotApplied {
                path: p,
                wrote: format!("default {w}"),
                read,
            });
        }
        io_weight = Some(read.trim().to_string());
    }
    let mut io_max = None;
    if let Some(dev) = device {
        let p = cgroup.join("io.max");
        let lim = |r: Option<ByteRate>| r.map_or("max".to_string(), |r| r.get().to_string());
        // All four keys, so a limit dropped from the configuration does not
        // linger in a reused cgroup.
        let line = format!(
            "{dev} rbps={} wbps={} riops=max wiops=max",
            lim(policy.max_read),
            lim(policy.max_write)
        );
        write_setting(&p, &line)?;
        let read = fs::read_to_string(&p).map_err(io_err(&p))?;
        let got = read
            .lines()
            .find(|l| l.starts_with(&format!("{dev} ")))
            .unwrap_or_default()
            .to_string();
        let want_w = policy.max_write.map(|r| format!("wbps={}", r.get()));
        let want_r = policy.max_read.map(|r| format!("rbps={}", r.get()));
        if [want_w, want_r]
            .iter()
            .flatten()
            .any(|w| !got.split_whitespace().any(|x| x == w))
        {
            return Err(IoPriorityError::NotApplied {
                path: p,
                wrote: line,
                read,
            });
        }
        io_max = Some(got);
    }
    Ok((io_weight, io_max))
}

/// [`place`] for the calling process.
pub fn place_self(
    name: &str,
    policy: &IoPolicy,
    repo: &Path,
) -> Result<IoPlacement, IoPriorityError> {
    place(std::process::id(), name, policy, repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_has_no_block_device() {
        // /dev is devtmpfs and /dev/shm tmpfs on any Linux this runs on.
        match device_of(Path::new("/dev/shm")) {
            Err(IoPriorityError::NoBlockDevice { reason, .. }) => {
                assert!(reason.contains("tmpfs"), "{reason}")
            }
            other => panic!("expected NoBlockDevice for /dev/shm, got {other:?}"),
        }
    }

    #[test]
    fn bad_names_are_refused_before_touching_anything() {
        for name in ["", "a/b", ".hidden"] {
            assert!(matches!(
                place(
                    std::process::id(),
                    name,
                    &IoPolicy::default(),
                    Path::new("/")
                ),
                Err(IoPriorityError::NotAvailable(_))
            ));
        }
    }
}
