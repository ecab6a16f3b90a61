//! The host configuration, strata.toml(5): policy that belongs to the
//! machine, not to the repository (hooks, the backup run's rules, alerts,
//! throttling).
//!
//! Hooks run as root, so whoever can write this file can run code as root:
//! it must be owned by root and writable by no one else, and so must the
//! directory it is in. It is never stored in a repository, so that whoever
//! can write a repository still cannot make root run anything.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::policy::alert::{AlertConfig, ChannelKind, CHILD_PATH};
use crate::policy::classify::{
    ClassificationConfig, Classifier, ClassifyConfig, ClassifyConfigError, PatternConfig,
    RuleConfig, TierConfig,
};
use crate::policy::drill::{DrillConfig, DrillConfigError};
use crate::policy::replica::{RepairConfig, ReplicaConfig, ReplicaConfigError};
use crate::policy::retention::{RetentionConfig, RetentionConfigError};
use crate::policy::throttle::adaptive::PROBE_PATH;
use crate::policy::throttle::{ThrottleConfig, ThrottleConfigError, ThrottlePolicy};
use crate::tree::record::Phase;

/// Where the host configuration lives unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/strata/strata.toml";

/// A host configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostConfigError {
    /// Cannot be read.
    #[error("cannot read the host configuration {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Someone other than root could change it.
    #[error("refusing the host configuration {path}: {why}; hooks run as root, so only root may be able to change it ({fix})")]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the file or its directory.
        why: String,
        /// What to do.
        fix: String,
    },
    /// A program it names could be changed by someone other than root.
    #[error("refusing to run {who} ({program}) as root: {why}; only root may be able to change a program strata runs ({fix})")]
    UnsafeProgram {
        /// What names it: `hook "pre"`, `alert channel 1 (command)`, ...
        who: String,
        /// The program as it will be run (resolved through PATH).
        program: PathBuf,
        /// What is wrong, naming the file or the directory.
        why: String,
        /// What to do.
        fix: String,
    },
    /// Not valid.
    #[error("the host configuration {path} is invalid: {source}; see strata.toml(5)")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        source: InvalidHostConfig,
    },
}

/// What is wrong with the text of a host configuration, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum InvalidHostConfig {
    /// Not TOML, or a key unknown or of the wrong type (alerts included).
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// `[throttle]` is not valid.
    #[error(transparent)]
    Throttle(#[from] ThrottleConfigError),
    /// `[retention]` is not valid.
    #[error(transparent)]
    Retention(#[from] RetentionConfigError),
    /// A `[[drill]]` is not valid.
    #[error(transparent)]
    Drill(#[from] DrillConfigError),
    /// A `[[replica]]` is not valid.
    #[error(transparent)]
    Replica(#[from] ReplicaConfigError),
    /// The classification tables are not valid.
    #[error(transparent)]
    Classify(#[from] ClassifyConfigError),
    /// A metrics listener other hosts could reach.
    #[error("[metrics] listen = \"{0}\" is not a loopback address: the metrics name the repository's state to whoever asks; listen on 127.0.0.1 or [::1] and let a local Prometheus (or a proxy with authentication) scrape it")]
    MetricsNotLoopback(std::net::SocketAddr),
    /// A hook name with other characters.
    #[error("hook name {0:?}: use letters, digits, '-' and '_'")]
    HookName(String),
    /// Two hooks of one name.
    #[error("hook name {0:?} is used twice")]
    HookNameTwice(String),
    /// A hook without a command.
    #[error("hook {0:?}: command is empty")]
    EmptyCommand(String),
    /// A session hook outside pre_backup.
    #[error("hook {0:?}: session = true needs phase = \"pre_backup\" (a session starts before the copy and ends before the snapshot)")]
    SessionPhase(String),
    /// Retries of a hook that may not run twice.
    #[error("hook {name:?}: retries = {retries} needs idempotent = true (a hook is retried only if running it twice does no harm)")]
    RetriesNeedIdempotent {
        /// The hook.
        name: String,
        /// Its retries.
        retries: u32,
    },
    /// Retries of a session hook.
    #[error("hook {0:?}: a session hook is not retried")]
    SessionRetried(String),
    /// A zero timeout.
    #[error("hook {0:?}: timeout must be more than 0")]
    ZeroTimeout(String),
}

/// strata.toml.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Rules of a backup run.
    #[serde(default)]
    pub backup: BackupPolicy,
    /// Hooks, in the order they run within their phase.
    #[serde(default, rename = "hook")]
    pub hooks: Vec<HookConfig>,
    /// Alert channels and thresholds.
    #[serde(default)]
    pub alerts: AlertConfig,
    /// Write-path throttling of the daemon.
    #[serde(default)]
    pub throttle: ThrottleConfig,
    /// Which snapshots to keep.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Restore drills.
    #[serde(default, rename = "drill")]
    pub drills: Vec<DrillConfig>,
    /// The verify cycle.
    #[serde(default)]
    pub verify: VerifyConfig,
    /// Copies of the repository elsewhere.
    #[serde(default, rename = "replica")]
    pub replicas: Vec<ReplicaConfig>,
    /// What a read that meets damaged data does.
    #[serde(default)]
    pub repair: RepairConfig,
    /// The daemon's metrics listener.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Storage tiers.
    #[serde(default, rename = "tier")]
    pub tiers: Vec<TierConfig>,
    /// The default tier and the sample size of classification.
    #[serde(default)]
    pub classification: ClassificationConfig,
    /// Classification rules, in order.
    #[serde(default, rename = "classify")]
    pub rules: Vec<RuleConfig>,
    /// Content patterns of the rules.
    #[serde(default, rename = "pattern")]
    pub patterns: Vec<PatternConfig>,
}

/// `[metrics]`: the daemon's Prometheus listener, off unless set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` on this loopback address and port, e.g.
    /// "127.0.0.1:9810"; none by default.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[verify]`: the verify cycle of `strata check --cycle`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Every finished pack is read within this [default: 30d].
    #[serde(deserialize_with = "duration")]
    pub cycle: Duration,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            cycle: Duration::from_secs(30 * 86_400),
        }
    }
}

/// `[backup]`: rules of a backup run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupPolicy {
    /// Which snapshots `latest` and labels may point at.
    pub latest: LatestPolicy,
    /// Exit statuses of the copy command that count as success (rsync's
    /// 24, "some files vanished", is a common addition).
    pub ok_exit: Vec<i32>,
    /// Variables of strata's own environment that hooks see; every other
    /// variable is cleared.
    pub env_allow: Vec<String>,
    /// How long the copy command may run; none by default.
    #[serde(deserialize_with = "opt_duration")]
    pub copy_timeout: Option<Duration>,
}

impl Default for BackupPolicy {
    fn default() -> Self {
        BackupPolicy {
            latest: LatestPolicy::Validated,
            ok_exit: vec![0],
            env_allow: ["PATH", "LANG", "LC_ALL", "TZ"].map(String::from).to_vec(),
            copy_timeout: None,
        }
    }
}

/// Which snapshots `latest` and labels may point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatestPolicy {
    /// Only complete or validated ones.
    Validated,
    /// Every snapshot a run takes, whatever its status.
    Always,
}

/// What a hook's failure does to the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Stop the run (no snapshot, or a snapshot marked failed).
    Abort,
    /// Go on, and mark the snapshot inconsistent.
    MarkInconsistent,
}

/// One `[[hook]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Name, unique; used in records, logs and `STRATA_*` output keys.
    pub name: String,
    /// When it runs.
    pub phase: Phase,
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    /// A long-lived process: started before the copy, told to finish
    /// before the snapshot (pre_backup only).
    #[serde(default)]
    pub session: bool,
    /// Working directory [default: /].
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Run as this user (and their groups) instead of root.
    #[serde(default)]
    pub user: Option<String>,
    /// How long one attempt may take (for a session: to become ready, and
    /// again to finish) [default: 10m].
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Attempts after a failure; only for idempotent hooks.
    #[serde(default)]
    pub retries: u32,
    /// First delay between attempts, doubled each time, with jitter [default: 1s].
    #[serde(default = "default_retry_delay", deserialize_with = "duration")]
    pub retry_delay: Duration,
    /// Running it twice does no harm (required for retries).
    #[serde(default)]
    pub idempotent: bool,
    /// What its failure does to the run [default: abort].
    #[serde(default = "default_policy")]
    pub on_failure: FailurePolicy,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(600)
}

fn default_retry_delay() -> Duration {
    Duration::from_secs(1)
}

fn default_policy() -> FailurePolicy {
    FailurePolicy::Abort
}

/// Whether `name` may name a hook or a drill: letters, digits, '-' and
/// '_' (it appears in records, logs and output keys).
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

/// A duration written like "10m" or "1h 30m".
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "{s:?} is not a duration ({e}); write e.g. \"30s\", \"10m\", \"1h 30m\""
        ))
    })
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

impl HostConfig {
    /// Reads `path`. A missing file at the default path is an empty
    /// configuration (no hooks); one named explicitly must exist.
    pub fn load(path: &Path, explicit: bool) -> Result<HostConfig, HostConfigError> {
        let read_err = |source| HostConfigError::Read {
            path: path.to_owned(),
            source,
        };
        // Through symlinks first: the checks are of the file that is read
        // and the directory that really holds it.
        let real = match std::fs::canonicalize(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(HostConfig::default())
            }
            other => other.map_err(read_err)?,
        };
        check_owner(&real, None, &std::fs::metadata(&real).map_err(read_err)?)?;
        if let Some(dir) = real.parent() {
            check_owner(&real, Some(dir), &std::fs::metadata(dir).map_err(read_err)?)?;
        }
        let text = std::fs::read_to_string(&real).map_err(read_err)?;
        let config = HostConfig::parse(&text).map_err(|source| HostConfigError::Invalid {
            path: path.to_owned(),
            source,
        })?;
        config.check_programs()?;
        Ok(config)
    }

    /// Every program this configuration names (hooks, alert commands and
    /// sendmail, the throttle probe) is one root may run, so only root may
    /// be able to change it: checked as strata.toml itself is.
    fn check_programs(&self) -> Result<(), HostConfigError> {
        let own_path = std::env::var("PATH").ok();
        for h in &self.hooks {
            // The PATH the hook runs with (see backup::Run and process::Program).
            let path = h.env.get("PATH").cloned().or_else(|| {
                own_path
                    .clone()
                    .filter(|_| self.backup.env_allow.iter().any(|k| k == "PATH"))
            });
            let dir = h.dir.as_deref().unwrap_or(Path::new("/"));
            check_program(
                &format!("hook {:?}", h.name),
                &h.command[0],
                path.as_deref(),
                dir,
            )?;
        }
        for (i, c) in self.alerts.channels.iter().enumerate() {
            let program = match &c.kind {
                ChannelKind::Command { argv } => argv[0].clone(),
                ChannelKind::Email { sendmail, .. } => sendmail.to_string_lossy().into_owned(),
                _ => continue,
            };
            let who = format!("alert channel {} ({})", i + 1, c.kind.type_name());
            check_program(&who, &program, Some(CHILD_PATH), Path::new("/"))?;
        }
        for d in self.drills.iter().filter(|d| !d.validate.is_empty()) {
            let who = format!("[[drill]] {:?} validate", d.name);
            check_program(&who, &d.validate[0], Some(CHILD_PATH), Path::new("/"))?;
        }
        let probe = self.throttle_policy().adaptive.and_then(|a| a.probe);
        if let Some(p) = probe {
            check_program(
                "the throttle probe",
                &p.argv[0],
                Some(PROBE_PATH),
                Path::new("/"),
            )?;
        }
        Ok(())
    }

    /// Parses and checks the text of a configuration.
    pub fn parse(text: &str) -> Result<HostConfig, InvalidHostConfig> {
        let config: HostConfig = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    /// Reads the configuration named by `--config`, or the default one.
    pub fn load_or_default(path: Option<&Path>) -> Result<HostConfig, HostConfigError> {
        match path {
            Some(p) => HostConfig::load(p, true),
            None => HostConfig::load(Path::new(DEFAULT_PATH), false),
        }
    }

    /// The validated `[throttle]` policy.
    pub fn throttle_policy(&self) -> ThrottlePolicy {
        self.throttle
            .validate()
            .expect("validated when the configuration was loaded")
    }

    /// The classification rules, built; `None` when no `[[tier]]` is
    /// declared.
    pub fn classifier(&self) -> Result<Option<Classifier>, ClassifyConfigError> {
        Classifier::new(&ClassifyConfig {
            tiers: &self.tiers,
            classification: &self.classification,
            rules: &self.rules,
            patterns: &self.patterns,
        })
    }

    fn check(&self) -> Result<(), InvalidHostConfig> {
        self.throttle.validate()?;
        self.retention.check()?;
        crate::policy::drill::check(&self.drills)?;
        crate::policy::replica::check(&self.replicas, &self.repair)?;
        self.classifier()?;
        if let Some(a) = self.metrics.listen.filter(|a| !a.ip().is_loopback()) {
            return Err(InvalidHostConfig::MetricsNotLoopback(a));
        }
        let mut names = BTreeSet::new();
        for h in &self.hooks {
            let name = &h.name;
            if !is_name(name) {
                return Err(InvalidHostConfig::HookName(name.clone()));
            }
            if !names.insert(name) {
                return Err(InvalidHostConfig::HookNameTwice(name.clone()));
            }
            if h.command.is_empty() || h.command[0].is_empty() {
                return Err(InvalidHostConfig::EmptyCommand(name.clone()));
            }
            if h.session && h.phase != Phase::PreBackup {
                return Err(InvalidHostConfig::SessionPhase(name.clone()));
            }
            if h.retries > 0 && !h.idempotent {
                return Err(InvalidHostConfig::RetriesNeedIdempotent {
                    name: name.clone(),
                    retries: h.retries,
                });
            }
            if h.session && h.retries > 0 {
                return Err(InvalidHostConfig::SessionRetried(name.clone()));
            }
            if h.timeout.is_zero() {
                return Err(InvalidHostConfig::ZeroTimeout(name.clone()));
            }
        }
        Ok(())
    }

    /// The hooks of one phase, in order.
    pub fn hooks(&self, phase: Phase) -> impl Iterator<Item = &HookConfig> {
        self.hooks.iter().filter(move |h| h.phase == phase)
    }
}

/// Root must own `path`, and no one else may write it (a sticky
/// directory such as /tmp still lets others create the file whenever it is
/// absent). Checks the configuration `file` itself, or with `dir` its
/// directory (`meta` is of whichever is checked).
fn check_owner(
    file: &Path,
    dir: Option<&Path>,
    meta: &std::fs::Metadata,
) -> Result<(), HostConfigError> {
    let (what, fix) = match dir {
        None => (
            "it".to_owned(),
            format!("chown root {0} and chmod go-w {0}", file.display()),
        ),
        Some(d) => (
            format!("its directory {}", d.display()),
            "keep it in a directory only root can write, such as /etc/strata".to_owned(),
        ),
    };
    match not_root_only(&what, meta) {
        Some(why) => Err(HostConfigError::Unsafe {
            path: file.to_owned(),
            why,
            fix,
        }),
        None => Ok(()),
    }
}

/// Why someone other than root could change `what` (`meta` is of it), if
/// they could: another owner, or write permission for group or others.
fn not_root_only(what: &str, meta: &std::fs::Metadata) -> Option<String> {
    if meta.uid() != 0 {
        return Some(format!("{what} is owned by uid {}, not root", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "{what} has mode {:o}, which lets group or others write it",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// The PATH execvp searches when a program's environment has none
/// (glibc's default), as for a hook whose PATH is not allowed through.
const EXEC_DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Where `program` is found when run from `cwd` with PATH `path`, as
/// execvp finds it: with a slash, as written; otherwise the first
/// executable regular file in PATH's directories. None if not found.
pub fn resolve_program(program: &str, path: Option<&str>, cwd: &Path) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(cwd.join(program));
    }
    path.unwrap_or(EXEC_DEFAULT_PATH)
        .split(':')
        .map(|d| cwd.join(d).join(program))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

/// Checks that only root can change the program `who` runs as root:
/// `program` (resolved through `path` from `cwd` as it will be executed),
/// through symlinks, and every directory above it, as named and as it
/// really is. A program not found is not checked: it fails when run.
///
/// Its own directory must be writable by root alone, as strata.toml's: in
/// a sticky world-writable directory such as /tmp, anyone may create the
/// file under its name whenever it is absent (a tmp cleaner removed it),
/// and it would run before the next check could see its owner. Higher up,
/// a sticky directory owned by root is accepted: there, only root can
/// rename or remove the root-owned directory below it (checked in turn),
/// so nobody else can swap the path out; a directory someone else created
/// there fails its own owner check. Any other directory writable by group
/// or others is refused.
pub fn check_program(
    who: &str,
    program: &str,
    path: Option<&str>,
    cwd: &Path,
) -> Result<(), HostConfigError> {
    let Some(named) = resolve_program(program, path, cwd) else {
        return Ok(());
    };
    let real = std::fs::canonicalize(&named).ok();
    let refuse = |why: String, fix: String| HostConfigError::UnsafeProgram {
        who: who.to_owned(),
        program: named.clone(),
        why,
        fix,
    };
    if let Some(real) = &real {
        let meta = std::fs::metadata(real).map_err(|e| {
            refuse(
                format!("{} cannot be read ({e})", real.display()),
                "check the path in strata.toml".into(),
            )
        })?;
        let what = format!("the file {}", real.display());
        if let Some(why) = not_root_only(&what, &meta) {
            let fix = format!("chown root {0} and chmod go-w {0}", real.display());
            return Err(refuse(why, fix));
        }
    }
    let mut dirs = BTreeSet::new();
    for p in [Some(&named), real.as_ref()].into_iter().flatten() {
        for (i, d) in p.ancestors().skip(1).enumerate() {
            dirs.insert((d.to_owned(), i == 0));
        }
    }
    for (dir, own) in dirs {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        let sticky_root = meta.mode() & 0o1000 != 0 && meta.uid() == 0;
        if !own && sticky_root {
            continue;
        }
        let what = format!("the directory {}", dir.display());
        if let Some(why) = not_root_only(&what, &meta) {
            let fix = format!(
                "chown root {0} and chmod go-w {0}, or move the program into a directory only root can write, such as /usr/local/lib/strata",
                dir.display()
            );
            return Err(refuse(why, fix));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_is_checked_where_it_leads() {
        if crate::tier::missing(&[crate::tier::Tier::Root]) {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(open.join("strata.toml"), "").unwrap();
        let safe = tmp.path().join("safe");
        std::fs::create_dir(&safe).unwrap();
        std::fs::set_permissions(&safe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = safe.join("strata.toml");
        std::os::unix::fs::symlink(open.join("strata.toml"), &link).unwrap();
        match HostConfig::load(&link, true) {
            Err(HostConfigError::Unsafe { path, why, fix }) => {
                let real = open.canonicalize().unwrap();
                assert_eq!(path, real.join("strata.toml"), "{why}");
                assert!(
                    why.contains(&format!("its directory {}", real.display())),
                    "{why}"
                );
                assert!(why.contains("group or others"), "{why}");
                assert!(fix.contains("/etc/strata"), "{fix}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // The same file in a safe directory is read.
        std::fs::rename(open.join("strata.toml"), safe.join("real.toml")).unwrap();
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(safe.join("real.toml"), &link).unwrap();
        assert!(HostConfig::load(&link, true).is_ok());
    }

    #[test]
    fn a_full_configuration_parses() {
        let c = HostConfig::parse(
            r#"
            [backup]
            latest = "always"
            ok_exit = [0, 24]
            copy_timeout = "6h"

            [[hook]]
            name = "postgres"
            phase = "pre_backup"
            session = true
            command = ["/usr/lib/strata/hooks/postgresql-session", "--dest", "pg"]
            user = "postgres"
            timeout = "5m"
            env = { PGPORT = "5433" }

            [[hook]]
            name = "verify"
            phase = "validate"
            command = ["pg_verifybackup", "x"]
            retries = 2
            idempotent = true
            on_failure = "mark-inconsistent"
            "#,
        )
        .unwrap();
        assert_eq!(c.backup.latest, LatestPolicy::Always);
        assert_eq!(c.backup.ok_exit, [0, 24]);
        assert_eq!(c.backup.copy_timeout, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(c.hooks.len(), 2);
        assert!(c.hooks[0].session);
        assert_eq!(c.hooks[0].timeout, Duration::from_secs(300));
        assert_eq!(c.hooks[0].env["PGPORT"], "5433");
        assert_eq!(c.hooks[1].on_failure, FailurePolicy::MarkInconsistent);
        assert_eq!(c.hooks[1].timeout, default_timeout());
        assert_eq!(c.hooks(Phase::Validate).count(), 1);
    }

    #[test]
    fn an_empty_configuration_has_safe_defaults() {
        let c = HostConfig::parse("").unwrap();
        assert!(c.hooks.is_empty());
        assert_eq!(c.backup.latest, LatestPolicy::Validated);
        assert_eq!(c.backup.ok_exit, [0]);
        assert!(c.backup.env_allow.contains(&"PATH".to_owned()));
    }

    #[test]
    fn retention_is_read_and_a_bad_one_refuses_the_file() {
        let c = HostConfig::parse("[retention]\nkeep_daily = 7\ntimezone = \"UTC\"\n").unwrap();
        assert_eq!(c.retention.policy().unwrap().unwrap().daily, Some(7));
        assert_eq!(
            HostConfig::parse("").unwrap().retention.policy().unwrap(),
            None
        );
        let e = HostConfig::parse("[retention]\nkeep_weekly = 0\n").unwrap_err();
        assert!(matches!(e, InvalidHostConfig::Retention(_)), "{e:?}");
        assert!(
            e.to_string().contains("[retention]: keep-weekly is 0"),
            "{e}"
        );
    }

    #[test]
    fn bad_configurations_name_the_problem() {
        let hook = |extra: &str| {
            format!("[[hook]]\nname = \"h\"\nphase = \"pre_backup\"\ncommand = [\"true\"]\n{extra}")
        };
        let cases = [
            (hook("retries = 3"), "idempotent"),
            (hook("timeout = \"soon\""), "not a duration"),
            (hook("colour = \"red\""), "colour"),
            (hook("on_failure = \"ignore\""), "ignore"),
            (
                "[[hook]]\nname = \"h\"\nphase = \"validate\"\nsession = true\ncommand = [\"x\"]"
                    .into(),
                "session",
            ),
            (
                "[[hook]]\nname = \"h\"\nphase = \"sometime\"\ncommand = [\"x\"]".into(),
                "sometime",
            ),
            (
                "[[hook]]\nname = \"h\"\nphase = \"validate\"\ncommand = []".into(),
                "command is empty",
            ),
            (format!("{}\n{}", hook(""), hook("")), "used twice"),
            (
                "[[hook]]\nname = \"a b\"\nphase = \"validate\"\ncommand = [\"x\"]".into(),
                "letters",
            ),
            ("[backup]\nlatest = \"sometimes\"".into(), "sometimes"),
        ];
        for (text, want) in cases {
            let err = HostConfig::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}\n→ {err}");
        }
    }

    #[test]
    fn only_root_may_be_able_to_change_it() {
        if crate::tier::missing(&[crate::tier::Tier::Root]) {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let owner = std::fs::metadata(&path).unwrap().uid();
        let loaded = HostConfig::load(&path, true);
        if owner == 0 {
            loaded.unwrap();
        } else {
            assert!(matches!(loaded, Err(HostConfigError::Unsafe { .. })));
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = HostConfig::load(&path, true).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = HostConfig::load(&path, true).unwrap_err().to_string();
        assert!(err.contains("group or others"), "{err}");
        // Missing: an empty configuration at the default path, an error
        // when named.
        let missing = dir.path().join("none.toml");
        assert!(HostConfig::load(&missing, false).unwrap().hooks.is_empty());
        assert!(matches!(
            HostConfig::load(&missing, true),
            Err(HostConfigError::Read { .. })
        ));
    }
}
