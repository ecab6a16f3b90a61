//! A repository's lifecycle: created by [`init`], opened as a
//! [`LockedRepo`] (config and key slots readable, nothing else), then
//! unlocked with a secret into a [`Repo`] that holds the keys and the store.
//! Operations exist only on the state that allows them.

use std::io::Read;
use std::sync::{Arc, OnceLock};

use crate::store::chunker::{Chunker, ChunkerParams};
use crate::store::chunks::{Store, StoreError};
use crate::store::config::{Config, ConfigError};
use crate::store::crypto::codec::ChunkCodec;
use crate::store::crypto::slot::{KdfParams, KeySlot, Secret, SlotError, SlotKind};
use crate::store::crypto::{Keys, MasterKey, Sealer};
use crate::store::format::{Suite, CONFIG_FILE, INDEX_FILE, KEYS_DIR, OPEN_DIR, PACKS_DIR};
use crate::store::id::{ChunkId, RepoId, SlotId};
use crate::store::index::{Index, IndexError};
use crate::store::io::Disk;
use crate::store::pipeline::Pipeline;
use crate::store::retention_lock::{RetentionLock, Shorter};
use crate::sys::cpus::Cpus;

/// Why a repository could not be created, opened or changed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// No config file: not a repository (or not yet created).
    #[error("no strata repository at {path}: create one with `strata init`, or point --repo / STRATA_REPO at an existing one")]
    NotARepository {
        /// Where we looked.
        path: String,
    },
    /// `init` on a directory that has files in it.
    #[error("{path} is not empty; strata init needs an empty or missing directory")]
    NotEmpty {
        /// The directory.
        path: String,
    },
    /// The config file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The repository is encrypted and no secret was given.
    #[error("the repository is encrypted: give a passphrase (--password-file, --password-command, STRATA_PASSWORD_FILE, STRATA_PASSWORD) or --key-file")]
    NoSecret,
    /// No slot opens with the secret given.
    #[error("wrong passphrase or key file: no key slot of this repository opens with it")]
    WrongSecret,
    /// A slot file is damaged.
    #[error("key slot {slot}: {source}")]
    Slot {
        /// Slot id or file name.
        slot: String,
        /// What failed.
        source: SlotError,
    },
    /// A request that cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
    /// There is no such key slot.
    #[error("no key slot {0} in this repository (see `strata key list`)")]
    NoSuchSlot(String),
    /// Removing the slot would leave the repository unopenable.
    #[error("refusing to remove the last key slot: add another key first, or the repository could never be opened again")]
    LastSlot,
    /// A retention lock asked for is shorter than the repository's.
    #[error("refusing to shorten the retention lock: {}; a retention lock can only be lengthened, never shortened or removed; ask for at least the repository's lock (`strata forget --dry-run` shows it)", .0.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("; "))]
    LockShortened(Vec<Shorter>),
    /// A replica's config names another repository.
    #[error("{path} is a copy of repository {found}, not of {expected}: it is not a replica of this repository")]
    OtherRepository {
        /// The replica.
        path: String,
        /// Its repository id.
        found: String,
        /// The source's.
        expected: String,
    },
    /// The index file is gone but packs are not.
    #[error(
        "the index (index.redb) is missing; rebuild it from the packs with `strata repair index`"
    )]
    IndexMissing,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Reading or writing a repository file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Sealing workers at most: past four, the pack appends they take turns
/// at, and the writers feeding them, are the limit.
pub const MAX_SEALERS: usize = 4;

fn io_err(op: &'static str, path: &str) -> impl FnOnce(std::io::Error) -> RepoError {
    let path = path.to_owned();
    move |source| RepoError::Io { op, path, source }
}

/// How to create a repository.
pub struct InitOptions {
    /// The new repository's id (callers that name files after it draw it first).
    pub id: RepoId,
    /// The first key slot's secret; `None` creates an unencrypted repository.
    pub secret: Option<(Secret, SlotKind)>,
    /// Label of the first slot.
    pub label: String,
    /// Argon2id cost of passphrase slots.
    pub kdf: KdfParams,
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// Target pack size in bytes.
    pub pack_size: u64,
}

/// Creates a repository on an empty disk; the config is written last, so a
/// failed init never leaves something that looks like a repository.
pub fn init(disk: Arc<dyn Disk>, opts: InitOptions) -> Result<RepoId, RepoError> {
    opts.chunker.validate().map_err(ConfigError::Chunker)?;
    // A bucket's repository directory holds its remote.toml already.
    let listed = disk.list("").map_err(io_err("list", "."))?;
    if listed
        .iter()
        .any(|n| n != crate::store::io::remote::REMOTE_FILE)
    {
        return Err(RepoError::NotEmpty { path: ".".into() });
    }
    let suite = if opts.secret.is_some() {
        Suite::Aes256GcmSiv
    } else {
        Suite::Plain
    };
    let mut config = Config::new(suite, opts.chunker);
    config.pack_size = opts.pack_size;
    config.id = opts.id.to_string();
    let repo = config.repo_id()?;
    let master = MasterKey::generate();
    for dir in [KEYS_DIR, PACKS_DIR, OPEN_DIR] {
        disk.create_dir_all(dir).map_err(io_err("mkdir", dir))?;
    }
    match &opts.secret {
        Some((secret, kind)) => {
            let slot = KeySlot::create(repo, &master, secret, *kind, &opts.label, opts.kdf)
                .map_err(|source| RepoError::Slot {
                    slot: "new".into(),
                    source,
                })?;
            write_slot(disk.as_ref(), &slot)?;
            config.sign(&Keys::derive(&master).config);
        }
        None => config.insecure_master_key = Some(hex::encode(master.expose())),
    }
    let keys = Keys::derive(&master);
    drop(Index::open(
        disk.index_backend(INDEX_FILE)
            .map_err(io_err("create", INDEX_FILE))?,
        Sealer::new(suite, repo, &keys.index),
    )?);
    disk.write_atomic(CONFIG_FILE, config.render().as_bytes())
        .map_err(io_err("write", CONFIG_FILE))?;
    Ok(repo)
}

/// Creates a replica of `source` on an empty disk: the source's key slots
/// and its config with the replica's instance name (signed again), so the
/// same secrets open it and an object has the same id in both. The config
/// is written last, as by [`init`].
pub fn init_replica(disk: Arc<dyn Disk>, source: &Repo, instance: &str) -> Result<(), RepoError> {
    let listed = disk.list("").map_err(io_err("list", "."))?;
    if listed
        .iter()
        .any(|n| n != crate::store::io::remote::REMOTE_FILE)
    {
        return Err(RepoError::NotEmpty { path: ".".into() });
    }
    for dir in [KEYS_DIR, PACKS_DIR, OPEN_DIR] {
        disk.create_dir_all(dir).map_err(io_err("mkdir", dir))?;
    }
    for slot in source.locked.slots() {
        write_slot(disk.as_ref(), slot)?;
    }
    let mut config = source.config().clone();
    config.replica = Some(instance.to_owned());
    if config.mac.is_some() {
        config.sign(&source.unlocked.keys.config);
    }
    drop(Index::open(
        disk.index_backend(INDEX_FILE)
            .map_err(io_err("create", INDEX_FILE))?,
        Sealer::new(
            config.suite()?,
            config.repo_id()?,
            &source.unlocked.keys.index,
        ),
    )?);
    disk.write_atomic(CONFIG_FILE, config.render().as_bytes())
        .map_err(io_err("write", CONFIG_FILE))
}

fn slot_path(id: &str) -> String {
    format!("{KEYS_DIR}/{id}")
}

fn write_slot(disk: &dyn Disk, slot: &KeySlot) -> Result<(), RepoError> {
    let path = slot_path(&slot.id);
    disk.write_atomic(&path, slot.render().as_bytes())
        .map_err(io_err("write", &path))
}

/// A repository whose config and key slots are read, nothing unlocked.
pub struct LockedRepo {
    disk: Arc<dyn Disk>,
    path: String,
    config: Config,
    slots: Vec<KeySlot>,
}

/// The master key and what it unlocked.
struct Unlocked {
    master: MasterKey,
    keys: Keys,
    slot: Option<SlotId>,
}

impl LockedRepo {
    /// Reads the config and key slots of the repository on `disk`; `path`
    /// names it in messages.
    pub fn open(disk: Arc<dyn Disk>, path: &str) -> Result<LockedRepo, RepoError> {
        let text = match disk.read(CONFIG_FILE) {
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| ConfigError::Malformed("config is not UTF-8 text".into()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RepoError::NotARepository { path: path.into() })
            }
            Err(e) => return Err(io_err("read", CONFIG_FILE)(e)),
        };
        let config = Config::parse(&text)?;
        let mut slots = Vec::new();
        if disk.exists(KEYS_DIR) {
            for name in disk.list(KEYS_DIR).map_err(io_err("list", KEYS_DIR))? {
                if name.ends_with(".tmp") {
                    continue;
                }
                let path = slot_path(&name);
                let bytes = disk.read(&path).map_err(io_err("read", &path))?;
                match std::str::from_utf8(&bytes)
                    .map_err(|_| SlotError::Malformed("not UTF-8".into()))
                    .and_then(KeySlot::parse)
                {
                    Ok(slot) if slot.id == name => slots.push(slot),
                    Ok(_) => {
                        tracing::warn!(file = %name, "key slot file name differs from its id; ignored")
                    }
                    Err(e) => tracing::warn!(file = %name, error = %e, "damaged key slot ignored"),
                }
            }
        }
        if config.insecure_master_key.is_some()
            && disk.exists(KEYS_DIR)
            && !disk
                .list(KEYS_DIR)
                .map_err(io_err("list", KEYS_DIR))?
                .is_empty()
        {
            // Key slots belong to an encrypted repository: a config claiming
            // no encryption was swapped in to make new data readable.
            return Err(ConfigError::Malformed(
                "config says the repository is unencrypted but it has key slots; the config was replaced, restore it from a copy".into(),
            )
            .into());
        }
        Ok(LockedRepo {
            disk,
            path: path.to_owned(),
            config,
            slots,
        })
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The key slots that parsed.
    pub fn slots(&self) -> &[KeySlot] {
        &self.slots
    }

    /// Whether a secret is needed to unlock.
    pub fn encrypted(&self) -> bool {
        self.config.insecure_master_key.is_none()
    }

    fn unlock_keys(&self, secret: Option<&Secret>) -> Result<Unlocked, RepoError> {
        let repo = self.config.repo_id()?;
        let (master, slot) = match &self.config.insecure_master_key {
            Some(hex_key) => {
                let mut key = [0u8; 32];
                hex::decode_to_slice(hex_key, &mut key).map_err(|_| {
                    ConfigError::Malformed("insecure_master_key is not 32 bytes of hex".into())
                })?;
                (MasterKey::from_bytes(key), None)
            }
            None => {
                let secret = secret.ok_or(RepoError::NoSecret)?;
                let mut found = None;
                for slot in self.slots.iter().filter(|s| secret.fits(s.kind)) {
                    match slot.open(repo, secret) {
                        Ok(master) => {
                            found = Some((
                                master,
                                Some(slot.slot_id().map_err(|source| RepoError::Slot {
                                    slot: slot.id.clone(),
                                    source,
                                })?),
                            ));
                            break;
                        }
                        Err(SlotError::WrongSecret) => continue,
                        Err(source) => {
                            return Err(RepoError::Slot {
                                slot: slot.id.clone(),
                                source,
                            })
                        }
                    }
                }
                found.ok_or(RepoError::WrongSecret)?
            }
        };
        let keys = Keys::derive(&master);
        self.config.verify(&keys.config)?;
        Ok(Unlocked { master, keys, slot })
    }

    fn sealer(&self, key: &[u8; 32]) -> Result<Sealer, RepoError> {
        Ok(Sealer::new(
            self.config.suite()?,
            self.config.repo_id()?,
            key,
        ))
    }

    /// Unlocks with `secret` (ignored for an unencrypted repository), opens
    /// the index and the store, and recovers from any earlier crash.
    pub fn unlock(self, secret: Option<&Secret>) -> Result<Repo, RepoError> {
        let unlocked = self.unlock_keys(secret)?;
        self.open_store(unlocked)
    }

    /// Unlocks a replica of `source` (or the source of a replica) with
    /// `source`'s master key: one repository id, one key, checked by the
    /// config's MAC.
    pub fn unlock_as(self, source: &Repo) -> Result<Repo, RepoError> {
        self.unlock_with(&source.key())
    }

    /// Unlocks with `key`, the master key of this repository (or of its
    /// source or replica) taken from an unlocked copy.
    pub fn unlock_with(self, key: &RepoKey) -> Result<Repo, RepoError> {
        let unlocked = self.keys_of(key)?;
        self.open_store(unlocked)
    }

    /// `key`'s keys, if they are this repository's.
    fn keys_of(&self, key: &RepoKey) -> Result<Unlocked, RepoError> {
        if self.config.id != key.id {
            return Err(RepoError::OtherRepository {
                path: self.path.clone(),
                found: self.config.id.clone(),
                expected: key.id.clone(),
            });
        }
        let master = MasterKey::from_bytes(*key.master.expose());
        let keys = Keys::derive(&master);
        self.config.verify(&keys.config)?;
        Ok(Unlocked {
            master,
            keys,
            slot: None,
        })
    }

    fn open_store(self, unlocked: Unlocked) -> Result<Repo, RepoError> {
        if !self.disk.exists(INDEX_FILE) {
            return Err(RepoError::IndexMissing);
        }
        let index = Index::open(
            self.disk
                .index_backend(INDEX_FILE)
                .map_err(io_err("open", INDEX_FILE))?,
            self.sealer(&unlocked.keys.index)?,
        )?;
        let params = self.config.chunker;
        let codec = ChunkCodec::new(
            unlocked.keys.id,
            self.sealer(&unlocked.keys.blob)?,
            params.max_size as usize,
        );
        let backend = crate::store::io::pack_backend(&self.disk);
        let store = Store::open(
            self.disk.clone(),
            backend,
            codec,
            index,
            self.config.pack_size,
        )?;
        let chunker = Arc::new(Chunker::new(params, &unlocked.keys.chunker));
        let retention_lock = std::sync::RwLock::new(self.config.retention_lock.clone());
        Ok(Repo {
            pipeline: OnceLock::new(),
            locked: self,
            unlocked,
            store: Arc::new(store),
            chunker,
            retention_lock,
        })
    }

    /// The keys of a repository whose index cannot be opened: what
    /// rebuilding the index from the packs needs (`strata repair index`).
    pub fn unlock_without_index(
        &self,
        secret: Option<&Secret>,
    ) -> Result<UnindexedKeys<'_>, RepoError> {
        Ok(UnindexedKeys {
            repo: self,
            unlocked: self.unlock_keys(secret)?,
        })
    }

    /// The keys of a replica of `source` whose index cannot be opened
    /// (see [`LockedRepo::unlock_as`]).
    pub fn keys_as(&self, source: &Repo) -> Result<UnindexedKeys<'_>, RepoError> {
        Ok(UnindexedKeys {
            repo: self,
            unlocked: self.keys_of(&source.key())?,
        })
    }

    /// Where the repository is.
    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }
}

/// The keys of a repository, unlocked without opening its index.
pub struct UnindexedKeys<'a> {
    repo: &'a LockedRepo,
    unlocked: Unlocked,
}

impl UnindexedKeys<'_> {
    /// The codec of chunks and records.
    pub fn codec(&self) -> Result<ChunkCodec, RepoError> {
        let max = self.repo.config.chunker.max_size as usize;
        Ok(ChunkCodec::new(
            self.unlocked.keys.id,
            self.repo.sealer(&self.unlocked.keys.blob)?,
            max,
        ))
    }

    /// The sealer of index values.
    pub fn index_sealer(&self) -> Result<Sealer, RepoError> {
        self.repo.sealer(&self.unlocked.keys.index)
    }
}

/// The master key of an unlocked repository and its id: what opens its
/// replicas (and a replica's source) without a secret.
#[derive(Clone)]
pub struct RepoKey {
    id: String,
    master: Arc<MasterKey>,
}

impl std::fmt::Debug for RepoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RepoKey({})", self.id)
    }
}

/// An unlocked repository.
pub struct Repo {
    /// Started at the first chunk a file hands over; first to drop, so its
    /// workers finish before the store's last commit.
    pipeline: OnceLock<Pipeline>,
    locked: LockedRepo,
    unlocked: Unlocked,
    store: Arc<Store>,
    chunker: Arc<Chunker>,
    /// The retention lock as of the last raise (the config's until then).
    retention_lock: std::sync::RwLock<RetentionLock>,
}

/// A key slot as shown by `strata key list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotInfo {
    /// Slot id.
    pub id: String,
    /// passphrase, key-file or escrow.
    pub kind: SlotKind,
    /// Free text.
    pub label: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// Whether this slot unlocked the current session.
    pub current: bool,
}

impl Repo {
    /// Its master key, for opening its replicas.
    pub fn key(&self) -> RepoKey {
        RepoKey {
            id: self.config().id.clone(),
            master: Arc::new(MasterKey::from_bytes(*self.unlocked.master.expose())),
        }
    }

    /// The chunk store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, shared (with a pipeline of one's own, say).
    pub fn store_arc(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// The write pipeline, which seals files' chunks on a worker per CPU
    /// of the process (at most [`MAX_SEALERS`]), started the first time it
    /// is asked for.
    pub fn pipeline(&self) -> &Pipeline {
        self.pipeline.get_or_init(|| {
            // The process's CPUs: the first chunk may come from a thread
            // pinned to one.
            let cores = Cpus::of_process().map_or(1, |c| c.count());
            Pipeline::start(self.store.clone(), cores.min(MAX_SEALERS))
        })
    }

    /// The keyed chunker.
    pub fn chunker(&self) -> &Arc<Chunker> {
        &self.chunker
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.locked.config
    }

    /// The disk.
    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.locked.disk
    }

    /// The retention lock in force.
    pub fn retention_lock(&self) -> RetentionLock {
        self.retention_lock
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Lengthens the retention lock to `wanted` where it asks for more,
    /// durably (the config is re-signed and replaced atomically); refused
    /// with [`RepoError::LockShortened`] where it asks for less. Returns the
    /// lock in force.
    pub fn raise_retention_lock(&self, wanted: &RetentionLock) -> Result<RetentionLock, RepoError> {
        let mut current = self
            .retention_lock
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let shorter = current.shorter(wanted);
        if !shorter.is_empty() {
            return Err(RepoError::LockShortened(shorter));
        }
        let raised = current.raised_to(wanted);
        if raised == *current {
            return Ok(raised);
        }
        let mut config = self.locked.config.clone();
        config.retention_lock = raised.clone();
        if config.mac.is_some() {
            config.sign(&self.unlocked.keys.config);
        }
        self.locked
            .disk
            .write_atomic(CONFIG_FILE, config.render().as_bytes())
            .map_err(io_err("write", CONFIG_FILE))?;
        tracing::warn!(
            lock = %raised.describe(),
            "retention lock lengthened; it can never be shortened"
        );
        *current = raised.clone();
        Ok(raised)
    }

    /// The keys derived from the master key (for engine layers above the store).
    pub fn keys(&self) -> &Keys {
        &self.unlocked.keys
    }

    /// Chunks a stream and stores every chunk; returns each chunk's id and
    /// length in order. Durable after [`Store::commit`].
    pub fn ingest(&self, mut reader: impl Read) -> Result<Vec<(ChunkId, u32)>, RepoError> {
        let mut out = Vec::new();
        let mut failure = None;
        let mut stream = self.chunker.stream();
        // Small files are the common case: a large zeroed buffer per file costs more than the reads.
        let mut buf = vec![0u8; 64 << 10];
        let mut store_one = |chunk: &[u8], out: &mut Vec<(ChunkId, u32)>| {
            if failure.is_none() {
                match self.store.put(chunk) {
                    Ok((id, _)) => out.push((id, chunk.len() as u32)),
                    Err(e) => failure = Some(e),
                }
            }
        };
        loop {
            let n = reader.read(&mut buf).map_err(io_err("read", "input"))?;
            if n == 0 {
                break;
            }
            stream.push(&buf[..n], |c| store_one(c, &mut out));
        }
        stream.finish(|c| store_one(c, &mut out));
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }

    /// The key slots.
    pub fn list_keys(&self) -> Vec<SlotInfo> {
        self.locked
            .slots
            .iter()
            .map(|s| SlotInfo {
                id: s.id.clone(),
                kind: s.kind,
                label: s.label.clone(),
                created: s.created,
                current: self.unlocked.slot.map(|id| id.to_string()) == Some(s.id.clone()),
            })
            .collect()
    }

    /// Adds a slot that opens the repository with `secret`.
    pub fn add_key(
        &mut self,
        secret: &Secret,
        kind: SlotKind,
        label: &str,
        kdf: KdfParams,
    ) -> Result<String, RepoError> {
        if !self.locked.encrypted() {
            return Err(RepoError::Invalid(
                "the repository is not encrypted; it has no key slots".into(),
            ));
        }
        if !secret.fits(kind) {
            return Err(RepoError::Invalid(format!(
                "a {kind:?} slot cannot be opened by the secret given"
            )));
        }
        let slot = KeySlot::create(
            self.locked.config.repo_id()?,
            &self.unlocked.master,
            secret,
            kind,
            label,
            kdf,
        )
        .map_err(|source| RepoError::Slot {
            slot: "new".into(),
            source,
        })?;
        write_slot(self.locked.disk.as_ref(), &slot)?;
        let id = slot.id.clone();
        self.locked.slots.push(slot);
        Ok(id)
    }

    /// Removes a slot; the last one is never removed.
    pub fn remove_key(&mut self, id: &str) -> Result<(), RepoError> {
        let pos = self
            .locked
            .slots
            .iter()
            .position(|s| s.id == id || (id.len() >= 8 && s.id.starts_with(id)))
            .ok_or_else(|| RepoError::NoSuchSlot(id.into()))?;
        if self.locked.slots.len() == 1 {
            return Err(RepoError::LastSlot);
        }
        let path = slot_path(&self.locked.slots[pos].id);
        self.locked
            .disk
            .remove(&path)
            .map_err(io_err("remove", &path))?;
        self.locked
            .disk
            .sync_dir(KEYS_DIR)
            .map_err(io_err("sync", KEYS_DIR))?;
        self.locked.slots.remove(pos);
        Ok(())
    }

    /// Replaces the slot that unlocked this session with one for `secret`:
    /// the new slot is durable before the old one goes.
    pub fn change_secret(&mut self, secret: &Secret, kdf: KdfParams) -> Result<String, RepoError> {
        let current = self.unlocked.slot.ok_or(RepoError::NoSecret)?.to_string();
        let old = self
            .locked
            .slots
            .iter()
            .find(|s| s.id == current)
            .ok_or_else(|| RepoError::NoSuchSlot(current.clone()))?;
        let kind = match (secret, old.kind) {
            (Secret::Passphrase(_), _) => SlotKind::Passphrase,
            (Secret::KeyFile(_), SlotKind::Escrow) => SlotKind::Escrow,
            (Secret::KeyFile(_), _) => SlotKind::KeyFile,
        };
        let label = old.label.clone();
        let new_id = self.add_key(secret, kind, &label, kdf)?;
        self.remove_key(&current)?;
        self.unlocked.slot = new_id.parse().ok();
        Ok(new_id)
    }
}
