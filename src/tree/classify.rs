//! What the head needs of tier classification (the rules themselves are
//! policy): how many of a file's first bytes to keep, what those bytes
//! tell, and where a file with those facts, path and owner goes.
//!
//! The head keeps a file's [`Facts`] when it is written from its start, so
//! a file's tier follows its path and owner when they change (rsync writes
//! a temporary name and renames it) without reading its content again.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a file's first bytes told: the types they match and the content
/// patterns found in them, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// Names of the file types its first bytes match (`dicom`, `pdf`, ...).
    pub types: Vec<String>,
    /// Names of the content patterns found in them.
    pub patterns: Vec<String>,
}

/// A tier and the rule that chose it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// The tier's name.
    pub tier: String,
    /// The rule that chose it, counted from 1; none for the default tier.
    pub rule: Option<usize>,
}

/// Tier classification as the head uses it.
pub trait Classify: Send + Sync {
    /// How many of a file's first bytes [`Classify::facts`] reads.
    fn sample(&self) -> usize;

    /// What a file's first bytes tell.
    fn facts(&self, head: &[u8]) -> Facts;

    /// Where a file goes: `path` is under head/, without a leading `/`.
    fn place(&self, path: &Path, uid: u32, facts: &Facts) -> Placement;
}
