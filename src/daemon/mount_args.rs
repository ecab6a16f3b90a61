//! Command-line definitions of strata-mountd, shared with `strata mount`
//! (which starts it) and the man page generator.

use std::path::PathBuf;

use clap::{Args, Parser};

/// How a mount looks to users; given to `strata mount` and passed on.
#[derive(Clone, Debug, Args)]
pub struct MountOptions {
    /// Directory to mount on (must exist; `strata mount` creates the default).
    #[arg(default_value = DEFAULT_MOUNTPOINT)]
    pub mountpoint: PathBuf,
    /// Mount even on a directory that is not empty (refused otherwise, exit
    /// 14: the mount hides what is there until it is unmounted).
    #[arg(long)]
    pub nonempty: bool,
    /// Let users other than the owner in (the mount root becomes 0755;
    /// head/ stays unwritable to them).
    #[arg(long)]
    pub allow_other: bool,
    /// Let members of GROUP browse the mount and its snapshots (name or gid).
    #[arg(long, value_name = "GROUP")]
    pub reader_group: Option<String>,
    /// FUSE request threads reading /dev/fuse.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub threads: usize,
    /// How requests reach the daemon: FUSE over io_uring where the kernel
    /// offers it (auto), only (io-uring: the mount fails without it), or
    /// never (dev-fuse). See strata-mountd(8), TRANSPORT.
    #[arg(long, env = "STRATA_TRANSPORT", value_enum, default_value_t = Transport::Auto)]
    pub transport: Transport,
    /// The host configuration: throttling and alerts [default: /etc/strata/strata.toml, none if missing].
    #[arg(long, env = "STRATA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Serves a strata repository as a filesystem.
///
/// MOUNTPOINT/head/ is the read-write tree backups are written into;
/// MOUNTPOINT/snapshots/<UTC time>/ are read-only snapshots, with `latest`
/// and label symlinks; `mkdir MOUNTPOINT/snapshots/LABEL` takes a snapshot.
///
/// Usually started by `strata mount`, which hands it the key on an
/// inherited descriptor and returns once the mount answers. Started
/// directly (e.g. by systemd with Type=notify), it reads the key from
/// --key-file or --password-file, or the default key file, and signals
/// readiness with sd_notify. It runs until the filesystem is unmounted
/// (`strata umount`, umount(8), or SIGTERM), committing everything first.
/// On SIGTERM while a process has a file open in the mount, it logs that
/// the mount is busy and unmounts as soon as it is free.
/// The control socket is /run/strata/<repository id>.sock (owner only);
/// the outcome of the final commit is left beside it, in
/// <repository id>.outcome, for `strata umount`. Logs go to standard
/// error (STRATA_LOG=debug for more).
#[derive(Debug, Parser)]
#[command(name = "strata-mountd", version, after_help = crate::daemon::mount_args::EXIT_CODES)]
pub struct MountdArgs {
    /// Repository directory.
    #[arg(long, short = 'r', env = "STRATA_REPO", default_value = crate::daemon::mount_args::DEFAULT_REPO, value_name = "DIR")]
    pub repo: PathBuf,
    /// Mountpoint and who may see the mount.
    #[command(flatten)]
    pub mount: MountOptions,
    /// Read the key from this inherited file descriptor (how `strata mount` passes it).
    #[arg(long, value_name = "FD")]
    pub key_fd: Option<i32>,
    /// Unlock with this key file [default: /etc/strata/keys/<repository id>.key if it exists].
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Read the passphrase from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Report "ready" or the error on this inherited descriptor (for `strata mount`).
    #[arg(long, value_name = "FD", hide = true)]
    pub ready_fd: Option<i32>,
}

/// The FUSE transport asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// The io_uring when the kernel offers it, /dev/fuse otherwise.
    Auto,
    /// The io_uring or no mount.
    IoUring,
    /// /dev/fuse only.
    DevFuse,
}

impl Transport {
    /// The option's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Auto => "auto",
            Transport::IoUring => "io-uring",
            Transport::DevFuse => "dev-fuse",
        }
    }
}

/// strata-mountd(8)'s TRANSPORT section, as roff.
pub const TRANSPORT_MAN: &str = r#".SH TRANSPORT
The kernel hands FUSE requests to the daemon in one of two ways.
FUSE over io_uring (Linux 6.14 and later) gives each CPU a queue, served by
a thread pinned to that CPU: a request is answered and the next one fetched
in one submission, on the CPU that made it. The classic transport reads
requests from /dev/fuse with \fB\-\-threads\fR threads, each woken across CPUs.
Forgets, interrupts and cache notifications use /dev/fuse on either.
.PP
With \fB\-\-transport auto\fR (the default) the daemon asks for the ring
when it mounts and uses it when the kernel offers it; otherwise it serves
/dev/fuse and says why, once, in its log. \fBstrata status\fR shows the
transport in use: "io_uring (N queues, M requests served on the ring)", or
"dev\-fuse (why the ring is not used)". \fB\-\-transport io\-uring\fR
refuses to mount without the ring (exit 14); \fB\-\-transport dev\-fuse\fR
turns it off. STRATA_TRANSPORT sets the same.
.PP
The kernel offers the ring only while the fuse module's \fBenable_uring\fR
parameter is on; the daemon never changes it. Until the next boot:
.PP
.RS
echo Y > /sys/module/fuse/parameters/enable_uring
.RE
.PP
At every boot: \fBoptions fuse enable_uring=1\fR in
/etc/modprobe.d/strata.conf where fuse is a module, \fBfuse.enable_uring=1\fR
on the kernel command line where it is built in, or, for the
strata\-mountd unit only, a drop\-in with
.PP
.RS
ExecStartPre=/bin/sh \-c 'echo Y > /sys/module/fuse/parameters/enable_uring'
.RE
.PP
The parameter is read when a mount starts: mounts made before it was set
stay on /dev/fuse until they are mounted again.
.SH WRITES
A write into head/ is answered once its bytes are cut into chunks; the
chunks are hashed, compressed and sealed by a worker per CPU (at most four,
the threads named strata\-seal\-N) and appended to the open pack in the
order they were written. close(2) and fsync(2) wait for a file's chunks, and
report any that could not be stored (ENOSPC, EIO): an error of a write that
was answered is never lost.
.PP
The kernel's writeback cache is not used. Measured on rsync of the benchmark
data it halves the write requests but adds as many attribute updates, and
the ingest takes as long; without it a failed write reaches the writer no
later than its close.
"#;

/// Where `strata mount` mounts when given no mountpoint.
pub const DEFAULT_MOUNTPOINT: &str = "/mnt/strata";

/// Default repository location when neither --repo nor STRATA_REPO is given.
pub const DEFAULT_REPO: &str = "/var/lib/strata/repo";

/// Exit codes of both programs, as `--help` shows them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   error (the message says what failed and what to do; mount: e.g.
      strata-mountd is not found)
  2   wrong usage: unknown flag, missing argument, invalid value
  10  no repository at the given location (mount: the default one is
      missing after earlier use; is its disk mounted?)
  11  the repository is in use by another process (mounted or locked)
  12  wrong or missing passphrase or key file
  13  the repository is damaged (check found errors, corrupt data, missing
      index; prune stopped before deleting anything because of damage)
  14  the mountpoint is missing, not a directory, not empty (mount without
      --nonempty), already mounted, not mounted, or busy (umount; head
      reset while files in head/ are open)
  15  the host configuration (strata.toml) is unreadable, unsafe or invalid,
      or a program it names (or the backup copy script) could be changed by
      someone other than root
  16  check --freshness: no good snapshot within the allowed age
  20  backup: a hook failed or timed out (the message says whether the
      snapshot was taken)
  21  backup: the copy command failed
  22  backup: validation failed; the snapshot is kept, marked failed, not latest;
      drill: the restored service failed its check
  23  backup: the snapshot is kept but marked inconsistent (a hook failed)
  24  backup, snapshot create, head reset: another backup run is in
      progress on the repository (its pid, label and start time are
      named); nothing ran
  25  umount: not everything written was committed (the head had turned
      read-only after a storage failure, or the daemon had died; the mount
      is gone all the same); snapshot create: no snapshot was taken because
      of such a failure (the message says what was kept and what to do);
      also when the daemon's final commit at unmount failed
  26  forget, backup: refused to protect a snapshot: it is under a legal
      hold or inside the retention lock, or the lock asked for is shorter
      than the repository's; nothing changed
  27  drill: everything read back as the snapshot holds it, but slower than
      the recovery-time objective (a drill that found damage exits 13; one
      whose target refused the restore, 1)
  28  replicate: a replica has diverged from its source (it holds a
      snapshot the source does not have under that number) or is a copy of
      another repository; it was left as it was
  29  replicate --verify: a replica is a consistent prefix of its source
      but lacks snapshots or objects (or was never made); `strata
      replicate` brings it up to date
  30  audit verify: the audit log was tampered with (a record edited,
      removed, reordered or cut off, or not the one a snapshot vouches for)
  31  find: nothing matched; versions: no kept snapshot holds the path;
      diff A B PATH: neither snapshot holds PATH
  128+N  backup: stopped by signal N (130 SIGINT, 143 SIGTERM); the copy
      and hooks were stopped and on_failure hooks ran";

/// A `--group` that names no group.
#[derive(Debug, thiserror::Error)]
#[error("no group {0:?} (see /etc/group)")]
pub struct NoSuchGroup(pub String);

impl crate::exit::ExitCode for NoSuchGroup {
    fn exit_code(&self) -> u8 {
        crate::exit::ERROR
    }
}

/// The gid of GROUP (a name or a number).
pub fn resolve_group(group: &str) -> Result<u32, NoSuchGroup> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(name, _)| *name == group)
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| NoSuchGroup(group.to_owned()))
}
