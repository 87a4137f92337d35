//! The load curve as a PNG (plotters' bitmap backend): latency (p50, p99; log scale) against the
//! pace (log scale), ferry and raw lapin, with the p99 limit drawn across. Text is drawn with a
//! TrueType font read from the system's font directory (Debian's `fonts-dejavu-core`), so no
//! font library is needed at build or run time.

use std::{path::Path, sync::OnceLock};

use plotters::{
    prelude::*,
    style::{FontStyle, register_font},
};

use super::load_curve::{LoadPoint, P99_LIMIT_MS, SidePoint};
use crate::error::BenchError;

/// Fonts tried, in order.
const FONTS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

const FAMILY: &str = "sans-serif";

/// Registers the first font found as [`FAMILY`] (once a process).
fn font() -> Result<(), BenchError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = FONTS
                .iter()
                .find_map(|path| std::fs::read(path).ok())
                .ok_or_else(|| {
                    format!(
                        "--plot: no font found (looked for {}); install fonts-dejavu-core",
                        FONTS[0]
                    )
                })?;
            // plotters keeps registered fonts for the process's life.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font(FAMILY, FontStyle::Normal, bytes)
                .map_err(|_| "--plot: the font file cannot be read".to_owned())
        })
        .clone()
        .map_err(BenchError::Runtime)
}

/// One curve: its name, colour, and points (step, ms).
struct Curve {
    label: &'static str,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// The x of a pace: its doubling from `base` (the paces double from step to step, so the
/// steps are evenly spaced, as on a log scale, and each gets its own label).
fn step_of(rate_per_s: u64, base: u64) -> f64 {
    (rate_per_s as f64 / base.max(1) as f64).log2()
}

fn curves(points: &[LoadPoint], base: u64) -> Vec<Curve> {
    let series = |label, colour, side: fn(&LoadPoint) -> Option<SidePoint>, p99: bool| Curve {
        label,
        colour,
        points: points
            .iter()
            .filter_map(|p| {
                side(p).map(|s| {
                    let ms = if p99 { s.p99_ms } else { s.p50_ms };
                    (step_of(p.rate_per_s, base), ms.max(0.01))
                })
            })
            .collect(),
    };
    vec![
        series("ferry p99", RGBColor(0, 70, 160), |p| p.ferry, true),
        series("ferry p50", RGBColor(90, 160, 230), |p| p.ferry, false),
        series("raw lapin p99", RGBColor(180, 30, 30), |p| p.baseline, true),
        series(
            "raw lapin p50",
            RGBColor(240, 140, 90),
            |p| p.baseline,
            false,
        ),
    ]
}

/// Draws the curve into a PNG at `path`.
pub fn load_curve(points: &[LoadPoint], path: &Path) -> Result<(), BenchError> {
    font()?;
    let failed = |e: &dyn std::fmt::Display| {
        BenchError::Runtime(format!("--plot: cannot draw {}: {e}", path.display()))
    };
    let base = points.first().map_or(1, |p| p.rate_per_s);
    let last = points.last().map_or(0.0, |p| step_of(p.rate_per_s, base));
    let curves = curves(points, base);
    let (y_min, y_max) = curves
        .iter()
        .flat_map(|c| c.points.iter())
        .fold((1.0f64, P99_LIMIT_MS), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    // Room below the curves for the legend.
    let (y_min, y_max) = (y_min / 10.0, y_max * 1.5);
    let (x_min, x_max) = (-1.0, last.max(1.0) + 1.0);
    let root = BitMapBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "End-to-end latency against the pace (outbox commit -> handler start)",
            (FAMILY, 24),
        )
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(75)
        .build_cartesian_2d((x_min..x_max).step(1.0), (y_min..y_max).log_scale())
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("pace, events per second (log scale)")
        .y_desc("latency, ms (log scale)")
        .x_labels(12)
        .x_label_formatter(&|x| {
            if *x < 0.0 || *x > last + 0.01 {
                String::new()
            } else {
                format!("{:.0}", base as f64 * x.exp2())
            }
        })
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.2}")
            }
        })
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .draw()
        .map_err(|e| failed(&e))?;

    let grey = RGBColor(120, 120, 120);
    chart
        .draw_series(DashedLineSeries::new(
            [(x_min, P99_LIMIT_MS), (x_max, P99_LIMIT_MS)],
            8,
            6,
            grey.stroke_width(1),
        ))
        .map_err(|e| failed(&e))?
        .label(format!("p99 limit, {P99_LIMIT_MS:.0} ms"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], grey.stroke_width(1)));
    for curve in &curves {
        let style = curve.colour.stroke_width(3);
        chart
            .draw_series(LineSeries::new(curve.points.iter().copied(), style))
            .map_err(|e| failed(&e))?
            .label(curve.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        chart
            .draw_series(
                curve
                    .points
                    .iter()
                    .map(|&p| Circle::new(p, 4, curve.colour.filled())),
            )
            .map_err(|e| failed(&e))?;
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(p50_ms: f64, p99_ms: f64) -> Option<SidePoint> {
        Some(SidePoint {
            per_s: 1.0,
            p50_ms,
            p99_ms,
            within_limit: p99_ms <= P99_LIMIT_MS,
        })
    }

    #[test]
    fn the_curve_is_drawn_as_a_png() {
        let points: Vec<LoadPoint> = [(250, 2.0, 6.0), (500, 2.5, 9.0), (1000, 4.0, 70.0)]
            .into_iter()
            .map(|(rate_per_s, p50, p99)| LoadPoint {
                rate_per_s,
                events: 10,
                ferry: side(p50, p99),
                baseline: (rate_per_s < 1000)
                    .then(|| side(p50 / 4.0, p99 / 4.0))
                    .flatten(),
            })
            .collect();
        let path =
            std::env::temp_dir().join(format!("ferry-bench-plot-test-{}.png", std::process::id()));
        load_curve(&points, &path).unwrap();
        let png = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert!(png.starts_with(b"\x89PNG\r\n"), "not a PNG");
        assert!(png.len() > 10_000, "an empty picture: {} bytes", png.len());
    }
}
