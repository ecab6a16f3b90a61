//! `strata tier classify`: the classification rules of strata.toml tried on
//! local files, so an administrator sees where each would go before a
//! backup writes it.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;
use strata::exit::{self, Reported};
use strata::policy::classify::{Decision, Subject};
use strata::policy::hostconfig::HostConfig;

use super::args::{Global, TierClassifyArgs, TierCommand};
use super::print;

pub fn run(g: &Global, c: &TierCommand) -> Result<()> {
    match c {
        TierCommand::Classify(a) => classify(g, a),
    }
}

#[derive(Serialize)]
struct File {
    path: PathBuf,
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
    files: Vec<File>,
    tiers: BTreeMap<String, Totals>,
    unreadable: Vec<String>,
    seconds: f64,
}

fn classify(g: &Global, a: &TierClassifyArgs) -> Result<()> {
    let config = HostConfig::load_or_default(a.config.as_deref())?;
    let Some(rules) = config.classifier()? else {
        bail!(Reported(
            exit::HOST_CONFIG,
            "the host configuration declares no [[tier]], so every file stays in the one store; declare tiers and [[classify]] rules (see strata.toml(5))".into()
        ));
    };
    let started = Instant::now();
    let mut report = Report {
        files: Vec::new(),
        tiers: BTreeMap::new(),
        unreadable: Vec::new(),
        seconds: 0.0,
    };
    let mut sample = vec![0; rules.sample()];
    for root in &a.paths {
        // A directory's contents land in DIR, as `rsync -a PATH/ DIR/`
        // puts them; a file lands in it by its name.
        let base = match &a.under {
            Some(dir) if root.is_dir() => dir.clone(),
            Some(dir) => dir.join(root.file_name().unwrap_or_default()),
            None => std::path::absolute(root)?,
        };
        walk(root, &base, &mut |path, under, meta| {
            let n = read_start(path, &mut sample)?;
            let under = under.strip_prefix("/").unwrap_or(under);
            let decision = rules.classify(&Subject {
                path: under,
                uid: meta.uid(),
                head: &sample[..n],
            });
            let t = report.tiers.entry(decision.tier.clone()).or_default();
            t.files += 1;
            t.bytes += meta.len();
            report.files.push(File {
                path: under.to_path_buf(),
                bytes: meta.len(),
                decision,
            });
            Ok(())
        })
        .into_iter()
        .for_each(|(path, e)| report.unreadable.push(format!("{}: {e}", path.display())));
    }
    report.seconds = started.elapsed().as_secs_f64();
    print(g, &report, || human(&report));
    if !report.unreadable.is_empty() {
        for u in &report.unreadable {
            eprintln!("strata: cannot read {u}");
        }
        bail!(Reported(
            exit::ERROR,
            format!(
                "{} file(s) could not be read and were not classified",
                report.unreadable.len()
            )
        ));
    }
    Ok(())
}

/// Calls `f` for every regular file under `path` (itself included), with
/// the path it will have under head/; returns what could not be read.
fn walk(
    path: &Path,
    under: &Path,
    f: &mut dyn FnMut(&Path, &Path, &std::fs::Metadata) -> std::io::Result<()>,
) -> Vec<(PathBuf, std::io::Error)> {
    let mut failed = Vec::new();
    let meta = match std::fs::symlink_metadata(path) {
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
            failed.extend(walk(&path.join(&name), &under.join(&name), f));
        }
    }
    failed
}

/// Reads the start of `path` into `buf`; how many bytes.
fn read_start(path: &Path, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut file = std::fs::File::open(path)?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn human(r: &Report) -> String {
    let mut out = String::new();
    for f in &r.files {
        let d = &f.decision;
        out.push_str(&format!(
            "{:<12} {:<9} {:<11} {:<24} {}\n",
            d.tier,
            d.rule.map_or("default".into(), |n| format!("rule {n}")),
            d.file_type.map_or("-", |t| t.name()),
            if d.patterns.is_empty() {
                "-".to_string()
            } else {
                d.patterns.join(",")
            },
            f.path.display()
        ));
    }
    for (tier, t) in &r.tiers {
        out.push_str(&format!(
            "tier {tier}: {} file(s), {} bytes\n",
            t.files, t.bytes
        ));
    }
    out.push_str(&format!(
        "classified {} file(s) in {:.2} s",
        r.files.len(),
        r.seconds
    ));
    out
}
