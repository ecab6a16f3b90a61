//! The head's side of tier classification: the classifier the daemon
//! sets, what it made of a file (kept with the inode by flush, see
//! `content.rs`), and where a file in head/ goes now.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::txn::Reader;
use super::Head;
use crate::tree::classify::{Classify, Facts, Placement};
use crate::tree::types::{Caller, FileName, FsError, InodeNo};

/// Where a file of head/ goes, and what that rests on.
pub struct Tiered {
    /// The tier and the rule that chose it.
    pub placement: Placement,
    /// What its first bytes told, if the head read them (a file not
    /// written since tiers were configured has none: it is placed by path
    /// and owner alone).
    pub facts: Option<Facts>,
}

impl Head {
    /// Classifies the files written from now on (`None`: none are). A file
    /// whose writes touch its first bytes gets what they tell, kept with its
    /// inode, when it is flushed.
    pub fn set_classifier(&self, classifier: Option<Arc<dyn Classify>>) {
        let sample = classifier.as_ref().map_or(0, |c| c.sample());
        *self.classifier.write().unwrap_or_else(|p| p.into_inner()) = classifier;
        self.sample.store(sample, Ordering::Relaxed);
    }

    /// The classifier, if one is set.
    pub(super) fn classifier(&self) -> Option<Arc<dyn Classify>> {
        self.classifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What classification knows of a file's content (`None`: nothing,
    /// e.g. it was not written since tiers were configured).
    pub fn facts(&self, ino: InodeNo) -> Result<Option<Facts>, FsError> {
        Ok(self.rtx()?.get(ino)?.facts)
    }

    /// The inode at `path` ("/a/b", from the root of head/).
    pub fn resolve(&self, caller: Caller, path: &[u8]) -> Result<InodeNo, FsError> {
        let mut ino = InodeNo::ROOT;
        for name in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let name = FileName::new(name)?;
            ino = self.lookup(caller, ino, &name)?.ino;
        }
        Ok(ino)
    }

    /// Where the file at `path` (from the root of head/) goes, by its path,
    /// owner and what its first bytes told; `None` without a classifier.
    pub fn tier_of(&self, caller: Caller, path: &[u8]) -> Result<Option<Tiered>, FsError> {
        let Some(classifier) = self.classifier() else {
            return Ok(None);
        };
        let ino = self.resolve(caller, path)?;
        let rec = self.rtx()?.get(ino)?;
        let relative = &path[path.iter().take_while(|&&b| b == b'/').count()..];
        let placement = classifier.place(
            Path::new(OsStr::from_bytes(relative)),
            rec.meta.uid,
            &rec.facts.clone().unwrap_or_default(),
        );
        Ok(Some(Tiered {
            placement,
            facts: rec.facts,
        }))
    }
}
