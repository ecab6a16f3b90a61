//! Reading secrets from files, and handing one to the daemon over an
//! inherited file descriptor. Never from argv or the environment of a child.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::exit::{ExitCode, ERROR};
use crate::store::crypto::slot::{decode_key_file, Secret};

/// A secret that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The password file does not read.
    #[error("reading password file {}", .path.display())]
    ReadPasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The password file's first line is empty.
    #[error("password file {} is empty", .0.display())]
    EmptyPasswordFile(PathBuf),
    /// The key file does not read.
    #[error("reading key file {}", .path.display())]
    ReadKeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file does not hold a key.
    #[error("{} is not a strata key file (expected one line strata-key-v1:<64 hex digits>)", .0.display())]
    NotAKeyFile(PathBuf),
    /// `--key-fd` names standard input, output or error.
    #[error("--key-fd must be an inherited descriptor above 2")]
    KeyFdNotInherited,
    /// The descriptor does not read.
    #[error("reading the key from descriptor {fd}")]
    ReadKeyFd {
        /// The descriptor.
        fd: i32,
        /// Why.
        source: std::io::Error,
    },
    /// The handed-over passphrase is not text.
    #[error("the handed-over passphrase is not UTF-8")]
    PassphraseNotUtf8(#[source] std::str::Utf8Error),
    /// The descriptor carried something else.
    #[error("descriptor {0} did not carry a strata key")]
    NoKeyOnFd(i32),
}

impl ExitCode for SecretsError {
    fn exit_code(&self) -> u8 {
        // The commands that take a secret say WRONG_SECRET themselves
        // where a bad one is the user's to fix (`strata key`).
        match self {
            SecretsError::ReadPasswordFile { .. }
            | SecretsError::EmptyPasswordFile(_)
            | SecretsError::ReadKeyFile { .. }
            | SecretsError::NotAKeyFile(_)
            | SecretsError::KeyFdNotInherited
            | SecretsError::ReadKeyFd { .. }
            | SecretsError::PassphraseNotUtf8(_)
            | SecretsError::NoKeyOnFd(_) => ERROR,
        }
    }
}

/// Where `strata init` puts a generated key file, as `<repository id>.key`,
/// and where other commands look for it, unless STRATA_KEY_DIR says otherwise.
pub const DEFAULT_KEY_DIR: &str = "/etc/strata/keys";

/// Reads a passphrase file: its first line, without the line ending.
pub fn read_password_file(path: &Path) -> Result<Secret, SecretsError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        SecretsError::ReadPasswordFile {
            path: path.to_owned(),
            source,
        }
    })?);
    first_line(&text).ok_or_else(|| SecretsError::EmptyPasswordFile(path.to_owned()))
}

/// The first line of `text` as a passphrase, if not empty.
pub fn first_line(text: &str) -> Option<Secret> {
    let line = text.lines().next().unwrap_or("");
    (!line.is_empty()).then(|| Secret::Passphrase(Zeroizing::new(line.to_owned())))
}

/// Reads a key file, warning if others can read it.
pub fn read_key_file(path: &Path) -> Result<Secret, SecretsError> {
    let unreadable = |source| SecretsError::ReadKeyFile {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(file = %path.display(), "key file is readable by group or others; chmod 0400 it");
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(unreadable)?);
    let bytes = decode_key_file(&text).ok_or_else(|| SecretsError::NotAKeyFile(path.to_owned()))?;
    Ok(Secret::KeyFile(bytes))
}

/// The directory of default key files: $STRATA_KEY_DIR or /etc/strata/keys.
pub fn key_dir() -> PathBuf {
    std::env::var_os("STRATA_KEY_DIR").map_or_else(|| PathBuf::from(DEFAULT_KEY_DIR), PathBuf::from)
}

/// The default key file of repository `id`.
pub fn default_key_file(repo_id: &str) -> PathBuf {
    key_dir().join(format!("{repo_id}.key"))
}

/// The secret as bytes for the daemon's key descriptor.
pub fn encode_handoff(secret: &Secret) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    match secret {
        Secret::Passphrase(p) => {
            out.push(b'P');
            out.extend_from_slice(p.as_bytes());
        }
        Secret::KeyFile(k) => {
            out.push(b'K');
            out.extend_from_slice(&k[..]);
        }
    }
    out
}

/// Reads the secret the CLI wrote to descriptor `fd` (until end of file),
/// then closes it.
pub fn read_handoff(fd: i32) -> Result<Secret, SecretsError> {
    if fd < 3 {
        return Err(SecretsError::KeyFdNotInherited);
    }
    // SAFETY: the descriptor was inherited for this purpose and is read
    // and closed only here.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(owned);
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes)
        .map_err(|source| SecretsError::ReadKeyFd { fd, source })?;
    match bytes.split_first() {
        Some((b'P', rest)) => {
            let text = std::str::from_utf8(rest).map_err(SecretsError::PassphraseNotUtf8)?;
            Ok(Secret::Passphrase(Zeroizing::new(text.to_owned())))
        }
        Some((b'K', rest)) if rest.len() == 32 => {
            let mut k = Zeroizing::new([0u8; 32]);
            k.copy_from_slice(rest);
            Ok(Secret::KeyFile(k))
        }
        _ => Err(SecretsError::NoKeyOnFd(fd)),
    }
}
