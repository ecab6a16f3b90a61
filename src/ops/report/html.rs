//! `strata report --html`: the report as one self-contained page a person
//! opens from disk: a summary, then a section per question (how much is
//! stored, what each night added, how the runs went, whether restores meet
//! their objectives, how far verification has read, which alerts fired),
//! each with its plot inline as SVG and its numbers in a table beneath.
//! No script, no font, nothing fetched: a content security policy forbids
//! the page to load anything.

use std::fmt::Write;

use jiff::tz::TimeZone;

pub use super::plot::Palette;
use super::plot::{self, AlertBar, DrillDot, PlotError};
use super::Report;
use crate::policy::throttle::rate::format_bytes;
use crate::tree::snapshot::drills::DrillResult;

/// The page for `r`, times shown in `zone`.
pub fn render(r: &Report, zone: &TimeZone) -> Result<String, PlotError> {
    let minute = |t: i64| local(t, zone, "%Y-%m-%d %H:%M");
    // Snapshots a day or more apart are told apart by their date.
    let span = r
        .snapshots
        .last()
        .zip(r.snapshots.first())
        .map_or(0, |(l, f)| l.time - f.time);
    let day = |t: i64| {
        local(
            t,
            zone,
            if span >= 3 * 86_400 {
                "%Y-%m-%d"
            } else {
                "%m-%d %H:%M"
            },
        )
    };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>strata report: repository {id}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>Backup report</h1><p>Repository <code>{id}</code>, made {made} \
         (times in {tz}).</p></header>\n",
        id = esc(&r.repository),
        made = minute(r.generated),
        tz = esc(zone.iana_name().unwrap_or("local time")),
    );
    summary(&mut page, r, &minute);
    storage(&mut page, r, &day)?;
    growth(&mut page, r, &day)?;
    runs(&mut page, r, &day)?;
    drills(&mut page, r, &minute)?;
    verify(&mut page, r, &minute)?;
    alerts(&mut page, r, &minute)?;
    page.push_str("</body>\n</html>\n");
    Ok(page)
}

const STYLE: &str = "body{font-family:sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;color:#222}\
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.2rem .6rem;border-bottom:1px solid #eee;text-align:right}\
td:first-child,th:first-child{text-align:left}.key{font-weight:bold}\
.sw{display:inline-block;width:.9rem;height:.9rem;margin:0 .3rem 0 1rem;vertical-align:middle}\
.bad{color:#b00;font-weight:bold}figure{margin:0}svg{max-width:100%;height:auto}";

fn summary(page: &mut String, r: &Report, minute: &dyn Fn(i64) -> String) {
    let logical: u64 = r.snapshots.iter().map(|s| s.logical_bytes).sum();
    let ratio = |a: u64, b: u64| {
        if b == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}", a as f64 / b as f64)
        }
    };
    let newest = r.snapshots.last();
    let passed = r
        .drills
        .iter()
        .filter(|d| d.result == DrillResult::Passed)
        .count();
    let rows = [
        ("Snapshots kept", r.snapshots.len().to_string()),
        (
            "Newest snapshot",
            newest.map_or("none yet".to_owned(), |s| match &s.label {
                Some(l) => format!("{} ({})", esc(&s.name), esc(l)),
                None => esc(&s.name),
            }),
        ),
        (
            "Newest holds",
            newest.map_or("-".to_owned(), |s| size(s.logical_bytes)),
        ),
        ("Stored (compressed, encrypted)", size(r.stored_bytes)),
        (
            "Deduplication (all snapshots / distinct chunks)",
            ratio(logical, r.chunk_bytes),
        ),
        (
            "Compression (chunks / stored)",
            ratio(r.chunk_bytes, r.stored_bytes),
        ),
        ("Drills passed", format!("{passed} of {}", r.drills.len())),
        (
            "Last drill",
            r.drills.last().map_or("none yet".to_owned(), |d| {
                format!(
                    "{}: {:.2} s, {}",
                    minute(d.time),
                    d.recovery_secs,
                    verdict(d.result)
                )
            }),
        ),
        (
            "Verify cycle read",
            format!("{:.0}%", r.verify_coverage * 100.0),
        ),
        (
            "Alerts outstanding",
            if r.alerts_outstanding.is_empty() {
                "none".to_owned()
            } else {
                format!(
                    "<span class=\"bad\">{}</span>",
                    esc(&r.alerts_outstanding.join(", "))
                )
            },
        ),
    ];
    page.push_str("<section id=\"summary\"><h2>Summary</h2><table>\n");
    for (k, v) in rows {
        let _ = writeln!(page, "<tr><td class=\"key\">{k}</td><td>{v}</td></tr>");
    }
    page.push_str("</table></section>\n");
}

fn storage(page: &mut String, r: &Report, day: &plot::Label<'_>) -> Result<(), PlotError> {
    open(
        page,
        "storage",
        "Storage over time",
        &[
            ("held by the snapshot", Palette::HELD),
            ("stored in all, to then", Palette::STORED),
        ],
    );
    if no_snapshots(page, r) {
        return Ok(());
    }
    let times: Vec<i64> = r.snapshots.iter().map(|s| s.time).collect();
    let held: Vec<u64> = r.snapshots.iter().map(|s| s.logical_bytes).collect();
    let stored: Vec<u64> = r
        .snapshots
        .iter()
        .scan(0, |sum, s| {
            *sum += s.new_stored_bytes;
            Some(*sum)
        })
        .collect();
    figure(page, plot::storage(&times, &held, &stored, day)?);
    table(
        page,
        &["snapshot", "files", "held", "stored to then"],
        r.snapshots.iter().zip(&stored).map(|(s, st)| {
            vec![
                esc(&s.name),
                s.files.to_string(),
                size(s.logical_bytes),
                size(*st),
            ]
        }),
    );
    close(page);
    Ok(())
}

fn growth(page: &mut String, r: &Report, day: &plot::Label<'_>) -> Result<(), PlotError> {
    open(
        page,
        "growth",
        "What each snapshot added",
        &[("new stored bytes", Palette::GROWTH)],
    );
    if no_snapshots(page, r) {
        return Ok(());
    }
    let times: Vec<i64> = r.snapshots.iter().map(|s| s.time).collect();
    let added: Vec<u64> = r.snapshots.iter().map(|s| s.new_stored_bytes).collect();
    figure(page, plot::growth(&times, &added, day)?);
    table(
        page,
        &["snapshot", "label", "added"],
        r.snapshots.iter().map(|s| {
            vec![
                esc(&s.name),
                esc(s.label.as_deref().unwrap_or("-")),
                size(s.new_stored_bytes),
            ]
        }),
    );
    close(page);
    Ok(())
}

fn runs(page: &mut String, r: &Report, day: &plot::Label<'_>) -> Result<(), PlotError> {
    open(
        page,
        "runs",
        "Backup runs and throttling",
        &[
            ("run time", Palette::RUN),
            ("held back by the throttle", Palette::HELD_BACK),
        ],
    );
    if no_snapshots(page, r) {
        return Ok(());
    }
    if r.snapshots.iter().all(|s| s.run_secs.is_none()) {
        page.push_str(
            "<p>No backup run recorded: these snapshots were taken by hand \
             (<code>strata backup</code> records its runs).</p>",
        );
        close(page);
        return Ok(());
    }
    let times: Vec<i64> = r.snapshots.iter().map(|s| s.time).collect();
    let secs: Vec<Option<f64>> = r
        .snapshots
        .iter()
        .map(|s| s.run_secs.map(|t| t as f64))
        .collect();
    let held: Vec<Option<f64>> = r
        .snapshots
        .iter()
        .map(|s| s.run_io.map(|io| io.delay_ms as f64 / 1000.0))
        .collect();
    figure(page, plot::runs(&times, &secs, &held, day)?);
    table(
        page,
        &[
            "snapshot",
            "run",
            "run time",
            "written",
            "held back",
            "limit",
        ],
        r.snapshots.iter().map(|s| {
            let io = s.run_io;
            vec![
                esc(&s.name),
                esc(s.run_status.as_deref().unwrap_or("no run")),
                s.run_secs.map_or("-".to_owned(), |t| format!("{t} s")),
                io.map_or("-".to_owned(), |io| size(io.written_bytes)),
                io.map_or("-".to_owned(), |io| {
                    format!(
                        "{:.1} s ({} requests)",
                        io.delay_ms as f64 / 1000.0,
                        io.delayed_requests
                    )
                }),
                io.and_then(|io| io.limit_bytes_per_sec)
                    .map_or("none".to_owned(), |b| format!("{}/s", size(b))),
            ]
        }),
    );
    close(page);
    Ok(())
}

fn drills(page: &mut String, r: &Report, minute: &plot::Label<'_>) -> Result<(), PlotError> {
    open(
        page,
        "drills",
        "Restore drills against their objectives",
        &[
            ("passed", Palette::PASSED),
            ("missed the objective", Palette::MISSED),
            ("failed", Palette::FAILED),
            ("objective", Palette::OBJECTIVE),
        ],
    );
    if r.drills.is_empty() {
        page.push_str("<p>No drill recorded yet: <code>strata drill</code> runs one.</p>");
        close(page);
        return Ok(());
    }
    let dots: Vec<DrillDot> = r
        .drills
        .iter()
        .map(|d| DrillDot {
            time: d.time,
            secs: d.recovery_secs,
            objective: d.rto_secs,
            color: match d.result {
                DrillResult::Passed => Palette::PASSED,
                DrillResult::MissedRto => Palette::MISSED,
                DrillResult::Failed => Palette::FAILED,
            },
        })
        .collect();
    figure(page, plot::drills(&dots, r.generated, &|t| minute(t))?);
    table(
        page,
        &[
            "drill",
            "name",
            "started",
            "recovery",
            "objective",
            "result",
        ],
        r.drills.iter().map(|d| {
            vec![
                d.number.to_string(),
                esc(d.name.as_deref().unwrap_or("(by hand)")),
                minute(d.time),
                format!("{:.2} s", d.recovery_secs),
                d.rto_secs.map_or("-".to_owned(), |o| format!("{o:.0} s")),
                verdict(d.result),
            ]
        }),
    );
    close(page);
    Ok(())
}

fn verify(page: &mut String, r: &Report, minute: &plot::Label<'_>) -> Result<(), PlotError> {
    open(
        page,
        "verify",
        "Verification",
        &[("read in this cycle", Palette::GROWTH)],
    );
    figure(page, plot::coverage(r.verify_coverage)?);
    let findings: Vec<_> = r
        .alerts
        .iter()
        .filter(|a| a.kind == crate::policy::alert::Kind::VerifyFailed)
        .collect();
    let when = |t: i64| if t > 0 { minute(t) } else { "never".to_owned() };
    let _ = write!(
        page,
        "<p>The verify cycle has read {:.0}% of the repository in this cycle; {} cycle(s) completed; last run {}.</p>",
        r.verify_coverage * 100.0,
        r.verify_cycles,
        when(r.verify_last_run),
    );
    if findings.is_empty() {
        page.push_str("<p>Findings: none remembered.</p>");
    } else {
        table(
            page,
            &["damage found", "runs that found it", "state"],
            findings.iter().map(|a| {
                vec![
                    minute(a.first_seen as i64),
                    a.count.to_string(),
                    ended(a, minute),
                ]
            }),
        );
    }
    close(page);
    Ok(())
}

fn alerts(page: &mut String, r: &Report, minute: &plot::Label<'_>) -> Result<(), PlotError> {
    open(
        page,
        "alerts",
        "Alert history",
        &[
            ("ended", Palette::ALERT_ENDED),
            ("outstanding", Palette::ALERT_OPEN),
        ],
    );
    if r.alerts.is_empty() {
        page.push_str("<p>No alert remembered on this host.</p>");
        close(page);
        return Ok(());
    }
    let mut rows: Vec<String> = r.alerts.iter().map(|a| a.kind.name().to_owned()).collect();
    rows.sort();
    rows.dedup();
    let bars: Vec<AlertBar> = r
        .alerts
        .iter()
        .map(|a| AlertBar {
            row: rows.iter().position(|k| k == a.kind.name()).unwrap_or(0),
            from: a.first_seen as i64,
            to: a.ended.map(|t| t as i64),
        })
        .collect();
    figure(
        page,
        plot::alerts(&rows, &bars, r.generated, &|t| minute(t))?,
    );
    table(
        page,
        &["alert", "class", "first", "last", "times", "state"],
        r.alerts.iter().map(|a| {
            vec![
                a.kind.name().to_owned(),
                a.class.to_string(),
                minute(a.first_seen as i64),
                minute(a.last_seen as i64),
                a.count.to_string(),
                ended(a, minute),
            ]
        }),
    );
    close(page);
    Ok(())
}

fn open(page: &mut String, id: &str, title: &str, legend: &[(&str, plotters::style::RGBColor)]) {
    let _ = write!(
        page,
        "<section id=\"{id}\"><h2>{title}</h2><p class=\"legend\">"
    );
    for (name, color) in legend {
        let _ = write!(
            page,
            "<span class=\"sw\" style=\"background:{}\"></span>{name}",
            Palette::css(*color)
        );
    }
    page.push_str("</p>\n");
}

fn close(page: &mut String) {
    page.push_str("</section>\n");
}

fn figure(page: &mut String, svg: String) {
    page.push_str("<figure>");
    page.push_str(&svg);
    page.push_str("</figure>\n");
}

fn no_snapshots(page: &mut String, r: &Report) -> bool {
    if r.snapshots.is_empty() {
        page.push_str("<p>No snapshot yet.</p>");
        close(page);
    }
    r.snapshots.is_empty()
}

/// A table of already escaped cells, inside a `<details>` so the plot
/// leads.
fn table(page: &mut String, head: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    page.push_str("<details><summary>The numbers</summary><table><tr>");
    for h in head {
        let _ = write!(page, "<th>{h}</th>");
    }
    page.push_str("</tr>\n");
    for row in rows {
        page.push_str("<tr>");
        for c in row {
            let _ = write!(page, "<td>{c}</td>");
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table></details>\n");
}

fn verdict(r: DrillResult) -> String {
    match r {
        DrillResult::Passed => "passed".to_owned(),
        other => format!("<span class=\"bad\">{}</span>", other.as_str()),
    }
}

fn ended(a: &crate::policy::alert::state::Span, minute: &plot::Label<'_>) -> String {
    match (a.ended, &a.how) {
        (Some(t), how) => format!(
            "{} {}",
            esc(how.as_deref().unwrap_or("ended")),
            minute(t as i64)
        ),
        (None, _) => "<span class=\"bad\">outstanding</span>".to_owned(),
    }
}

fn size(n: u64) -> String {
    format_bytes(n as f64)
}

/// `t` (seconds since the epoch) in `zone`, as `format` says.
fn local(t: i64, zone: &TimeZone, format: &str) -> String {
    jiff::Timestamp::from_second(t)
        .map(|ts| {
            ts.to_zoned_datetime(zone.clone())
                .strftime(format)
                .to_string()
        })
        .unwrap_or_else(|_| t.to_string())
}

/// `s` safe as HTML text or attribute value.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_repository_cannot_make_markup() {
        assert_eq!(esc("<b a='1'>&\""), "&lt;b a=&#39;1&#39;&gt;&amp;&quot;");
    }
}
