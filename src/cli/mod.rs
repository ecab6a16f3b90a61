//! The CLI: parse flags, turn them into one library call, print the result.

pub mod args;
mod audit;
mod backup;
mod diff;
mod drill;
mod find;
mod forget;
mod freshness;
mod head;
mod man;
mod mount;
mod progress;
mod prune;
mod repair_catalog;
mod replicate;
mod runs;
mod secrets;
mod snapshot;
mod throttle;
mod tier;
mod tier_show;
mod versions;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use serde::Serialize;
use strata::daemon::audit::Via;
use strata::daemon::control::{self, KeyChange, Reply, Request};
use strata::ops::check::{check_repo_keeping, ReadData};
use strata::store::chunker::ChunkerParams;
use strata::store::crypto::slot::{KdfParams, SlotKind};
use strata::store::id::RepoId;
use strata::store::io::{Disk, LocalDisk};
use strata::store::repo::{init, InitOptions, LockedRepo, Repo, RepoError};
use strata::tree::head::Head;
use strata::tree::namespace::{Access, Namespace};
use strata::tree::types::Caller;

use args::{
    CheckArgs, Cli, Command, Global, InitArgs, KdfArgs, KeyCommand, NewSecretArgs, RepairCommand,
};
use strata::exit::{self, Damaged, Reported};

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => cmd_init(g, a),
        Command::Key(k) => cmd_key(g, k),
        Command::Check(a) => cmd_check(g, a),
        Command::Repair(RepairCommand::Index) => cmd_repair_index(g),
        Command::Repair(RepairCommand::Packs(a)) => replicate::repair_packs(g, a),
        Command::Repair(RepairCommand::Catalog) => repair_catalog::run(g),
        Command::Find(a) => find::run(g, a),
        Command::Versions { path } => versions::run(g, path),
        Command::Diff { from, to, path } => diff::run(g, from, to, path.as_deref()),
        Command::Snapshot(c) => snapshot::run(g, c),
        Command::Backup(a) => backup::run(g, a),
        Command::Forget(a) => forget::run(g, a),
        Command::Prune(a) => prune::run(g, a),
        Command::Replicate(a) => replicate::run(g, a),
        Command::Drill(a) => drill::run(g, a),
        Command::Head(c) => head::run(g, c),
        Command::Runs(c) => runs::run(g, c),
        Command::Audit(c) => audit::run(g, c),
        Command::Throttle(c) => throttle::run(g, c),
        Command::Tier(c) => tier::run(g, c),
        Command::Mount(a) => mount::mount(g, a),
        Command::Umount { mountpoint } => match mountpoint {
            Some(dir) => mount::umount(g, dir),
            None => mount::umount(g, &default_mountpoint()?),
        },
        Command::Status => snapshot::status(g),
        Command::Metrics { textfile } => cmd_metrics(g, textfile.as_deref()),
        Command::Report { html } => cmd_report(g, html.as_deref()),
        Command::Stats => {
            #[derive(Serialize)]
            struct All {
                #[serde(flatten)]
                repository: strata::store::stats::Stats,
                head: strata::tree::head::HeadStats,
                catalog: strata::tree::catalog::CatalogStats,
            }
            let head = strata::tree::head::Head::new(unlock(g)?)?;
            let all = All {
                repository: strata::store::stats::stats(head.repo())?,
                head: head.stats()?,
                catalog: strata::tree::catalog::Catalog::of(&head).stats()?,
            };
            let (s, h, c) = (&all.repository, &all.head, &all.catalog);
            print(g, &all, || {
                format!(
                    "suite            {}\nobjects          {} ({} bytes)\nstored bytes     {} ({:.1} % of object bytes)\npacks            {} finished, {} open ({} bytes)\nindex            {} bytes\nkey slots        {}\ninodes           {}\nsnapshots        {} (the newest serialized {} directories, reused {})\ncatalog          {} directory records, {} versions, {} bytes",
                    s.suite, s.chunks, s.chunk_bytes, s.stored_bytes, s.compression_ratio * 100.0, s.packs, s.open_packs, s.pack_file_bytes, s.index_bytes, s.key_slots, h.inodes, h.snapshots, h.last_snapshot_dirs_serialized, h.last_snapshot_dirs_reused, c.records, c.versions, c.bytes
                )
            });
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "strata",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man { dir } => man::write_pages(dir),
    }
}

fn print<T: Serialize>(g: &Global, value: &T, human: impl FnOnce() -> String) {
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("serializable")
        );
    } else if !g.quiet {
        println!("{}", human());
    }
}

/// What `strata umount` with no argument unmounts: the default
/// mountpoint if strata is mounted there, else the only strata mount.
fn default_mountpoint() -> Result<PathBuf> {
    let default = Path::new(strata::daemon::mount_args::DEFAULT_MOUNTPOINT);
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut mounts: Vec<PathBuf> = strata::sys::mountpoint::parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.is_strata())
        .map(|m| m.target)
        .collect();
    mounts.dedup();
    if mounts.iter().any(|m| m == default) {
        return Ok(default.to_owned());
    }
    match mounts.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(Reported(
            exit::MOUNTPOINT,
            format!(
                "no strata mount to unmount: nothing is mounted on {} and no other strata mount exists",
                default.display()
            ),
        )
        .into()),
        several => Err(Reported(
            exit::USAGE,
            format!(
                "several strata mounts exist ({}); name the one to unmount: `strata umount MOUNTPOINT`",
                several
                    .iter()
                    .map(|m| m.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into()),
    }
}

fn disk(g: &Global) -> Result<Arc<dyn Disk>> {
    Ok(strata::store::io::open_dir(&g.repo)?)
}

/// With `--repo s3://BUCKET/PREFIX`, makes `g.repo` the bucket's local
/// directory and keeps the URL.
pub fn resolve_remote(g: &mut Global) -> Result<()> {
    let Some(url) = g.repo.to_str().filter(|r| r.starts_with("s3://")) else {
        return Ok(());
    };
    let url = url.trim_end_matches('/').to_owned();
    g.repo = strata::store::io::remote::cache_dir(&url)
        .map_err(|e| Reported(exit::USAGE, format!("--repo: {e}")))?;
    g.remote = Some(url);
    Ok(())
}

/// A bucket's repository seen here for the first time: its config and key
/// slots fetched into a new local directory (the index is rebuilt from the
/// packs by `strata repair index`).
fn bootstrap(g: &Global, url: &str) -> Result<()> {
    use strata::store::io::remote::RemoteConfig;
    let config = RemoteConfig::from_env(url)?;
    if !strata::store::io::remote::bootstrap(&config, &g.repo).context(format!("fetching {url}"))? {
        return Err(RepoError::NotARepository {
            path: url.to_owned(),
        }
        .into());
    }
    Ok(())
}

/// The caller of this command, for the snapshot record.
fn me() -> Caller {
    // SAFETY: these libc calls take no arguments and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    Caller {
        uid,
        gid,
        pid: std::process::id(),
    }
}

/// Serves `req` by the running daemon, or by opening the repository.
pub fn request(g: &Global, req: &Request) -> Result<Reply> {
    request_or(g, req, |ns, caller| Ok(control::handle(ns, caller, req)?))
}

/// Serves `req` by the running daemon, or, when none runs, by `here` on
/// the opened repository; either way the audit log records it.
pub fn request_or(
    g: &Global,
    req: &Request,
    here: impl FnOnce(&Namespace, Caller) -> Result<Reply>,
) -> Result<Reply> {
    let repo = locked(g)?;
    if let Some(reply) = control::call(&socket(&repo), req)? {
        return Ok(reply);
    }
    let secret = secret_for(g, &repo)?;
    serve_here(repo.unlock(secret.as_ref())?, req, here)
}

/// Serves `req` by `here` on `repo`, opened by this process, and records
/// it in the audit log as the daemon does what it serves.
fn serve_here(
    repo: Repo,
    req: &Request,
    here: impl FnOnce(&Namespace, Caller) -> Result<Reply>,
) -> Result<Reply> {
    let ns = Namespace::new(Head::new(repo)?, Access::default())?;
    let caller = me();
    let reply = here(&ns, caller);
    let outcome = reply
        .as_ref()
        .map_err(|e| strata::daemon::exit_code(e.as_ref()));
    strata::daemon::audit::record(&ns, caller, Via::Repository, req, outcome);
    reply
}

/// Records a change of the key slots, made by this process on `repo`'s
/// files (key commands refuse a mounted repository).
fn record_key_change(repo: Repo, change: KeyChange) -> Result<()> {
    let req = Request::KeyChanged { change };
    serve_here(repo, &req, |_, _| Ok(Reply::Done))?;
    Ok(())
}

/// The control socket of the repository's daemon, whether one runs or not.
pub(crate) fn socket_of(g: &Global) -> Result<std::path::PathBuf> {
    Ok(socket(&locked(g)?))
}

pub(crate) fn socket(repo: &LockedRepo) -> std::path::PathBuf {
    strata::sys::mountpoint::socket_path(&repo.config().instance())
}

fn locked(g: &Global) -> Result<LockedRepo> {
    if let Some(url) = &g.remote {
        if !g.repo.join(strata::store::format::CONFIG_FILE).exists() {
            bootstrap(g, url)?;
        }
    }
    if !g.repo.is_dir() {
        return Err(RepoError::NotARepository {
            path: g.repo.display().to_string(),
        }
        .into());
    }
    Ok(LockedRepo::open(disk(g)?, &g.repo.display().to_string())?)
}

fn secret_for(
    g: &Global,
    repo: &LockedRepo,
) -> Result<Option<strata::store::crypto::slot::Secret>> {
    if !repo.encrypted() {
        return Ok(None);
    }
    secrets::unlock_secret(g, &repo.config().id)
}

fn unlock(g: &Global) -> Result<Repo> {
    let repo = locked(g)?;
    let secret = secret_for(g, &repo)?;
    Ok(repo.unlock(secret.as_ref())?)
}

fn kdf(a: &KdfArgs) -> KdfParams {
    KdfParams {
        memory_kib: a.kdf_memory_mib.saturating_mul(1024),
        iterations: a.kdf_iterations,
        parallelism: 1,
    }
}

#[derive(Serialize)]
struct InitReport {
    repository: String,
    id: String,
    encrypted: bool,
    key_file: Option<String>,
}

pub(crate) fn cmd_init(g: &Global, a: &InitArgs) -> Result<()> {
    let avg = a
        .chunk_size_kib
        .checked_mul(1024)
        .context("--chunk-size-kib is too large")?;
    let chunker = ChunkerParams {
        min_size: avg / 4,
        avg_size: avg,
        max_size: avg.saturating_mul(4),
    };
    chunker
        .validate()
        .with_context(|| format!("--chunk-size-kib {}", a.chunk_size_kib))?;
    let pack_size = strata::policy::throttle::rate::parse_size(&a.pack_size)
        .filter(|n| strata::store::format::PACK_SIZES.contains(n))
        .ok_or_else(|| {
            strata::exit::Reported(
                strata::exit::USAGE,
                format!(
                    "--pack-size {:?} is not a size from 1MiB to 4GiB (e.g. \"16MiB\"); nothing was created",
                    a.pack_size
                ),
            )
        })?;
    let id = RepoId::random();
    let passphrase = secrets::given_passphrase(g)?;
    if a.insecure_no_encryption
        && (passphrase.is_some() || g.key_file.is_some() || a.key_file_out.is_some())
    {
        bail!("--insecure-no-encryption takes no passphrase or key file");
    }
    // Refuse a non-empty directory before writing anything, the key file included.
    let created_dir = !g.repo.exists();
    if !created_dir
        && std::fs::read_dir(&g.repo)
            .with_context(|| format!("reading {}", g.repo.display()))?
            .next()
            .is_some()
    {
        return Err(RepoError::NotEmpty {
            path: g.repo.display().to_string(),
        }
        .into());
    }
    let mut generated_key = None;
    let secret = if a.insecure_no_encryption {
        None
    } else if let Some(p) = passphrase {
        Some((p, SlotKind::Passphrase))
    } else if let Some(path) = &g.key_file {
        Some((secrets::read_key_file(path)?, SlotKind::KeyFile))
    } else {
        let path = a
            .key_file_out
            .clone()
            .unwrap_or_else(|| secrets::default_key_file(&id.to_string()));
        let secret = secrets::write_new_key_file(&path)?;
        generated_key = Some(path);
        Some((secret, SlotKind::KeyFile))
    };
    let opts = InitOptions {
        id,
        secret,
        label: a.label.clone(),
        kdf: kdf(&a.kdf),
        chunker,
        pack_size,
    };
    let result = (|| -> Result<()> {
        if created_dir {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&g.repo)
                .with_context(|| format!("creating {}", g.repo.display()))?;
        }
        if a.object_lock.is_some() && g.remote.is_none() {
            return Err(Reported(
                exit::USAGE,
                "--object-lock applies to a repository in a bucket (--repo s3://BUCKET/PREFIX)"
                    .into(),
            )
            .into());
        }
        if let Some(url) = &g.remote {
            use strata::store::io::remote::{ObjectLock, Remote, RemoteConfig, REMOTE_FILE};
            let config = RemoteConfig {
                object_lock: a.object_lock.map(|m| match m {
                    args::ObjectLockMode::Compliance => ObjectLock::Compliance,
                    args::ObjectLockMode::Governance => ObjectLock::Governance,
                }),
                ..RemoteConfig::from_env(url)?
            };
            let remote = Remote::connect(&config)?;
            match remote.size(strata::store::format::CONFIG_FILE) {
                Ok(_) => bail!("{url} already holds a repository; nothing was created (use it with --repo {url}, or name another prefix)"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context(format!("cannot reach {url}; nothing was created")),
            }
            LocalDisk::new(&g.repo).write_atomic(REMOTE_FILE, config.render().as_bytes())?;
        }
        init(disk(g)?, opts)?;
        Ok(())
    })();
    if let Err(e) = result {
        // Leave things as they were: no half repository, no orphan key file.
        if created_dir {
            let _ = std::fs::remove_dir_all(&g.repo);
        } else if let Ok(entries) = std::fs::read_dir(&g.repo) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir_all(entry.path())
                    .or_else(|_| std::fs::remove_file(entry.path()));
            }
        }
        if let Some(path) = &generated_key {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    let report = InitReport {
        repository: g.repo.display().to_string(),
        id: id.to_string(),
        encrypted: !a.insecure_no_encryption,
        key_file: generated_key.as_ref().map(|p| p.display().to_string()),
    };
    print(g, &report, || {
        format!("created repository {} at {}", id, g.repo.display())
    });
    if let Some(path) = &generated_key {
        eprintln!(
            "strata: no passphrase was given, so a key file was generated: {}\n\
             strata: WARNING: without this file (or another key slot) the backups cannot be read.\n\
             strata: Copy it off this machine now and keep it in escrow (e.g. a safe); it is the only key.",
            path.display()
        );
    }
    if a.insecure_no_encryption {
        eprintln!("strata: WARNING: the repository is not encrypted; anyone who can read its files can read the backups.");
    }
    Ok(())
}

use std::os::unix::fs::DirBuilderExt;

fn new_secret(a: &NewSecretArgs) -> Result<(strata::store::crypto::slot::Secret, SlotKind)> {
    match &a.new_key_file {
        Some(path) => Ok((secrets::write_new_key_file(path)?, SlotKind::KeyFile)),
        None => Ok((
            secrets::new_passphrase(a.new_password_file.as_deref())?,
            SlotKind::Passphrase,
        )),
    }
}

fn cmd_key(g: &Global, k: &KeyCommand) -> Result<()> {
    let mut repo = unlock(g)?;
    match k {
        KeyCommand::List => {
            let slots = repo.list_keys();
            print(g, &slots, || {
                let mut out = String::from(" current  id                                kind        created               label");
                for s in &slots {
                    out.push_str(&format!(
                        "\n {:7}  {}  {:10}  {:10}  {}",
                        if s.current { "*" } else { "" },
                        s.id,
                        s.kind.name(),
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + Duration::from_secs(s.created)
                        )
                        .to_string(),
                        s.label
                    ));
                }
                out
            });
        }
        KeyCommand::Add(a) => {
            let (secret, kind, recovery) = if a.escrow {
                match &a.secret.new_key_file {
                    Some(path) => (secrets::write_new_key_file(path)?, SlotKind::Escrow, None),
                    None => {
                        let (s, text) = secrets::new_recovery_key();
                        (s, SlotKind::Escrow, Some(text))
                    }
                }
            } else {
                let (s, kind) = new_secret(&a.secret)?;
                (s, kind, None)
            };
            let id = repo.add_key(&secret, kind, &a.label, kdf(&a.secret.kdf))?;
            let change = KeyChange {
                op: "key_add".into(),
                slot: id.clone(),
                kind: Some(kind.name().into()),
            };
            #[derive(Serialize)]
            struct Added<'a> {
                id: &'a str,
                recovery_key: Option<&'a str>,
            }
            print(
                g,
                &Added {
                    id: &id,
                    recovery_key: recovery.as_deref().map(|s| s.trim()),
                },
                || {
                    match &recovery {
                Some(text) => format!(
                    "added escrow key slot {id}\nrecovery key (shown once; store it off-site, e.g. printed in a safe; use it as a key file):\n{}",
                    text.trim()
                ),
                None => format!("added key slot {id}"),
            }
                },
            );
            record_key_change(repo, change)?;
        }
        KeyCommand::Remove { id } => {
            repo.remove_key(id)?;
            if !g.quiet && !g.json {
                println!("removed key slot {id}");
            }
            let change = KeyChange {
                op: "key_remove".into(),
                slot: id.clone(),
                kind: None,
            };
            record_key_change(repo, change)?;
        }
        KeyCommand::Passwd(a) => {
            let (secret, _) = new_secret(a)?;
            let id = repo.change_secret(&secret, kdf(&a.kdf))?;
            if !g.quiet && !g.json {
                println!("replaced the key slot that was used with new slot {id}");
            }
            let change = KeyChange {
                op: "key_passwd".into(),
                slot: id,
                kind: None,
            };
            record_key_change(repo, change)?;
        }
    }
    Ok(())
}

fn cmd_check(g: &Global, a: &CheckArgs) -> Result<()> {
    if a.freshness {
        return freshness::run(g, a);
    }
    // The verify cycle runs from a timer: what it finds is alerted.
    let cycle_config = a
        .cycle
        .then(|| strata::policy::hostconfig::HostConfig::load_or_default(a.config.as_deref()))
        .transpose()?;
    let read = match (&a.read_data_subset, a.read_data) {
        _ if a.cycle => ReadData::Cycle {
            cycle_secs: cycle_config
                .as_ref()
                .map_or(1, |c| c.verify.cycle.as_secs().max(1)),
        },
        (Some(s), _) => s
            .parse::<ReadData>()
            .map_err(|e| Reported(exit::USAGE, format!("--read-data-subset: {e}")))?,
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let show_progress = !g.quiet && !g.json && std::io::stderr().is_terminal();
    let req = Request::Check { read };
    let reply = {
        // Mounted, the daemon checks (writes go on) and `status` says how
        // far its reading is.
        let _poll = show_progress
            .then(|| {
                progress::Poll::start(g, |s| {
                    s.check
                        .map(|(done, total)| format!("reading data: {done}/{total} chunks"))
                })
            })
            .transpose()?;
        let repo = locked(g)?;
        match control::call(&socket(&repo), &req)? {
            Some(reply) => reply,
            None => {
                let secret = secret_for(g, &repo)?;
                let repo = repo.unlock(secret.as_ref())?;
                let mut last = Instant::now();
                let (report, head) = check_repo_keeping(repo, me(), read, |done, total| {
                    if show_progress
                        && (last.elapsed() > Duration::from_millis(250) || done == total)
                    {
                        progress::show(&format!("reading data: {done}/{total} chunks"));
                        last = Instant::now();
                    }
                })?;
                let reply = Reply::Check(Box::new(report));
                if let Some(head) = head {
                    let ns = Namespace::new(head, Access::default())?;
                    strata::daemon::audit::record(&ns, me(), Via::Repository, &req, Ok(&reply));
                }
                reply
            }
        }
    };
    if show_progress {
        progress::clear();
    }
    let Reply::Check(mut report) = reply else {
        bail!("unexpected answer from the daemon");
    };
    // Paths are patient data: a terminal only (see damaged_users).
    let users = damaged_users(g, report.users.take(), report.errors.len());
    print(g, &report, || {
        let mut out = String::new();
        for w in &report.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        for e in &report.errors {
            out.push_str(&format!("error: {e}\n"));
        }
        out.push_str(&users);
        out.push_str(&format!(
            "checked {} packs, {} index entries and {} snapshots; read {} chunks ({} bytes); {} error(s), {} warning(s)",
            report.packs,
            report.chunks,
            report.snapshots,
            report.chunks_read,
            report.bytes_read,
            report.errors.len(),
            report.warnings.len()
        ));
        if let Some(c) = &report.cycle {
            out.push_str(&format!(
                "\nverify cycle: read {} of {} finished pack(s); {} read in this cycle ({:.0}%), started {}; {} cycle(s) completed{}",
                c.packs_read,
                c.packs,
                c.packs_covered,
                if c.packs == 0 { 100.0 } else { c.packs_covered as f64 * 100.0 / c.packs as f64 },
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(c.cycle_started.max(0) as u64)),
                c.cycles,
                if c.last_completed > 0 {
                    format!(", the last {}", humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(c.last_completed as u64)))
                } else {
                    String::new()
                }
            ));
        }
        if report.open_packs_skipped > 0 {
            out.push_str(&format!(
                "\n{} pack(s) being written were left out (the daemon is writing them); a check once they are finished reads them",
                report.open_packs_skipped
            ));
        }
        out
    });
    if let Some(config) = &cycle_config {
        verify_alert(g, config, report.ok());
    }
    if !report.ok() {
        return Err(Damaged(report.errors.len()).into());
    }
    Ok(())
}

/// The repository's id and the alerter of `config`'s channels; `None`
/// (said, when the configuration is at fault) when alerts cannot be sent.
pub(crate) fn alerter(
    g: &Global,
    config: &strata::policy::hostconfig::HostConfig,
) -> Option<(strata::store::id::RepoId, strata::policy::alert::Alerter)> {
    use strata::policy::alert::{self, Alerter};
    let id: strata::store::id::RepoId = locked(g).ok()?.config().id.parse().ok()?;
    match Alerter::from_config(&config.alerts, alert::state_path(&id)) {
        Ok(a) => Some((id, a)),
        Err(e) => {
            eprintln!("strata: the [alerts] configuration cannot be used, no alert sent: {e}");
            None
        }
    }
}

/// Raises verify_failed when the verify cycle found damage, or resolves it
/// when a cycle run read clean. A failure to alert is said and does not
/// change the check's verdict.
fn verify_alert(g: &Global, config: &strata::policy::hostconfig::HostConfig, clean: bool) {
    use strata::policy::alert;
    let Some((id, alerter)) = alerter(g, config) else {
        return;
    };
    let kind = alert::Kind::VerifyFailed;
    if clean {
        if let Err(e) = alerter.resolve(kind, Some(id)) {
            eprintln!("strata: resolving the {kind} alert failed: {e}");
        }
        return;
    }
    let event = alert::Event::new(kind, alert::Class::Corruption, std::time::SystemTime::now())
        .with_repository(id)
        .with_fields(alert::Fields {
            exit_status: Some(i32::from(exit::DAMAGED)),
            ..alert::Fields::default()
        });
    if let Err(e) = alerter.raise(event).result() {
        eprintln!("strata: the {kind} alert could not be delivered: {e}");
    }
}

/// Which files and snapshots use the damaged chunks, for a human at a
/// terminal only: file names are patient data, and what is not a terminal
/// (a pipe, a file, the journal) may leave the machine. Logs keep the ids.
fn damaged_users(g: &Global, users: Option<String>, problems: usize) -> String {
    let Some(users) = users else {
        return String::new();
    };
    if g.json || g.quiet {
        return String::new();
    }
    if !std::io::stdout().is_terminal() {
        return format!(
            "{problems} problem(s): run this check on a terminal to see the files and snapshots that use damaged data (not printed elsewhere: file names are patient data)\n"
        );
    }
    users
}

/// `strata metrics`: the daemon's (with its throttle and FUSE counts),
/// or gathered here when unmounted.
fn cmd_metrics(g: &Global, textfile: Option<&Path>) -> Result<()> {
    let reply = request_or(g, &Request::Metrics, |ns, _| {
        let metrics = strata::ops::metrics::gather(ns.head(), &Default::default())?;
        Ok(Reply::Metrics(metrics.render()))
    })?;
    let Reply::Metrics(text) = reply else {
        bail!("unexpected answer from the daemon");
    };
    let Some(dir) = textfile else {
        print!("{text}");
        return Ok(());
    };
    let id = locked(g)?.config().id.clone();
    let name = format!("strata_{id}.prom");
    if let Err(e) = replace_file(&dir.join(&name), text.as_bytes()) {
        return Err(Reported(
            exit::ERROR,
            format!(
                "cannot write {}: {e}; --textfile names node_exporter's collector directory, which must exist and be writable",
                dir.join(&name).display()
            ),
        )
        .into());
    }
    Ok(())
}

/// Writes `bytes` to `path` as a whole: into a temporary file beside it,
/// renamed over it, so a reader never sees half of it.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// `strata report`: through the daemon while mounted, directly when not;
/// the page is drawn here.
fn cmd_report(g: &Global, html: Option<&Path>) -> Result<()> {
    let reply = request_or(g, &Request::Report, |ns, _| {
        Ok(Reply::Report(Box::new(strata::ops::report::report(
            ns.head(),
        )?)))
    })?;
    let Reply::Report(r) = reply else {
        bail!("unexpected answer from the daemon");
    };
    if let Some(file) = html {
        if file.is_dir() || file.file_name().is_none() {
            return Err(Reported(
                exit::USAGE,
                format!(
                    "--html {}: that is a directory; name the file to write, e.g. {}",
                    file.display(),
                    file.join("strata-report.html").display()
                ),
            )
            .into());
        }
        let zone = jiff::tz::TimeZone::system();
        let page = strata::ops::report::html::render(&r, &zone)?;
        replace_file(file, page.as_bytes()).map_err(|e| {
            Reported(
                exit::ERROR,
                format!(
                    "cannot write the report to {}: {e}; name a file in a directory that exists and that you can write",
                    file.display()
                ),
            )
        })?;
        // The page is the report; --json still prints the data.
        if !g.json {
            if !g.quiet {
                println!("report written to {}", file.display());
            }
            return Ok(());
        }
    }
    print(g, &r, || {
        let size = |n: u64| strata::policy::throttle::rate::format_bytes(n as f64);
        let mut out = format!(
            "{:<22} {:>8} {:>11} {:>11} {:<12} {:>8}",
            "snapshot", "files", "holds", "added", "run", "run time"
        );
        for s in &r.snapshots {
            out.push_str(&format!(
                "\n{:<22} {:>8} {:>11} {:>11} {:<12} {:>8}",
                s.name,
                s.files,
                size(s.logical_bytes),
                size(s.new_stored_bytes),
                s.run_status.as_deref().unwrap_or("-"),
                s.run_secs.map_or("-".to_owned(), |t| format!("{t} s")),
            ));
        }
        out.push_str(&format!(
            "\nstored: {} of chunks ({} before compression)",
            size(r.stored_bytes),
            size(r.chunk_bytes)
        ));
        for d in &r.drills {
            out.push_str(&format!(
                "\ndrill {} {}: {:.2} s recovery{}, {}",
                d.number,
                d.name.as_deref().unwrap_or("(by hand)"),
                d.recovery_secs,
                d.rto_secs
                    .map_or(String::new(), |o| format!(" of an objective of {o:.0} s")),
                d.result.as_str()
            ));
        }
        out.push_str(&format!(
            "\nverify cycle: {:.0}% read, {} cycle(s) completed",
            r.verify_coverage * 100.0,
            r.verify_cycles
        ));
        if !r.alerts_outstanding.is_empty() {
            out.push_str(&format!(
                "\nalerts outstanding: {}",
                r.alerts_outstanding.join(", ")
            ));
        }
        out
    });
    Ok(())
}

fn cmd_repair_index(g: &Global) -> Result<()> {
    let repo = locked(g)?;
    let secret = secret_for(g, &repo)?;
    let report = strata::ops::repair::repair_index(&repo, secret.as_ref())?;
    print(g, &report, || {
        let mut out = format!(
            "rebuilt the index: {} chunks in {} finished and {} open packs; cut {} bytes of torn pack tails",
            report.chunks, report.finished_packs, report.open_packs, report.tail_bytes_cut
        );
        for d in &report.damaged_packs {
            out.push_str(&format!("\ndamaged pack (not indexed): {d}"));
        }
        out
    });
    if !report.damaged_packs.is_empty() {
        return Err(Damaged(report.damaged_packs.len()).into());
    }
    Ok(())
}
