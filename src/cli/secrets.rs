//! Where secrets come from: files, a command, the environment, a key file,
//! or the terminal. Never from argv.

use std::io::IsTerminal;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use strata::store::crypto::slot::{encode_key_file, Secret};
use zeroize::Zeroizing;

use super::args::Global;
pub use strata::daemon::secrets::{default_key_file, read_key_file};
use strata::daemon::secrets::{first_line, read_password_file};

fn run_password_command(cmd: &str) -> Result<Secret> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| "running the password command")?;
    let stdout = Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
    if !out.status.success() {
        bail!(
            "the password command failed ({}); fix it or give --password-file",
            out.status
        );
    }
    first_line(&stdout).context("the password command printed nothing")
}

/// The secret to unlock with, from the first source given:
/// --key-file, --password-file, --password-command, STRATA_PASSWORD, the
/// default key file, then a prompt on a terminal. `None` if there is none.
pub fn unlock_secret(g: &Global, repo_id: &str) -> Result<Option<Secret>> {
    // A passphrase or key that cannot be had is exit 12, as a wrong one is.
    find_secret(g, repo_id).map_err(|e| {
        let e = strata::sys::chain::Chain(&*e);
        strata::exit::Reported(strata::exit::WRONG_SECRET, e.to_string()).into()
    })
}

fn find_secret(g: &Global, repo_id: &str) -> Result<Option<Secret>> {
    if let Some(path) = &g.key_file {
        return Ok(Some(read_key_file(path)?));
    }
    if let Some(path) = &g.password_file {
        return Ok(Some(read_password_file(path)?));
    }
    if let Some(cmd) = &g.password_command {
        return run_password_command(cmd).map(Some);
    }
    if let Ok(pw) = std::env::var("STRATA_PASSWORD") {
        if !pw.is_empty() {
            return Ok(Some(Secret::Passphrase(Zeroizing::new(pw))));
        }
    }
    let default = default_key_file(repo_id);
    if default.exists() {
        return Ok(Some(read_key_file(&default)?));
    }
    if std::io::stdin().is_terminal() {
        let pw = Zeroizing::new(rpassword::prompt_password("Passphrase: ")?);
        return Ok(first_line(&pw));
    }
    Ok(None)
}

/// The passphrase for a new repository or slot, if one was given
/// (--password-file, --password-command, STRATA_PASSWORD).
pub fn given_passphrase(g: &Global) -> Result<Option<Secret>> {
    if let Some(path) = &g.password_file {
        return Ok(Some(read_password_file(path)?));
    }
    if let Some(cmd) = &g.password_command {
        return run_password_command(cmd).map(Some);
    }
    match std::env::var("STRATA_PASSWORD") {
        Ok(pw) if !pw.is_empty() => Ok(Some(Secret::Passphrase(Zeroizing::new(pw)))),
        _ => Ok(None),
    }
}

/// Reads a new passphrase from FILE, or asks twice on a terminal.
pub fn new_passphrase(file: Option<&Path>) -> Result<Secret> {
    if let Some(path) = file {
        return Ok(read_password_file(path)?);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no new passphrase: give --new-password-file FILE (or --new-key-file FILE)");
    }
    let a = Zeroizing::new(rpassword::prompt_password("New passphrase: ")?);
    let b = Zeroizing::new(rpassword::prompt_password("Repeat new passphrase: ")?);
    if a != b {
        bail!("the passphrases differ; nothing changed");
    }
    first_line(&a).context("an empty passphrase is not allowed")
}

/// Generates 32 random bytes and writes them as a key file at `path` (0400,
/// never overwriting).
pub fn write_new_key_file(path: &Path) -> Result<Secret> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .with_context(|| {
            format!(
                "creating key file {} (it must not exist yet)",
                path.display()
            )
        })?;
    use std::io::Write;
    f.write_all(encode_key_file(&bytes).as_bytes())?;
    f.sync_all()?;
    Ok(Secret::KeyFile(bytes))
}

/// Generates a recovery key; returns it and its text.
pub fn new_recovery_key() -> (Secret, Zeroizing<String>) {
    let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
    let text = encode_key_file(&bytes);
    (Secret::KeyFile(bytes), text)
}
