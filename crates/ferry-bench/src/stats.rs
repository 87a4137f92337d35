//! The statistics of the bench (and of the demo's summary): rates, medians, latency
//! percentiles by nearest rank, and figures with thousands separators.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Deliveries seen: how many, and when the first and the last came.
#[derive(Debug, Default, Clone, Copy)]
pub struct Span {
    /// How many.
    pub count: u64,
    /// The first.
    pub first: Option<Instant>,
    /// The last.
    pub last: Option<Instant>,
}

impl Span {
    /// Counts one at `at`.
    pub fn record(&mut self, at: Instant) {
        self.count += 1;
        self.first.get_or_insert(at);
        self.last = Some(at);
    }

    /// The steady rate: deliveries after the first, per second from the first to the last.
    pub fn per_s(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) if self.count > 1 && last > first => {
                (self.count - 1) as f64 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// `count` in `elapsed`, per second.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// The median (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `d` in whole nanoseconds (saturating).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `value` rounded to `decimals` decimals.
pub fn round_to(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// The median.
    pub p50: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The slowest.
    pub max: f64,
}

impl Latency {
    /// The percentiles (nearest rank) of `samples`, in nanoseconds.
    pub fn from_nanos(samples: Vec<u64>) -> Self {
        Self::from_millis(samples.into_iter().map(|n| n as f64 / 1e6).collect())
    }

    /// The percentiles (nearest rank) of `samples`, in milliseconds, rounded to the
    /// microsecond; zeros when there are none.
    pub fn from_millis(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            round_to(samples[rank - 1], 3)
        };
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    /// The median of each percentile over rounds.
    pub fn median_of(rounds: &[Latency]) -> Self {
        let of = |f: fn(&Latency) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        Self {
            p50: of(|l| l.p50),
            p95: of(|l| l.p95),
            p99: of(|l| l.p99),
            max: of(|l| l.max),
        }
    }
}

/// `12345.6` as `12,346`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let l = Latency::from_nanos((1..=100).map(|ms| ms * 1_000_000).collect());
        assert_eq!((l.p50, l.p95, l.p99, l.max), (50.0, 95.0, 99.0, 100.0));
        let l = Latency::from_millis((1..=100).map(f64::from).collect());
        assert_eq!((l.p50, l.p95, l.p99, l.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(Latency::from_millis(vec![]), Latency::default());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(17_234.6), "17,235");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
    }

    #[test]
    fn spans_count_from_the_first() {
        let start = Instant::now();
        let mut span = Span::default();
        for i in 0..11 {
            span.record(start + Duration::from_millis(i * 100));
        }
        assert!((span.per_s() - 10.0).abs() < 1e-9);
    }
}
