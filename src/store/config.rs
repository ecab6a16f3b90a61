//! The repository configuration file (`config`, TOML).
//!
//! It is readable without a key, because it says how to unlock the rest. In
//! an encrypted repository it carries a MAC under a key derived from the
//! master key, checked right after unlocking, so an edited suite or chunker
//! is refused instead of silently weakening the repository.

use serde::{Deserialize, Serialize};

use crate::store::chunker::{ChunkerParams, InvalidChunkerParams};
use crate::store::format::{Suite, FORMAT_VERSION, PACK_SIZES, PACK_TARGET_SIZE};
use crate::store::id::RepoId;
use crate::store::retention_lock::RetentionLock;

/// The `format` field every strata config carries.
pub const FORMAT_NAME: &str = "strata-repository";

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Fields with values this strata cannot use.
    #[error("repository config is malformed: {0}")]
    Malformed(String),
    /// Not TOML, or fields missing or unknown.
    #[error("repository config is malformed: {0}")]
    Toml(#[from] TomlMessage),
    /// The repository id is not an id.
    #[error("repository config is malformed: {0}")]
    Id(#[from] crate::store::id::BadId),
    /// Chunk size bounds FastCDC does not accept.
    #[error("repository config is malformed: {0}")]
    Chunker(#[from] InvalidChunkerParams),
    /// Written by a newer strata.
    #[error("repository format version {0} is newer than this strata supports ({FORMAT_VERSION}); upgrade strata")]
    TooNew(i64),
    /// The MAC does not match: the file was edited or belongs to another key.
    #[error("repository config fails its integrity check: it was edited or damaged; restore it from a copy")]
    BadMac,
}

/// A TOML error shown by its message alone, without the position and the
/// excerpt of the file that the error's own text adds, so that a config
/// error reads as one line. It has no source: returning the TOML error as
/// one would show it again in full after the message. [`TomlMessage::error`]
/// gives it. Boxed, to keep [`ConfigError`] and the repository errors
/// holding it small.
#[derive(Debug)]
pub struct TomlMessage(Box<toml::de::Error>);

impl TomlMessage {
    /// The TOML error, with its position.
    pub fn error(&self) -> &toml::de::Error {
        &self.0
    }
}

impl std::fmt::Display for TomlMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.message())
    }
}

impl std::error::Error for TomlMessage {}

impl From<toml::de::Error> for ConfigError {
    fn from(e: toml::de::Error) -> ConfigError {
        ConfigError::Toml(TomlMessage(Box::new(e)))
    }
}

/// The parsed `config` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Repository id, hex.
    pub id: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// Cipher suite name.
    pub suite: String,
    /// Target size of packs.
    pub pack_size: u64,
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// The master key, only in a repository created without encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_master_key: Option<String>,
    /// The retention lock: only ever lengthened.
    #[serde(default, skip_serializing_if = "RetentionLock::is_empty")]
    pub retention_lock: RetentionLock,
    /// Set in a replica: its own instance name, so that on one host the
    /// replica's mount, socket and locks are not the source's (it shares
    /// the source's id, keys and objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Keyed BLAKE3 (config key) of the fixed rendering of the other fields, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Config {
    /// A config for a new repository.
    pub fn new(suite: Suite, chunker: ChunkerParams) -> Config {
        Config {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id: RepoId::random().to_string(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            suite: suite.name().into(),
            pack_size: PACK_TARGET_SIZE,
            chunker,
            insecure_master_key: None,
            retention_lock: RetentionLock::default(),
            replica: None,
            mac: None,
        }
    }

    /// Parses and validates the file's text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        // Read the version first, so a newer format is named as such rather
        // than as unknown fields.
        let table: toml::Table = text.parse()?;
        if let Some(v) = table.get("version").and_then(|v| v.as_integer()) {
            if v > FORMAT_VERSION as i64 {
                return Err(ConfigError::TooNew(v));
            }
        }
        let c: Config = toml::from_str(text)?;
        if c.format != FORMAT_NAME {
            return Err(ConfigError::Malformed(format!(
                "format is {:?}, not {FORMAT_NAME:?}",
                c.format
            )));
        }
        if c.version > FORMAT_VERSION {
            return Err(ConfigError::TooNew(c.version as i64));
        }
        if c.version == 0 {
            return Err(ConfigError::Malformed("version 0 does not exist".into()));
        }
        c.repo_id()?;
        if let Some(r) = &c.replica {
            if r.is_empty() || !r.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Malformed(format!(
                    "replica {r:?} is not a hex instance name"
                )));
            }
        }
        let suite = c.suite()?;
        c.chunker.validate()?;
        if !PACK_SIZES.contains(&c.pack_size) {
            return Err(ConfigError::Malformed(format!(
                "pack_size {} is outside 1 MiB..4 GiB",
                c.pack_size
            )));
        }
        match (suite, &c.insecure_master_key, &c.mac) {
            (Suite::Plain, Some(_), _) | (Suite::Aes256GcmSiv, None, Some(_)) => Ok(c),
            (Suite::Plain, None, _) => Err(ConfigError::Malformed(
                "suite none without insecure_master_key".into(),
            )),
            (Suite::Aes256GcmSiv, Some(_), _) => Err(ConfigError::Malformed(
                "an encrypted repository must not store its master key".into(),
            )),
            (Suite::Aes256GcmSiv, None, None) => {
                Err(ConfigError::Malformed("mac is missing".into()))
            }
        }
    }

    /// Renders the file's text.
    pub fn render(&self) -> String {
        toml::to_string(self).expect("config serializes")
    }

    /// The repository id.
    pub fn repo_id(&self) -> Result<RepoId, ConfigError> {
        Ok(self.id.parse()?)
    }

    /// What names this copy of the repository on a host (its socket, its
    /// mount, its run lock): the id, and a replica's instance name.
    pub fn instance(&self) -> String {
        match &self.replica {
            Some(r) => format!("{}-{r}", self.id),
            None => self.id.clone(),
        }
    }

    /// The cipher suite.
    pub fn suite(&self) -> Result<Suite, ConfigError> {
        Suite::from_name(&self.suite).ok_or_else(|| {
            ConfigError::Malformed(format!(
                "unknown cipher suite {:?} (known: none, aes-256-gcm-siv)",
                self.suite
            ))
        })
    }

    /// MAC over a fixed rendering of every field but the MAC itself, so it
    /// does not depend on how a TOML library formats the file.
    fn compute_mac(&self, key: &[u8; 32]) -> String {
        let canonical = format!(
            "format={}\nversion={}\nid={}\ncreated={}\nsuite={}\npack_size={}\nchunker={}/{}/{}\ninsecure_master_key={}\n{}",
            self.format,
            self.version,
            self.id,
            self.created,
            self.suite,
            self.pack_size,
            self.chunker.min_size,
            self.chunker.avg_size,
            self.chunker.max_size,
            self.insecure_master_key.as_deref().unwrap_or("-"),
            self.retention_lock.canonical(),
        );
        // Absent from the rendering unless set, so older MACs still hold.
        let canonical = match &self.replica {
            Some(r) => format!("{canonical}replica={r}\n"),
            None => canonical,
        };
        blake3::keyed_hash(key, canonical.as_bytes())
            .to_hex()
            .to_string()
    }

    /// Sets the MAC under the config key.
    pub fn sign(&mut self, key: &[u8; 32]) {
        self.mac = Some(self.compute_mac(key));
    }

    /// Checks the MAC (repositories without encryption carry none).
    pub fn verify(&self, key: &[u8; 32]) -> Result<(), ConfigError> {
        match &self.mac {
            None if self.suite()? == Suite::Plain => Ok(()),
            Some(mac) if *mac == self.compute_mac(key) => Ok(()),
            _ => Err(ConfigError::BadMac),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_config_round_trips_and_detects_edits() {
        let key = [9u8; 32];
        let mut c = Config::new(Suite::Aes256GcmSiv, ChunkerParams::default());
        c.sign(&key);
        let parsed = Config::parse(&c.render()).unwrap();
        parsed.verify(&key).unwrap();
        let edited =
            Config::parse(&c.render().replace("avg_size = 262144", "avg_size = 131072")).unwrap();
        assert!(matches!(edited.verify(&key), Err(ConfigError::BadMac)));
    }

    #[test]
    fn a_retention_lock_round_trips_and_is_covered_by_the_mac() {
        let key = [9u8; 32];
        let mut c = Config::new(Suite::Aes256GcmSiv, ChunkerParams::default());
        c.sign(&key);
        let unlocked_mac = c.mac.clone();
        c.retention_lock.all = Some(86_400);
        c.retention_lock.labels.insert("yearly".into(), 172_800);
        c.sign(&key);
        assert_ne!(c.mac, unlocked_mac, "the lock is part of what is signed");
        let text = c.render();
        assert!(text.contains("[retention_lock]"), "{text}");
        let parsed = Config::parse(&text).unwrap();
        assert_eq!(parsed.retention_lock, c.retention_lock);
        parsed.verify(&key).unwrap();
        let shortened = Config::parse(&text.replace("all = 86400", "all = 3600")).unwrap();
        assert!(matches!(shortened.verify(&key), Err(ConfigError::BadMac)));
        let removed = Config::parse(&text.replace("all = 86400\n", "")).unwrap();
        assert!(matches!(removed.verify(&key), Err(ConfigError::BadMac)));
    }

    #[test]
    fn a_replica_name_is_signed_and_names_the_instance() {
        let key = [9u8; 32];
        let mut c = Config::new(Suite::Aes256GcmSiv, ChunkerParams::default());
        c.sign(&key);
        assert_eq!(c.instance(), c.id);
        c.replica = Some("0a1b".into());
        assert!(matches!(c.verify(&key), Err(ConfigError::BadMac)));
        c.sign(&key);
        let parsed = Config::parse(&c.render()).unwrap();
        parsed.verify(&key).unwrap();
        assert_eq!(parsed.instance(), format!("{}-0a1b", c.id));
        let bad = c.render().replace("0a1b", "../x");
        assert!(Config::parse(&bad).is_err());
    }

    #[test]
    fn malformed_configs_are_named() {
        assert!(matches!(
            Config::parse("garbage"),
            Err(ConfigError::Toml(_))
        ));
        let mut c = Config::new(Suite::Aes256GcmSiv, ChunkerParams::default());
        c.sign(&[0; 32]);
        let newer = c.render().replace("version = 1", "version = 99");
        assert!(matches!(
            Config::parse(&newer),
            Err(ConfigError::TooNew(99))
        ));
        let downgraded = c.render().replace("aes-256-gcm-siv", "none");
        assert!(Config::parse(&downgraded).is_err());
    }

    #[test]
    fn malformed_configs_keep_their_source() {
        use crate::sys::chain::Chain;
        use std::error::Error;
        let e = Config::parse("garbage").unwrap_err();
        let toml = e
            .source()
            .unwrap()
            .downcast_ref::<TomlMessage>()
            .unwrap()
            .error();
        assert_eq!(
            e.to_string(),
            format!("repository config is malformed: {}", toml.message())
        );
        assert_eq!(Chain(&e).to_string(), e.to_string(), "quoted once");

        let mut c = Config::new(Suite::Aes256GcmSiv, ChunkerParams::default());
        c.sign(&[0; 32]);
        c.id = "zz".into();
        let e = Config::parse(&c.render()).unwrap_err();
        let bad = e
            .source()
            .unwrap()
            .downcast_ref::<crate::store::id::BadId>()
            .unwrap();
        assert_eq!(
            e.to_string(),
            format!("repository config is malformed: {bad}")
        );
        assert_eq!(Chain(&e).to_string(), e.to_string(), "quoted once");
    }
}
