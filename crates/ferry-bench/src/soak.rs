//! `ferry bench --soak`: N messages (default 1,000,000) published by ferry and consumed by a
//! ferry consumer at the same time, with the process's resident memory sampled every N/20
//! messages consumed. Memory must stay flat: the highest sample may exceed the first by at
//! most [`FLAT_MB`] MB or [`FLAT_SHARE`] of it, whichever is more.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ferry::{HandlerError, MessageContext, Publisher};
use serde::Serialize;

use super::{
    baseline::WINDOW,
    consume::Counter,
    event::BenchEvent,
    harness::Harness,
    report::{Settings, peak_rss_mb, rss_mb},
    stats::{rate, thousands},
};
use crate::error::BenchError;

/// Growth in MB that still counts as flat.
pub const FLAT_MB: f64 = 8.0;

/// Growth as a share of the first sample that still counts as flat.
pub const FLAT_SHARE: f64 = 0.10;

/// Messages published but not yet consumed, at most (the publisher waits beyond that).
const MAX_BACKLOG: u64 = 50_000;

/// One memory sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RssSample {
    /// Messages consumed when it was taken.
    pub messages: u64,
    /// Seconds since consuming began.
    pub elapsed_s: f64,
    /// Resident memory, in MB.
    pub rss_mb: f64,
}

/// What the soak found.
#[derive(Debug, Clone, Serialize)]
pub struct SoakResult {
    /// Messages consumed.
    pub messages: u64,
    /// Seconds from the first publish to the last message consumed.
    pub elapsed_s: f64,
    /// Messages consumed a second.
    pub consumed_per_s: f64,
    /// A sample every this many messages.
    pub sample_every: u64,
    /// Resident memory before the run.
    pub start_rss_mb: f64,
    /// The curve.
    pub rss_mb: Vec<RssSample>,
    /// The highest sample minus the first.
    pub growth_mb: f64,
    /// Whether the growth is within [`FLAT_MB`] MB or [`FLAT_SHARE`] of the first sample.
    pub flat: bool,
}

/// What `ferry bench --soak` prints.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// The fixed settings.
    pub settings: Settings,
    /// The soak.
    pub soak: SoakResult,
    /// The process's peak resident memory.
    pub peak_rss_mb: f64,
}

impl SoakReport {
    /// The table for a terminal.
    pub fn table(&self) -> String {
        let s = &self.soak;
        let mut out = String::new();
        let _ = writeln!(out, "{:>12} {:>10} {:>10}", "consumed", "seconds", "RSS MB");
        for sample in &s.rss_mb {
            let _ = writeln!(
                out,
                "{:>12} {:>10.1} {:>10.1}",
                thousands(sample.messages as f64),
                sample.elapsed_s,
                sample.rss_mb
            );
        }
        let _ = writeln!(
            out,
            "soak: {} messages in {:.1} s ({}/s); RSS {:.1} MB before, peak {:.1} MB; growth {:.1} MB: {}",
            thousands(s.messages as f64),
            s.elapsed_s,
            thousands(s.consumed_per_s),
            s.start_rss_mb,
            self.peak_rss_mb,
            s.growth_mb,
            if s.flat { "flat" } else { "NOT flat" }
        );
        out
    }
}

/// Runs the soak.
pub async fn run(
    harness: &Harness,
    messages: u64,
    concurrency: usize,
) -> Result<SoakResult, BenchError> {
    let queue = harness.declare_queue("soak", None).await?;
    let start_rss_mb = rss_mb().unwrap_or(0.0);
    let sample_every = (messages / 20).max(1);
    let counter = Counter::new(messages);
    let samples: Arc<Mutex<Vec<RssSample>>> = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let handler = {
        let (counter, samples) = (Arc::clone(&counter), Arc::clone(&samples));
        move |_event: BenchEvent, _ctx: MessageContext| {
            let n = counter.hit();
            if n % sample_every == 0 {
                let sample = RssSample {
                    messages: n,
                    elapsed_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                    rss_mb: rss_mb().unwrap_or(0.0),
                };
                if let Ok(mut samples) = samples.lock() {
                    samples.push(sample);
                }
                eprintln!(
                    "bench: soak {} of {} consumed, RSS {:.1} MB",
                    thousands(n as f64),
                    thousands(messages as f64),
                    sample.rss_mb
                );
            }
            async { Ok::<(), HandlerError>(()) }
        }
    };
    let consumer = harness
        .start(
            harness
                .consumer(&queue, concurrency)
                .handle::<BenchEvent>(handler),
        )
        .await?;

    let publish = async {
        let mut seq = 0u64;
        while seq < messages {
            while seq.saturating_sub(counter.count()) > MAX_BACKLOG {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let end = (seq + WINDOW as u64).min(messages);
            let batch = (seq..end)
                .map(|i| {
                    BenchEvent::new(i).message(&queue).map(|mut m| {
                        m.exchange = Some(String::new());
                        m
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let results = harness.bus.publish_messages(batch).await;
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                return Err(BenchError::Runtime(format!(
                    "soak: ferry publish failed: {e}"
                )));
            }
            seq = end;
        }
        Ok(())
    };
    let (published, consumed) = tokio::join!(publish, counter.wait("soak"));
    let elapsed = started.elapsed();
    consumer.shutdown().await;
    published?;
    consumed?;

    let rss_mb = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let first = rss_mb.first().map_or(0.0, |s| s.rss_mb);
    let highest = rss_mb.iter().map(|s| s.rss_mb).fold(first, f64::max);
    let growth_mb = ((highest - first) * 10.0).round() / 10.0;
    Ok(SoakResult {
        messages,
        elapsed_s: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
        consumed_per_s: rate(messages, elapsed).round(),
        sample_every,
        start_rss_mb,
        flat: growth_mb <= FLAT_MB.max(first * FLAT_SHARE),
        growth_mb,
        rss_mb,
    })
}

/// The report around a soak result.
pub fn report(settings: Settings, soak: SoakResult) -> SoakReport {
    // Linux keeps the counters behind `VmHWM` per thread and folds them in lazily, so a sample
    // of `VmRSS` can read a little above it: the peak is the larger of the two.
    let sampled = soak.rss_mb.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
    SoakReport {
        settings,
        soak,
        peak_rss_mb: peak_rss_mb().unwrap_or(0.0).max(sampled),
    }
}
