//! The report's plots: SVG drawn with plotters, one function per plot, each
//! returning the `<svg>` element to put inline in the page. Text is left to
//! the browser (no font is embedded or measured); colours come from
//! [`Palette`], so the page's legends and the plots agree.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::policy::throttle::rate::format_bytes;

/// A plot that could not be drawn (plotters' layout refused it).
#[derive(Debug, thiserror::Error)]
#[error("the {plot} plot could not be drawn: {message}")]
pub struct PlotError {
    /// Which plot.
    pub plot: &'static str,
    /// Why, as plotters says it.
    pub message: String,
}

/// Every colour a plot uses, as `#rrggbb` for the page's legends.
pub struct Palette;

impl Palette {
    /// Bytes a snapshot holds.
    pub const HELD: RGBColor = RGBColor(0x4c, 0x78, 0xa8);
    /// Bytes stored, cumulative.
    pub const STORED: RGBColor = RGBColor(0xf5, 0x85, 0x18);
    /// Bytes a snapshot added; the verify cycle's share read.
    pub const GROWTH: RGBColor = RGBColor(0x54, 0xa2, 0x4b);
    /// A run's duration.
    pub const RUN: RGBColor = RGBColor(0x72, 0xb7, 0xb2);
    /// Seconds the throttle held a run's writers back.
    pub const HELD_BACK: RGBColor = RGBColor(0xb2, 0x79, 0xa2);
    /// A drill that passed.
    pub const PASSED: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
    /// A drill that missed its objective.
    pub const MISSED: RGBColor = RGBColor(0xff, 0x9d, 0x00);
    /// A drill that failed.
    pub const FAILED: RGBColor = RGBColor(0xd6, 0x27, 0x28);
    /// A drill's objective.
    pub const OBJECTIVE: RGBColor = RGBColor(0x33, 0x33, 0x33);
    /// An alert that ended.
    pub const ALERT_ENDED: RGBColor = RGBColor(0x9d, 0x9d, 0x9d);
    /// An alert outstanding.
    pub const ALERT_OPEN: RGBColor = RGBColor(0xe4, 0x57, 0x56);

    /// `c` as CSS writes it (and plotters' SVG too).
    pub fn css(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }
}

const WIDTH: u32 = 880;
const HEIGHT: u32 = 300;
const FONT: (&str, u32) = ("sans-serif", 13);

/// One point in time (seconds since the epoch) as the axes label it.
pub type Label<'a> = dyn Fn(i64) -> String + 'a;

/// Lines of bytes held and bytes stored (cumulative) per snapshot, `x`
/// labelled by `label`.
pub fn storage(
    times: &[i64],
    held: &[u64],
    stored: &[u64],
    label: &Label<'_>,
) -> Result<String, PlotError> {
    let top = held.iter().chain(stored).copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    draw("storage", |root| {
        let mut chart = slot_chart(&root, times, top, label, &|y| format_bytes(*y))?;
        for (values, color) in [(held, Palette::HELD), (stored, Palette::STORED)] {
            let points: Vec<_> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (SegmentValue::CenterOf(i as i32), *v as f64))
                .collect();
            chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )?;
        }
        Ok(())
    })
}

/// Bars of the bytes each snapshot added to the store.
pub fn growth(times: &[i64], added: &[u64], label: &Label<'_>) -> Result<String, PlotError> {
    let top = added.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    draw("growth", |root| {
        let mut chart = slot_chart(&root, times, top, label, &|y| format_bytes(*y))?;
        chart.draw_series(
            Histogram::vertical(&chart)
                .style(Palette::GROWTH.filled())
                .margin(3)
                .data(added.iter().enumerate().map(|(i, b)| (i as i32, *b as f64))),
        )?;
        Ok(())
    })
}

/// Bars of each run's duration in seconds, and a point for the seconds the
/// write throttle held its writers back (summed over the writers).
pub fn runs(
    times: &[i64],
    secs: &[Option<f64>],
    held_back: &[Option<f64>],
    label: &Label<'_>,
) -> Result<String, PlotError> {
    let top = secs
        .iter()
        .chain(held_back)
        .flatten()
        .copied()
        .fold(1.0, f64::max)
        * 1.1;
    draw("runs", |root| {
        let mut chart = slot_chart(&root, times, top, label, &|y| seconds(*y))?;
        chart.draw_series(
            Histogram::vertical(&chart)
                .style(Palette::RUN.filled())
                .margin(3)
                .data(
                    secs.iter()
                        .enumerate()
                        .filter_map(|(i, s)| Some((i as i32, (*s)?))),
                ),
        )?;
        chart.draw_series(held_back.iter().enumerate().filter_map(|(i, s)| {
            Some(Circle::new(
                (SegmentValue::CenterOf(i as i32), (*s)?),
                4,
                Palette::HELD_BACK.filled(),
            ))
        }))?;
        Ok(())
    })
}

/// One drill: when, its recovery time, its objective, how it ended.
pub struct DrillDot {
    /// When it started.
    pub time: i64,
    /// Its recovery time, seconds.
    pub secs: f64,
    /// Its objective, seconds.
    pub objective: Option<f64>,
    /// Its verdict's colour.
    pub color: RGBColor,
}

/// A point per drill at its recovery time, coloured by its verdict, and a
/// dash at its objective.
pub fn drills(dots: &[DrillDot], now: i64, label: &Label<'_>) -> Result<String, PlotError> {
    // Seconds to hours on one axis: a log scale keeps a drill of seconds
    // visible under an objective of hours.
    let values = || {
        dots.iter()
            .flat_map(|d| [Some(d.secs), d.objective])
            .flatten()
    };
    let top = values().fold(1.0, f64::max) * 2.0;
    let bottom = values().fold(top, f64::min).max(1e-3) / 2.0;
    let (x0, x1) = time_range(dots.iter().map(|d| d.time), now);
    let dash = (x1 - x0) / 80;
    draw("drills", |root| {
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, (bottom..top).log_scale())?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|t| label(*t))
            .y_label_formatter(&|y| seconds(*y))
            .label_style(FONT)
            .draw()?;
        chart.draw_series(dots.iter().filter_map(|d| {
            let o = d.objective?;
            Some(PathElement::new(
                vec![(d.time - dash, o), (d.time + dash, o)],
                Palette::OBJECTIVE.stroke_width(3),
            ))
        }))?;
        chart.draw_series(
            dots.iter()
                .map(|d| Circle::new((d.time, d.secs), 5, d.color.filled())),
        )?;
        Ok(())
    })
}

/// One alert's span on the timeline.
pub struct AlertBar {
    /// Its kind's row.
    pub row: usize,
    /// Its first occurrence.
    pub from: i64,
    /// Its end, if it ended.
    pub to: Option<i64>,
}

/// A row per alert kind (`rows` names them), a bar per alert from its
/// first occurrence to its end (to `now` while outstanding).
pub fn alerts(
    rows: &[String],
    bars: &[AlertBar],
    now: i64,
    label: &Label<'_>,
) -> Result<String, PlotError> {
    let (x0, x1) = time_range(bars.iter().flat_map(|b| [b.from, b.to.unwrap_or(now)]), now);
    // A bar stays visible however short the alert was.
    let least = (x1 - x0) / 200;
    let height = 60 + 34 * rows.len() as u32;
    draw_sized("alerts", height, |root| {
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(130)
            .build_cartesian_2d(x0..x1, slots(rows.len()))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(8)
            .y_labels(rows.len())
            .x_label_formatter(&|t| label(*t))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => rows.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .label_style(FONT)
            .draw()?;
        chart.draw_series(bars.iter().map(|b| {
            let to = b.to.unwrap_or(now).max(b.from + least);
            let color = if b.to.is_some() {
                Palette::ALERT_ENDED
            } else {
                Palette::ALERT_OPEN
            };
            let row = b.row as i32;
            Rectangle::new(
                [
                    (b.from, SegmentValue::Exact(row)),
                    (to, SegmentValue::Exact(row + 1)),
                ],
                color.filled(),
            )
        }))?;
        Ok(())
    })
}

/// A horizontal bar of how much of the repository the verify cycle has read.
pub fn coverage(share: f64) -> Result<String, PlotError> {
    draw_sized("verify coverage", 70, |root| {
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(24)
            .y_label_area_size(10)
            .build_cartesian_2d(0f64..100f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .disable_y_axis()
            .disable_mesh()
            .x_labels(11)
            .x_label_formatter(&|p| format!("{p:.0}%"))
            .label_style(FONT)
            .draw()?;
        chart.draw_series([Rectangle::new(
            [(0.0, 0.15), (share.clamp(0.0, 1.0) * 100.0, 0.85)],
            Palette::GROWTH.filled(),
        )])?;
        Ok(())
    })
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error + 'static>>;

fn draw(plot: &'static str, f: impl FnOnce(Area<'_>) -> DrawResult) -> Result<String, PlotError> {
    draw_sized(plot, HEIGHT, f)
}

fn draw_sized(
    plot: &'static str,
    height: u32,
    f: impl FnOnce(Area<'_>) -> DrawResult,
) -> Result<String, PlotError> {
    let mut svg = String::new();
    let err = |e: &dyn std::fmt::Display| PlotError {
        plot,
        message: e.to_string(),
    };
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        f(root.clone()).map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// A chart of a slot per snapshot (labelled with its time by `label`)
/// up to `top`, its values labelled by `value`, axes drawn.
fn slot_chart<'a, 'b>(
    root: &'a Area<'b>,
    times: &[i64],
    top: f64,
    label: &Label<'_>,
    value: &dyn Fn(&f64) -> String,
) -> Result<SlotChart<'a, 'b>, Box<dyn std::error::Error + 'static>> {
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(80)
        .build_cartesian_2d(slots(times.len()), 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(times.len().min(12))
        .x_label_formatter(&|v| segment_label(v, times, label))
        .y_label_formatter(value)
        .label_style(FONT)
        .draw()?;
    Ok(chart)
}

type SlotChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordi32>,
        plotters::coord::types::RangedCoordf64,
    >,
>;

/// `n` slots side by side, a bar or point centred in each.
fn slots(
    n: usize,
) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordi32> {
    // plotters' integer ranges include their end.
    (0..(n as i32 - 1).max(0)).into_segmented()
}

/// The label of a bar's centre: its snapshot's time.
fn segment_label(v: &SegmentValue<i32>, times: &[i64], label: &Label<'_>) -> String {
    match v {
        SegmentValue::CenterOf(i) => times
            .get(*i as usize)
            .map(|t| label(*t))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// `s` seconds as an axis says it: in minutes and hours past a minute.
fn seconds(s: f64) -> String {
    if s >= 60.0 {
        humantime::format_duration(std::time::Duration::from_secs(s.round() as u64)).to_string()
    } else if s >= 10.0 {
        format!("{s:.0} s")
    } else if s >= 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

/// A time axis around `times` (and `now` when there are none), padded so
/// that a single point is not on the frame.
fn time_range(times: impl Iterator<Item = i64>, now: i64) -> (i64, i64) {
    let (lo, hi) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let (lo, hi) = if lo > hi { (now, now) } else { (lo, hi) };
    let pad = ((hi - lo) / 20).max(600);
    (lo - pad, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(t: i64) -> String {
        t.to_string()
    }

    #[test]
    fn every_plot_draws_with_none_one_or_many_points() {
        for n in [0usize, 1, 5] {
            let times: Vec<i64> = (0..n as i64).map(|i| 1_800_000_000 + i * 86_400).collect();
            let bytes: Vec<u64> = (0..n as u64).map(|i| i << 20).collect();
            let secs: Vec<Option<f64>> = (0..n).map(|i| (i > 0).then_some(i as f64)).collect();
            storage(&times, &bytes, &bytes, &day).unwrap();
            growth(&times, &bytes, &day).unwrap();
            runs(&times, &secs, &secs, &day).unwrap();
            let dots: Vec<DrillDot> = times
                .iter()
                .map(|t| DrillDot {
                    time: *t,
                    secs: 0.5,
                    objective: Some(3600.0),
                    color: Palette::PASSED,
                })
                .collect();
            drills(&dots, 1_800_000_000, &day).unwrap();
            let bars: Vec<AlertBar> = times
                .iter()
                .map(|t| AlertBar {
                    row: 0,
                    from: *t,
                    to: None,
                })
                .collect();
            alerts(&["run_failed".into()], &bars, 1_800_000_000, &day).unwrap();
        }
        coverage(0.0).unwrap();
        coverage(1.5).unwrap();
    }
}
