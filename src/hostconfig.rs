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

use crate::alert::AlertConfig;
use crate::backup::record::Phase;
use crate::throttle::{ThrottleConfig, ThrottlePolicy};

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
    /// Not valid.
    #[error("the host configuration {path} is invalid: {why}; see strata.toml(5)")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        why: String,
    },
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
        HostConfig::parse(&text).map_err(|why| HostConfigError::Invalid {
            path: path.to_owned(),
            why,
        })
    }

    /// Parses and checks the text of a configuration.
    pub fn parse(text: &str) -> Result<HostConfig, String> {
        let config: HostConfig = toml::from_str(text).map_err(|e| e.to_string())?;
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

    fn check(&self) -> Result<(), String> {
        self.throttle.validate().map_err(|e| e.to_string())?;
        let mut names = BTreeSet::new();
        for h in &self.hooks {
            let name = &h.name;
            let ok_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
            if !ok_name {
                return Err(format!(
                    "hook name {name:?}: use letters, digits, '-' and '_'"
                ));
            }
            if !names.insert(name) {
                return Err(format!("hook name {name:?} is used twice"));
            }
            if h.command.is_empty() || h.command[0].is_empty() {
                return Err(format!("hook {name:?}: command is empty"));
            }
            if h.session && h.phase != Phase::PreBackup {
                return Err(format!(
                    "hook {name:?}: session = true needs phase = \"pre_backup\" (a session starts before the copy and ends before the snapshot)"
                ));
            }
            if h.retries > 0 && !h.idempotent {
                return Err(format!(
                    "hook {name:?}: retries = {} needs idempotent = true (a hook is retried only if running it twice does no harm)",
                    h.retries
                ));
            }
            if h.session && h.retries > 0 {
                return Err(format!("hook {name:?}: a session hook is not retried"));
            }
            if h.timeout.is_zero() {
                return Err(format!("hook {name:?}: timeout must be more than 0"));
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
/// directory such as /tmp still lets others replace files in it).
/// Checks the configuration `file` itself, or with `dir` its directory
/// (`meta` is of whichever is checked).
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
    let unsafe_ = |why: String| HostConfigError::Unsafe {
        path: file.to_owned(),
        why,
        fix: fix.clone(),
    };
    if meta.uid() != 0 {
        return Err(unsafe_(format!(
            "{what} is owned by uid {}, not root",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_(format!(
            "{what} has mode {:o}, which lets group or others write it",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_is_checked_where_it_leads() {
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
            let err = HostConfig::parse(&text).unwrap_err();
            assert!(err.contains(want), "{text}\n→ {err}");
        }
    }

    #[test]
    fn only_root_may_be_able_to_change_it() {
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
