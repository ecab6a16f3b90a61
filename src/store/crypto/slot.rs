//! Key slots: the master key wrapped by a passphrase (Argon2id) or by the
//! secret of a key file, one file per slot in `keys/`.
//!
//! Changing a passphrase rewrites one slot; no data is re-encrypted. Slot files
//! are TOML so an administrator can see what protects the repository.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::{MasterKey, Sealer};
use crate::store::format::{derive, Kind, Suite};
use crate::store::id::{RepoId, SlotId};

/// Argon2id cost of a passphrase slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about half a second on a server core, the
    /// cost an offline guesser pays per passphrase tried.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

/// What unlocks a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlotKind {
    /// A passphrase stretched with Argon2id.
    Passphrase,
    /// A file holding 32 random bytes, kept outside the repository.
    KeyFile,
    /// A recovery key for escrow (printed once, kept off-site); works like a key file.
    Escrow,
}

impl SlotKind {
    /// The name used in slot files and listings.
    pub fn name(self) -> &'static str {
        match self {
            SlotKind::Passphrase => "passphrase",
            SlotKind::KeyFile => "key-file",
            SlotKind::Escrow => "escrow",
        }
    }
}

/// A secret given to open a repository or a slot.
pub enum Secret {
    /// A passphrase.
    Passphrase(Zeroizing<String>),
    /// The 32 secret bytes of a key file or recovery key.
    KeyFile(Zeroizing<[u8; 32]>),
}

impl Secret {
    /// Whether this secret can open a slot of `kind`.
    pub fn fits(&self, kind: SlotKind) -> bool {
        matches!(
            (self, kind),
            (Secret::Passphrase(_), SlotKind::Passphrase)
                | (Secret::KeyFile(_), SlotKind::KeyFile | SlotKind::Escrow)
        )
    }
}

/// Prefix of a key file's single line.
pub const KEY_FILE_PREFIX: &str = "strata-key-v1:";

/// Renders 32 secret bytes as the text of a key file or recovery key.
pub fn encode_key_file(secret: &[u8; 32]) -> Zeroizing<String> {
    Zeroizing::new(format!("{KEY_FILE_PREFIX}{}\n", hex::encode(secret)))
}

/// Parses the text of a key file or recovery key.
pub fn decode_key_file(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let hex_part = text.trim().strip_prefix(KEY_FILE_PREFIX)?;
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_part, out.as_mut()).ok()?;
    Some(out)
}

/// A key slot as stored in `keys/<slot id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySlot {
    /// Slot format version (1).
    pub version: u32,
    /// The slot's id, also its file name.
    pub id: String,
    /// What unlocks it.
    pub kind: SlotKind,
    /// Free text: who or what holds this secret.
    pub label: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// Argon2id cost (passphrase slots only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<KdfParams>,
    /// 32 bytes of salt, hex.
    pub salt: String,
    /// The master key sealed with the key-encryption key, hex.
    pub wrapped: String,
}

/// A slot that does not parse or does not open.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// Fields wrong or missing, or an unsupported version.
    #[error("key slot is malformed: {0}")]
    Malformed(String),
    /// Not valid slot TOML. Boxed, as a TOML error would make this error,
    /// and the repository errors holding it, larger by a third; the source
    /// is the box, whose text is the TOML error's.
    #[error("key slot is malformed: {0}")]
    Toml(#[source] Box<toml::de::Error>),
    /// The slot id is not an id.
    #[error("key slot is malformed: {0}")]
    Id(#[from] crate::store::id::BadId),
    /// The secret is not the one this slot was made with.
    #[error("wrong passphrase or key file")]
    WrongSecret,
    /// Argon2 refused the stored parameters.
    #[error("key slot has unusable Argon2id parameters: {0}")]
    BadKdf(String),
}

impl KeySlot {
    /// Wraps `master` for `secret` in a new slot.
    pub fn create(
        repo: RepoId,
        master: &MasterKey,
        secret: &Secret,
        kind: SlotKind,
        label: &str,
        kdf: KdfParams,
    ) -> Result<KeySlot, SlotError> {
        let id = SlotId::random();
        let salt: [u8; 32] = rand::random();
        let kdf = matches!(secret, Secret::Passphrase(_)).then_some(kdf);
        let kek = key_encryption_key(secret, &salt, kdf)?;
        let wrapped = Sealer::new(Suite::Aes256GcmSiv, repo, &kek).seal(
            Kind::KeySlot,
            id.as_bytes(),
            master.expose(),
        );
        Ok(KeySlot {
            version: 1,
            id: id.to_string(),
            kind,
            label: label.to_owned(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            kdf,
            salt: hex::encode(salt),
            wrapped: hex::encode(wrapped),
        })
    }

    /// Parses a slot file.
    pub fn parse(text: &str) -> Result<KeySlot, SlotError> {
        let slot: KeySlot = toml::from_str(text).map_err(|e| SlotError::Toml(Box::new(e)))?;
        if slot.version != 1 {
            return Err(SlotError::Malformed(format!(
                "slot version {} is not supported by this build",
                slot.version
            )));
        }
        slot.slot_id()?;
        Ok(slot)
    }

    /// Renders the slot file.
    pub fn render(&self) -> String {
        toml::to_string(self).expect("slot serializes")
    }

    /// The slot's id.
    pub fn slot_id(&self) -> Result<SlotId, SlotError> {
        Ok(self.id.parse()?)
    }

    /// Unwraps the master key with `secret`.
    pub fn open(&self, repo: RepoId, secret: &Secret) -> Result<MasterKey, SlotError> {
        if !secret.fits(self.kind) {
            return Err(SlotError::WrongSecret);
        }
        let mut salt = [0u8; 32];
        hex::decode_to_slice(&self.salt, &mut salt)
            .map_err(|_| SlotError::Malformed("salt is not 32 bytes of hex".into()))?;
        let wrapped = hex::decode(&self.wrapped)
            .map_err(|_| SlotError::Malformed("wrapped key is not hex".into()))?;
        let kek = key_encryption_key(secret, &salt, self.kdf)?;
        let mut plain = Sealer::new(Suite::Aes256GcmSiv, repo, &kek)
            .open(Kind::KeySlot, self.slot_id()?.as_bytes(), &wrapped)
            .map_err(|_| SlotError::WrongSecret)?;
        let key: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| SlotError::Malformed("wrapped key has the wrong length".into()))?;
        plain.zeroize();
        Ok(MasterKey::from_bytes(key))
    }
}

fn key_encryption_key(
    secret: &Secret,
    salt: &[u8; 32],
    kdf: Option<KdfParams>,
) -> Result<Zeroizing<[u8; 32]>, SlotError> {
    let mut kek = Zeroizing::new([0u8; 32]);
    match secret {
        Secret::Passphrase(pass) => {
            // NFC, so the same passphrase typed on two systems is the same bytes.
            let pass: Zeroizing<String> = Zeroizing::new(
                unicode_normalization::UnicodeNormalization::nfc(pass.as_str()).collect(),
            );
            let p =
                kdf.ok_or_else(|| SlotError::Malformed("passphrase slot without kdf".into()))?;
            let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
                .map_err(|e| SlotError::BadKdf(e.to_string()))?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(pass.as_bytes(), salt, kek.as_mut())
                .map_err(|e| SlotError::BadKdf(e.to_string()))?;
        }
        Secret::KeyFile(bytes) => {
            let mut input = Zeroizing::new([0u8; 64]);
            input[..32].copy_from_slice(bytes.as_ref());
            input[32..].copy_from_slice(salt);
            *kek = blake3::derive_key(derive::KEY_FILE, input.as_ref());
        }
    }
    Ok(kek)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn pass(s: &str) -> Secret {
        Secret::Passphrase(Zeroizing::new(s.into()))
    }

    #[test]
    fn passphrase_slot_round_trip() {
        let repo = RepoId::random();
        let master = MasterKey::generate();
        let slot = KeySlot::create(
            repo,
            &master,
            &pass("pw"),
            SlotKind::Passphrase,
            "admin",
            CHEAP,
        )
        .unwrap();
        let parsed = KeySlot::parse(&slot.render()).unwrap();
        assert_eq!(
            parsed.open(repo, &pass("pw")).unwrap().expose(),
            master.expose()
        );
        assert!(matches!(
            parsed.open(repo, &pass("nope")),
            Err(SlotError::WrongSecret)
        ));
        assert!(matches!(
            parsed.open(RepoId::random(), &pass("pw")),
            Err(SlotError::WrongSecret)
        ));
    }

    #[test]
    fn key_file_slot_round_trip() {
        let repo = RepoId::random();
        let master = MasterKey::generate();
        let secret_bytes: [u8; 32] = rand::random();
        let text = encode_key_file(&secret_bytes);
        let secret = Secret::KeyFile(decode_key_file(&text).unwrap());
        let slot =
            KeySlot::create(repo, &master, &secret, SlotKind::KeyFile, "host", CHEAP).unwrap();
        assert!(slot.kdf.is_none());
        assert_eq!(slot.open(repo, &secret).unwrap().expose(), master.expose());
        assert!(matches!(
            slot.open(repo, &pass("x")),
            Err(SlotError::WrongSecret)
        ));
    }

    #[test]
    fn passphrases_are_compared_in_normal_form() {
        let repo = RepoId::random();
        let master = MasterKey::generate();
        let slot = KeySlot::create(
            repo,
            &master,
            &pass("caf\u{e9}"),
            SlotKind::Passphrase,
            "",
            CHEAP,
        )
        .unwrap();
        assert!(slot.open(repo, &pass("cafe\u{301}")).is_ok());
    }

    #[test]
    fn malformed_slots_are_named() {
        assert!(matches!(
            KeySlot::parse("version = 1"),
            Err(SlotError::Toml(_))
        ));
        assert!(decode_key_file("strata-key-v1:zz").is_none());
    }

    #[test]
    fn malformed_slots_keep_their_source() {
        use crate::sys::chain::Chain;
        use std::error::Error;
        let e = KeySlot::parse("version = 1").unwrap_err();
        let toml = e
            .source()
            .unwrap()
            .downcast_ref::<Box<toml::de::Error>>()
            .unwrap();
        assert_eq!(e.to_string(), format!("key slot is malformed: {toml}"));
        assert_eq!(Chain(&e).to_string(), e.to_string(), "quoted once");

        let repo = RepoId::random();
        let master = MasterKey::generate();
        let mut slot =
            KeySlot::create(repo, &master, &pass("x"), SlotKind::Passphrase, "", CHEAP).unwrap();
        slot.id = "zz".into();
        let e = KeySlot::parse(&slot.render()).unwrap_err();
        let bad = e
            .source()
            .unwrap()
            .downcast_ref::<crate::store::id::BadId>()
            .unwrap();
        assert_eq!(e.to_string(), format!("key slot is malformed: {bad}"));
        assert_eq!(Chain(&e).to_string(), e.to_string(), "quoted once");
    }
}
