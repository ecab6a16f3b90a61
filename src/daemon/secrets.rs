//! Reading secrets from files, and handing one to the daemon over an
//! inherited file descriptor. Never from argv or the environment of a child.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

use crate::store::crypto::slot::{decode_key_file, Secret};

/// Where `strata init` puts a generated key file, as `<repository id>.key`,
/// and where other commands look for it, unless STRATA_KEY_DIR says otherwise.
pub const DEFAULT_KEY_DIR: &str = "/etc/strata/keys";

/// Reads a passphrase file: its first line, without the line ending.
pub fn read_password_file(path: &Path) -> Result<Secret> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading password file {}", path.display()))?,
    );
    first_line(&text).with_context(|| format!("password file {} is empty", path.display()))
}

/// The first line of `text` as a passphrase, if not empty.
pub fn first_line(text: &str) -> Option<Secret> {
    let line = text.lines().next().unwrap_or("");
    (!line.is_empty()).then(|| Secret::Passphrase(Zeroizing::new(line.to_owned())))
}

/// Reads a key file, warning if others can read it.
pub fn read_key_file(path: &Path) -> Result<Secret> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("reading key file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(file = %path.display(), "key file is readable by group or others; chmod 0400 it");
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading key file {}", path.display()))?,
    );
    let bytes = decode_key_file(&text).with_context(|| {
        format!(
            "{} is not a strata key file (expected one line strata-key-v1:<64 hex digits>)",
            path.display()
        )
    })?;
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
pub fn read_handoff(fd: i32) -> Result<Secret> {
    if fd < 3 {
        bail!("--key-fd must be an inherited descriptor above 2");
    }
    // SAFETY: the descriptor was inherited for this purpose and is read
    // and closed only here.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(owned);
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes)
        .with_context(|| format!("reading the key from descriptor {fd}"))?;
    match bytes.split_first() {
        Some((b'P', rest)) => {
            let text =
                std::str::from_utf8(rest).context("the handed-over passphrase is not UTF-8")?;
            Ok(Secret::Passphrase(Zeroizing::new(text.to_owned())))
        }
        Some((b'K', rest)) if rest.len() == 32 => {
            let mut k = Zeroizing::new([0u8; 32]);
            k.copy_from_slice(rest);
            Ok(Secret::KeyFile(k))
        }
        _ => bail!("descriptor {fd} did not carry a strata key"),
    }
}
