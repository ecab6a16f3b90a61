//! `strata tier classify`: the classification rules of strata.toml tried on
//! local files, so an administrator sees where each would go before a
//! backup writes it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;
use strata::exit::{self, Reported};
use strata::policy::classify::{Decision, Subject};
use strata::policy::hostconfig::{HostConfig, DEFAULT_PATH};
use strata::tree::classify::Classify;

use super::args::{Global, TierClassifyArgs, TierCommand};
use super::print;

pub fn run(g: &Global, c: &TierCommand) -> Result<()> {
    match c {
        TierCommand::Classify(a) => classify(g, a),
        TierCommand::Show(a) => super::tier_show::run(g, a),
    }
}

#[derive(Serialize)]
struct File {
    /// The path under head/ (lossy where it is not UTF-8).
    path: String,
    bytes: u64,
    #[serde(flatten)]
    decision: Decision,
}

#[derive(Default, Serialize)]
struct Totals {
    files: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct Report {
    /// Every file, for --json (the human output prints them as they come).
    files: Vec<File>,
    tiers: BTreeMap<String, Totals>,
    /// Local paths that could not be read, with why.
    unreadable: Vec<String>,
    seconds: f64,
}

fn classify(g: &Global, a: &TierClassifyArgs) -> Result<()> {
    let config = HostConfig::load_or_default(a.config.as_deref())?;
    let Some(rules) = config.classifier()? else {
        let file = a
            .config
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_PATH))
            .display();
        bail!(Reported(
            exit::HOST_CONFIG,
            format!("the host configuration ({file}) declares no [[tier]]: declare tiers and [[classify]] rules (see strata.toml(5)), or give --config")
        ));
    };
    for e in rules.unknown_owners() {
        eprintln!("strata: warning: {e}; that owner matches no file here");
    }
    let started = Instant::now();
    let mut report = Report {
        files: Vec::new(),
        tiers: BTreeMap::new(),
        unreadable: Vec::new(),
        seconds: 0.0,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut closed = false;
    let mut sample = vec![0; rules.sample()];
    for root in &a.paths {
        // A directory's contents land in DIR, as `rsync -a PATH/ DIR/`
        // puts them; a file lands in it by its name.
        let under = match &a.under {
            Some(dir) if root.is_dir() => normal(dir),
            Some(dir) => normal(&dir.join(root.file_name().unwrap_or_default())),
            None => normal(&std::path::absolute(root)?),
        };
        let failed = walk(root, &under, true, &mut |path, under, meta| {
            let n = read_start(path, &mut sample)?;
            let decision = rules.classify(&Subject {
                path: under,
                uid: meta.uid(),
                head: &sample[..n],
            });
            let t = report.tiers.entry(decision.tier.clone()).or_default();
            t.files += 1;
            t.bytes += meta.len();
            let file = File {
                path: under.to_string_lossy().into_owned(),
                bytes: meta.len(),
                decision,
            };
            if g.json {
                report.files.push(file);
            } else if !closed {
                closed = writeln!(out, "{}", line(&file)).is_err();
            }
            Ok(())
        });
        report.unreadable.extend(
            failed
                .into_iter()
                .map(|(path, e)| format!("{}: {e}", path.display())),
        );
    }
    drop(out);
    report.seconds = started.elapsed().as_secs_f64();
    if closed {
        // The reader went away (`| head`): nothing more to say to it.
        return Ok(());
    }
    print(g, &report, || summary(&report));
    if !report.unreadable.is_empty() {
        for u in &report.unreadable {
            eprintln!("strata: cannot read {u}");
        }
        bail!(Reported(
            exit::ERROR,
            format!(
                "{} path(s) could not be read; the files under them were not classified",
                report.unreadable.len()
            )
        ));
    }
    Ok(())
}

/// `path` without `.`, `..` (taken lexically) or a leading `/`, as a path
/// under head/.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Calls `f` for every regular file under `path` (itself included), with
/// the path it will have under head/; returns what could not be read.
/// Symlinks are followed only where given (`top`), as `find -H` does.
fn walk(
    path: &Path,
    under: &Path,
    top: bool,
    f: &mut dyn FnMut(&Path, &Path, &std::fs::Metadata) -> std::io::Result<()>,
) -> Vec<(PathBuf, std::io::Error)> {
    let mut failed = Vec::new();
    let meta = if top {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) => return vec![(path.to_path_buf(), e)],
    };
    if meta.is_file() {
        if let Err(e) = f(path, under, &meta) {
            failed.push((path.to_path_buf(), e));
        }
    } else if meta.is_dir() {
        let mut names = match std::fs::read_dir(path) {
            Ok(d) => d
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect::<Vec<_>>(),
            Err(e) => return vec![(path.to_path_buf(), e)],
        };
        names.sort();
        for name in names {
            failed.extend(walk(&path.join(&name), &under.join(&name), false, f));
        }
    }
    failed
}

/// Reads the start of `path` into `buf`; how many bytes. Never blocks on
/// a file that became a FIFO, follows no symlink put in its place, and
/// leaves access times alone where the caller may.
fn read_start(path: &Path, buf: &mut [u8]) -> std::io::Result<usize> {
    let open = |flags| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | flags)
            .open(path)
    };
    let mut file = match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0)?,
        other => other?,
    };
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// One file's line: tier, rule, type, patterns, path (control characters
/// escaped, so a name cannot forge lines).
fn line(f: &File) -> String {
    let d = &f.decision;
    format!(
        "{:<12} {:<9} {:<11} {:<24} {}",
        d.tier,
        d.rule.map_or("default".into(), |n| format!("rule {n}")),
        d.file_type.map_or("-", |t| t.name()),
        if d.patterns.is_empty() {
            "-".to_string()
        } else {
            d.patterns.join(",")
        },
        escaped(&f.path)
    )
}

/// `s` with its control characters escaped.
fn escaped(s: &str) -> String {
    s.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

fn summary(r: &Report) -> String {
    let mut out = String::new();
    for (tier, t) in &r.tiers {
        out.push_str(&format!(
            "tier {tier}: {} file(s), {} bytes\n",
            t.files, t.bytes
        ));
    }
    let files: u64 = r.tiers.values().map(|t| t.files).sum();
    out.push_str(&format!("classified {files} file(s) in {:.2} s", r.seconds));
    out
}
