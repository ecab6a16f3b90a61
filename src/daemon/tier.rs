//! `strata tier show` as the daemon serves it: where files of head/ go now,
//! by the rules it mounted with.

use serde::{Deserialize, Serialize};

use super::control::ControlError;
use crate::tree::catalog::query::normalize;
use crate::tree::namespace::Namespace;
use crate::tree::types::{Caller, FsError};

/// One file's tier, and what it rests on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Shown {
    /// The path, from the root of head/.
    pub path: String,
    /// The tier.
    pub tier: String,
    /// The rule that chose it, counted from 1; none for the default tier.
    pub rule: Option<usize>,
    /// Whether the file's first bytes were read (written since tiers were
    /// configured); if not, only its path and owner placed it.
    pub read: bool,
    /// The types its first bytes match.
    pub types: Vec<String>,
    /// The content patterns found in them.
    pub patterns: Vec<String>,
}

/// Serves `strata tier show`: every path, or the first that fails.
pub fn show(ns: &Namespace, caller: Caller, paths: &[String]) -> Result<Vec<Shown>, ControlError> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let p = normalize(path).ok_or_else(|| ControlError::NotFromHead(path.clone()))?;
        let tiered = match ns.head().tier_of(caller, &p) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(ControlError::NoTiers),
            Err(FsError::NotFound | FsError::NotDir) => {
                return Err(ControlError::NotInHead(path.clone()))
            }
            Err(e) => return Err(e.into()),
        };
        let facts = tiered.facts.clone().unwrap_or_default();
        out.push(Shown {
            path: String::from_utf8_lossy(&p).into_owned(),
            tier: tiered.placement.tier,
            rule: tiered.placement.rule,
            read: tiered.facts.is_some(),
            types: facts.types,
            patterns: facts.patterns,
        });
    }
    Ok(out)
}
