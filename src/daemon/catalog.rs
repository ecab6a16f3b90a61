//! The catalog's requests, as the daemon and the unmounted CLI both serve
//! them: snapshot names resolved as every other command resolves them,
//! then one call of the catalog.

use serde::{Deserialize, Serialize};

use super::control::{find as find_snapshot, ControlError};
use crate::tree::catalog::query::{
    self, normalize, Difference, FindSpec, Found, Pattern, VersionInfo,
};
use crate::tree::catalog::Catalog;
use crate::tree::namespace::Namespace;
use crate::tree::snapshot::Snapshots;

/// A snapshot named in an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// Its number.
    pub seq: u64,
    /// Its directory name.
    pub name: String,
}

/// What `strata versions` shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionsReply {
    /// The path asked about.
    pub path: String,
    /// Its versions, oldest first.
    pub versions: Vec<VersionInfo>,
}

/// What `strata diff` shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DiffReply {
    /// The older snapshot.
    pub from: SnapshotRef,
    /// The newer.
    pub to: SnapshotRef,
    /// The path compared, if not all.
    pub path: Option<String>,
    /// The differences, by path.
    pub differences: Vec<Difference>,
}

/// Serves `strata find`.
pub fn find(ns: &Namespace, spec: &FindSpec) -> Result<Vec<Found>, ControlError> {
    let pattern = Pattern::new(spec).map_err(ControlError::BadPattern)?;
    let only = match &spec.snapshot {
        Some(name) => {
            let runs = Snapshots::of(ns.head()).runs()?;
            Some(find_snapshot(&ns.snapshots(), &runs, name)?.record.seq)
        }
        None => None,
    };
    Ok(Catalog::of(ns.head()).find(spec, &pattern, only)?)
}

/// Serves `strata versions`.
pub fn versions(ns: &Namespace, path: &str) -> Result<VersionsReply, ControlError> {
    let p = normalize(path).ok_or_else(|| ControlError::NotAbsolute(path.to_owned()))?;
    Ok(VersionsReply {
        path: String::from_utf8_lossy(&p).into_owned(),
        versions: Catalog::of(ns.head()).versions(&p)?,
    })
}

/// Serves `strata diff`.
pub fn diff(
    ns: &Namespace,
    from: &str,
    to: &str,
    path: Option<&str>,
) -> Result<DiffReply, ControlError> {
    let rows = ns.snapshots();
    let runs = Snapshots::of(ns.head()).runs()?;
    let a = find_snapshot(&rows, &runs, from)?;
    let b = find_snapshot(&rows, &runs, to)?;
    let p = path
        .map(|p| normalize(p).ok_or_else(|| ControlError::NotAbsolute(p.to_owned())))
        .transpose()?;
    let store = ns.head().repo().store();
    let differences =
        query::diff(store, &a, &b, p.as_deref())?.ok_or_else(|| ControlError::NoSuchPath {
            path: path.unwrap_or("/").to_owned(),
            from: a.record.name(),
            to: b.record.name(),
        })?;
    let at = |r: &crate::tree::objects::SnapshotRow| SnapshotRef {
        seq: r.record.seq,
        name: r.record.name(),
    };
    Ok(DiffReply {
        from: at(&a),
        to: at(&b),
        path: p.map(|p| String::from_utf8_lossy(&p).into_owned()),
        differences,
    })
}
