//! Metrics of a repository in the Prometheus text exposition format
//! (version 0.0.4): written for node_exporter's textfile collector by
//! `strata metrics --textfile DIR`, and served on the daemon's optional
//! loopback `/metrics` listener.
//!
//! Names follow Prometheus's conventions: the `strata_` prefix, base units
//! (`_seconds`, `_bytes`), `_total` for counters, `_timestamp_seconds` for
//! times. Labels carry opcodes, drill names and alert kinds; never a path.
//! The text is written here rather than through a client library: it is
//! a snapshot of state computed on each scrape, not instrumentation, and
//! the format is a few lines (the tests parse it with the Python client's
//! parser, the reference implementation).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use crate::policy::alert;
use crate::policy::throttle::ThrottleStatus;
use crate::store::repo::RepoError;
use crate::tree::head::Head;
use crate::tree::namespace::may_be_latest;
use crate::tree::objects::Tree;
use crate::tree::snapshot::drills::DrillResult;
use crate::tree::snapshot::Snapshots;
use crate::tree::types::{FileKind, FsError, Timestamp};

/// What only a running daemon knows.
#[derive(Default)]
pub struct DaemonState {
    /// The write throttle.
    pub throttle: Option<ThrottleStatus>,
    /// FUSE requests served: count and microseconds per opcode.
    pub requests: BTreeMap<String, (u64, u64)>,
}

/// Metric families, in the order they are written.
#[derive(Default)]
pub struct Metrics {
    families: Vec<Family>,
}

struct Family {
    name: &'static str,
    help: &'static str,
    counter: bool,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Metrics {
    fn gauge(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.labelled(name, help, false, vec![(Vec::new(), value)]);
    }

    fn labelled(
        &mut self,
        name: &'static str,
        help: &'static str,
        counter: bool,
        samples: Vec<(Vec<(&'static str, String)>, f64)>,
    ) {
        self.families.push(Family {
            name,
            help,
            counter,
            samples,
        });
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let kind = if f.counter { "counter" } else { "gauge" };
            let _ = writeln!(out, "# TYPE {} {kind}", f.name);
            for (labels, value) in &f.samples {
                out.push_str(f.name);
                if !labels.is_empty() {
                    let pairs: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                        .collect();
                    let _ = write!(out, "{{{}}}", pairs.join(","));
                }
                let _ = writeln!(out, " {}", number(*value));
            }
        }
        out
    }
}

/// A label value escaped as the format asks: backslash, quote, newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// Why metrics could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The snapshots or trees could not be read.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The store could not be read.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// The metrics of `head`'s repository, with what the daemon adds.
pub fn gather(head: &Head, daemon: &DaemonState) -> Result<Metrics, MetricsError> {
    let mut m = Metrics::default();
    let snapshots = Snapshots::of(head);
    let rows = snapshots.list()?;
    let runs = snapshots.runs()?;
    let now = Timestamp::now().secs as f64;
    m.gauge("strata_snapshots", "Snapshots kept.", rows.len() as f64);
    let newest = rows
        .iter()
        .rev()
        .find(|r| may_be_latest(runs.get(&r.record.seq)));
    if let Some(n) = newest {
        let t = n.record.time.secs as f64;
        m.gauge(
            "strata_newest_good_snapshot_timestamp_seconds",
            "When the newest snapshot `latest` may name was taken.",
            t,
        );
        m.gauge(
            "strata_newest_good_snapshot_age_seconds",
            "Age of the newest snapshot `latest` may name.",
            (now - t).max(0.0),
        );
    }

    // Bytes: what the snapshots hold (each distinct tree summed once) and
    // what the repository stores for it.
    let stats = crate::store::stats::stats(head.repo())?;
    let mut sums: HashMap<[u8; 32], u64> = HashMap::new();
    let mut logical = 0u64;
    for r in &rows {
        if let Some(root) = r.record.root.subtree {
            logical += tree_bytes(head, root, &mut sums)?;
        }
    }
    m.gauge(
        "strata_snapshots_logical_bytes",
        "Bytes of file content all kept snapshots hold, summed over snapshots.",
        logical as f64,
    );
    m.gauge(
        "strata_repository_chunk_bytes",
        "Bytes of the distinct chunks stored, before compression.",
        stats.chunk_bytes as f64,
    );
    m.gauge(
        "strata_repository_stored_bytes",
        "Bytes the distinct chunks take as stored (compressed, encrypted).",
        stats.stored_bytes as f64,
    );
    m.gauge(
        "strata_repository_pack_file_bytes",
        "Bytes of all pack files on disk.",
        stats.pack_file_bytes as f64,
    );
    m.gauge(
        "strata_dedup_ratio",
        "Logical bytes of all snapshots over the distinct chunk bytes stored.",
        if stats.chunk_bytes > 0 {
            logical as f64 / stats.chunk_bytes as f64
        } else {
            1.0
        },
    );

    // The last backup run that took a snapshot.
    if let Some((seq, run)) = runs.iter().next_back() {
        if let Some(row) = rows.iter().find(|r| r.record.seq == *seq) {
            m.gauge(
                "strata_last_run_success",
                "1 if the last backup run completed or validated, else 0.",
                f64::from(u8::from(matches!(
                    run.status,
                    crate::tree::record::RunStatus::Complete
                        | crate::tree::record::RunStatus::Validated
                ))),
            );
            m.gauge(
                "strata_last_run_timestamp_seconds",
                "When the last backup run started.",
                run.started as f64,
            );
            m.gauge(
                "strata_last_run_duration_seconds",
                "How long the last backup run took until its snapshot.",
                (row.record.time.secs - run.started).max(0) as f64,
            );
        }
    }

    // The last drill of each name ("" for drills run by hand).
    let mut last: BTreeMap<String, _> = BTreeMap::new();
    for d in snapshots.drills()? {
        last.insert(d.name.clone().unwrap_or_default(), d);
    }
    let per = |f: &dyn Fn(&crate::tree::snapshot::drills::DrillRecord) -> Option<f64>| {
        last.iter()
            .filter_map(|(name, d)| f(d).map(|v| (vec![("drill", name.clone())], v)))
            .collect::<Vec<_>>()
    };
    m.labelled(
        "strata_drill_recovery_seconds",
        "The last drill's recovery time: the restore, and the service ready.",
        false,
        per(&|d| Some(d.recovery_secs())),
    );
    m.labelled(
        "strata_drill_rto_seconds",
        "The last drill's recovery-time objective.",
        false,
        per(&|d| d.rto_secs),
    );
    m.labelled(
        "strata_drill_success",
        "1 if the last drill passed, 0 if it missed its objective or failed.",
        false,
        per(&|d| Some(f64::from(u8::from(d.result == DrillResult::Passed)))),
    );
    m.labelled(
        "strata_drill_timestamp_seconds",
        "When the last drill started.",
        false,
        per(&|d| Some(d.started.secs as f64)),
    );

    // The verify cycle.
    let scrub = snapshots.scrub()?;
    m.gauge(
        "strata_verify_last_run_timestamp_seconds",
        "When the verify cycle last ran (0: never).",
        scrub.last_run as f64,
    );
    m.labelled(
        "strata_verify_cycles_total",
        "Verify cycles completed: every finished pack read.",
        true,
        vec![(Vec::new(), scrub.cycles as f64)],
    );
    m.gauge(
        "strata_verify_last_cycle_timestamp_seconds",
        "When the last verify cycle completed (0: never).",
        scrub.last_completed as f64,
    );
    m.gauge(
        "strata_verify_coverage_ratio",
        "Share of the finished packs the verify cycle has read (1: the last cycle completed and no other began).",
        coverage(head, &scrub),
    );

    // Alerts outstanding, by kind.
    let mut firing: BTreeMap<&'static str, u64> = BTreeMap::new();
    for kind in outstanding(head) {
        *firing.entry(kind.name()).or_default() += 1;
    }
    m.labelled(
        "strata_alerts_firing",
        "Alerts outstanding (raised, not yet resolved), by kind.",
        false,
        firing
            .into_iter()
            .map(|(k, n)| (vec![("kind", k.to_owned())], n as f64))
            .collect(),
    );

    // What only the daemon knows.
    if let Some(t) = &daemon.throttle {
        if let Some(limit) = t.effective.bytes {
            m.gauge(
                "strata_throttle_limit_bytes_per_second",
                "The write throttle's limit in force.",
                limit.0 as f64,
            );
        }
        m.gauge(
            "strata_throttle_achieved_bytes_per_second",
            "Bytes per second written into head/ recently.",
            t.achieved_bytes_per_sec,
        );
    }
    if !daemon.requests.is_empty() {
        m.labelled(
            "strata_fuse_requests_total",
            "FUSE requests served, by opcode.",
            true,
            daemon
                .requests
                .iter()
                .map(|(op, (n, _))| (vec![("opcode", op.clone())], *n as f64))
                .collect(),
        );
        m.labelled(
            "strata_fuse_request_seconds_total",
            "Time spent serving FUSE requests, by opcode.",
            true,
            daemon
                .requests
                .iter()
                .map(|(op, (_, us))| (vec![("opcode", op.clone())], *us as f64 / 1e6))
                .collect(),
        );
    }
    Ok(m)
}

/// Share of `head`'s finished packs the verify cycle in `scrub` has read
/// (1 when there are none to read).
pub(crate) fn coverage(head: &Head, scrub: &crate::tree::snapshot::scrub::Scrub) -> f64 {
    let packs = crate::ops::check::finished_packs(head);
    if packs.is_empty() {
        1.0
    } else {
        scrub.covered(&packs) as f64 / packs.len() as f64
    }
}

/// The kinds of the alerts outstanding for `head`'s repository.
pub(crate) fn outstanding(head: &Head) -> Vec<alert::Kind> {
    head.repo()
        .config()
        .id
        .parse()
        .map(|id| alert::state::outstanding(&alert::state_path(&id)))
        .unwrap_or_default()
}

/// Bytes of file content below tree `id`, each distinct tree summed once.
fn tree_bytes(
    head: &Head,
    id: [u8; 32],
    sums: &mut HashMap<[u8; 32], u64>,
) -> Result<u64, FsError> {
    if let Some(&n) = sums.get(&id) {
        return Ok(n);
    }
    let mut total = 0;
    for e in Tree::load(head.repo().store(), &id)?.entries {
        if e.meta.kind == FileKind::File {
            total += e.meta.size;
        }
        if let Some(sub) = e.subtree {
            total += tree_bytes(head, sub, sums)?;
        }
    }
    sums.insert(id, total);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_escapes_labels_and_types_families() {
        let mut m = Metrics::default();
        m.gauge("strata_x_bytes", "A gauge.", 1.5);
        m.labelled(
            "strata_y_total",
            "A counter.",
            true,
            vec![(vec![("drill", "a\"b\\c\nd".to_owned())], 3.0)],
        );
        m.gauge("strata_z", "Not a number.", f64::NAN);
        assert_eq!(
            m.render(),
            "# HELP strata_x_bytes A gauge.\n# TYPE strata_x_bytes gauge\nstrata_x_bytes 1.5\n\
             # HELP strata_y_total A counter.\n# TYPE strata_y_total counter\nstrata_y_total{drill=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP strata_z Not a number.\n# TYPE strata_z gauge\nstrata_z NaN\n"
        );
    }
}
