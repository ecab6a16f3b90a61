//! The vocabulary of the head filesystem: inode numbers, validated names,
//! callers, attributes, and the one error type with its errno table.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::store::chunks::StoreError;

/// An inode number of the head. 1 is the root directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InodeNo(pub u64);

impl InodeNo {
    /// The root directory.
    pub const ROOT: InodeNo = InodeNo(1);
}

impl fmt::Display for InodeNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inode {}", self.0)
    }
}

/// A directory entry name: not empty, not "." or "..", no '/' or NUL, at
/// most 255 bytes. Any other bytes (not only UTF-8) are allowed, as on Linux.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileName(Vec<u8>);

impl FileName {
    /// The longest name Linux accepts.
    pub const MAX_LEN: usize = 255;

    /// Validates `bytes` as one path component.
    pub fn new(bytes: &[u8]) -> Result<FileName, FsError> {
        if bytes.is_empty()
            || bytes == b"."
            || bytes == b".."
            || bytes.contains(&b'/')
            || bytes.contains(&0)
        {
            return Err(FsError::InvalidName);
        }
        if bytes.len() > Self::MAX_LEN {
            return Err(FsError::NameTooLong);
        }
        Ok(FileName(bytes.to_vec()))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for FileName {
    /// Names are patient data: debug output shows only their length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileName({} bytes)", self.0.len())
    }
}

/// Who makes a request: from FUSE (uid, gid, pid of the calling thread) or
/// from the control socket (SO_PEERCRED). Recorded for audit; new files are
/// owned by `uid` and `gid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Filesystem user id.
    pub uid: u32,
    /// Filesystem group id.
    pub gid: u32,
    /// Process id.
    pub pid: u32,
}

impl Caller {
    /// The superuser, for tests and internal work.
    pub const ROOT: Caller = Caller {
        uid: 0,
        gid: 0,
        pid: 0,
    };

    /// A tracing span for one operation on the caller's behalf: every log
    /// line inside it names who asked (ids only; paths are patient data).
    pub fn span(&self, op: &'static str) -> tracing::span::EnteredSpan {
        tracing::debug_span!("op", op, uid = self.uid, gid = self.gid, pid = self.pid).entered()
    }
}

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

impl FileKind {
    /// The S_IFMT bits of this kind.
    pub fn type_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::CharDevice => libc::S_IFCHR,
            FileKind::BlockDevice => libc::S_IFBLK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
        }
    }

    /// The kind named by the S_IFMT bits of `mode`.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            _ => return None,
        })
    }
}

/// A point in time: seconds and nanoseconds since the epoch (may be negative).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds, 0..1e9.
    pub nanos: u32,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }
}

/// The attributes an inode has in the head and in a snapshot alike. Kept
/// as one struct in the inode record and in tree entries (postcard encodes
/// a nested struct as its fields in order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Kind.
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky.
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links (for a directory: 2 + subdirectories).
    pub nlink: u32,
    /// Size (for a symlink, the target's length).
    pub size: u64,
    /// Last access.
    pub atime: Timestamp,
    /// Last content change.
    pub mtime: Timestamp,
    /// Last attribute change.
    pub ctime: Timestamp,
    /// Creation.
    pub btime: Timestamp,
    /// Device number of a device node.
    pub rdev: u64,
}

/// The attributes of an inode, as stat(2) shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    /// Inode number.
    pub ino: InodeNo,
    /// Kind.
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (no type bits).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links.
    pub nlink: u32,
    /// Size in bytes (for a symlink, the target's length).
    pub size: u64,
    /// Bytes of storage the content occupies before deduplication (holes excluded).
    pub blocks_bytes: u64,
    /// Last access.
    pub atime: Timestamp,
    /// Last content change.
    pub mtime: Timestamp,
    /// Last attribute change.
    pub ctime: Timestamp,
    /// Creation.
    pub btime: Timestamp,
    /// Device number of a device node.
    pub rdev: u64,
}

impl Attr {
    /// The attributes of inode `ino` with `meta`.
    pub fn new(ino: InodeNo, meta: &Meta) -> Attr {
        Attr {
            ino,
            kind: meta.kind,
            perm: meta.perm,
            uid: meta.uid,
            gid: meta.gid,
            nlink: meta.nlink,
            size: meta.size,
            blocks_bytes: meta.size,
            atime: meta.atime,
            mtime: meta.mtime,
            ctime: meta.ctime,
            btime: meta.btime,
            rdev: meta.rdev,
        }
    }

    /// Full st_mode: type and permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.type_bits() | self.perm
    }
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only.
    Read,
    /// Write access (O_WRONLY, O_RDWR).
    Write,
    /// Write access, emptied by the open itself (O_TRUNC): the mount
    /// negotiates atomic O_TRUNC, so the kernel sends no truncate of its own.
    Truncate,
}

/// Attribute changes of setattr; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits.
    pub perm: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend with a hole).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<Timestamp>,
    /// New modification time.
    pub mtime: Option<Timestamp>,
}

/// How rename treats an existing target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RenameMode {
    /// Replace the target if there is one (rename(2)).
    #[default]
    Replace,
    /// Fail with EEXIST if the target exists (RENAME_NOREPLACE).
    NoReplace,
    /// Swap source and target, both must exist (RENAME_EXCHANGE).
    Exchange,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Its name.
    pub name: FileName,
    /// Its inode.
    pub ino: InodeNo,
    /// Its kind.
    pub kind: FileKind,
    /// Where to resume the listing after this entry.
    pub cursor: u64,
}

/// Filesystem statistics for statfs(2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStats {
    /// Bytes the repository's disk can still take.
    pub free_bytes: u64,
    /// Bytes stored in the repository.
    pub used_bytes: u64,
    /// Inodes in the head.
    pub inodes: u64,
}

/// A filesystem operation that failed. [`FsError::errno`] is the one place
/// these become errno values.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// No such inode or name.
    #[error("no such file or directory")]
    NotFound,
    /// The name exists.
    #[error("file exists")]
    Exists,
    /// Not a directory where one is needed.
    #[error("not a directory")]
    NotDir,
    /// A directory where a non-directory is needed.
    #[error("is a directory")]
    IsDir,
    /// rmdir or rename over a directory that has entries.
    #[error("directory not empty")]
    NotEmpty,
    /// An invalid name ("", ".", "..", or with '/' or NUL).
    #[error("invalid file name")]
    InvalidName,
    /// A name longer than 255 bytes.
    #[error("file name too long")]
    NameTooLong,
    /// A request that makes no sense for this inode (e.g. readlink of a file).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// Moving a directory into itself or its own descendant.
    #[error("cannot move a directory into itself")]
    Loop,
    /// No such extended attribute.
    #[error("no such attribute")]
    NoAttr,
    /// A value that exceeds a limit (xattr size, file size).
    #[error("value too large")]
    TooLarge,
    /// Too many hard links.
    #[error("too many links")]
    TooManyLinks,
    /// Snapshots and read-only mode.
    #[error("read-only")]
    ReadOnly,
    /// Not allowed for this inode (e.g. a default ACL on a file).
    #[error("permission denied")]
    PermissionDenied,
    /// Refused for now because of something else going on (a backup run).
    #[error("busy: {0}")]
    Busy(&'static str),
    /// The store is out of space; nothing was half-stored.
    #[error("no space left on device")]
    NoSpace,
    /// A chunk or tree failed verification; the id is logged, no data returned.
    #[error("stored data is damaged: {0}")]
    Corrupt(#[source] Fault),
    /// An I/O failure below the store.
    #[error("I/O error: {0}")]
    Io(#[source] Fault),
    /// A directory a reset left unloaded was read in a transaction that
    /// cannot load it; the head loads it and retries, so this never
    /// reaches a caller but in a race with a second reset.
    #[error("directory {} is being loaded from its snapshot; try again", .0 .0)]
    Unloaded(InodeNo),
}

/// What failed below the tree, for an [`FsError::Io`] or
/// [`FsError::Corrupt`]: what was being done (or found), and the error that
/// caused it, kept as the source. Shown as "what: cause".
#[derive(Debug)]
pub struct Fault {
    what: Cow<'static, str>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Fault {
    /// A fault with no error below it.
    pub fn new(what: impl Into<Cow<'static, str>>) -> Fault {
        Fault {
            what: what.into(),
            source: None,
        }
    }

    /// `what` failed because of `source`.
    pub fn caused(
        what: impl Into<Cow<'static, str>>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Fault {
        Fault {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The fault `source` is, described by itself.
    pub fn of(source: impl std::error::Error + Send + Sync + 'static) -> Fault {
        Fault::caused("", source)
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            None => f.write_str(&self.what),
            Some(s) if self.what.is_empty() => write!(f, "{s}"),
            Some(s) => write!(f, "{}: {s}", self.what),
        }
    }
}

impl std::error::Error for Fault {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl FsError {
    /// The errno a system call reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::InvalidName => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::Loop => libc::EINVAL,
            FsError::NoAttr => libc::ENODATA,
            FsError::TooLarge => libc::E2BIG,
            FsError::TooManyLinks => libc::EMLINK,
            FsError::ReadOnly => libc::EROFS,
            FsError::PermissionDenied => libc::EACCES,
            FsError::Busy(_) => libc::EBUSY,
            FsError::NoSpace => libc::ENOSPC,
            // Damaged data must not pass for a missing file or for success.
            FsError::Corrupt(_) => libc::EIO,
            FsError::Io(_) => libc::EIO,
            FsError::Unloaded(_) => libc::EAGAIN,
        }
    }

    /// The same error for another caller (a file's write failure, kept
    /// until its flush): a fault's cause is kept as its text.
    pub fn again(&self) -> FsError {
        match self {
            FsError::NotFound => FsError::NotFound,
            FsError::Exists => FsError::Exists,
            FsError::NotDir => FsError::NotDir,
            FsError::IsDir => FsError::IsDir,
            FsError::NotEmpty => FsError::NotEmpty,
            FsError::InvalidName => FsError::InvalidName,
            FsError::NameTooLong => FsError::NameTooLong,
            FsError::Invalid(what) => FsError::Invalid(what),
            FsError::Loop => FsError::Loop,
            FsError::NoAttr => FsError::NoAttr,
            FsError::TooLarge => FsError::TooLarge,
            FsError::TooManyLinks => FsError::TooManyLinks,
            FsError::ReadOnly => FsError::ReadOnly,
            FsError::PermissionDenied => FsError::PermissionDenied,
            FsError::Busy(what) => FsError::Busy(what),
            FsError::NoSpace => FsError::NoSpace,
            FsError::Corrupt(f) => FsError::Corrupt(Fault::new(f.to_string())),
            FsError::Io(f) => FsError::Io(Fault::new(f.to_string())),
            FsError::Unloaded(ino) => FsError::Unloaded(*ino),
        }
    }
}

impl From<StoreError> for FsError {
    fn from(e: StoreError) -> FsError {
        match e {
            StoreError::NoSpace => FsError::NoSpace,
            StoreError::Failed(_) => FsError::ReadOnly,
            // A chunk that fails its check, and a pack that does not open,
            // decode, or read after the retries: logged as damage, EIO.
            StoreError::Corrupt { .. } | StoreError::Pack(_) => {
                tracing::error!(error = %e, "damaged data");
                FsError::Corrupt(Fault::of(e))
            }
            // The index names a chunk the packs do not hold: damage, not
            // a missing file (ENOENT would let a copy skip it silently).
            StoreError::NotFound(id) => {
                FsError::Corrupt(Fault::new(format!("chunk {id} is missing")))
            }
            StoreError::TooLarge { .. } => FsError::TooLarge,
            // A failed read or write of a repository file, or of the index
            // database, that is not a full disk (the store reports that as
            // NoSpace) nor a sticky failure (Failed): EIO, with the message.
            StoreError::Io { .. } | StoreError::Index(_) => FsError::Io(Fault::of(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every store failure reaches a writer or reader as an errno that
    /// says what happened, never as success or ENOENT.
    #[test]
    fn store_failures_map_to_their_errnos() {
        let io = || std::io::Error::from_raw_os_error(libc::EIO);
        let cases = [
            (StoreError::NoSpace, libc::ENOSPC),
            (StoreError::Failed("sync failed".into()), libc::EROFS),
            (
                StoreError::NotFound(crate::store::id::ChunkId([7; 32])),
                libc::EIO,
            ),
            (StoreError::TooLarge { len: 1 << 30 }, libc::E2BIG),
            (
                StoreError::Io {
                    op: "open",
                    path: "index.redb".into(),
                    source: io(),
                },
                libc::EIO,
            ),
            (
                StoreError::Index(crate::store::index::IndexError::Locked),
                libc::EIO,
            ),
            (
                StoreError::Corrupt {
                    chunk: crate::store::id::ChunkId([7; 32]),
                    pack: crate::store::id::PackId([8; crate::store::format::PACK_ID_LEN]),
                    offset: 4096,
                    source: crate::store::crypto::codec::DecodeError::HashMismatch,
                },
                libc::EIO,
            ),
        ];
        for (e, errno) in cases {
            let shown = e.to_string();
            assert_eq!(FsError::from(e).errno(), errno, "{shown}");
        }
    }

    /// A store failure reaches the caller with its message as before, and
    /// with the store's error, down to the OS's, as its source.
    #[test]
    fn store_failures_keep_their_source() {
        use std::error::Error;
        let e = FsError::from(StoreError::Io {
            op: "open",
            path: "index.redb".into(),
            source: std::io::Error::from_raw_os_error(libc::EIO),
        });
        assert!(
            e.to_string().starts_with("I/O error: open index.redb: "),
            "{e}"
        );
        let mut causes = Vec::new();
        let mut c = e.source();
        while let Some(cause) = c {
            causes.push(cause);
            c = cause.source();
        }
        assert!(causes
            .iter()
            .any(|c| matches!(c.downcast_ref::<StoreError>(), Some(StoreError::Io { .. }))));
        let os = causes
            .iter()
            .find_map(|c| c.downcast_ref::<std::io::Error>())
            .expect("the OS error is in the chain");
        assert_eq!(os.raw_os_error(), Some(libc::EIO));

        let damaged = FsError::Corrupt(Fault::new("chunk 07 is missing"));
        assert_eq!(
            damaged.to_string(),
            "stored data is damaged: chunk 07 is missing"
        );
        assert!(damaged.source().unwrap().source().is_none());
    }

    #[test]
    fn names_are_validated_once() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(matches!(FileName::new(bad), Err(FsError::InvalidName)));
        }
        assert!(matches!(
            FileName::new(&[b'x'; 256]),
            Err(FsError::NameTooLong)
        ));
        assert!(FileName::new(&[b'x'; 255]).is_ok());
        assert!(FileName::new(b"\xff\xfe newline\n").is_ok());
    }
}
