//! `strata tier show`: where files of head/ go now, and why, as the daemon
//! (or, unmounted, this process with the host configuration) places them.

use std::sync::Arc;

use anyhow::Result;
use strata::daemon::control::{self, Reply, Request};
use strata::daemon::tier::Shown;
use strata::policy::hostconfig::HostConfig;

use super::args::{Global, TierShowArgs};
use super::{print, request_or};

pub fn run(g: &Global, a: &TierShowArgs) -> Result<()> {
    let req = Request::TierShow {
        paths: a.paths.clone(),
    };
    let reply = request_or(g, &req, |ns, caller| {
        // No daemon: this process classifies by the host configuration.
        if let Some(classifier) = HostConfig::load_or_default(a.config.as_deref())?.classifier()? {
            ns.head().set_classifier(Some(Arc::new(classifier)));
        }
        Ok(control::handle(ns, caller, &req)?)
    })?;
    let Reply::Tiers(shown) = reply else {
        anyhow::bail!("the daemon answered tier show with something else");
    };
    print(g, &shown, || {
        shown.iter().map(line).collect::<Vec<_>>().join("\n")
    });
    Ok(())
}

/// "PATH  TIER  (rule N: type pdf, patterns us-ssn)".
fn line(s: &Shown) -> String {
    let mut why = vec![match s.rule {
        Some(n) => format!("rule {n}"),
        None => "default".to_owned(),
    }];
    if !s.read {
        why.push("not read: written before tiers were configured".to_owned());
    }
    if !s.types.is_empty() {
        why.push(format!("type {}", s.types.join(" ")));
    }
    if !s.patterns.is_empty() {
        why.push(format!("patterns {}", s.patterns.join(" ")));
    }
    format!("{}  {}  ({})", s.path, s.tier, why.join("; "))
}
