//! strata-mountd: unlocks a repository and serves it over FUSE until it
//! is unmounted. Startup and shutdown live here; the callbacks in `fs`.

mod delay;
mod fuse;
mod invalidate;
mod requests;

use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use fuser::{Config, MountOption, SessionACL};
use strata::daemon::control::{self, Daemon};
use strata::daemon::mount_args::{resolve_group, MountdArgs};
use strata::exit::Reported;
use strata::policy::alert::{self, Alerter};
use strata::policy::hostconfig::HostConfig;
use strata::policy::throttle::cgroup::{self, IoPlacement, IoPolicy};
use strata::policy::throttle::{AdaptiveTask, Throttle, ThrottlePolicy};
use strata::store::id::RepoId;
use strata::store::repo::{LockedRepo, RepoError};
use strata::sys::ioprio::IoClass;
use strata::sys::mountpoint::{self, MountpointError};
use strata::tree::namespace::{Access, Namespace};

use delay::Delayer;
use fuse::{StrataFs, MAX_WRITE};
use invalidate::{after_forget, after_snapshot, send_invalidation, Invalidate};
use requests::Requests;
use strata_mountd::kernel::{self, TransportStatus};

/// Threads that decode chunks ahead of readers.
const READ_AHEAD_WORKERS: usize = 2;

fn main() -> ExitCode {
    // fuser's own unmount when its session ends finds the mount already
    // gone after `strata umount` (EINVAL) and would warn every time;
    // whether the mount is really left is checked after the session.
    strata::sys::process::start("info,fuser::session=error");
    let args = MountdArgs::parse();
    let ready = args.ready_fd.map(|fd| {
        // SAFETY: `strata mount` passes the write end of a pipe for this.
        unsafe { std::fs::File::from_raw_fd(fd) }
    });
    let ready = Mutex::new(ready);
    let report = |line: String| {
        if let Some(mut f) = ready.lock().expect("ready").take() {
            let _ = f.write_all(line.as_bytes());
        }
    };
    match run(&args, &|| report("ready\n".into())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = strata::daemon::exit_code(&*e);
            let e = strata::sys::chain::Chain(&*e);
            tracing::error!("{e}");
            report(format!("error {code} {e}\n"));
            ExitCode::from(code)
        }
    }
}

/// Blocks the termination signals in this thread and every thread it
/// starts; one thread waits for them and unmounts.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: sigwait writes one int.
    unsafe { libc::sigwait(&set, &mut sig) };
    sig
}

/// Tells systemd we are ready, if it is waiting (Type=notify).
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

struct Served {
    mountpoint: PathBuf,
    ns: Arc<Namespace>,
    notifier: fuser::Notifier,
    unmount: Mutex<Option<fuser::SessionUnmounter>>,
    requests: Arc<Requests>,
    throttle: Arc<Throttle>,
    transport: Arc<TransportStatus>,
}

impl Served {
    /// fuser's one-shot unmount. After our own umount2 it fails (EINVAL):
    /// only a mount that is really still there is worth a log line.
    fn unmount(&self) {
        if let Some(mut u) = self.unmount.lock().expect("unmount").take() {
            if let Err(e) = u.unmount() {
                if still_mounted(&self.mountpoint) {
                    tracing::error!(error = %e, "unmount failed");
                }
            }
        }
    }
}

/// Whether a strata mount is still on `mnt`.
fn still_mounted(mnt: &Path) -> bool {
    mountpoint::mounted_on(mnt).is_some_and(|m| m.is_strata())
}

impl Daemon for Served {
    fn mountpoint(&self) -> String {
        self.mountpoint.display().to_string()
    }

    /// Called outside any FUSE request, so the kernel's caches can be
    /// cleared before the CLI hears that the snapshot exists.
    fn snapshot_taken(&self, label: Option<&str>) {
        for inv in after_snapshot(&self.ns, label) {
            send_invalidation(&self.notifier, &inv);
        }
    }

    fn snapshots_forgotten(&self, names: &[String], labels: &[String]) {
        for inv in after_forget(&self.ns, names, labels) {
            send_invalidation(&self.notifier, &inv);
        }
    }

    /// Inode numbers of head/ now stand for other files: the kernel drops
    /// head/'s entry, and with it every entry cached below it (a reset
    /// refuses while files there are open), and head/'s own attributes.
    /// Inodes it still holds get fresh attributes at their next lookup.
    fn head_reset(&self) {
        use strata::tree::namespace::{HEAD_INO, ROOT_INO};
        send_invalidation(&self.notifier, &Invalidate::Inode(HEAD_INO));
        send_invalidation(
            &self.notifier,
            &Invalidate::Entry(ROOT_INO, b"head".to_vec()),
        );
    }

    fn shutdown(&self) -> std::io::Result<()> {
        // Our own umount2, which can fail (busy) and be tried again; the
        // session's one-shot unmounter then finds nothing left to do.
        mountpoint::unmount(&self.mountpoint)?;
        self.unmount();
        Ok(())
    }

    fn requests(&self) -> std::collections::BTreeMap<String, (u64, u64)> {
        self.requests.snapshot()
    }

    fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    fn transport(&self) -> String {
        self.transport.describe()
    }
}

/// The write throttle of the host configuration, with its adaptive
/// sampler and, when `[throttle.io]` asks, the daemon in an I/O cgroup.
fn start_throttle(
    policy: ThrottlePolicy,
    repo_dir: &Path,
    repo_id: &str,
) -> (Arc<Throttle>, Option<AdaptiveTask>, Option<IoPlacement>) {
    let placement = policy.io.filter(IoPolicy::needs_io_controller).and_then(|io| {
        // A replica's instance is "ID-NAME": its cgroup is not the source's.
        let (id, replica) = repo_id.split_once('-').unwrap_or((repo_id, ""));
        let name = format!("strata-{}{}", &id[..id.len().min(12)], replica);
        match cgroup::place_self(&name, &io, repo_dir) {
            Ok(p) => {
                tracing::info!(cgroup = %name, "I/O limits applied to the daemon's cgroup");
                Some(p)
            }
            Err(e) => {
                tracing::warn!(error = %e, "[throttle.io] cannot be applied; the write throttle still limits the daemon");
                eprintln!("strata-mountd: warning: [throttle.io] cannot be applied: {e}");
                None
            }
        }
    });
    let throttle = Arc::new(Throttle::with_system_clock(policy));
    let adaptive = AdaptiveTask::spawn(throttle.clone());
    (throttle, adaptive, placement)
}

/// Pack writeback on its own thread, at `[throttle.io] class` if set. A
/// priority the kernel refuses is a warning: writeback runs without it.
fn start_writeback(repo: &strata::store::repo::Repo, class: Option<IoClass>) -> Result<()> {
    let store = repo.store();
    if let Err(e) = store.start_writeback(class) {
        let Some(class) = class else {
            return Err(e.into());
        };
        tracing::warn!(error = %e, %class, "[throttle.io] class cannot be applied; pack writeback runs at the daemon's priority");
        eprintln!("strata-mountd: warning: [throttle.io] class = {class} cannot be applied: {e}");
        store.start_writeback(None)?;
    }
    Ok(())
}

fn unlock(args: &MountdArgs) -> Result<strata::store::repo::Repo> {
    if !args.repo.is_dir() {
        return Err(RepoError::NotARepository {
            path: args.repo.display().to_string(),
        }
        .into());
    }
    let locked = LockedRepo::open(
        strata::store::io::open_dir(&args.repo)?,
        &args.repo.display().to_string(),
    )?;
    let secret = if !locked.encrypted() {
        None
    } else if let Some(fd) = args.key_fd {
        Some(strata::daemon::secrets::read_handoff(fd)?)
    } else if let Some(f) = &args.key_file {
        Some(strata::daemon::secrets::read_key_file(f)?)
    } else if let Some(f) = &args.password_file {
        Some(strata::daemon::secrets::read_password_file(f)?)
    } else {
        let default = strata::daemon::secrets::default_key_file(&locked.config().id);
        default
            .exists()
            .then(|| strata::daemon::secrets::read_key_file(&default))
            .transpose()?
    };
    Ok(locked.unlock(secret.as_ref())?)
}

fn run(args: &MountdArgs, ready: &dyn Fn()) -> Result<()> {
    let signals = block_signals();
    let opts = &args.mount;
    let mnt = mountpoint::canonical(&opts.mountpoint);
    if let Some(note) = mountpoint::prepare(&mnt, opts.nonempty)? {
        tracing::warn!("{note}");
        eprintln!("strata-mountd: {note}");
    }
    let host = HostConfig::load_or_default(opts.config.as_deref())?;
    let repo = unlock(args).map_err(|e| on_failing_disk(e, &args.repo))?;
    if let Some(refetch) = strata::daemon::replicate::refetch(&host, &repo) {
        repo.store().set_refetch(refetch);
    }
    let repo_id = repo.config().instance();
    let id: RepoId = repo.config().id.parse()?;
    let alerter = Alerter::from_config(&host.alerts, alert::state_path(&id)).map_err(|e| {
        Reported(
            strata::exit::HOST_CONFIG,
            format!("the [alerts] configuration cannot be used: {e}"),
        )
    })?;
    let reader_group = opts
        .reader_group
        .as_deref()
        .map(resolve_group)
        .transpose()?;
    let access = Access {
        // SAFETY: geteuid cannot fail.
        owner: unsafe { libc::geteuid() },
        reader_group,
        allow_other: opts.allow_other,
    };
    start_writeback(&repo, host.throttle_policy().io.and_then(|io| io.class))?;
    let head =
        strata::tree::head::Head::new(repo).map_err(|e| on_failing_disk(e.into(), &args.repo))?;
    // The host configuration was checked when it loaded, its rules with it.
    if let Some(classifier) = host.classifier()? {
        tracing::info!("classifying files into tiers as they are written");
        head.set_classifier(Some(Arc::new(classifier)));
    }
    let ns = Arc::new(Namespace::new(head, access)?);
    let listener = control::bind(&mountpoint::socket_path(&repo_id))?;
    // An outcome left by an earlier daemon of this repository is stale.
    let _ = std::fs::remove_file(mountpoint::outcome_path(&repo_id));

    match mountpoint::set_immutable(&mnt, true) {
        Ok(false) => {}
        Ok(true) => {
            let note = mountpoint::immutable_note(&mnt);
            tracing::info!("{note}");
            eprintln!("strata-mountd: {note}");
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot make the bare mountpoint immutable; writers could fill it while unmounted");
        }
    }
    let (tx, rx) = mpsc::channel();
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(mountpoint::source_of(&repo_id)),
        MountOption::Subtype("strata".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::Dev,
        MountOption::Suid,
    ];
    config.acl = if opts.allow_other || reader_group.is_some() {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    let requests = Arc::new(Requests::default());
    let (throttle, _adaptive, io_placement) =
        start_throttle(host.throttle_policy(), &args.repo, &repo_id);
    // Uploads to a bucket keep to [throttle] as writes do, on a bucket of
    // tokens of their own (the bytes written become the bytes uploaded).
    if let Some(remote) = ns.head().repo().disk().remote() {
        let policy = host.throttle_policy();
        if !policy.limits.is_unlimited() || !policy.schedule.profiles.is_empty() {
            let uploads = Arc::new(Throttle::with_system_clock(policy));
            remote.set_pace(Arc::new(move |bytes| uploads.wait(bytes)));
        }
    }
    let fs: Arc<dyn kernel::Serve> = Arc::new(StrataFs::new(
        ns.clone(),
        tx.clone(),
        requests.clone(),
        throttle.clone(),
        Delayer::spawn()?,
    ));
    let transport = Arc::new(TransportStatus::default());
    let options = kernel::Options {
        config: &config,
        capabilities: fuse::capabilities(),
        max_write: MAX_WRITE,
        transport: opts.transport,
        threads: opts.threads,
    };
    let mut mounted =
        kernel::mount(&mnt, &options, fs, transport.clone()).map_err(|e| match e {
            kernel::MountError::NoRing(_) => {
                anyhow::Error::from(Reported(strata::exit::MOUNTPOINT, e.to_string()))
            }
            e => MountpointError::Mount(mnt.clone(), e.to_string()).into(),
        })?;
    let served = Arc::new(Served {
        mountpoint: mnt.clone(),
        ns: ns.clone(),
        notifier: mounted.notifier(),
        unmount: Mutex::new(Some(mounted.unmounter())),
        requests,
        throttle,
        transport,
    });
    strata::daemon::watch::spawn(
        ns.clone(),
        alerter,
        id,
        args.repo.clone(),
        host.alerts.fill_threshold,
    )?;
    let notifier = mounted.notifier();
    std::thread::Builder::new()
        .name("invalidate".into())
        .spawn(move || {
            for inv in rx {
                send_invalidation(&notifier, &inv);
            }
        })?;
    let s = served.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let sig = wait_signal(signals);
            tracing::info!(signal = sig, "unmounting on signal");
            let mnt = s.mountpoint.display().to_string();
            let unmounted = mountpoint::unmount_when_free(&s.mountpoint, || {
                tracing::warn!("{mnt} is busy: a process has a file open or its working directory in it (`fuser -vm {mnt}` names it); unmounting as soon as it is free");
            });
            match unmounted {
                Ok(()) => s.unmount(),
                Err(e) => tracing::error!(error = %e, "unmounting on signal failed; still serving"),
            }
        })?;
    let n = ns.clone();
    std::thread::Builder::new()
        .name("committer".into())
        .spawn(move || n.head().run_committer())?;
    for i in 0..READ_AHEAD_WORKERS {
        let n = ns.clone();
        std::thread::Builder::new()
            .name(format!("read-ahead-{i}"))
            .spawn(move || n.run_prefetcher())?;
    }
    let in_flight = Arc::new(control::InFlight::default());
    let (n, d, f) = (ns.clone(), served.clone(), in_flight.clone());
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || control::serve(listener, n, d, f))?;
    if let Some(addr) = host.metrics.listen {
        strata::daemon::metrics_http::spawn(addr, ns.clone(), served.clone()).map_err(|e| {
            Reported(
                strata::exit::HOST_CONFIG,
                format!("[metrics] listen = \"{addr}\" cannot be bound ({e}): another program may use the port; choose another"),
            )
        })?;
    }
    let serving = std::thread::Builder::new()
        .name("session".into())
        .spawn(move || mounted.join())?;

    wait_answering(&mnt)?;
    tracing::info!(mountpoint = %mnt.display(), repo = %repo_id, "mounted");
    let host_file = opts
        .config
        .clone()
        .unwrap_or_else(|| strata::policy::hostconfig::DEFAULT_PATH.into());
    let read = |p: &std::path::Path| std::fs::read(p).ok();
    strata::daemon::audit::mounted(
        &ns,
        &mnt.display().to_string(),
        &[
            (
                "repository",
                read(&args.repo.join(strata::store::format::CONFIG_FILE)),
            ),
            ("host", read(&host_file)),
        ],
    );
    ready();
    sd_notify("READY=1");

    let result = serving
        .join()
        .map_err(|_| anyhow::anyhow!("the FUSE session panicked"))?;
    sd_notify("STOPPING=1");
    if still_mounted(&mnt) {
        tracing::warn!(mountpoint = %mnt.display(), "the mount outlived its session; detaching it");
        if let Err(e) = mountpoint::detach(&mnt) {
            tracing::error!(error = %e, "detaching the mount failed");
        }
    }
    let _ = std::fs::remove_file(mountpoint::socket_path(&repo_id));
    // The request that unmounted (and any other) is recorded first.
    if !in_flight.wait_idle(Duration::from_secs(30)) {
        tracing::warn!(
            "control requests still running at unmount; their audit records may be lost"
        );
    }
    strata::daemon::audit::unmounted(&ns, &mnt.display().to_string());
    let committed = ns.shutdown().context("committing the head at unmount");
    write_outcome(&repo_id, &committed);
    committed?;
    if let Some(p) = io_placement {
        if let Err(e) = p.undo() {
            tracing::warn!(error = %e, "leaving the I/O cgroup failed");
        }
    }
    result.context("serving FUSE")?;
    tracing::info!(mountpoint = %mnt.display(), "unmounted; everything committed");
    Ok(())
}

/// A repository whose disk refuses writes as it opens: the bare refusal
/// ("read-only", "Read-only file system") said with what to do. Other
/// errors are left as they are.
fn on_failing_disk(e: anyhow::Error, repo: &Path) -> anyhow::Error {
    use strata::tree::types::FsError;
    let refused = e.chain().any(|c| {
        let errno = c
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error);
        matches!(
            errno,
            Some(libc::EROFS | libc::ENOSPC | libc::EDQUOT | libc::EIO)
        ) || matches!(
            c.downcast_ref::<FsError>(),
            Some(FsError::ReadOnly | FsError::NoSpace | FsError::Io(_))
        )
    });
    if !refused {
        return e;
    }
    Reported(
        strata::daemon::exit_code(&*e),
        format!(
            "cannot open the repository at {} for writing: {}. The disk it is on refuses writes (full, failing or remounted read-only after an error?): see `df` and `dmesg`, free space on or repair that disk (and remount it read-write), then mount again",
            repo.display(),
            strata::sys::chain::Chain(&*e)
        ),
    )
    .into()
}

/// Leaves the outcome of the final commit where `strata umount`, which
/// waits for this process to exit, reads it: "committed", or the error.
/// Owner only, like the control socket beside it.
fn write_outcome(repo_id: &str, committed: &Result<()>) {
    let text = match committed {
        Ok(()) => "committed\n".to_owned(),
        Err(e) => format!("{}\n", strata::sys::chain::Chain(&**e)),
    };
    let path = mountpoint::outcome_path(repo_id);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(error = %e, path = %path.display(), "cannot leave the outcome of the final commit for `strata umount`");
    }
}

/// Waits until the mount answers a stat of its root.
fn wait_answering(mnt: &Path) -> Result<()> {
    let start = Instant::now();
    loop {
        match std::fs::metadata(mnt.join("head")) {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                return Err(MountpointError::Mount(
                    mnt.to_path_buf(),
                    format!("the mount does not answer: {e}"),
                )
                .into())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
