//! The HDR percentile plot: latency against percentile, the percentile axis stretched as
//! log10(1/(1-p)) so that 90%, 99%, 99.9% ... sit one step apart, as HdrHistogram's own
//! plotter draws it.
//!
//! Written once after a run from the report's distribution, with plotters' SVG backend only
//! (no system fonts or image libraries needed). It never reads a histogram itself.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Report;

/// Plot size, pixels.
const SIZE: (u32, u32) = (960, 600);

/// Where percentile `p` (0..100) sits on the x axis; `None` for 100 (infinitely far).
pub fn x_of(p: f64) -> Option<f64> {
    let tail = 1.0 - p / 100.0;
    (tail > 0.0).then(|| -tail.log10())
}

/// The label of x position `x`: 0 -> "0%", 1 -> "90%", 2 -> "99%", 3 -> "99.9%".
pub fn label_of(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let nines = x.round().max(0.0) as usize;
    let decimals = nines.saturating_sub(2);
    format!("{p:.decimals$}%")
}

/// The plotted points: (x, latency µs); the 100% point is put at the right edge `x_max`.
pub fn points(report: &Report) -> (Vec<(f64, f64)>, f64) {
    let finite = report
        .percentiles
        .iter()
        .filter_map(|p| x_of(p.percentile))
        .fold(0.0f64, f64::max);
    let x_max = (finite + 0.25).ceil().max(2.0);
    let pts = report
        .percentiles
        .iter()
        .map(|p| (x_of(p.percentile).unwrap_or(x_max), p.latency_us as f64))
        .collect();
    (pts, x_max)
}

/// Draws the plot of `report` to `path` as SVG.
pub fn write_svg(path: &Path, report: &Report) -> Result<(), Box<dyn std::error::Error>> {
    let (pts, x_max) = points(report);
    let y_max = pts.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.1;
    let title = if report.label.is_empty() {
        format!("{} ({} loop)", report.url, report.mode)
    } else {
        report.label.clone()
    };
    let p = &report.latency_us;
    let subtitle = format!(
        "{:.0} calls/s   p50 {} µs   p99 {} µs   p99.9 {} µs   max {} µs",
        report.calls_per_s, p.p50, p.p99, p.p99_9, p.max
    );

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(56);
    top.draw(&Text::new(title, (70, 8), ("sans-serif", 20)))?;
    top.draw(&Text::new(subtitle, (70, 34), ("sans-serif", 14)))?;
    let mut chart = ChartBuilder::on(&body)
        .margin(16)
        .margin_right(56)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| label_of(*x))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .draw()?;
    chart.draw_series(LineSeries::new(pts.iter().copied(), BLUE.stroke_width(2)))?;
    chart.draw_series(
        pts.iter()
            .map(|&(x, y)| Circle::new((x, y), 2, BLUE.filled())),
    )?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_positions_and_labels() {
        assert_eq!(x_of(0.0), Some(0.0));
        assert!(x_of(90.0).is_some_and(|x| (x - 1.0).abs() < 1e-9));
        assert!(x_of(99.9).is_some_and(|x| (x - 3.0).abs() < 1e-9));
        assert_eq!(x_of(100.0), None);
        assert_eq!(label_of(0.0), "0%");
        assert_eq!(label_of(1.0), "90%");
        assert_eq!(label_of(2.0), "99%");
        assert_eq!(label_of(3.0), "99.9%");
        assert_eq!(label_of(5.0), "99.999%");
    }
}
