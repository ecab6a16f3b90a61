//! `strata replicate` as the daemon serves it while the repository is
//! mounted, and as the CLI runs it when it is not: the replicas of the
//! host configuration, copied to or verified, each with its own outcome.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::store::repo::Repo;

use serde::{Deserialize, Serialize};

use crate::exit::{self, ExitCode};
use crate::ops::replicate::repair::{repair_packs, PackRepairReport};
use crate::ops::replicate::verify::{verify_replicas, Checked};
use crate::ops::replicate::{target, to_replicas, Done, ReplicaFailed, Tell};
use crate::policy::hostconfig::HostConfig;
use crate::policy::replica::{in_order, ReplicaConfig};
use crate::store::chunks::Refetch;
use crate::sys::chain::Chain;
use crate::tree::head::Head;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{Caller, Timestamp};

use super::control::ControlError;

/// What to replicate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicateRequest {
    /// The host configuration that declares the replicas (the default
    /// path when `None`).
    pub config: Option<PathBuf>,
    /// The replicas by name; none: all.
    pub names: Vec<String>,
    /// Compare instead of copying.
    pub verify: bool,
    /// Only those whose schedule says they are due.
    pub due: bool,
}

/// One replica's outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome<T> {
    /// The replica.
    pub name: String,
    /// What was done or found, when it ran to the end.
    pub result: Option<T>,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// Its exit code (see strata(1)).
    pub exit: u8,
}

/// The answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicateReply {
    /// What each replica got.
    Copied(Vec<Outcome<Done>>),
    /// What each replica's comparison found.
    Verified(Vec<Outcome<Checked>>),
}

/// Replicates to, or verifies, the replicas `req` names, from `head`.
pub fn serve(
    head: &Head,
    caller: Caller,
    req: &ReplicateRequest,
    progress: Option<Tell<'_>>,
) -> Result<ReplicateReply, ControlError> {
    let host = HostConfig::load_or_default(req.config.as_deref()).map_err(Box::new)?;
    if host.replicas.is_empty() {
        return Err(ControlError::NoReplicas);
    }
    let mut chosen = in_order(&host.replicas, &req.names).map_err(ControlError::NoReplica)?;
    if req.due {
        chosen.retain(|r| is_due(head, r));
    }
    if req.verify {
        let out = verify_replicas(head, &host.replicas, &chosen);
        return Ok(ReplicateReply::Verified(
            out.into_iter()
                .zip(&chosen)
                .map(|(r, c)| match r {
                    Ok(checked) => Outcome {
                        name: c.name.clone(),
                        exit: if checked.verdict.chains.diverged.is_some() {
                            exit::REPLICA_DIVERGED
                        } else if checked.verdict.in_step() {
                            0
                        } else {
                            exit::REPLICA_BEHIND
                        },
                        result: Some(checked),
                        error: None,
                    },
                    Err(e) => failed(c, e),
                })
                .collect(),
        ));
    }
    let out = to_replicas(head, &host.replicas, &chosen, caller, progress);
    Ok(ReplicateReply::Copied(
        out.into_iter()
            .zip(&chosen)
            .map(|(r, c)| match r {
                Ok(done) => Outcome {
                    name: c.name.clone(),
                    result: Some(done),
                    error: None,
                    exit: 0,
                },
                Err(e) => failed(c, e),
            })
            .collect(),
    ))
}

fn failed<T>(r: &ReplicaConfig, e: ReplicaFailed) -> Outcome<T> {
    tracing::warn!(replica = %r.name, error = %Chain(&e), "replication failed");
    Outcome {
        name: r.name.clone(),
        result: None,
        exit: e.exit_code(),
        error: Some(Chain(&e).to_string()),
    }
}

/// Whether replica `r` is due: it has a schedule, and it was never
/// brought up to date or longer ago than that.
fn is_due(head: &Head, r: &ReplicaConfig) -> bool {
    let Some(every) = r.schedule else {
        return false;
    };
    let last = target::open(&r.to, head.repo(), None)
        .ok()
        .and_then(|(replica, _)| Snapshots::of(&replica).replicated_at().ok().flatten());
    let now = Timestamp::now().secs.max(0) as u64;
    last.is_none_or(|t| now.saturating_sub(t) >= every.as_secs())
}

/// Repairs the bad packs of `head`'s repository from the replica `from`
/// of the host configuration at `config`.
pub fn repair(
    head: &Head,
    config: Option<&std::path::Path>,
    from: &str,
) -> Result<PackRepairReport, ControlError> {
    let host = HostConfig::load_or_default(config).map_err(Box::new)?;
    let r = host
        .replicas
        .iter()
        .find(|r| r.name == from)
        .ok_or_else(|| ControlError::NoReplica(from.to_owned()))?;
    let (replica, _) = target::open(&r.to, head.repo(), None).map_err(|e| {
        Box::new(ReplicaFailed::Open {
            name: r.name.clone(),
            to: r.to.clone(),
            source: Box::new(e),
        })
    })?;
    Ok(repair_packs(head, &replica).map_err(crate::tree::types::FsError::from)?)
}

/// With `[repair] from = "NAME"`, where the store fetches an object that
/// reads damaged: from that replica, opened while damaged reads go on and
/// closed when the last one ends (they are rare, and a replica held open
/// could not be replicated to meanwhile).
pub fn refetch(host: &HostConfig, repo: &Repo) -> Option<Refetch> {
    let name = host.repair.from.as_ref()?;
    let r = host.replicas.iter().find(|r| &r.name == name)?.clone();
    let key = repo.key();
    // Readers at work, and the replica they share.
    let open: Mutex<(usize, Option<Arc<Repo>>)> = Mutex::new((0, None));
    Some(Arc::new(move |kind, id| {
        let replica = {
            let mut g = open.lock().unwrap_or_else(|e| e.into_inner());
            if g.1.is_none() {
                match target::open_repo(&r.to, &key) {
                    Ok(replica) => g.1 = Some(Arc::new(replica)),
                    Err(e) => {
                        tracing::error!(replica = %r.name, error = %Chain(&e), "cannot open the replica to fetch a damaged object");
                        return None;
                    }
                }
            }
            g.0 += 1;
            g.1.clone()
        }?;
        let got = replica.store().get_sealed(kind, id).inspect_err(|e| {
            tracing::error!(replica = %r.name, object = %id.short(), error = %Chain(e), "the replica cannot give the damaged object either")
        });
        drop(replica);
        let mut g = open.lock().unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        if g.0 == 0 {
            g.1 = None;
        }
        got.ok()
    }))
}
