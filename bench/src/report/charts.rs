//! Charts drawn with plotters, once per backend: PNG files (bitmap backend, text rendered with a
//! bundled DejaVu Sans through ab_glyph, so it works on a headless machine without fontconfig)
//! and SVG strings inlined into the HTML report.

use super::{
    BenchReport, ReportError, LATENCY_DISTRIBUTION_PNG, LATENCY_PERCENTILES_PNG, THROUGHPUT_PNG,
};
use crate::constants::{CHART_HEIGHT_PX, CHART_WIDTH_PX};
use crate::stats::{moving_average, GroupStats};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// DejaVu Sans (Bitstream Vera licence, redistributable), bundled so PNG text needs no system font.
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FONT_FAMILY: &str = "sans-serif";
/// Buckets of the latency distribution chart.
const DISTRIBUTION_BUCKETS: u64 = 60;

static REGISTER_FONT: Once = Once::new();

fn register_font() {
    REGISTER_FONT.call_once(|| {
        // The bundled font is a valid TrueType file; if it were not, text would be missing from
        // the PNGs but the charts would still draw, so the error is only reported.
        if plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_err() {
            eprintln!("riptide-bench: bundled font rejected; PNG charts will have no text");
        }
    });
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

type DrawResult = Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Throughput of each actor group over time (moving average of the sampled series).
pub fn draw_throughput<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &BenchReport,
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let window = report.config.moving_average_window as usize;
    let lines: Vec<(String, Vec<(f64, f64)>)> = report
        .groups
        .iter()
        .map(|g| {
            let raw: Vec<f64> = g.series.points.iter().map(|p| p.mb_per_sec).collect();
            let smooth = moving_average(&raw, window);
            let pts = g
                .series
                .points
                .iter()
                .zip(smooth)
                .map(|(p, v)| (p.t_s, v))
                .collect();
            (format!("{}s", g.actor.label()), pts)
        })
        .collect();
    let labels = LineChartLabels {
        caption: "Throughput over time (MB/s)",
        x_desc: "time (s)",
        y_desc: "MB/s",
    };
    draw_lines(root, &labels, lines, 1.0)
}

/// The caption and axis descriptions of a line chart.
struct LineChartLabels {
    caption: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
}

/// One line per named series; the x axis ends `x_headroom` times past the largest x, the y axis
/// 10 % above the largest y.
fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    labels: &LineChartLabels,
    lines: Vec<(String, Vec<(f64, f64)>)>,
    x_headroom: f64,
) -> DrawResult {
    let x_max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(0.01, f64::max)
        * x_headroom;
    let y_max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption(labels.caption, (FONT_FAMILY, 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(labels.x_desc)
        .y_desc(labels.y_desc)
        .label_style((FONT_FAMILY, 14))
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in lines.into_iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart)?;
    root.present().map_err(err)
}

fn legend<'a, DB: DrawingBackend + 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
) -> DrawResult {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT_FAMILY, 14))
        .draw()
        .map_err(err)
}

/// Request latency at p50 .. p99.99 for each group (milliseconds).
pub fn draw_latency_percentiles<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &BenchReport,
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let labels: Vec<&str> = report
        .groups
        .first()
        .map(|g| g.latency.ladder().map(|(l, _)| l).to_vec())
        .unwrap_or_default();
    let y_max = report
        .groups
        .iter()
        .map(|g| g.latency.p9999_us as f64 / 1000.0)
        .fold(0.01, f64::max)
        * 1.1;
    let steps = labels.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption("Request latency percentiles (ms)", (FONT_FAMILY, 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..steps - 0.5, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(labels.len())
        .x_label_formatter(&|x| {
            labels
                .get(x.round().max(0.0) as usize)
                .map(|s| s.to_string())
                .unwrap_or_default()
        })
        .y_desc("ms")
        .label_style((FONT_FAMILY, 14))
        .draw()
        .map_err(err)?;
    for (i, g) in report.groups.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = g
            .latency
            .ladder()
            .iter()
            .enumerate()
            .map(|(k, (_, us))| (k as f64, *us as f64 / 1000.0))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(format!("{}s", g.actor.label()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
            .map_err(err)?;
    }
    legend(&mut chart)?;
    root.present().map_err(err)
}

/// Share of requests per latency bucket, linear buckets from min to p99.99.
pub fn distribution(g: &GroupStats) -> Vec<(f64, f64)> {
    let h = &g.latency_histogram;
    if h.is_empty() {
        return Vec::new();
    }
    let lo = h.min();
    let hi = h.value_at_quantile(0.9999).max(lo + 1);
    let width = (hi - lo).div_ceil(DISTRIBUTION_BUCKETS).max(1);
    let mut counts = vec![0u64; DISTRIBUTION_BUCKETS as usize + 1];
    for v in h.iter_recorded() {
        let value = h.highest_equivalent(v.value_iterated_to());
        let i = (value.saturating_sub(lo) / width).min(DISTRIBUTION_BUCKETS) as usize;
        counts[i] += v.count_at_value();
    }
    let total = h.len() as f64;
    counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                (lo + i as u64 * width + width / 2) as f64 / 1000.0,
                *c as f64 * 100.0 / total,
            )
        })
        .collect()
}

/// Latency distribution of each group: share of requests (%) against latency (ms).
pub fn draw_latency_distribution<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &BenchReport,
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let lines: Vec<(String, Vec<(f64, f64)>)> = report
        .groups
        .iter()
        .map(|g| (format!("{}s", g.actor.label()), distribution(g)))
        .collect();
    let labels = LineChartLabels {
        caption: "Request latency distribution",
        x_desc: "latency (ms)",
        y_desc: "% of requests",
    };
    draw_lines(root, &labels, lines, 1.05)
}

/// File names of the charts, in drawing order.
const PNG_NAMES: [&str; 3] = [
    THROUGHPUT_PNG,
    LATENCY_PERCENTILES_PNG,
    LATENCY_DISTRIBUTION_PNG,
];

fn draw_nth<DB: DrawingBackend>(
    n: usize,
    root: &DrawingArea<DB, Shift>,
    report: &BenchReport,
) -> DrawResult {
    match n {
        0 => draw_throughput(root, report),
        1 => draw_latency_percentiles(root, report),
        _ => draw_latency_distribution(root, report),
    }
}

/// Writes the three PNG charts into `dir`.
///
/// # Errors
/// [`ReportError::Chart`] naming the chart that failed.
pub fn write_pngs(report: &BenchReport, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    register_font();
    let mut written = Vec::new();
    for (n, name) in PNG_NAMES.iter().enumerate() {
        let path = dir.join(name);
        let result = {
            let root =
                BitMapBackend::new(&path, (CHART_WIDTH_PX, CHART_HEIGHT_PX)).into_drawing_area();
            draw_nth(n, &root, report)
        };
        result.map_err(|message| ReportError::Chart {
            path: path.clone(),
            message,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The same three charts as SVG documents, in the order of [`write_pngs`].
///
/// # Errors
/// [`ReportError::Chart`] naming the chart that failed.
pub fn render_svgs(report: &BenchReport) -> Result<Vec<String>, ReportError> {
    // SVG text is laid out with the same font metrics as the PNGs.
    register_font();
    let mut out = Vec::new();
    for (n, name) in PNG_NAMES.iter().enumerate() {
        let mut svg = String::new();
        let result = {
            let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH_PX, CHART_HEIGHT_PX))
                .into_drawing_area();
            draw_nth(n, &root, report)
        };
        result.map_err(|message| ReportError::Chart {
            path: PathBuf::from(name.replace(".png", ".svg")),
            message,
        })?;
        out.push(svg);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    #[test]
    fn distribution_sums_to_one_hundred_percent() {
        let r = sample_report();
        let d = distribution(&r.groups[0]);
        assert!(!d.is_empty());
        let total: f64 = d.iter().map(|p| p.1).sum();
        assert!((total - 100.0).abs() < 1e-6, "{total}");
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0), "buckets ascend");
    }

    #[test]
    fn svgs_render_with_text() {
        let svgs = render_svgs(&sample_report()).unwrap();
        assert_eq!(svgs.len(), 3);
        for s in &svgs {
            assert!(s.contains("<svg") && s.contains("</svg>"));
            assert!(s.contains("<text"), "labels present");
        }
        assert!(svgs[1].contains("p99.9"));
    }
}
