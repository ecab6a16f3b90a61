//! `strata report --html` in a real headless Chromium: the page loads from
//! disk with no console message, no failed or blocked load and no request
//! at all; a screenshot is taken; and each plot is there, drawn, with one
//! mark per data point where the data puts it.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::tier::{self, Tier};
use common::*;
use strata::daemon::control::run_drill;
use strata::ops::drill::{DrillContext, DrillSpec};
use strata::ops::report::{html, report};
use strata::policy::alert::{self, Alerter, Class, Event, Kind};
use strata::store::io::{Disk, LocalDisk};
use strata::tree::head::Head;
use strata::tree::namespace::{Access, Namespace};
use strata::tree::record::{RunIo, RunStatus};
use strata::tree::types::{Caller, InodeNo};

const ME: Caller = Caller::ROOT;

/// Records what the page holds and every error the browser meets, then
/// writes it as JSON into `#probe`, which --dump-dom prints. Set into the
/// test's copy only: the page itself has no script.
const PROBE_HEAD: &str = r#"<script>
window.__errors = [];
addEventListener("error", e => __errors.push("error: " + (e.message || (e.target && (e.target.src || e.target.href)) || e.type)), true);
addEventListener("securitypolicyviolation", e => __errors.push("blocked: " + e.blockedURI));
</script>"#;

const PROBE_BODY: &str = r##"<pre id="probe"></pre><script>
addEventListener("load", () => {
  const filled = (id, color) => [...document.querySelectorAll("#" + id + " svg [fill]")]
      .filter(e => e.getAttribute("fill").toUpperCase() === color && e.tagName !== "text");
  const out = { errors: __errors, resources: performance.getEntriesByType("resource").length, plots: {} };
  for (const s of document.querySelectorAll("section")) {
    const svg = s.querySelector("figure svg");
    if (!svg) continue;
    const box = svg.getBoundingClientRect();
    out.plots[s.id] = { width: box.width, height: box.height, texts: svg.querySelectorAll("text").length };
  }
  // Left to right, as a person reads the plot.
  const along = (es, x, v) => es.sort((a, b) => a.getAttribute(x) - b.getAttribute(x)).map(e => +e.getAttribute(v));
  const cy = es => along(es, "cx", "cy");
  const heights = es => along(es, "x", "height");
  out.held = cy(filled("storage", "HELD").filter(e => e.tagName === "circle"));
  out.stored = cy(filled("storage", "STORED").filter(e => e.tagName === "circle"));
  out.growth = heights(filled("growth", "GROWTH").filter(e => e.tagName === "rect"));
  out.runs = heights(filled("runs", "RUN").filter(e => e.tagName === "rect"));
  out.held_back = filled("runs", "HELD_BACK").filter(e => e.tagName === "circle").length;
  out.passed = filled("drills", "PASSED").filter(e => e.tagName === "circle").length;
  out.missed = filled("drills", "MISSED").filter(e => e.tagName === "circle").length;
  out.alerts_ended = filled("alerts", "ALERT_ENDED").filter(e => e.tagName === "rect").length;
  out.alerts_open = filled("alerts", "ALERT_OPEN").filter(e => e.tagName === "rect").length;
  out.coverage = filled("verify", "GROWTH").filter(e => e.tagName === "rect").map(e => +e.getAttribute("width"));
  document.getElementById("probe").textContent = JSON.stringify(out);
});
</script>"##;

#[test]
fn the_report_page_loads_clean_in_chromium_and_draws_every_point() {
    if tier::missing(&[Tier::Browser]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, rich_report(dir.path())).unwrap();

    let (probe, console) = load(&page, dir.path());
    assert_eq!(console, Vec::<String>::new(), "the browser's console");
    assert_eq!(probe["errors"], serde_json::json!([]), "{probe}");
    assert_eq!(probe["resources"], 0, "the page fetched something: {probe}");
    for id in ["storage", "growth", "runs", "drills", "verify", "alerts"] {
        let p = &probe["plots"][id];
        assert!(
            p["width"].as_f64().unwrap() > 300.0,
            "{id} is not drawn: {probe}"
        );
        assert!(
            p["height"].as_f64().unwrap() > 40.0,
            "{id} is not drawn: {probe}"
        );
        assert!(
            p["texts"].as_u64().unwrap() >= 2,
            "{id} has no axis labels: {probe}"
        );
    }
    let nums = |k: &str| -> Vec<f64> {
        probe[k]
            .as_array()
            .unwrap_or_else(|| panic!("{k}: {probe}"))
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    // Four snapshots, each holding more than the one before: the held
    // points climb (SVG's y grows downwards), as do the stored ones.
    let held = nums("held");
    assert_eq!(held.len(), 4, "{probe}");
    assert!(held.windows(2).all(|w| w[1] < w[0]), "{held:?}");
    let stored = nums("stored");
    assert_eq!(stored.len(), 4, "{probe}");
    assert!(stored.windows(2).all(|w| w[1] <= w[0]), "{stored:?}");
    // A bar per snapshot, the tallest for the night that added the most
    // (the first: 2 MB; the others add 300 kB, 600 kB and nearly nothing).
    let growth = nums("growth");
    assert_eq!(growth.len(), 4, "{probe}");
    assert!(
        growth[0] > growth[2] && growth[2] > growth[1] && growth[1] > growth[3],
        "{growth:?}"
    );
    // Runs: the three snapshots a run took, 60, 120 and 240 s.
    let runs = nums("runs");
    assert_eq!(runs.len(), 3, "{probe}");
    assert!((runs[2] / runs[0] - 4.0).abs() < 0.1, "{runs:?}");
    assert!((runs[1] / runs[0] - 2.0).abs() < 0.1, "{runs:?}");
    assert_eq!(probe["held_back"], 3, "{probe}");
    // Drills: one passed, one missed its objective.
    assert_eq!(
        (probe["passed"].as_u64(), probe["missed"].as_u64()),
        (Some(1), Some(1)),
        "{probe}"
    );
    // Alerts: one resolved, one outstanding.
    assert_eq!(
        (
            probe["alerts_ended"].as_u64(),
            probe["alerts_open"].as_u64()
        ),
        (Some(1), Some(1)),
        "{probe}"
    );
    // The verify cycle has read nothing yet: its bar is empty.
    assert_eq!(nums("coverage"), [0.0], "{probe}");

    // And the page as a person sees it.
    let shot = dir.path().join("report.png");
    browse(
        dir.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,3600",
        ],
        &page,
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "a blank screenshot? {} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("STRATA_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

#[test]
fn the_probe_sees_a_page_that_reaches_out() {
    if tier::missing(&[Tier::Browser]) {
        return;
    }
    // The checks above could not fail if the probe saw nothing: a page
    // with a remote image and a console message must be caught.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let text = rich_report(dir.path()).replace(
        "</body>",
        "<img src=\"https://example.org/logo.png\"><svg><script>console.log('hi')</script></svg></body>",
    );
    std::fs::write(&page, text).unwrap();
    let (probe, console) = load(&page, dir.path());
    let errors = probe["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("example.org")),
        "{probe}"
    );
    assert!(console.iter().any(|l| l.contains("hi")), "{console:?}");
}

/// A repository with four snapshots (three taken by runs, with what the
/// throttle held back), two drills and two alerts, as its HTML page.
fn rich_report(dir: &Path) -> String {
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(dir.join("repo")));
    std::fs::create_dir(dir.join("repo")).unwrap();
    init_encrypted(disk.clone());
    let ns = Namespace::new(Head::new(open(disk)).unwrap(), Access::default()).unwrap();
    let h = ns.head();
    let write = |name: &str, data: &[u8]| {
        let f = h.create(ME, InodeNo::ROOT, &n(name), 0o644, 0).unwrap().ino;
        h.write(ME, f, 0, data).unwrap();
    };
    write("base", &bytes(1, 2_000_000));
    ns.snapshot(ME, Some("first")).unwrap();
    let now = UNIX_EPOCH.elapsed().unwrap().as_secs() as i64;
    for (i, (size, secs)) in [(300_000, 60), (600_000, 120), (0, 240)]
        .into_iter()
        .enumerate()
    {
        if size > 0 {
            write(&format!("night-{i}"), &bytes(10 + i as u64, size));
        } else {
            // A copy of what is stored: the snapshot holds more, adds ~nothing.
            write("base-copy", &bytes(1, 2_000_000));
        }
        let mut run = run_record(RunStatus::Complete, 1);
        run.started = now - secs;
        run.io = Some(RunIo {
            written_bytes: size as u64,
            delayed_requests: 3,
            delay_ms: 9_000,
            limit_bytes_per_sec: Some(50 << 20),
        });
        ns.snapshot_run(ME, Some("nightly"), Some(&run)).unwrap();
    }
    for rto in [3600.0, 1e-6] {
        let spec = DrillSpec {
            snapshot: "latest".into(),
            path: "/".into(),
            to: None,
            readers: 2,
            rto_secs: Some(rto),
            name: Some("nightly-restore".into()),
            deferred: false,
        };
        run_drill(&ns, ME, &spec, None, DrillContext::default()).unwrap();
    }
    let state = dir.join("alerts.json");
    let alerter = Alerter::new(
        Vec::new(),
        Duration::from_secs(3600),
        Duration::from_secs(7 * 86_400),
        state.clone(),
    );
    let t = |ago: i64| UNIX_EPOCH + Duration::from_secs((now - ago) as u64);
    alerter.raise_at(
        Event::new(Kind::RunFailed, Class::Copy, t(86_400)),
        t(86_400),
    );
    alerter.resolve(Kind::RunFailed, None).unwrap();
    alerter.raise_at(
        Event::new(Kind::StorageFull, Class::Capacity, t(3_600)),
        t(3_600),
    );

    let mut r = report(h).unwrap();
    // The alert state is this host's, found by repository id; the test's
    // own stands in for it.
    r.alerts = alert::state::history(&state);
    r.alerts_outstanding = vec!["storage_full".into()];
    let page = html::render(&r, &jiff::tz::TimeZone::UTC).unwrap();
    let palette = [
        ("HELD_BACK", html::Palette::HELD_BACK),
        ("HELD", html::Palette::HELD),
        ("STORED", html::Palette::STORED),
        ("GROWTH", html::Palette::GROWTH),
        ("RUN", html::Palette::RUN),
        ("PASSED", html::Palette::PASSED),
        ("MISSED", html::Palette::MISSED),
        ("ALERT_ENDED", html::Palette::ALERT_ENDED),
        ("ALERT_OPEN", html::Palette::ALERT_OPEN),
    ];
    // The probe, with the palette's colours filled in; the policy lets
    // inline scripts run in this copy only.
    let mut body = PROBE_BODY.to_owned();
    for (name, color) in palette {
        body = body.replace(
            &format!("\"{name}\""),
            &format!("\"{}\"", html::Palette::css(color)),
        );
    }
    page.replace(
        "default-src 'none';",
        "default-src 'none'; script-src 'unsafe-inline';",
    )
    .replace("</head>", &format!("{PROBE_HEAD}</head>"))
    .replace("</body>", &format!("{body}</body>"))
}

/// Chromium, headless, as root can run it, with its profile in `dir`.
fn chromium(dir: &Path) -> Command {
    let mut c = Command::new("chromium");
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--enable-logging=stderr",
        "--log-level=0",
    ])
    .arg(format!("--user-data-dir={}", dir.join("profile").display()))
    .env("HOME", dir);
    c
}

/// Chromium with `args` on `page`, which must succeed.
fn browse(dir: &Path, args: &[&str], page: &Path) -> std::process::Output {
    let out = chromium(dir)
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Loads `page`; returns what the probe found and the console lines the
/// browser logged.
fn load(page: &Path, dir: &Path) -> (serde_json::Value, Vec<String>) {
    let out = browse(dir, &["--dump-dom"], page);
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom.find("<pre id=\"probe\">").expect("the probe ran") + "<pre id=\"probe\">".len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let json = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    let probe = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    (probe, console)
}
