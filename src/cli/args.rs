//! Command-line definitions: the single source of `--help`, strata(1) and
//! the shell completions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use strata::daemon::mount_args::{DEFAULT_REPO, EXIT_CODES};

/// strata: a versioned, deduplicated, encrypted backup filesystem.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes, before or after the command name.
#[derive(Debug, Args)]
pub struct Global {
    /// Repository directory, or s3://BUCKET/PREFIX for a repository whose
    /// packs live in an S3-compatible bucket (its local part then lives in
    /// $STRATA_CACHE_DIR/s3/BUCKET/PREFIX, /var/cache/strata by default;
    /// endpoint, region and credentials come from the AWS_* variables).
    #[arg(long, short = 'r', global = true, env = "STRATA_REPO", default_value = DEFAULT_REPO, value_name = "DIR")]
    pub repo: PathBuf,
    /// The bucket's URL when --repo named one (--repo is then its local
    /// directory).
    #[arg(skip)]
    pub remote: Option<String>,
    /// Read the passphrase from the first line of FILE.
    #[arg(long, global = true, env = "STRATA_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run COMMAND (with sh -c) and take the first line it prints as the passphrase.
    #[arg(
        long,
        global = true,
        env = "STRATA_PASSWORD_COMMAND",
        value_name = "COMMAND"
    )]
    pub password_command: Option<String>,
    /// Unlock with a key file instead of a passphrase [default: /etc/strata/keys/<repository id>.key if it exists].
    #[arg(long, global = true, env = "STRATA_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Print machine-readable JSON on standard output (durations are
    /// numbers of seconds, times seconds since the epoch).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository (encrypted unless told otherwise).
    ///
    /// With no passphrase source, a random key file is generated outside the
    /// repository (mode 0400) and its path printed: copy it somewhere safe,
    /// since without it the backups cannot be read.
    Init(InitArgs),
    /// Manage the key slots that unlock the repository.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Verify the repository's structure, and with --read-data its contents.
    ///
    /// Checks every pack the index knows and every index row against its
    /// pack's table of contents; then every snapshot's trees, the hash
    /// chain of snapshot records and tombstones, and that every chunk and
    /// tree head/ refers to is stored. Works mounted: the daemon checks
    /// while writes and snapshots go on (not beside a prune), at [throttle.io]
    /// class, and `strata status` shows how far it is; packs it is still
    /// writing are left out until they are finished (the report says how
    /// many). Exit 13 when damage is found.
    Check(CheckArgs),
    /// Repair the repository.
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Create, list and inspect snapshots (through the daemon while mounted).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Forget snapshots: those a retention policy does not keep, or those
    /// named.
    ///
    /// With no SNAPSHOT, applies the keep rules given as flags, or else
    /// those of [retention] in strata.toml(5) (flags replace the file's
    /// rules as a whole; its time zone and lock still apply). Every
    /// snapshot is listed with keep or forget and each rule that keeps it
    /// (restic's reasons): last N, the newest good snapshot of each of N
    /// hours, days, ISO weeks, months or years in the named time zone,
    /// every good snapshot within DURATION of the newest, every snapshot
    /// with a label. Only good snapshots count for a rule (taken outside a
    /// backup run, or by one that completed or validated); a failed,
    /// inconsistent or pending one is kept for inspection for [retention]
    /// inspect (14 days by default), then forgotten. The newest good
    /// snapshot (`latest`) is always kept.
    ///
    /// Whatever the rules or names say, a snapshot under a legal hold
    /// (`strata snapshot hold`) or inside the repository's retention lock
    /// is never forgotten: named, it is refused with exit 26 and nothing
    /// changes. [retention] lock and lock_label lengthen the repository's
    /// lock first (it can never be shortened: a shorter one is refused
    /// with exit 26).
    ///
    /// Forgetting removes the snapshot's directory, record and run record;
    /// `latest` and labels move to the newest good snapshot still kept
    /// that carries them. A tombstone keeps the snapshot chain verifiable
    /// and the number is never given again. The data stays in the packs
    /// until `strata prune` frees it. Works mounted (through the
    /// daemon, where it waits for a drill under way, which may be reading
    /// the snapshot) and unmounted. --dry-run changes nothing, the lock
    /// included.
    Forget(ForgetArgs),
    /// Free the space forgotten snapshots used: delete packs that hold
    /// nothing still in use and repack partly used ones.
    ///
    /// Marks every object the kept snapshots and head/ use (reading every
    /// tree; one that cannot be read stops prune before anything changes),
    /// deletes the packs that hold none of them, and copies the objects in
    /// use out of the partly used packs with the most unused space, until
    /// unused space is within --max-unused of the space in use. Every
    /// object copied is verified first. The new packs and the index that
    /// points at them are durable before any pack is deleted: a crash at
    /// any point loses nothing kept, and the next open (or prune) finishes
    /// the deletion. While mounted, the daemon prunes and writes into
    /// head/ and snapshots go on: an object about to be deleted that a
    /// write stores again is stored afresh, never deduplicated against the
    /// doomed copy; the daemon's copying keeps to the write throttle and
    /// [throttle.io] class, and `strata status` shows how far it is (as
    /// does a line on a terminal). Only finished packs are judged (see
    /// `strata init --pack-size`). Exit 13 when damage stops it, 1 when
    /// the store refuses writes (nothing deleted in either case). Ends
    /// with the space freed (--json: bytes_before, bytes_after,
    /// bytes_freed and the counts).
    Prune(PruneArgs),
    /// Prove that a snapshot restores, and how fast: a timed restore by
    /// ordinary file reads, checked against the snapshot, and recorded.
    ///
    /// Reads every entry below SNAPSHOT:PATH the way a restore does:
    /// through the mount while mounted (the daemon reads
    /// MNT/snapshots/NAME/PATH with ordinary system calls), else through
    /// the same read path without the kernel. With --to DIR, restores it
    /// there as `cp -a` does (content with its holes, owners, modes,
    /// nanosecond times, symlinks, hard links, devices, fifos, extended
    /// attributes and ACLs; DIR must be empty or new; a directory's
    /// entries go into DIR itself, anything else to DIR/NAME), flushes it
    /// to the disk, which ends the timed part, then reads it back and
    /// checks every byte against the snapshot's chunk ids and content
    /// digests and every attribute against its trees. With --discard,
    /// reads every byte and attribute as the restore would and checks
    /// them, writing nothing: no plaintext reaches a disk.
    ///
    /// Files are read by --readers readers at once (8 by default: a
    /// restore of many small files waits on each file's round trips to the
    /// daemon, not on the disk). Every drill is recorded in the repository
    /// (`strata drill list`, `strata drill show N`): who ran it, the
    /// snapshot, the objective, the times, bytes and files per second and
    /// the verdict. A drill slower than --rto exits 27 and raises the
    /// drill_missed_rto alert, which a later drill that meets its
    /// objective resolves; one that found damage lists what (paths inside
    /// the snapshot, on the terminal only), exits 13 and raises
    /// drill_failed; one whose target refused the restore (space,
    /// permissions, no xattrs) exits 1, also with drill_failed.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Drill(DrillArgs),
    /// Copy the repository to its replicas, or compare them with it.
    ///
    /// A replica is a complete repository with the same key, declared in
    /// strata.toml(5) as [[replica]] (name, to: a directory or
    /// s3://BUCKET/PREFIX, from: another replica for chains, bandwidth,
    /// schedule, retention); it can be mounted, checked and restored from
    /// on its own (`strata --repo DIR mount`), with the same passphrase or
    /// key file. The first run makes it. Each run sends the snapshots the
    /// replica lacks, oldest first, and only the objects it lacks, sealed
    /// as they are after checking each against its id: a replica is
    /// always a prefix of its source's snapshot chain, and a run stopped
    /// at any point (kill -9, a dropped connection) resumes without
    /// sending again what the replica committed (it commits every 16 MiB).
    /// Several replicas are copied at once; one that copies from another
    /// replica after it. Hold events go along; the replica's retention
    /// lock is raised to the source's, and its own [replica.retention]
    /// then forgets what it does not keep (`strata --repo DIR prune` frees
    /// the space).
    ///
    /// A replica whose chain differs from its source's (it took a snapshot
    /// of its own, or the source was replaced by an older copy) is never
    /// overwritten: it is refused with exit 28. --verify compares instead
    /// of copying: the chains link by link, and that the replica holds
    /// every object of every snapshot both keep; exit 29 when it is behind.
    /// Works mounted (through the daemon, beside writes and snapshots) and
    /// unmounted. Exits with the code of the first replica that failed.
    Replicate(ReplicateArgs),
    /// Find files in every snapshot at once, from the catalog: each match
    /// with the snapshots that hold it.
    ///
    /// PATTERN is a glob matched against base names (`report-*.pdf`), or
    /// with --path against full paths from the snapshot's root
    /// (`/srv/db/**/*.conf`; `*` and `?` stop at `/`, `**` does not); with
    /// --regex it is a regular expression found anywhere in the name or
    /// path. Each match is printed with the runs of kept snapshots that
    /// hold a version of it passing the filters: the first and last
    /// snapshot of each run and how many it spans. The catalog is brought
    /// up to date first (it is updated after each snapshot; a repository
    /// older than it catches up once). No snapshot tree is read, so it
    /// answers in about a second for ten million file versions. Works
    /// mounted (through the daemon) and unmounted. Exit 31 when nothing
    /// matched.
    Find(FindArgs),
    /// Every distinct version of one path across the kept snapshots.
    ///
    /// A new version starts whenever the file's content (its digest),
    /// size, modification time, owner, group, mode or kind changes; each
    /// is shown with the first and last snapshot that hold it and how
    /// many do. From the catalog, like find. Exit 31 when no kept
    /// snapshot holds PATH.
    Versions {
        /// The path from the snapshot's root, as below
        /// MOUNTPOINT/snapshots/NAME/ (e.g. /srv/app/config.yml).
        path: String,
    },
    /// What differs between two snapshots: entries added, removed and
    /// changed (and what changed: content, mode, owner, times, xattrs,
    /// kind, symlink target).
    ///
    /// Snapshots are named by number, time name, label (its newest) or
    /// "latest". Reads only the directories that differ (trees are
    /// content-addressed: equal ids are equal subtrees), so it costs what
    /// changed, not the size of the snapshots. A directory added or
    /// removed lists everything below it. Times compared are modification
    /// times. Exit 0 whether or not anything differs; 31 when neither
    /// snapshot holds PATH.
    Diff {
        /// The older snapshot.
        from: String,
        /// The newer snapshot.
        to: String,
        /// Only this path (a file or a directory and everything below it).
        path: Option<String>,
    },
    /// Manage head/, the tree backups are written into.
    #[command(subcommand)]
    Head(HeadCommand),
    /// List and show backup runs: those stored with their snapshots, and
    /// those that failed before taking one (kept on this host, the newest
    /// 50 per repository, under STRATA_STATE_DIR or /var/lib/strata).
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Read and check the audit log: who read, changed or deleted backups
    /// or keys, and when.
    ///
    /// Every control request but polling questions (status, metrics,
    /// report, listings) leaves a record with its caller (user, group and
    /// process id: SO_PEERCRED on the daemon's socket), whether it
    /// succeeded or not, and so do mounts, unmounts and key changes. The
    /// records are sealed, numbered and hash-chained (SHA-256), and each
    /// snapshot record carries the log's head when it was taken; see
    /// strata-format(5) for what `audit verify` detects and what it cannot.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Show what the repository holds and what it costs on disk.
    ///
    /// Fields (names as in --json): suite, the cipher suite; chunks, the
    /// distinct chunks stored (after dedup); chunk_bytes, their plaintext
    /// bytes; stored_bytes, their bytes as stored (compressed, encrypted);
    /// compression_ratio, stored_bytes / chunk_bytes; packs and open_packs,
    /// the finished pack files and those still being written;
    /// pack_file_bytes, the bytes of all pack files (stored_bytes plus pack
    /// headers, metadata and space not yet reclaimed); index_bytes, the
    /// index file; key_slots, the key slots that unlock the repository;
    /// catalog: records (directory paths), versions and bytes (sealed rows
    /// of the catalog, within index_bytes) and tip (the newest snapshot it
    /// took in).
    Stats,
    /// Run a backup: pre-backup hooks, COMMAND (the copy into MNT/head/),
    /// post-backup hooks, a snapshot, then validation hooks against it.
    ///
    /// Hooks come from the host configuration (strata.toml(5)), never from
    /// the repository. The repository must be mounted. A snapshot that
    /// validation hooks check stays pending until they pass; `latest` and
    /// the label move to it only then. The exit code says how the run
    /// ended (see the exit codes in strata(1)).
    ///
    /// It ends with a summary (under "summary" in --json): the snapshot,
    /// files created, bytes and write requests into head/, bytes newly
    /// stored after dedup and compression, and the duration in seconds. A
    /// copy that succeeded but changed nothing in head/ is warned about (a
    /// mistyped destination). A failed hook's last lines of stderr are
    /// printed even with --quiet; a failed run that took no snapshot is
    /// kept for `strata runs list|show`.
    ///
    /// A run that fails after its copy wrote into head/ (the copy failed
    /// or was stopped by a signal, a later hook failed, validation failed)
    /// marks the head as holding its leftovers: `strata status` shows it,
    /// and the next run warns before its copy and in its summary
    /// ("leftovers_taken_over" in --json), naming the failed run and the
    /// `strata head reset --to SNAPSHOT` that rolls head/ back to the last
    /// good snapshot; that run's snapshot record says it took them over,
    /// and the mark is cleared then (or by the reset).
    ///
    /// One run at a time per repository: while one is in progress, another
    /// is refused at once with exit 24, naming its pid, label and start
    /// time (or waits, with --wait), so the hooks of two runs never overlap.
    ///
    /// SIGINT, SIGTERM or SIGHUP stops the hook or copy running at the time
    /// with its process group (TERM, then KILL after 5 s), runs the
    /// on_failure hooks, raises the alert and exits 128 + the signal.
    Backup(BackupArgs),
    /// Show or change the daemon's write throttle, live.
    ///
    /// The limits come from [throttle] in strata.toml(5): a default rate,
    /// time-of-day profiles, and adaptive back-off under system pressure.
    /// `set` overrides them until `clear` (or for --for); adaptive back-off
    /// still applies beneath an override.
    #[command(subcommand)]
    Throttle(ThrottleCommand),
    /// Storage tiers: which tier the classification rules of strata.toml
    /// send files to.
    #[command(subcommand)]
    Tier(TierCommand),
    /// Mount the repository: head/ to back up into, snapshots/ to restore from.
    ///
    /// Starts strata-mountd, hands it the key on an inherited descriptor
    /// (never argv or environment), and returns once the mount answers.
    /// While unmounted, the bare mountpoint is kept immutable so that a
    /// backup writing into it fails instead of filling the disk below;
    /// strata says so when it sets the flag on a directory it did not
    /// create (`chattr -i MOUNTPOINT` undoes it). A mountpoint that is not
    /// empty is refused with exit 14 unless --nonempty. strata-mountd is
    /// looked for in $STRATA_MOUNTD, beside strata, then on PATH; when it
    /// is not found, the message says where strata looked (exit 1).
    ///
    /// On a first run, a missing default repository (/var/lib/strata/repo)
    /// is created as `strata init` would. Once this machine has used one
    /// (a key file in /etc/strata/keys/, alert state in /var/lib/strata/, a
    /// daemon log in /var/log/strata/), a missing one is never replaced by
    /// a new, empty one: exit 10 (is its disk mounted?); `strata init`
    /// makes a new one on purpose. STRATA_STATE_DIR, STRATA_KEY_DIR and
    /// STRATA_LOG_DIR move these directories.
    Mount(MountArgs),
    /// Unmount: the daemon commits everything, then exits; this waits for it.
    ///
    /// A mount that is busy (a process has a file open or its working
    /// directory in it) is refused at once with exit 14 and stays mounted;
    /// `fuser -vm MOUNTPOINT` names the process.
    ///
    /// Exit 25 when not everything written was committed, which the
    /// message explains: the head had turned read-only after a storage
    /// failure, the daemon had died (its dead mount is detached), or the
    /// daemon's final commit failed. The mount is gone all the same.
    ///
    /// The bare mountpoint stays immutable (chattr +i), so that a backup run
    /// while unmounted fails instead of filling the disk below; to remove
    /// or reuse the directory, `chattr -i MOUNTPOINT` first.
    Umount {
        /// The mountpoint [default: /mnt/strata if strata is mounted there,
        /// else the only strata mount].
        mountpoint: Option<PathBuf>,
    },
    /// Show whether the repository is mounted, where, and its state.
    ///
    /// Fields (names as in --json): mounted; mountpoint and pid, of the
    /// daemon serving it; read_only_reason, why the head takes no writes,
    /// if it does not; snapshots and latest, the number of snapshots and
    /// the newest one's name; inodes, files and directories in the head;
    /// repository and repository_id, its directory and id; leftovers, the
    /// failed backup run whose partial copy head/ holds (its run id,
    /// label, start time, why it failed, and last_good, the snapshot to
    /// reset head/ to with `strata head reset --to`), if any;
    /// staging_bytes, overwrites held until they are chunked;
    /// durable_commits, commits since the daemon started; transport, how
    /// FUSE requests reach the daemon (io_uring, or dev-fuse and why the
    /// ring is not used; see strata-mountd(8)); fuse_requests and
    /// fuse_micros, the requests served per operation and the microseconds
    /// spent on them; throttle, the write limit in force and why;
    /// writeback, the pack writeback thread's I/O priority and what it
    /// wrote; dead_mount, a mount left behind by a daemon that died (run
    /// `strata umount` on it). Exits 14 when such a dead mount is found.
    Status,
    /// How the backups have gone over time: per snapshot the files and
    /// bytes it holds, the bytes it added to the store (stored size of the
    /// objects no earlier kept snapshot had) and its run's status and
    /// time and what the write throttle held back; every drill against its
    /// objective; the verify cycle; the alerts outstanding and those this
    /// host remembers. Reads every tree once.
    ///
    /// With --html, also writes the report as one self-contained page with
    /// plots (storage over time, what each night added, run times and
    /// throttling, drills against objectives, verify coverage, the alert
    /// history) that opens from disk in a browser with no network.
    Report {
        /// Write the HTML page to FILE (atomically: a temporary file beside
        /// it renamed over it).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Print the repository's metrics in the Prometheus text format, or
    /// write them for node_exporter's textfile collector.
    ///
    /// Series (all prefixed strata_): snapshots; newest_good_snapshot
    /// timestamp and age; snapshots_logical_bytes, repository_chunk_bytes,
    /// repository_stored_bytes, repository_pack_file_bytes, dedup_ratio;
    /// last_run success, timestamp and duration; per drill name the last
    /// drill's recovery_seconds, rto_seconds, success and timestamp;
    /// verify_last_run and verify_last_cycle timestamps,
    /// verify_coverage_ratio and verify_cycles_total; alerts_firing by kind; while mounted also the
    /// throttle's limit and achieved rate and fuse_requests_total and
    /// fuse_request_seconds_total by opcode. The daemon can serve the same
    /// on a loopback /metrics listener ([metrics] listen in
    /// strata.toml(5), off by default).
    Metrics {
        /// Write DIR/strata_<repository id>.prom (atomically: a temporary
        /// file renamed over it) instead of printing.
        #[arg(long, value_name = "DIR")]
        textfile: Option<PathBuf>,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages generated from these definitions into DIR.
    #[command(hide = true)]
    Man {
        /// Output directory.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum HeadCommand {
    /// Make head/ a snapshot's tree again, discarding every change since.
    ///
    /// Like `zfs rollback`: in one transaction, in a time that does not
    /// grow with the tree, head/ becomes exactly the tree of SNAPSHOT (its
    /// files, attributes, xattrs and hard links); snapshots are not
    /// touched. Meant for the leftovers of a failed backup run, which
    /// `strata status` and the next `strata backup` name: reset to the last
    /// good snapshot before it, then run the backup again. Asks nothing:
    /// it is meant for scripts as well as people; it prints the snapshot
    /// head/ now holds and the failed run whose leftovers it discarded.
    ///
    /// Works mounted (the daemon does it, and the kernel forgets what it
    /// cached of head/) and unmounted (the repository is opened directly).
    /// Exits 2 when no snapshot has that name, 14 while files in head/ are
    /// open (`fuser -vm MOUNTPOINT` lists the processes), 24 while a backup
    /// run is in progress; head/ is then left as it was.
    Reset {
        /// The snapshot: its number, its name (UTC time), a label, or "latest".
        #[arg(long = "to", value_name = "SNAPSHOT")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TierCommand {
    /// Show which tier each file under PATH would go to, and why: try the
    /// rules on local files before a backup writes them.
    ///
    /// Each regular file is classified as the mount would classify it when
    /// written into head/: by its path there (PATH's own path, or with --as
    /// the path it will have under head/), its owner, its type told from
    /// its first bytes, and the content patterns found in them. Reads only
    /// the first [classification] sample bytes of each file (opened
    /// without blocking, and without changing its access time where the
    /// caller owns it or is root); changes nothing. Files are listed as
    /// they are classified, then the totals per tier; --json gives all at
    /// the end. Owner names that are not users here are warned about. Exit
    /// 15 when the rules are not valid or no [[tier]] is declared, 1 when
    /// a path cannot be read (the others are still shown).
    Classify(TierClassifyArgs),
    /// Show the tier of files in head/, and why: by the rules the daemon
    /// mounted with, each file's path and owner now, and what its first
    /// bytes told when it was written.
    ///
    /// PATH is written from the root of head/ (/DIR/NAME for
    /// MOUNTPOINT/head/DIR/NAME). A file written before tiers were
    /// configured was not read: its tier rests on its path and owner alone,
    /// and the listing says so. Without a running daemon the repository is
    /// opened here, with the rules of --config. Exit 15 when no [[tier]] is
    /// configured, 31 when head/ holds nothing at a PATH, 2 when a PATH is
    /// not written from the root.
    Show(TierShowArgs),
}

#[derive(Debug, Args)]
pub struct TierShowArgs {
    /// Paths from the root of head/, e.g. /data/scan.dcm.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,
    /// The host configuration with the rules, when no daemon runs
    /// [default: /etc/strata/strata.toml].
    #[arg(long, env = "STRATA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TierClassifyArgs {
    /// Files or directories, walked; a symlink given here is followed,
    /// none found below is. Only regular files are classified.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// The directory under head/ that PATH will be copied to, e.g. `data`
    /// for `rsync -a /srv/ MNT/head/data/`; rules' paths are matched below
    /// it [default: PATH's own path, from /].
    #[arg(long = "as", value_name = "DIR")]
    pub under: Option<PathBuf>,
    /// The host configuration with the rules [default:
    /// /etc/strata/strata.toml].
    #[arg(long, env = "STRATA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ThrottleCommand {
    /// The limit in force, why, and the rate achieved.
    Show,
    /// Override the limit, e.g. `set 20MiB/s --for 2h`, or `set unlimited`.
    Set {
        /// Bytes per second ("20MiB/s", "500kB/s", "unlimited").
        rate: String,
        /// Write requests per second ("2000ops/s").
        #[arg(long, value_name = "RATE")]
        ops: Option<String>,
        /// How long the override lasts, e.g. "2h" [default: until cleared].
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<humantime::Duration>,
    },
    /// End the override: profiles and the configured limit apply again.
    Clear,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// A label for the snapshot, e.g. "nightly".
    #[arg(long)]
    pub label: Option<String>,
    /// The host configuration with the hooks [default: /etc/strata/strata.toml, none if missing].
    #[arg(long, env = "STRATA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// While another run is in progress on the repository, wait for it to
    /// end (at most DURATION, e.g. --wait=2h; --wait alone: as long as it
    /// takes) instead of exiting 24 at once.
    #[arg(long, value_name = "DURATION", num_args = 0..=1, require_equals = true)]
    pub wait: Option<Option<humantime::Duration>>,
    /// The copy, e.g. `rsync -a /var/lib/app/ /mnt/strata/head/app/`; `{source}`
    /// in it becomes the path a pre-backup hook printed as source=PATH.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    #[command(flatten)]
    pub mount: strata::daemon::mount_args::MountOptions,
    /// Stay in the foreground (the daemon replaces this process; logs go to stderr).
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Where the daemon logs [default: /var/log/strata/mountd-<repository id>.log].
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Store data unencrypted (anyone who can read the repository reads the backups).
    #[arg(long)]
    pub insecure_no_encryption: bool,
    /// Where to write the generated key file when no passphrase is given
    /// [default: /etc/strata/keys/<repository id>.key].
    #[arg(long, value_name = "FILE")]
    pub key_file_out: Option<PathBuf>,
    /// Label of the first key slot (who holds the secret).
    #[arg(long, default_value = "initial")]
    pub label: String,
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Average chunk size in KiB (minimum is a quarter, maximum four times).
    #[arg(long, value_name = "KIB", default_value_t = 256)]
    pub chunk_size_kib: u32,
    /// Size at which a pack file is finished, 1MiB to 4GiB. Prune deletes
    /// and repacks whole finished packs: smaller packs free space sooner,
    /// larger ones mean fewer files.
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    pub pack_size: String,
    /// With --repo s3://..., in a bucket made with S3 Object Lock: lock
    /// each finished pack in this mode until its upload plus the
    /// repository's longest retention lock, so that not even the bucket's
    /// owner can delete it sooner.
    #[arg(long, value_name = "MODE", value_enum)]
    pub object_lock: Option<ObjectLockMode>,
}

/// S3 Object Lock modes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ObjectLockMode {
    /// No one can delete a locked pack early.
    Compliance,
    /// Users allowed to bypass governance retention can.
    Governance,
}

impl InitArgs {
    /// What `strata init` does with no flags (from the definitions above).
    pub fn defaults() -> InitArgs {
        use clap::FromArgMatches;
        let cmd = InitArgs::augment_args(clap::Command::new("init"));
        InitArgs::from_arg_matches(&cmd.get_matches_from(["init"])).expect("defaults parse")
    }
}

#[derive(Debug, Args)]
pub struct KdfArgs {
    /// Argon2id memory per passphrase guess, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub kdf_memory_mib: u32,
    /// Argon2id passes.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub kdf_iterations: u32,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List key slots.
    List,
    /// Add a key slot: a passphrase, a new key file, or an escrow recovery key.
    Add(KeyAddArgs),
    /// Remove a key slot (never the last one).
    Remove {
        /// Slot id (or its first 8 or more hex digits), from `strata key list`.
        id: String,
    },
    /// Replace the passphrase (or key file) that unlocked this command with a new one.
    Passwd(NewSecretArgs),
}

#[derive(Debug, Args)]
pub struct KeyAddArgs {
    #[command(flatten)]
    pub secret: NewSecretArgs,
    /// Generate a recovery key for escrow and print it once (or write it to --new-key-file).
    #[arg(long)]
    pub escrow: bool,
    /// Who holds the new secret.
    #[arg(long, default_value = "")]
    pub label: String,
}

#[derive(Debug, Args)]
pub struct NewSecretArgs {
    /// Read the new passphrase from the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "new_key_file")]
    pub new_password_file: Option<PathBuf>,
    /// Generate a new key file at FILE (mode 0400; never overwrites).
    #[arg(long, value_name = "FILE")]
    pub new_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also read, decrypt and hash every chunk. A damaged chunk is named
    /// by id; on a terminal also by the files and snapshots that hold it
    /// (never in the log, piped output or --json: paths are patient data).
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read only a subset of packs: n/t (part n of t) or P% (random).
    #[arg(long, value_name = "SUBSET")]
    pub read_data_subset: Option<String>,
    /// Instead of the structure, check that a good snapshot is recent and
    /// the storage has room; raise the missed-backup and fill alerts (run
    /// from a timer: a dead daemon cannot raise them). Works while mounted.
    #[arg(long, conflicts_with_all = ["read_data", "read_data_subset"])]
    pub freshness: bool,
    /// Read the next slice of the verify cycle: as many finished packs as
    /// keep the cycle on time so that every pack is read within [verify]
    /// cycle (30 days by default), on from where the last run stopped (the
    /// cursor is kept in the repository, like a ZFS scrub). Damage it
    /// reads raises the verify_failed alert; a later run that reads clean
    /// resolves it. What the strata-verify timer runs daily.
    #[arg(long, conflicts_with_all = ["read_data", "read_data_subset", "freshness"])]
    pub cycle: bool,
    /// With --freshness: the age past which the backup counts as missed
    /// [default: max_snapshot_age in strata.toml, else 25h].
    #[arg(long, value_name = "DURATION", requires = "freshness")]
    pub max_age: Option<humantime::Duration>,
    /// With --freshness or --cycle: the host configuration with the alert
    /// channels and [verify] [default: /etc/strata/strata.toml, none if
    /// missing].
    #[arg(long, env = "STRATA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReplicateArgs {
    /// The replicas, by name [default: all of them].
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Compare with the replicas instead of copying: their chains, and
    /// the objects of the snapshots both keep.
    #[arg(long)]
    pub verify: bool,
    /// Only the replicas whose schedule says they are due (for a timer).
    #[arg(long)]
    pub due: bool,
    /// The host configuration that declares the replicas [default:
    /// /etc/strata/strata.toml].
    #[arg(long, env = "STRATA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Repack until unused space is at most PERCENT of the space in use
    /// (0 repacks every partly used pack; 100 only deletes empty ones).
    #[arg(long, value_name = "PERCENT", default_value = "5")]
    pub max_unused: String,
    /// Copy at most SIZE of objects in use while repacking (e.g. "10GiB") [default: no limit].
    #[arg(long, value_name = "SIZE")]
    pub max_repack_size: Option<String>,
    /// Show what would be deleted and repacked; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["to", "discard"])))]
pub struct DrillArgs {
    #[command(subcommand)]
    pub command: Option<DrillCommand>,
    /// What to drill: a snapshot (number, time name, label or "latest"),
    /// optionally with a path inside it, e.g. latest:/db.
    #[arg(value_name = "SNAPSHOT[:PATH]", required = true)]
    pub what: Option<String>,
    /// Restore into DIR (empty or new).
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Read and check everything, write nothing.
    #[arg(long)]
    pub discard: bool,
    /// The recovery-time objective, e.g. 30m or 4h: slower exits 27.
    #[arg(long, value_name = "DURATION")]
    pub rto: Option<humantime::Duration>,
    /// Predict the drill's time from a sample instead of running it: runs
    /// of neighbouring files, 1% of each size class (at least two), large
    /// files by 8 MiB runs of chunks, read as the drill reads, each after
    /// an untimed lead-in; grown until the standard error is under 2% or
    /// 12% of the bytes are read. Says its 95% margin; nothing is
    /// recorded. Exit 27 when the prediction misses --rto.
    #[arg(long)]
    pub estimate: bool,
    /// Files read at once.
    #[arg(long, value_name = "N", default_value_t = strata::ops::drill::DEFAULT_READERS,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub readers: u32,
    /// The host configuration with the alert channels [default: /etc/strata/strata.toml, none if missing].
    #[arg(long, env = "STRATA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Run the drills of strata.toml's [[drill]] entries: those named, or
    /// all of them.
    ///
    /// Each restores (or reads and discards) its snapshot path as `strata
    /// drill` does; one with `to` restores into a new directory under it,
    /// removed afterwards unless `keep = true`. One with `validate` then
    /// runs that program on the restore (STRATA_DRILL_DIR names it): it
    /// starts the service, waits until it is ready (printing ready_secs=N
    /// tells how long that took), checks it and stops it; the drill fails
    /// if it does not exit 0, and its objective covers the restore and the
    /// service ready. `drill-postgresql` (in /usr/lib/strata/hooks) does
    /// this for a PostgreSQL cluster. A drill that cannot run (its path is
    /// gone) is said and alerted, and the others still run. Exit as the
    /// first failed drill says (13 damage, 1 the target, 22 the service
    /// check), else 27 if any missed its objective.
    Run {
        /// The entries to run, by name [default: all].
        names: Vec<String>,
        /// Only those whose `schedule` says they are due (never run, or
        /// last run longer ago than it): what the strata-drill timer runs.
        #[arg(long)]
        due: bool,
        /// The host configuration with the [[drill]] entries [default: /etc/strata/strata.toml].
        #[arg(long, env = "STRATA_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// List recorded drills, oldest first.
    List,
    /// Show one recorded drill.
    Show {
        /// Its number (as `strata drill list` prints it).
        number: u64,
    },
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Snapshots to forget: number, time name, label (its newest) or
    /// "latest"; none to apply the policy.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Keep the newest N good snapshots.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest good snapshot of each of the newest N hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// … of each of N days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// … of each of N ISO weeks (Monday to Sunday).
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// … of each of N months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// … of each of N years.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every good snapshot taken within DURATION (e.g. "30d") of the newest good one.
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep every snapshot with this label (repeatable).
    #[arg(long, value_name = "LABEL")]
    pub keep_label: Vec<String>,
    /// The time zone of hours, days, weeks, months and years (an IANA
    /// name, e.g. "Europe/Berlin") [default: [retention] timezone, else the system's].
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// Show what would be forgotten; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// The host configuration with [retention] [default: /etc/strata/strata.toml, none if missing].
    #[arg(long, env = "STRATA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot of the head now.
    Create {
        /// A label, e.g. "nightly"; `latest` and labels name the newest snapshot carrying them.
        #[arg(long)]
        label: Option<String>,
        /// Take it even while a backup run is in progress (it may hold the
        /// run's copy half-done); without it, that is refused with exit 24.
        #[arg(long)]
        force: bool,
    },
    /// List snapshots, oldest first.
    List,
    /// Show one snapshot: by number, time name, label (its newest) or "latest".
    Show {
        /// Which snapshot.
        snapshot: String,
    },
    /// Place a legal hold on a snapshot: nothing can remove it (no
    /// retention policy, flag or command) until the hold is released.
    ///
    /// The hold, who placed it and the reason are recorded in the
    /// repository, and so is every release: `snapshot show` prints the
    /// hold in force. Works mounted (through the daemon) and unmounted.
    Hold {
        /// Which snapshot: number, time name, label (its newest) or "latest".
        snapshot: String,
        /// Why, e.g. a case or request number (recorded with your uid).
        #[arg(long)]
        reason: String,
    },
    /// Release a snapshot's legal hold; the release is recorded with its
    /// reason, and the snapshot is then subject to retention again.
    Release {
        /// Which snapshot: number, time name, label (its newest) or "latest".
        snapshot: String,
        /// Why (recorded with your uid).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List backup runs, oldest first.
    List,
    /// Show one backup run: its status, snapshot, failure and every hook's
    /// outcome with the end of its output.
    Show {
        /// The run's id (as `strata runs list` and the logs print it).
        run: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List the records, oldest first.
    List {
        /// Only records written at or after WHEN: an RFC 3339 date or time
        /// (2026-12-01, 2026-12-01T08:00:00Z) or an age (7d, 12h).
        #[arg(long, value_name = "WHEN", value_parser = parse_when)]
        since: Option<i64>,
    },
    /// Check that no record was edited, removed, reordered or cut off.
    ///
    /// Every row must open as the record of its number, the numbers must
    /// run without gaps, each record must name its predecessor's chain
    /// hash, the sealed head must name the last record, and every kept
    /// snapshot's anchor must name a record the log holds, with the same
    /// hash. The snapshots of each replica strata.toml declares are
    /// compared too: a rewrite of this repository does not reach them.
    /// Exit 30 when anything does not hold; each problem is named.
    Verify {
        /// The host configuration that declares the replicas.
        #[arg(long, value_name = "FILE", env = "STRATA_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write the records as JSON lines an auditor's tools can check.
    ///
    /// One object per line: n, the record's number; hash, SHA-256 of
    /// record, hex; record, the record's JSON exactly as stored (its prev
    /// field is the previous record's hash). `sha256sum`, `jq` or a few
    /// lines of Python recompute the chain; strata-format(5) gives the
    /// fields.
    Export {
        /// Only records written at or after WHEN (as for `audit list`);
        /// the first record's prev then names one not exported.
        #[arg(long, value_name = "WHEN", value_parser = parse_when)]
        since: Option<i64>,
        /// Write to FILE instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// WHEN as seconds since the epoch (see [`parse_time`]).
pub fn parse_when(s: &str) -> Result<i64, String> {
    parse_time(s).map(|t| t.secs)
}

#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index (index.redb) from the packs alone.
    Index,
    /// Bring back missing or damaged packs from a replica.
    ///
    /// Reads every finished pack and every object the index points into
    /// (as `check --read-data` does). Each object of a pack that is
    /// missing, whose table does not read or that holds an object that
    /// does not verify is stored again: fetched from the replica NAME of
    /// strata.toml(5) and checked against its id, or copied from the pack
    /// where it still reads intact. The new packs are durable before the
    /// index moves to them, and only then is a bad pack deleted; one with
    /// an object found nowhere is kept. Works mounted (through the daemon)
    /// and unmounted. Exit 13 when something could not be recovered.
    Packs(RepairPacksArgs),
    /// Rebuild the catalog (what find and versions search) from the
    /// snapshot trees.
    ///
    /// Drops it and takes in every kept snapshot again, oldest first, the
    /// way each new snapshot is taken in. Needed only when a query says
    /// the catalog is inconsistent; a crash part way leaves a catalog the
    /// next query finishes. Works mounted (through the daemon) and
    /// unmounted.
    Catalog,
}

#[derive(Debug, Args)]
pub struct FindArgs {
    /// What to look for: a glob, or with --regex a regular expression.
    pub pattern: String,
    /// PATTERN is a regular expression (Rust regex syntax), found anywhere.
    #[arg(long)]
    pub regex: bool,
    /// Match full paths from the snapshot's root instead of base names.
    #[arg(long)]
    pub path: bool,
    /// Only this snapshot: number, time name, label (its newest) or "latest".
    #[arg(long, value_name = "SNAPSHOT")]
    pub snapshot: Option<String>,
    /// Only snapshots taken at or after TIME (RFC 3339 such as
    /// 2026-11-22T02:00:00Z, a date such as 2026-11-22 (UTC), or an age
    /// such as 7d).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<strata::tree::types::Timestamp>,
    /// Only snapshots taken at or before TIME (as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<strata::tree::types::Timestamp>,
    /// Only versions of this size: +N more than N bytes, -N fewer, N
    /// exactly; N may end in k, M, G or T (powers of 1024). Compared in
    /// bytes, not rounded up to the unit as find(1) does.
    #[arg(long, value_name = "[+|-]N", allow_hyphen_values = true, value_parser = parse_size)]
    pub size: Option<strata::tree::catalog::query::SizeTest>,
    /// Only versions modified after TIME (as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub newer: Option<strata::tree::types::Timestamp>,
    /// Only versions owned by this user id.
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,
    /// Only this type: f (file), d (directory), l (symlink), p (fifo), s
    /// (socket), c or b (device).
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_kind)]
    pub kind: Option<strata::tree::types::FileKind>,
}

fn parse_size(s: &str) -> Result<strata::tree::catalog::query::SizeTest, String> {
    strata::tree::catalog::query::SizeTest::parse(s)
}

fn parse_kind(s: &str) -> Result<strata::tree::types::FileKind, String> {
    strata::tree::catalog::query::parse_kind(s)
}

/// A time: RFC 3339, a date (midnight UTC), or an age ("7d": that long
/// before now).
pub fn parse_time(s: &str) -> Result<strata::tree::types::Timestamp, String> {
    let at = |t: std::time::SystemTime| {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        strata::tree::types::Timestamp {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    };
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(at(t));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(&format!("{s}T00:00:00")) {
        return Ok(at(t));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(at(std::time::SystemTime::now() - d));
    }
    Err(format!(
        "{s:?} is not a time: write 2026-11-22T02:00:00Z, 2026-11-22 or an age such as 7d or 12h"
    ))
}

#[derive(Debug, Args)]
pub struct RepairPacksArgs {
    /// The replica to fetch from, by its [[replica]] name.
    #[arg(long, value_name = "NAME")]
    pub from: String,
    /// The host configuration that declares it [default:
    /// /etc/strata/strata.toml].
    #[arg(long, env = "STRATA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}
