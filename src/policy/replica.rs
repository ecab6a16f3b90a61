//! `[[replica]]` entries of strata.toml: where copies of the repository
//! go, how fast, how often, and what each keeps.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::policy::hostconfig::duration;
use crate::policy::retention::RetentionConfig;
use crate::policy::throttle::{ThrottleConfig, ThrottleConfigError, ThrottlePolicy};
use crate::store::io::remote::ObjectLock;

/// One `[[replica]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    /// Name, unique: `strata replicate NAME`, `repair packs --from NAME`.
    pub name: String,
    /// Where: an absolute directory, or `s3://BUCKET/PREFIX`.
    pub to: String,
    /// The replica this one copies from, for chains; by default the
    /// repository itself.
    #[serde(default)]
    pub from: Option<String>,
    /// The bandwidth limit: `rate`, `burst` and `[[replica.bandwidth.profile]]`
    /// windows, as `[throttle]` has them.
    #[serde(default)]
    pub bandwidth: ThrottleConfig,
    /// How often `strata replicate --due` copies to it, e.g. "1d".
    #[serde(default, deserialize_with = "opt_duration")]
    pub schedule: Option<Duration>,
    /// What the replica keeps, as `[retention]` has it; by default all it
    /// receives. Its lock can only lengthen the source's.
    #[serde(default)]
    pub retention: Option<RetentionConfig>,
    /// For a replica in a bucket made with S3 Object Lock: the mode its
    /// packs are locked in ("compliance" or "governance"), until their
    /// upload plus the longest retention lock. Set when the replica is made.
    #[serde(default)]
    pub object_lock: Option<ObjectLock>,
}

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

impl ReplicaConfig {
    /// Whether it is in a bucket.
    pub fn is_remote(&self) -> bool {
        self.to.starts_with("s3://")
    }

    /// Its validated bandwidth policy.
    pub fn bandwidth_policy(&self) -> ThrottlePolicy {
        self.bandwidth
            .validate()
            .expect("validated when the configuration was loaded")
    }
}

/// `[repair]`: what the daemon does when a read meets damaged data.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairConfig {
    /// The replica a damaged object is fetched from instead of failing
    /// the read.
    #[serde(default)]
    pub from: Option<String>,
}

/// A `[[replica]]` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaConfigError {
    /// A name with other characters.
    #[error("[[replica]] name {0:?}: use letters, digits, '-' and '_'")]
    Name(String),
    /// Two replicas of one name.
    #[error("[[replica]] name {0:?} is used twice")]
    NameTwice(String),
    /// Neither an absolute path nor an s3:// URL.
    #[error("[[replica]] {0:?}: to must be an absolute directory or s3://BUCKET/PREFIX")]
    To(String),
    /// `from` names no replica.
    #[error("[[replica]] {0:?}: from = {1:?} names no [[replica]]")]
    From(String, String),
    /// `[repair] from` names no replica.
    #[error("[repair] from = {0:?} names no [[replica]]")]
    RepairFrom(String),
    /// Object Lock for a replica in a directory.
    #[error("[[replica]] {0:?}: object_lock applies to a replica in a bucket (to = \"s3://...\")")]
    ObjectLockLocal(String),
    /// `from` goes round in a circle.
    #[error("[[replica]] {0:?}: its from chain comes back to it")]
    Cycle(String),
    /// The bandwidth table is not valid.
    #[error("[[replica]] {0:?} bandwidth: {1}")]
    Bandwidth(String, #[source] Box<ThrottleConfigError>),
    /// `[throttle.io]` has no meaning for a copy.
    #[error("[[replica]] {0:?} bandwidth: io and adaptive settings apply to the daemon's writes only; give rate, burst and profiles")]
    BandwidthIo(String),
    /// The retention table is not valid.
    #[error("[[replica]] {0:?} retention: {1}")]
    Retention(
        String,
        #[source] Box<crate::policy::retention::RetentionConfigError>,
    ),
}

/// Checks every `[[replica]]`, and that `[repair]` names one of them.
pub fn check(replicas: &[ReplicaConfig], repair: &RepairConfig) -> Result<(), ReplicaConfigError> {
    if let Some(from) = &repair.from {
        if !replicas.iter().any(|r| &r.name == from) {
            return Err(ReplicaConfigError::RepairFrom(from.clone()));
        }
    }
    let mut by_name = BTreeMap::new();
    for r in replicas {
        let name = &r.name;
        if !crate::policy::hostconfig::is_name(name) {
            return Err(ReplicaConfigError::Name(name.clone()));
        }
        if by_name.insert(name.as_str(), r).is_some() {
            return Err(ReplicaConfigError::NameTwice(name.clone()));
        }
        if !(r.is_remote() || r.to.starts_with('/')) {
            return Err(ReplicaConfigError::To(name.clone()));
        }
        if r.object_lock.is_some() && !r.is_remote() {
            return Err(ReplicaConfigError::ObjectLockLocal(name.clone()));
        }
        if r.bandwidth.io.is_some() || r.bandwidth.adaptive.is_some() {
            return Err(ReplicaConfigError::BandwidthIo(name.clone()));
        }
        r.bandwidth
            .validate()
            .map_err(|e| ReplicaConfigError::Bandwidth(name.clone(), Box::new(e)))?;
        if let Some(keep) = &r.retention {
            keep.check()
                .map_err(|e| ReplicaConfigError::Retention(name.clone(), Box::new(e)))?;
        }
    }
    for r in replicas {
        let mut seen = vec![r.name.as_str()];
        let mut at = r;
        while let Some(from) = &at.from {
            at = by_name
                .get(from.as_str())
                .ok_or_else(|| ReplicaConfigError::From(at.name.clone(), from.clone()))?;
            if seen.contains(&at.name.as_str()) {
                return Err(ReplicaConfigError::Cycle(r.name.clone()));
            }
            seen.push(&at.name);
        }
    }
    Ok(())
}

/// How many replicas lie between `r` and the repository (0: it copies
/// from the repository).
pub fn depth(replicas: &[ReplicaConfig], r: &ReplicaConfig) -> usize {
    let mut d = 0;
    let mut at = r;
    while let Some(next) = at
        .from
        .as_deref()
        .and_then(|n| replicas.iter().find(|r| r.name == n))
    {
        d += 1;
        at = next;
        if d > replicas.len() {
            break;
        }
    }
    d
}

/// The replicas named (all when `names` is empty) with every replica they
/// copy from, sources before the replicas that copy from them; `None`
/// names one that does not exist.
pub fn in_order<'a>(
    replicas: &'a [ReplicaConfig],
    names: &[String],
) -> Result<Vec<&'a ReplicaConfig>, String> {
    let find = |n: &str| replicas.iter().find(|r| r.name == n);
    let mut wanted: Vec<&ReplicaConfig> = Vec::new();
    for n in names {
        wanted.push(find(n).ok_or_else(|| n.clone())?);
    }
    if names.is_empty() {
        wanted = replicas.iter().collect();
    }
    wanted.sort_by_key(|r| depth(replicas, r));
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ReplicaConfig>, String> {
        #[derive(Deserialize)]
        struct File {
            replica: Vec<ReplicaConfig>,
        }
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        check(&f.replica, &RepairConfig::default()).map_err(|e| e.to_string())?;
        Ok(f.replica)
    }

    #[test]
    fn a_chain_is_ordered_sources_first() {
        let r = parse(
            r#"
            [[replica]]
            name = "far"
            to = "s3://b/p"
            from = "near"
            [[replica]]
            name = "near"
            to = "/srv/near"
            schedule = "1d"
            [replica.bandwidth]
            rate = "10MiB/s"
            [[replica.bandwidth.profile]]
            name = "office hours"
            days = ["mon"]
            from = "08:00"
            to = "18:00"
            rate = "1MiB/s"
            "#,
        )
        .unwrap();
        let order: Vec<_> = in_order(&r, &[])
            .unwrap()
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(order, ["near", "far"]);
        assert_eq!(r[1].schedule, Some(Duration::from_secs(86_400)));
        assert!(r[0].is_remote());
        assert_eq!(in_order(&r, &["nope".into()]).unwrap_err(), "nope");
    }

    #[test]
    fn bad_entries_are_named() {
        let cases = [
            ("name = \"a b\"\nto = \"/x\"", "use letters"),
            ("name = \"a\"\nto = \"rel\"", "absolute directory"),
            (
                "name = \"a\"\nto = \"/x\"\nfrom = \"b\"",
                "names no [[replica]]",
            ),
            (
                "name = \"a\"\nto = \"/x\"\n[replica.bandwidth]\nrate = \"fast\"",
                "bandwidth",
            ),
            (
                "name = \"a\"\nto = \"/x\"\n[replica.bandwidth.io]\nweight = 10",
                "io and adaptive",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&format!("[[replica]]\n{text}")).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        let cycle = parse("[[replica]]\nname = \"a\"\nto = \"/x\"\nfrom = \"b\"\n[[replica]]\nname = \"b\"\nto = \"/y\"\nfrom = \"a\"").unwrap_err();
        assert!(cycle.contains("comes back"), "{cycle}");
    }
}
