//! An S3-compatible bucket (a prefix in it) that holds a repository's
//! finished packs and copies of its config and key slots, so that the
//! repository can be rebuilt from the bucket alone (`strata repair index`).
//!
//! The repository's directory stays local: it is the cache of the bucket
//! (index, head, open packs, the packs written or read here). Its
//! `remote.toml` says where the bucket is; credentials never go there:
//! they come from the usual environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or the shared credentials
//! file (`~/.aws/credentials`, `AWS_PROFILE`), as for every AWS tool.
//!
//! The client is the Arrow project's `object_store` (request signing,
//! retries with backoff, conditional create); its calls are async, so a
//! [`Remote`] owns a small runtime and waits on each call.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

/// The file in a repository directory that names its bucket.
pub const REMOTE_FILE: &str = "remote.toml";

/// Largest object sent in one request; larger ones go in parts.
pub const SINGLE_PUT: u64 = 64 << 20;
/// The size of one part of a larger object.
pub const PART: u64 = 16 << 20;

/// Where the bucket is: everything but the credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// `s3://BUCKET/PREFIX`.
    pub url: String,
    /// The endpoint of a self-hosted or other S3-compatible store
    /// (`AWS_ENDPOINT_URL`); AWS's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region (`AWS_REGION`); us-east-1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Whether plain http is allowed (`AWS_ALLOW_HTTP=true`): for a store
    /// on loopback or a trusted network only.
    #[serde(default)]
    pub allow_http: bool,
    /// Bucket-in-the-host-name requests (`AWS_VIRTUAL_HOSTED_STYLE_REQUEST`);
    /// path-style (what self-hosted stores expect) when false.
    #[serde(default)]
    pub virtual_hosted: bool,
    /// S3 Object Lock mode packs are written with, in a bucket made with
    /// Object Lock enabled: each finished pack is locked until its upload
    /// time plus the repository's longest retention lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
}

/// S3 Object Lock retention modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectLock {
    /// No one, the bucket's owner included, can delete or shorten it.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can.
    Governance,
}

impl ObjectLock {
    /// The `x-amz-object-lock-mode` value.
    pub fn header(self) -> &'static str {
        match self {
            ObjectLock::Compliance => "COMPLIANCE",
            ObjectLock::Governance => "GOVERNANCE",
        }
    }
}

impl RemoteConfig {
    /// The bucket at `url`, the rest from the environment as the AWS tools
    /// read it.
    pub fn from_env(url: &str) -> Result<RemoteConfig, RemoteError> {
        parse_url(url)?;
        let var = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok());
        let yes = |names: &[&str]| var(names).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(RemoteConfig {
            url: url.to_owned(),
            endpoint: var(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
            region: var(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            allow_http: yes(&["AWS_ALLOW_HTTP"]),
            virtual_hosted: yes(&["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"]),
            object_lock: None,
        })
    }

    /// Parses a `remote.toml`.
    pub fn parse(text: &str) -> Result<RemoteConfig, RemoteError> {
        let c: RemoteConfig =
            toml::from_str(text).map_err(|e| RemoteError::Config(e.message().to_owned()))?;
        parse_url(&c.url)?;
        Ok(c)
    }

    /// The `remote.toml` text.
    pub fn render(&self) -> String {
        toml::to_string(self).expect("remote config renders")
    }
}

/// `s3://BUCKET[/PREFIX]` as (bucket, prefix without slashes at its ends).
pub fn parse_url(url: &str) -> Result<(String, String), RemoteError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| RemoteError::Url(url.to_owned()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
        return Err(RemoteError::Url(url.to_owned()));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") {
        return Err(RemoteError::Url(url.to_owned()));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// The local directory of the repository at `url` (its index, head and
/// open packs, and a cache of packs read): `BASE/s3/BUCKET/PREFIX`, `_`
/// for the bucket's root. `base` is `$STRATA_CACHE_DIR`, else
/// `/var/cache/strata`.
pub fn cache_dir(url: &str) -> Result<std::path::PathBuf, RemoteError> {
    let (bucket, prefix) = parse_url(url.trim_end_matches('/'))?;
    let base = std::env::var_os("STRATA_CACHE_DIR")
        .map_or_else(|| "/var/cache/strata".into(), std::path::PathBuf::from);
    let mut dir = base.join("s3").join(bucket);
    dir.push(if prefix.is_empty() { "_" } else { &prefix });
    Ok(dir)
}

/// Fetches the config and key slots of the bucket's repository into the
/// new local directory `dir`, with its `remote.toml`; `Ok(false)` when the
/// bucket holds no repository. The index is then rebuilt from the packs.
pub fn bootstrap(config: &RemoteConfig, dir: &std::path::Path) -> Result<bool, BootstrapError> {
    use crate::store::format::{CONFIG_FILE, KEYS_DIR};
    use crate::store::io::{Disk, LocalDisk};
    use std::os::unix::fs::DirBuilderExt;
    let remote = Remote::connect(config)?;
    let text = match remote.get(CONFIG_FILE) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(BootstrapError::Read(e)),
    };
    let slots = remote.list(KEYS_DIR).map_err(BootstrapError::Read)?;
    let local = dir.join(KEYS_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&local)
        .map_err(|e| BootstrapError::Local(local.clone(), e))?;
    let local = LocalDisk::new(dir);
    let write = |path: &str, bytes: &[u8]| {
        local
            .write_atomic(path, bytes)
            .map_err(|e| BootstrapError::Local(dir.join(path), e))
    };
    for name in slots {
        let path = format!("{KEYS_DIR}/{name}");
        write(&path, &remote.get(&path).map_err(BootstrapError::Read)?)?;
    }
    write(REMOTE_FILE, config.render().as_bytes())?;
    write(CONFIG_FILE, &text)?;
    Ok(true)
}

/// Fetching a bucket's repository failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The client could not be set up.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Reading the bucket failed.
    #[error("reading the bucket")]
    Read(#[source] io::Error),
    /// Writing the local directory failed.
    #[error("writing {}", .0.display())]
    Local(std::path::PathBuf, #[source] io::Error),
}

/// The bucket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Not an `s3://BUCKET/PREFIX` URL.
    #[error("{0:?} is not an s3://BUCKET/PREFIX URL (bucket: 3 to 63 lowercase letters, digits, dots and dashes)")]
    Url(String),
    /// `remote.toml` does not parse.
    #[error("remote.toml: {0}")]
    Config(String),
    /// The client could not be set up.
    #[error("the S3 client cannot be set up: {0}")]
    Client(String),
}

/// Holds an upload back until its `bytes` fit a bandwidth limit.
pub type Pace = Arc<dyn Fn(u64) + Send + Sync>;

/// A connection to the bucket.
pub struct Remote {
    /// Uploads of packs keep to this, once set.
    pace: std::sync::OnceLock<Pace>,
    config: RemoteConfig,
    store: AmazonS3,
    /// How the client is made, for the clients that lock what they write.
    builder: AmazonS3Builder,
    /// The client that locks what it writes until the day it names.
    locking: std::sync::Mutex<Option<(i64, AmazonS3)>>,
    prefix: String,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.config.url)
            .finish()
    }
}

impl Remote {
    /// Connects to the bucket `config` names, with the credentials of the
    /// environment.
    pub fn connect(config: &RemoteConfig) -> Result<Arc<Remote>, RemoteError> {
        // TLS through rustls with ring: the provider is chosen once per
        // process (a second install is refused, harmlessly).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (bucket, prefix) = parse_url(&config.url)?;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(config.virtual_hosted)
            .with_region(config.region.as_deref().unwrap_or("us-east-1"))
            .with_retry(object_store::RetryConfig {
                backoff: object_store::BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(15),
                    base: 2.0,
                },
                max_retries: 8,
                retry_timeout: Duration::from_secs(300),
            });
        if let Some(e) = &config.endpoint {
            b = b.with_endpoint(e);
        }
        let file = credentials_file();
        for (key, var) in [
            ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
            ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
            ("aws_session_token", "AWS_SESSION_TOKEN"),
        ] {
            let value = std::env::var(var)
                .ok()
                .or_else(|| file.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()));
            if let (Ok(k), Some(v)) = (key.parse(), value) {
                b = b.with_config(k, v);
            }
        }
        let store = b
            .clone()
            .build()
            .map_err(|e| RemoteError::Client(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-s3")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Client(e.to_string()))?;
        Ok(Arc::new(Remote {
            config: config.clone(),
            store,
            builder: b,
            locking: std::sync::Mutex::new(None),
            pace: std::sync::OnceLock::new(),
            prefix,
            runtime,
        }))
    }

    fn path(&self, rel: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// Has pack uploads keep to `pace` (the daemon's `[throttle]`): they
    /// then go up in parts of at most [`PART`], each admitted before it is
    /// sent. Uploads run on the store's upload thread, so only it waits.
    pub fn set_pace(&self, pace: Pace) {
        let _ = self.pace.set(pace);
    }

    /// The Object Lock mode packs are written with, if any.
    pub fn object_lock(&self) -> Option<ObjectLock> {
        self.config.object_lock
    }

    /// The client whose writes are locked until `until` (seconds since the
    /// epoch), rounded up to a whole day so one client serves a day's
    /// uploads: object_store has no per-request headers, so the lock goes
    /// in the client's default headers, with the checksum S3 asks of a
    /// locked write.
    fn locking_client(&self, mode: ObjectLock, until: i64) -> io::Result<AmazonS3> {
        let day = until.div_euclid(86_400) + 1;
        let mut cached = self.locking.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((d, client)) = cached.as_ref().filter(|(d, _)| *d == day) {
            debug_assert_eq!(*d, day);
            return Ok(client.clone());
        }
        let date = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_secs((day * 86_400).max(0) as u64),
        )
        .to_string();
        let mut headers = http::HeaderMap::new();
        let value = |v: &str| http::HeaderValue::from_str(v).map_err(io::Error::other);
        headers.insert("x-amz-object-lock-mode", value(mode.header())?);
        headers.insert("x-amz-object-lock-retain-until-date", value(&date)?);
        // S3 refuses a locked write without a checksum: the client sends
        // x-amz-checksum-sha256; this names its algorithm.
        headers.insert("x-amz-sdk-checksum-algorithm", value("SHA256")?);
        let client = self
            .builder
            .clone()
            .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
            // Replaces the builder's options: allow_http again.
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_allow_http(self.config.allow_http)
                    .with_default_headers(headers),
            )
            .build()
            .map_err(io::Error::other)?;
        *cached = Some((day, client.clone()));
        Ok(client)
    }

    /// Stores `data` at `rel` unless something is there already: false
    /// then (nothing is overwritten).
    pub fn put_new(&self, rel: &str, data: Vec<u8>) -> io::Result<bool> {
        self.put_new_with(&self.store, rel, data)
    }

    fn put_new_with(&self, store: &AmazonS3, rel: &str, data: Vec<u8>) -> io::Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .runtime
            .block_on(store.put_opts(&self.path(rel), PutPayload::from(data), opts))
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(io_err(rel, e)),
        }
    }

    /// Stores the `len` bytes of `file` at `rel` unless something is there
    /// already: false then. Up to [`SINGLE_PUT`] in one conditional create;
    /// larger in parts of [`PART`] read one at a time (S3 has no
    /// conditional multipart create, so the name is looked up first: pack
    /// names are random, and no other writer makes the same one).
    /// With `locked_until` (seconds since the epoch) and an Object Lock
    /// mode in the config, the object is locked until then.
    pub fn put_new_file(
        &self,
        rel: &str,
        file: &dyn super::DiskFile,
        len: u64,
        locked_until: Option<i64>,
    ) -> io::Result<bool> {
        let store = match (self.config.object_lock, locked_until) {
            (Some(mode), Some(until)) => self.locking_client(mode, until)?,
            _ => self.store.clone(),
        };
        let pace = self.pace.get();
        let single = if pace.is_some() { PART } else { SINGLE_PUT };
        if len <= single {
            let mut data = vec![0u8; len as usize];
            file.read_at(0, &mut data)?;
            if let Some(pace) = pace {
                pace(len);
            }
            return self.put_new_with(&store, rel, data);
        }
        match self.size(rel) {
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let path = self.path(rel);
        self.runtime.block_on(async {
            let mut upload = store
                .put_multipart(&path)
                .await
                .map_err(|e| io_err(rel, e))?;
            let mut at = 0u64;
            let sent: io::Result<()> = async {
                while at < len {
                    let n = PART.min(len - at) as usize;
                    let mut part = vec![0u8; n];
                    file.read_at(at, &mut part)?;
                    if let Some(pace) = pace {
                        pace(n as u64);
                    }
                    upload
                        .put_part(PutPayload::from(part))
                        .await
                        .map_err(|e| io_err(rel, e))?;
                    at += n as u64;
                }
                upload.complete().await.map_err(|e| io_err(rel, e))?;
                Ok(())
            }
            .await;
            if sent.is_err() {
                let _ = upload.abort().await;
            }
            sent.map(|()| true)
        })
    }

    /// Stores `data` at `rel`, replacing what is there (the config and
    /// key slots' copies only: packs are never replaced).
    pub fn put(&self, rel: &str, data: Vec<u8>) -> io::Result<()> {
        self.runtime
            .block_on(self.store.put(&self.path(rel), PutPayload::from(data)))
            .map(|_| ())
            .map_err(|e| io_err(rel, e))
    }

    /// The whole object at `rel`.
    pub fn get(&self, rel: &str) -> io::Result<Vec<u8>> {
        self.runtime
            .block_on(async {
                let got = self.store.get(&self.path(rel)).await?;
                got.bytes().await
            })
            .map(|b| b.to_vec())
            .map_err(|e| io_err(rel, e))
    }

    /// The size of the object at `rel`; `NotFound` when there is none.
    pub fn size(&self, rel: &str) -> io::Result<u64> {
        self.runtime
            .block_on(self.store.head(&self.path(rel)))
            .map(|m| m.size)
            .map_err(|e| io_err(rel, e))
    }

    /// Names of the objects under `dir` (relative to it), sorted.
    pub fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        use futures_util::TryStreamExt;
        let base = self.path(dir);
        let mut names: Vec<String> = self
            .runtime
            .block_on(self.store.list(Some(&base)).try_collect::<Vec<_>>())
            .map_err(|e| io_err(dir, e))?
            .into_iter()
            .filter_map(|m| {
                m.location.prefix_match(&base).map(|parts| {
                    parts
                        .map(|p| p.as_ref().to_owned())
                        .collect::<Vec<_>>()
                        .join("/")
                })
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes the object at `rel` (gone already is fine).
    pub fn delete(&self, rel: &str) -> io::Result<()> {
        match self.runtime.block_on(self.store.delete(&self.path(rel))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_err(rel, e)),
        }
    }
}

/// The keys of the profile (`AWS_PROFILE`, else `default`) in the shared
/// credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
/// `~/.aws/credentials`), as the AWS tools read it; the environment's own
/// variables win over it. Empty when there is no such file or profile.
fn credentials_file() -> Vec<(String, String)> {
    let path = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials"))
        });
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .map(|text| profile_keys(&text, &profile))
        .unwrap_or_default()
}

/// The `key = value` lines of `[profile]` in an INI text.
fn profile_keys(text: &str, profile: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
        } else if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
    }
    out
}

/// An object store error as I/O: not found stays not found, the rest says
/// which object and what the store said.
fn io_err(rel: &str, e: object_store::Error) -> io::Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("the bucket's {rel}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_clean_prefix() {
        assert_eq!(
            parse_url("s3://backups/site-a/strata/").unwrap(),
            ("backups".into(), "site-a/strata".into())
        );
        assert_eq!(
            parse_url("s3://backups").unwrap(),
            ("backups".into(), String::new())
        );
        for bad in [
            "backups/x",
            "s3://Bad_Bucket/x",
            "s3://ab",
            "s3://b-ok/../x",
            "file:///x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_credentials_file_gives_the_chosen_profile_only() {
        let text = "# shared\n[default]\naws_access_key_id = AKIDEFAULT\naws_secret_access_key=s1\n\n[backup]\nAWS_ACCESS_KEY_ID = AKIBACKUP\naws_secret_access_key = s2\n";
        assert_eq!(
            profile_keys(text, "backup"),
            [
                ("aws_access_key_id".to_owned(), "AKIBACKUP".to_owned()),
                ("aws_secret_access_key".to_owned(), "s2".to_owned())
            ]
        );
        assert_eq!(profile_keys(text, "default")[0].1, "AKIDEFAULT");
        assert!(profile_keys(text, "nobody").is_empty());
    }

    #[test]
    fn remote_toml_round_trips_and_refuses_unknown_keys() {
        let c = RemoteConfig {
            url: "s3://backups/site-a".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: None,
            allow_http: true,
            virtual_hosted: false,
            object_lock: Some(ObjectLock::Compliance),
        };
        assert!(c.render().contains("object_lock = \"compliance\""));
        assert_eq!(RemoteConfig::parse(&c.render()).unwrap(), c);
        assert!(RemoteConfig::parse("url = \"s3://backups/x\"\nsecret = \"no\"\n").is_err());
    }
}
