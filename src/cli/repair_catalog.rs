//! `strata repair catalog`: one request, served by the daemon or on the
//! opened repository.

use anyhow::Result;
use strata::daemon::control::{Reply, Request};

use super::args::Global;
use super::{print, request};

pub fn run(g: &Global) -> Result<()> {
    let Reply::CatalogRebuilt(cost) = request(g, &Request::RepairCatalog)? else {
        anyhow::bail!("the daemon answered repair catalog with something else");
    };
    print(g, &cost, || {
        format!(
            "catalog rebuilt: {} snapshots taken in, {} directory records written",
            cost.snapshots, cost.records
        )
    });
    Ok(())
}
