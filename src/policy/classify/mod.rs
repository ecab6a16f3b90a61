//! Classification into tiers: `[[tier]]`, `[classification]`,
//! `[[classify]]` and `[[pattern]]` of strata.toml.
//!
//! A rule names a tier and what a file must be to go there: paths (globs),
//! owners, types told from the first bytes ([`sniff`]) and content patterns
//! found in them ([`patterns`]). Within a rule every criterion given must
//! hold (any one of a criterion's values will do); the first rule that
//! holds decides, and a file no rule takes goes to the default tier.
//!
//! Classification reads only a bounded sample of a file's start, so its
//! cost per file is fixed whatever the file's size. Patterns are looked
//! for in every sample, binary ones included (a DICOM header or a
//! database page holds names and dates as text); UTF-16 text with a byte
//! order mark is read as the text it is.

pub mod patterns;
pub mod sniff;

use std::collections::BTreeSet;
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use regex::bytes::RegexSet;
use serde::{Deserialize, Serialize};

use crate::tree::classify::{Classify, Facts, Placement};
pub use patterns::PatternConfig;
pub use sniff::FileType;

/// Bytes of a file's start that the rules read, unless `sample` says.
pub const DEFAULT_SAMPLE: usize = 64 << 10;
/// The most `sample` may be.
pub const MAX_SAMPLE: usize = 1 << 20;

/// One `[[tier]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// The name rules, reports and `strata find --tier` use.
    pub name: String,
}

/// `[classification]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassificationConfig {
    /// The tier of a file no rule takes; by default the first `[[tier]]`.
    pub default: Option<String>,
    /// Bytes of a file's start the rules read [default: 64 KiB].
    pub sample: Option<usize>,
}

/// One `[[classify]]` rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The tier a file this rule takes goes to.
    pub tier: String,
    /// Globs over the path under head/ (`**` crosses directories, `*` does
    /// not); a glob without a `/` is matched against the file name alone.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Owners: user names or numeric ids.
    #[serde(default)]
    pub owners: Vec<Owner>,
    /// File types, told from the first bytes.
    #[serde(default)]
    pub types: Vec<FileType>,
    /// Content patterns, by name (built in or `[[pattern]]`).
    #[serde(default)]
    pub patterns: Vec<String>,
}

/// An owner in a rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Owner {
    /// A numeric user id.
    Id(u32),
    /// A user name, looked up when the rules are built.
    Name(String),
}

/// The classification tables of strata.toml.
#[derive(Clone, Copy, Debug)]
pub struct ClassifyConfig<'a> {
    /// `[[tier]]`.
    pub tiers: &'a [TierConfig],
    /// `[classification]`.
    pub classification: &'a ClassificationConfig,
    /// `[[classify]]`, in order.
    pub rules: &'a [RuleConfig],
    /// `[[pattern]]`.
    pub patterns: &'a [PatternConfig],
}

/// Classification tables that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyConfigError {
    /// A tier name with other characters.
    #[error("[[tier]] name {0:?}: use letters, digits, '-' and '_'")]
    TierName(String),
    /// Two tiers of one name.
    #[error("[[tier]] name {0:?} is used twice")]
    TierTwice(String),
    /// Rules or a default without any tier.
    #[error("[[classify]] and [classification] need at least one [[tier]] to send files to")]
    NoTiers,
    /// A tier named that is not declared.
    #[error("{0} names tier {1:?}, which no [[tier]] declares")]
    UnknownTier(String, String),
    /// A rule without criteria would take every file.
    #[error("[[classify]] rule {0}: give at least one of paths, owners, types, patterns (the default tier is [classification] default)")]
    EmptyRule(usize),
    /// A glob that does not parse.
    #[error("[[classify]] rule {0}: path {1:?} is not a glob: {2}")]
    Glob(usize, String, String),
    /// A pattern name that is neither built in nor configured.
    #[error("[[classify]] rule {0}: no pattern named {1:?}; the built-in ones are {2}, or declare it with [[pattern]]")]
    UnknownPattern(usize, String, String),
    /// A pattern that does not compile.
    #[error("[[pattern]] {0:?}: not a valid regular expression: {1}")]
    Regex(String, String),
    /// A pattern name with other characters, or used twice.
    #[error("[[pattern]] name {0:?}: use letters, digits, '-' and '_', once each")]
    PatternName(String),
    /// An owner that is not a user here.
    #[error("[[classify]] rule {0}: owner {1:?} is not a user on this host; give a numeric id or create the user")]
    UnknownOwner(usize, String),
    /// A sample size out of range.
    #[error("[classification] sample = {0}: give 4096 to {MAX_SAMPLE} bytes")]
    Sample(usize),
}

/// What classification knows of a file.
pub struct Subject<'a> {
    /// Its path under head/, without a leading `/`, `.` or `..`.
    pub path: &'a Path,
    /// Its owner.
    pub uid: u32,
    /// Its first bytes, at most [`Classifier::sample`].
    pub head: &'a [u8],
}

/// Where a file goes, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The tier's name.
    pub tier: String,
    /// The rule that decided (counted from 1), or none for the default.
    pub rule: Option<usize>,
    /// Its type, if its first bytes tell one.
    pub file_type: Option<FileType>,
    /// The content patterns found in its first bytes, whichever rule
    /// decided (the compliance view asks where such files went).
    pub patterns: Vec<String>,
}

/// The rules, built once and then applied to every file.
pub struct Classifier {
    rules: Vec<Rule>,
    /// Owner names that are not users here: a rule's other owners still
    /// count. Not an error of the configuration (the same file serves
    /// hosts with different users), but `strata tier classify` says so.
    unknown_owners: Vec<ClassifyConfigError>,
    default: String,
    sample: usize,
    pattern_names: Vec<String>,
    pattern_set: RegexSet,
}

struct Rule {
    tier: String,
    /// Globs matched against the whole path, and against the name alone.
    whole: Option<GlobSet>,
    name: Option<GlobSet>,
    owners: Vec<u32>,
    types: Vec<FileType>,
    /// Indexes into the classifier's patterns.
    patterns: Vec<usize>,
}

impl Classifier {
    /// Checks the tables and builds the rules; `None` when no tier is
    /// declared (classification is off).
    pub fn new(config: &ClassifyConfig<'_>) -> Result<Option<Classifier>, ClassifyConfigError> {
        let sample = config.classification.sample.unwrap_or(DEFAULT_SAMPLE);
        if !(4096..=MAX_SAMPLE).contains(&sample) {
            return Err(ClassifyConfigError::Sample(sample));
        }
        let mut tiers = BTreeSet::new();
        for t in config.tiers {
            if !crate::policy::hostconfig::is_name(&t.name) {
                return Err(ClassifyConfigError::TierName(t.name.clone()));
            }
            if !tiers.insert(t.name.as_str()) {
                return Err(ClassifyConfigError::TierTwice(t.name.clone()));
            }
        }
        let patterns = patterns::all(config.patterns);
        let mut seen = BTreeSet::new();
        for p in config.patterns {
            if !crate::policy::hostconfig::is_name(&p.name) || !seen.insert(&p.name) {
                return Err(ClassifyConfigError::PatternName(p.name.clone()));
            }
            regex::bytes::Regex::new(&p.regex)
                .map_err(|e| ClassifyConfigError::Regex(p.name.clone(), e.to_string()))?;
        }
        let Some(first) = config.tiers.first() else {
            if !config.rules.is_empty() || config.classification.default.is_some() {
                return Err(ClassifyConfigError::NoTiers);
            }
            return Ok(None);
        };
        let known = |what: String, tier: &String| {
            if tiers.contains(tier.as_str()) {
                Ok(())
            } else {
                Err(ClassifyConfigError::UnknownTier(what, tier.clone()))
            }
        };
        let default = match &config.classification.default {
            Some(d) => {
                known("[classification] default".into(), d)?;
                d.clone()
            }
            None => first.name.clone(),
        };
        let mut rules = Vec::new();
        let mut unknown_owners = Vec::new();
        for (i, r) in config.rules.iter().enumerate() {
            let n = i + 1;
            known(format!("[[classify]] rule {n}"), &r.tier)?;
            if r.paths.is_empty()
                && r.owners.is_empty()
                && r.types.is_empty()
                && r.patterns.is_empty()
            {
                return Err(ClassifyConfigError::EmptyRule(n));
            }
            let (whole, name) = globs(n, &r.paths)?;
            let mut owners = Vec::new();
            for o in &r.owners {
                match o {
                    Owner::Id(id) => owners.push(*id),
                    Owner::Name(user) => match crate::policy::backup::hook::uid_of(user) {
                        Some(uid) => owners.push(uid),
                        None => {
                            unknown_owners.push(ClassifyConfigError::UnknownOwner(n, user.clone()))
                        }
                    },
                }
            }
            let idx = r
                .patterns
                .iter()
                .map(|p| {
                    patterns
                        .iter()
                        .position(|(name, _)| name == p)
                        .ok_or_else(|| {
                            ClassifyConfigError::UnknownPattern(
                                n,
                                p.clone(),
                                patterns::BUILT_IN.map(|(n, _)| n).join(", "),
                            )
                        })
                })
                .collect::<Result<_, _>>()?;
            rules.push(Rule {
                tier: r.tier.clone(),
                whole,
                name,
                owners,
                types: r.types.clone(),
                patterns: idx,
            });
        }
        let pattern_set = RegexSet::new(patterns.iter().map(|(_, re)| re))
            .map_err(|e| ClassifyConfigError::Regex("(all)".into(), e.to_string()))?;
        Ok(Some(Classifier {
            rules,
            unknown_owners,
            default,
            sample,
            pattern_names: patterns.into_iter().map(|(n, _)| n).collect(),
            pattern_set,
        }))
    }

    /// The owner names of the rules that are not users on this host.
    pub fn unknown_owners(&self) -> &[ClassifyConfigError] {
        &self.unknown_owners
    }

    /// Where `file` goes.
    pub fn classify(&self, file: &Subject<'_>) -> Decision {
        let (facts, file_type) = self.read(file.head);
        let placed = self.place(file.path, file.uid, &facts);
        Decision {
            tier: placed.tier,
            rule: placed.rule,
            file_type,
            patterns: facts.patterns,
        }
    }

    /// What `head` tells (the sample of it), and the first type it matches.
    fn read(&self, head: &[u8]) -> (Facts, Option<FileType>) {
        let head = &head[..head.len().min(self.sample)];
        let types: Vec<FileType> = FileType::ALL
            .into_iter()
            .filter(|t| t.matches(head))
            .collect();
        let text = patterns::text_of(head);
        let facts = Facts {
            types: types.iter().map(|t| t.name().to_owned()).collect(),
            patterns: self
                .pattern_set
                .matches(&text)
                .into_iter()
                .map(|i| self.pattern_names[i].clone())
                .collect(),
        };
        (facts, sniff::sniff(head))
    }
}

impl Classify for Classifier {
    fn sample(&self) -> usize {
        self.sample
    }

    fn facts(&self, head: &[u8]) -> Facts {
        self.read(head).0
    }

    fn place(&self, path: &Path, uid: u32, facts: &Facts) -> Placement {
        let name = path.file_name().map(Path::new);
        let takes = |r: &Rule| {
            let path_ok = (r.whole.is_none() && r.name.is_none())
                || r.whole.as_ref().is_some_and(|g| g.is_match(path))
                || r.name
                    .as_ref()
                    .zip(name)
                    .is_some_and(|(g, n)| g.is_match(n));
            path_ok
                && (r.owners.is_empty() || r.owners.contains(&uid))
                && (r.types.is_empty()
                    || r.types
                        .iter()
                        .any(|t| facts.types.iter().any(|n| n == t.name())))
                && (r.patterns.is_empty()
                    || r.patterns
                        .iter()
                        .any(|&p| facts.patterns.contains(&self.pattern_names[p])))
        };
        match self.rules.iter().position(takes) {
            Some(i) => Placement {
                tier: self.rules[i].tier.clone(),
                rule: Some(i + 1),
            },
            None => Placement {
                tier: self.default.clone(),
                rule: None,
            },
        }
    }
}

/// The globs of rule `n`: those with a `/` (matched against the whole
/// path) and those without (matched against the name).
fn globs(
    n: usize,
    paths: &[String],
) -> Result<(Option<GlobSet>, Option<GlobSet>), ClassifyConfigError> {
    let mut whole = GlobSetBuilder::new();
    let mut name = GlobSetBuilder::new();
    let (mut any_whole, mut any_name) = (false, false);
    for p in paths {
        let glob: Glob = GlobBuilder::new(p.trim_start_matches("./").trim_start_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|e| ClassifyConfigError::Glob(n, p.clone(), e.kind().to_string()))?;
        if p.contains('/') {
            whole.add(glob);
            any_whole = true;
        } else {
            name.add(glob);
            any_name = true;
        }
    }
    let build = |b: GlobSetBuilder, any: bool| {
        any.then(|| b.build())
            .transpose()
            .map_err(|e| ClassifyConfigError::Glob(n, paths.join(" "), e.kind().to_string()))
    };
    Ok((build(whole, any_whole)?, build(name, any_name)?))
}
