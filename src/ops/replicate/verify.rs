//! Comparing a replica with its source: the chains link by link, and with
//! `--verify` every object the snapshots both keep refer to.
//!
//! A replica is consistent when its chain is a prefix of the source's: at
//! every number both have, the same record id (kept or forgotten on either
//! side: each side's retention is its own). It is behind when the source
//! has links after its newest, or objects it lacks. It has diverged when a
//! number it has carries another record, or it has numbers the source has
//! not reached: then it is a different history, and replication leaves it
//! alone.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::ops::replicate::{by_source, target, OpenError, ReplicaFailed};
use crate::policy::replica::ReplicaConfig;
use crate::store::id::ChunkId;
use crate::tree::head::Head;
use crate::tree::objects::Tree;
use crate::tree::snapshot::receive::ChainLink;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::FsError;

/// Where two chains part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// The first number where they differ.
    pub seq: u64,
    /// How.
    pub why: String,
}

/// How a replica's chain stands against its source's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// Links of the source after the replica's newest: what it lacks.
    pub missing: Vec<u64>,
    /// Snapshots the replica keeps and the source forgot.
    pub kept_longer: Vec<u64>,
    /// Snapshots the source keeps and the replica forgot.
    pub forgotten_here: Vec<u64>,
    /// Where the chains part, if they do.
    pub diverged: Option<Divergence>,
}

/// Compares the chain of a replica with its source's.
pub fn compare(source: &[ChainLink], replica: &[ChainLink]) -> Comparison {
    let src: BTreeMap<u64, &ChainLink> = source.iter().map(|l| (l.seq, l)).collect();
    let mut out = Comparison::default();
    for r in replica {
        match src.get(&r.seq) {
            None => {
                out.diverged = Some(Divergence {
                    seq: r.seq,
                    why: "the replica has a snapshot the source has not taken (was it written to, or is the source a restored older copy?)".into(),
                });
                break;
            }
            Some(s) if s.id != r.id => {
                out.diverged = Some(Divergence {
                    seq: r.seq,
                    why: format!(
                        "the replica's snapshot {} is record {}, the source's is {}",
                        r.seq,
                        ChunkId(r.id).short(),
                        ChunkId(s.id).short()
                    ),
                });
                break;
            }
            Some(s) if r.kept && !s.kept => out.kept_longer.push(r.seq),
            Some(s) if !r.kept && s.kept => out.forgotten_here.push(r.seq),
            Some(_) => {}
        }
    }
    let newest = replica.last().map_or(0, |l| l.seq);
    out.missing = source
        .iter()
        .filter(|l| l.seq > newest)
        .map(|l| l.seq)
        .collect();
    out
}

/// What `strata replicate --verify` found for one replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    /// The chains.
    #[serde(flatten)]
    pub chains: Comparison,
    /// Snapshots kept on both sides whose objects were checked.
    pub snapshots_checked: u64,
    /// Objects those refer to that the replica lacks.
    pub objects_missing: u64,
    /// The first few of them.
    pub examples: Vec<String>,
}

impl Verdict {
    /// Nothing differs but what each side's retention decided.
    pub fn in_step(&self) -> bool {
        self.chains.diverged.is_none()
            && self.chains.missing.is_empty()
            && self.objects_missing == 0
    }
}

/// Compares the chains and checks that the replica holds every object the
/// snapshots kept on both sides refer to (by id, in its index; `strata
/// check --read-data` on the replica reads them).
pub fn verify(source: &Head, replica: &Head) -> Result<Verdict, FsError> {
    let from = Snapshots::of(source);
    let chains = compare(&from.chain()?, &Snapshots::of(replica).chain()?);
    let mut verdict = Verdict {
        chains,
        snapshots_checked: 0,
        objects_missing: 0,
        examples: Vec::new(),
    };
    if verdict.chains.diverged.is_some() {
        return Ok(verdict);
    }
    let theirs: HashSet<u64> = Snapshots::of(replica)
        .list()?
        .iter()
        .map(|r| r.record.seq)
        .collect();
    let store = replica.repo().store();
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    let missing = |id: [u8; 32], what: &str, v: &mut Verdict| -> Result<(), FsError> {
        if !store.has(&ChunkId(id))? {
            v.objects_missing += 1;
            if v.examples.len() < 10 {
                v.examples.push(format!("{what} {}", ChunkId(id)));
            }
        }
        Ok(())
    };
    for row in from
        .list()?
        .iter()
        .filter(|r| theirs.contains(&r.record.seq))
    {
        verdict.snapshots_checked += 1;
        missing(row.id, "snapshot record", &mut verdict)?;
        let mut stack: Vec<[u8; 32]> = row.record.root.subtree.into_iter().collect();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            missing(id, "tree", &mut verdict)?;
            for e in Tree::load(source.repo().store(), &id)?.entries {
                for (_, chunk, _) in &e.extents {
                    if seen.insert(*chunk) {
                        missing(*chunk, "chunk", &mut verdict)?;
                    }
                }
                stack.extend(e.subtree);
            }
        }
    }
    Ok(verdict)
}

/// One replica's verdict, by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checked {
    /// The replica.
    pub name: String,
    /// Where it is.
    pub to: String,
    /// What was found.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Verifies the replicas `chosen`, each against the repository or replica
/// it copies from. A replica not made yet lacks every snapshot.
pub fn verify_replicas(
    source: &Head,
    all: &[ReplicaConfig],
    chosen: &[&ReplicaConfig],
) -> Vec<Result<Checked, ReplicaFailed>> {
    by_source(source, all, chosen, |from, group| {
        group
            .iter()
            .map(|r| {
                let failed = |e: FsError| ReplicaFailed::Verify {
                    name: r.name.clone(),
                    source: Box::new(e),
                };
                let verdict = match target::open(&r.to, from.repo(), None) {
                    Ok((replica, _)) => verify(from, &replica).map_err(failed)?,
                    Err(OpenError::Missing(_)) => Verdict {
                        chains: compare(&Snapshots::of(from).chain().map_err(failed)?, &[]),
                        snapshots_checked: 0,
                        objects_missing: 0,
                        examples: Vec::new(),
                    },
                    Err(e) => {
                        return Err(ReplicaFailed::Open {
                            name: r.name.clone(),
                            to: r.to.clone(),
                            source: Box::new(e),
                        })
                    }
                };
                Ok(Checked {
                    name: r.name.clone(),
                    to: r.to.clone(),
                    verdict,
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(seq: u64, id: u8, kept: bool) -> ChainLink {
        ChainLink {
            seq,
            id: [id; 32],
            kept,
        }
    }

    #[test]
    fn a_prefix_is_behind_by_the_rest() {
        let source = [link(1, 1, false), link(2, 2, true), link(3, 3, true)];
        let replica = [link(1, 1, true), link(2, 2, false)];
        let c = compare(&source, &replica);
        assert_eq!(c.missing, vec![3]);
        assert_eq!(c.kept_longer, vec![1]);
        assert_eq!(c.forgotten_here, vec![2]);
        assert_eq!(c.diverged, None);
        assert_eq!(compare(&source, &source).missing, Vec::<u64>::new());
        assert_eq!(compare(&source, &[]).missing, vec![1, 2, 3]);
    }

    #[test]
    fn another_record_or_a_newer_number_is_divergence() {
        let source = [link(1, 1, true), link(2, 2, true)];
        let other = compare(&source, &[link(1, 1, true), link(2, 9, true)]);
        assert_eq!(other.diverged.unwrap().seq, 2);
        let ahead = compare(
            &source,
            &[link(1, 1, true), link(2, 2, true), link(3, 3, true)],
        );
        assert_eq!(ahead.diverged.unwrap().seq, 3);
        assert!(ahead.missing.is_empty());
    }
}
