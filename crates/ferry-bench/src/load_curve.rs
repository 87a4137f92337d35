//! `load_curve`: the `end_to_end` scenario's latency (outbox commit -> handler start, and raw
//! lapin publish -> delivery beside it) at rising paces, [`RATES`], until a side's p99 passes
//! [`P99_LIMIT_MS`] or it no longer keeps the pace (events over the time from the first
//! commit or publish to the last delivery below [`SUSTAINED`] of the pace). Each side stops at
//! its own first such step (which is reported, to show the knee); the other goes on.
//!
//! Each step runs the same rounds as every scenario, alternating the sides; a step's figures are
//! the median of its rounds. A step lasts [`STEP`] of events at its pace (at most `--messages`
//! events). The scenario's `ferry_per_s` and `baseline_per_s` are the highest paces each side
//! sustained within the limit; its `ratio` is theirs.

use std::time::Duration;

use serde::Serialize;

use super::{
    Scenario,
    end_to_end::EndToEnd,
    harness::Harness,
    report::{Measured, ScenarioResult},
    stats::{Latency, median, round_to, thousands},
};
use crate::{About, error::BenchError};

/// The paces tried, events a second.
pub const RATES: [u64; 8] = [250, 500, 1000, 2000, 4000, 8000, 16_000, 32_000];

/// A side whose p99 passes this many milliseconds has reached its limit.
pub const P99_LIMIT_MS: f64 = 50.0;

/// A side that reaches less than this share of the pace does not sustain it.
pub const SUSTAINED: f64 = 0.9;

/// How long each step lasts at its pace (fewer events when `--messages` is smaller).
pub const STEP: Duration = Duration::from_secs(2);

const ABOUT: About = About {
    name: "load_curve",
    ferry: "end_to_end (outbox commit -> handler start) at rising paces: the highest sustained with p99 <= 50 ms",
    baseline: "raw lapin publish -> raw consumer delivery at the same paces",
};

/// One side at one pace (the median of the step's rounds).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SidePoint {
    /// The pace reached.
    pub per_s: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// The pace was kept and p99 stayed within [`P99_LIMIT_MS`].
    pub within_limit: bool,
}

/// One step of the curve.
#[derive(Debug, Clone, Serialize)]
pub struct LoadPoint {
    /// The pace asked for, events a second.
    pub rate_per_s: u64,
    /// Events of each round at this pace.
    pub events: u64,
    /// ferry (`None`: it had passed its limit at a lower pace).
    pub ferry: Option<SidePoint>,
    /// Raw lapin (`None`: it had passed its limit at a lower pace).
    pub baseline: Option<SidePoint>,
}

/// Events of a step at `rate_per_s` when a round may have at most `messages`.
pub fn step_events(rate_per_s: u64, messages: u64) -> u64 {
    let full = rate_per_s.saturating_mul(STEP.as_millis() as u64) / 1000;
    full.min(messages).max(1)
}

fn side_point(rate_per_s: u64, rounds: &[Measured]) -> SidePoint {
    let latencies: Vec<Latency> = rounds.iter().filter_map(|m| m.latency).collect();
    let latency = Latency::median_of(&latencies);
    let per_s = round_to(
        median(&rounds.iter().map(|m| m.per_s).collect::<Vec<_>>()),
        1,
    );
    SidePoint {
        per_s,
        p50_ms: latency.p50,
        p99_ms: latency.p99,
        within_limit: latency.p99 <= P99_LIMIT_MS && per_s >= SUSTAINED * rate_per_s as f64,
    }
}

/// Runs the curve on `scenario`'s queues, `rounds` rounds a step, at most `messages` events a
/// round.
pub async fn run(
    harness: &Harness,
    scenario: &EndToEnd,
    messages: u64,
    rounds: u32,
) -> Result<ScenarioResult, BenchError> {
    let (mut ferry_on, mut baseline_on) = (true, true);
    let mut points = Vec::new();
    for rate in RATES {
        if !(ferry_on || baseline_on) {
            break;
        }
        let events = step_events(rate, messages);
        let mut step = scenario.at_rate(rate, events);
        let (mut ferry, mut baseline) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which side goes first, as every scenario does.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                if side == 0 && ferry_on {
                    ferry.push(step.ferry(harness).await?);
                } else if side == 1 && baseline_on {
                    baseline.push(step.baseline(harness).await?);
                }
            }
        }
        let point = LoadPoint {
            rate_per_s: rate,
            events,
            ferry: (!ferry.is_empty()).then(|| side_point(rate, &ferry)),
            baseline: (!baseline.is_empty()).then(|| side_point(rate, &baseline)),
        };
        let show = |p: &Option<SidePoint>| {
            p.map_or("-".to_owned(), |p| {
                format!(
                    "{}/s p50 {:.2} ms p99 {:.2} ms{}",
                    thousands(p.per_s),
                    p.p50_ms,
                    p.p99_ms,
                    if p.within_limit { "" } else { " (limit)" }
                )
            })
        };
        eprintln!(
            "bench: [{:>6.1} s] load curve at {}/s: ferry {}, raw {}",
            harness.elapsed_s(),
            thousands(rate as f64),
            show(&point.ferry),
            show(&point.baseline)
        );
        ferry_on &= point.ferry.is_some_and(|p| p.within_limit);
        baseline_on &= point.baseline.is_some_and(|p| p.within_limit);
        points.push(point);
    }
    Ok(result(points))
}

/// The highest pace a side sustained within the limit (0 when none).
fn best(points: &[LoadPoint], side: fn(&LoadPoint) -> Option<SidePoint>) -> f64 {
    points
        .iter()
        .filter(|p| side(p).is_some_and(|s| s.within_limit))
        .map(|p| p.rate_per_s as f64)
        .fold(0.0, f64::max)
}

/// The scenario's result: the best paces, their ratio, and the curve.
pub fn result(points: Vec<LoadPoint>) -> ScenarioResult {
    let ferry = best(&points, |p| p.ferry);
    let baseline = best(&points, |p| p.baseline);
    let mut result = ScenarioResult::new(
        &ABOUT,
        &[Measured::rate(ferry)],
        &[Measured::rate(baseline)],
    );
    result.load_curve = Some(points);
    result
}

/// Writes the curve as a PNG at `path`.
pub fn plot(points: &[LoadPoint], path: &std::path::Path) -> Result<(), BenchError> {
    super::plot::load_curve(points, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(per_s: f64, p99_ms: f64, rate: u64) -> Option<SidePoint> {
        Some(SidePoint {
            per_s,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            within_limit: p99_ms <= P99_LIMIT_MS && per_s >= SUSTAINED * rate as f64,
        })
    }

    #[test]
    fn the_best_pace_is_the_highest_within_the_limit() {
        let points = vec![
            LoadPoint {
                rate_per_s: 250,
                events: 500,
                ferry: side(249.0, 3.0, 250),
                baseline: side(250.0, 1.0, 250),
            },
            LoadPoint {
                rate_per_s: 500,
                events: 1000,
                ferry: side(499.0, 80.0, 500),
                baseline: side(500.0, 1.0, 500),
            },
            LoadPoint {
                rate_per_s: 1000,
                events: 2000,
                ferry: None,
                baseline: side(700.0, 2.0, 1000),
            },
        ];
        let result = result(points);
        assert_eq!(result.ferry_per_s, 250.0);
        assert_eq!(result.baseline_per_s, 500.0);
        assert_eq!(result.ratio, 0.5);
    }

    #[test]
    fn steps_last_two_seconds_at_most_messages() {
        assert_eq!(step_events(250, 20_000), 500);
        assert_eq!(step_events(16_000, 20_000), 20_000);
        assert_eq!(step_events(1000, 300), 300);
    }
}
