//! Metrics in the Prometheus text format, read by the reference parser
//! (the Python client's): scraped from the daemon's loopback /metrics
//! listener, written for node_exporter's textfile collector, and printed
//! unmounted; a listener on a non-loopback address is refused.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use crate::common::tier::{self, Tier};
use crate::harness::{fails, ok, run, Mount};

/// The families `text` holds, by name, as the reference parser reads
/// them: (type, [(sample name, labels, value)]).
fn parse(text: &str) -> serde_json::Value {
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = {f.name: [f.type, [[s.name, s.labels, s.value] for s in f.samples]]\n\
               for f in text_string_to_metric_families(sys.stdin.read())}\n\
        print(json.dumps(out))";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The one value of family `name`, or of its sample with `label`.
fn value(m: &serde_json::Value, name: &str, label: Option<(&str, &str)>) -> f64 {
    let samples = m[name][1]
        .as_array()
        .unwrap_or_else(|| panic!("no family {name}: {m}"));
    samples
        .iter()
        .find(|s| label.is_none_or(|(k, v)| s[1][k] == v))
        .unwrap_or_else(|| panic!("no sample {label:?} in {name}: {m}"))[2]
        .as_f64()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

#[test]
fn metrics_are_scraped_written_and_printed_in_the_exposition_format() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    // Small packs, so that some are finished for the verify cycle.
    let m = Mount::unmounted_with(&["--pack-size", "1MiB"]);
    let port = free_port();
    let config = m.path("strata.toml");
    std::fs::write(
        &config,
        format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    m.mount_with(&["--config", config.to_str().unwrap()]);
    std::fs::write(m.head().join("chart"), crate::common::bytes(3, 3 << 20)).unwrap();
    m.snapshot("nightly");
    ok(m.strata()
        .args(["drill", "nightly", "--discard", "--rto", "1h"]));

    let (head, body) = scrape(port, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let scraped = parse(&body);
    assert_eq!(value(&scraped, "strata_snapshots", None), 1.0);
    let age = value(&scraped, "strata_newest_good_snapshot_age_seconds", None);
    assert!((0.0..600.0).contains(&age), "{age}");
    assert!(value(&scraped, "strata_snapshots_logical_bytes", None) >= (3 << 20) as f64);
    assert!(value(&scraped, "strata_repository_stored_bytes", None) > 0.0);
    assert_eq!(
        value(&scraped, "strata_drill_success", Some(("drill", ""))),
        1.0
    );
    assert_eq!(
        value(&scraped, "strata_drill_rto_seconds", Some(("drill", ""))),
        3600.0
    );
    // Counters: the parser names the family without _total.
    assert_eq!(scraped["strata_fuse_requests"][0], "counter");
    assert!(value(&scraped, "strata_fuse_requests", Some(("opcode", "write"))) > 0.0);
    assert!(scraped
        .get("strata_throttle_achieved_bytes_per_second")
        .is_some());
    assert!(!body.contains("chart"), "no path in the metrics");
    let (head, _) = scrape(port, "/other");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // The report, from the daemon.
    let report: serde_json::Value =
        serde_json::from_str(&ok(m.strata().args(["report", "--json"]))).unwrap();
    assert_eq!(report["snapshots"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["snapshots"][0]["logical_bytes"], 3 << 20);
    assert_eq!(report["drills"][0]["result"], "passed");

    // For node_exporter's textfile collector: written whole.
    let dir = m.path("textfile");
    std::fs::create_dir(&dir).unwrap();
    ok(m.strata().args(["metrics", "--textfile"]).arg(&dir));
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("strata_") && name.ends_with(".prom"),
        "{name}"
    );
    let written = parse(&std::fs::read_to_string(&files[0]).unwrap());
    assert_eq!(value(&written, "strata_snapshots", None), 1.0);
    fails(
        &run(m
            .strata()
            .args(["metrics", "--textfile"])
            .arg(m.path("no-such-dir"))),
        1,
        "must exist and be writable",
    );

    // Unmounted: what the repository says, without the daemon's series.
    m.umount();
    let printed = parse(&ok(m.strata().arg("metrics")));
    assert_eq!(value(&printed, "strata_snapshots", None), 1.0);
    assert!(printed.get("strata_fuse_requests").is_none());
    // A verify cycle run that reads everything left completes it.
    assert_eq!(value(&printed, "strata_verify_coverage_ratio", None), 0.0);
    std::fs::write(&config, "[verify]\ncycle = \"1s\"\n").unwrap();
    ok(m.strata()
        .args(["check", "--cycle", "--config"])
        .arg(&config));
    let cycled = parse(&ok(m.strata().arg("metrics")));
    assert_eq!(value(&cycled, "strata_verify_coverage_ratio", None), 1.0);
    assert_eq!(value(&cycled, "strata_verify_cycles", None), 1.0);

    // A listener other hosts could reach is refused before mounting.
    std::fs::write(&config, "[metrics]\nlisten = \"0.0.0.0:9\"\n").unwrap();
    let out = run(m
        .strata()
        .arg("mount")
        .arg(m.mnt())
        .args(["--config", config.to_str().unwrap()]));
    fails(&out, 15, "not a loopback address");
}
