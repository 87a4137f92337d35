//! The report: each scenario's rounds, memory, and the table or JSON object `ferry bench`
//! prints (the statistics are in [`super::stats`]).

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use super::{
    About,
    relay_latency::RelayLatency,
    stats::{Latency, median, round_to, thousands},
};

/// Where a round's time went: named figures (ms per batch, µs per message, …).
pub type Breakdown = BTreeMap<&'static str, f64>;

/// One round of one side.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Messages (or calls) per second.
    pub per_s: f64,
    /// Latency, for the end-to-end scenario.
    pub latency: Option<Latency>,
    /// Nanoseconds per call, for the Mediator.
    pub ns_per_call: Option<f64>,
    /// Where the time went (ferry's side of some scenarios).
    pub breakdown: Option<Breakdown>,
}

impl Measured {
    /// A rate.
    pub fn rate(per_s: f64) -> Self {
        Self {
            per_s,
            ..Self::default()
        }
    }
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// The CPU model (from /proc/cpuinfo).
    pub cpu_model: String,
    /// `release` or `debug` (figures from a debug build are not ferry's speed).
    pub build: &'static str,
}

impl Machine {
    /// This machine.
    pub fn detect() -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

/// The fixed settings both sides of every scenario run with.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Messages per round of the throughput scenarios.
    pub messages: u64,
    /// Rounds of each side per scenario (alternating; the median is reported).
    pub rounds: u32,
    /// Every message body, in bytes.
    pub body_bytes: usize,
    /// Unconfirmed publishes in flight at most.
    pub publishes_in_flight: usize,
    /// Unacked deliveries at once.
    pub prefetch: u16,
    /// Persistent messages (delivery mode 2) to durable queues.
    pub persistent: bool,
    /// Publisher confirms awaited.
    pub publisher_confirms: bool,
    /// Publishes are `mandatory` (unroutable ones come back as errors).
    pub mandatory: bool,
    /// Handlers ferry's consumers run at once.
    pub consumer_concurrency: usize,
    /// Rows the outbox relay claims per batch.
    pub relay_batch_size: usize,
    /// Batches the relay publishes at once.
    pub relay_batches_in_flight: usize,
    /// Events of one end-to-end round.
    pub end_to_end_events: u64,
    /// The pace of the end-to-end scenario.
    pub end_to_end_rate_per_s: u64,
    /// Calls per Mediator round.
    pub mediator_iterations: u64,
    /// The PostgreSQL server's version.
    pub postgresql: Option<String>,
    /// The machine.
    pub machine: Machine,
    /// The queues' type when not classic (absent for classic queues, the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_type: Option<String>,
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// `publish`, `relay`, `consume`, `consume_inbox`, `end_to_end` or `mediator`.
    pub name: &'static str,
    /// ferry's median rate.
    pub ferry_per_s: f64,
    /// The baseline's median rate.
    pub baseline_per_s: f64,
    /// `ferry_per_s / baseline_per_s`.
    pub ratio: f64,
    /// The aim for this scenario.
    pub aim: &'static str,
    /// Whether the aim is met (`None`: only reported).
    pub aim_met: Option<bool>,
    /// What the ferry side does.
    pub ferry: &'static str,
    /// What the baseline does.
    pub baseline: &'static str,
    /// ferry's rate in each round.
    pub ferry_rounds_per_s: Vec<f64>,
    /// The baseline's rate in each round.
    pub baseline_rounds_per_s: Vec<f64>,
    /// ferry's latency (end to end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
    /// The baseline's latency (end to end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_latency_ms: Option<Latency>,
    /// ns per `send` minus ns per direct call (Mediator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overhead_ns: Option<f64>,
    /// ns per call of each side (Mediator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_per_call: Option<NsPerCall>,
    /// A second baseline: raw lapin publishing ferry's exact wire messages (CloudEvents
    /// headers and properties included), which separates the wire format's cost from the
    /// library's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_wire_per_s: Option<f64>,
    /// `ferry_per_s / same_wire_per_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_same_wire: Option<f64>,
    /// The second baseline's rate in each round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_wire_rounds_per_s: Option<Vec<f64>>,
    /// Where ferry's time went, in its median round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ferry_breakdown: Option<Breakdown>,
}

/// The Mediator's cost per call.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NsPerCall {
    /// `send`.
    pub ferry: f64,
    /// The direct call.
    pub baseline: f64,
}

impl ScenarioResult {
    /// A result from both sides' rounds.
    pub fn new(about: &About, ferry_rounds_m: &[Measured], baseline_rounds: &[Measured]) -> Self {
        let (ferry_rounds, ferry_per_s) = rates(ferry_rounds_m);
        let (baseline_rounds, baseline_per_s) = rates(baseline_rounds);
        let ratio = if baseline_per_s > 0.0 {
            round_to(ferry_per_s / baseline_per_s, 3)
        } else {
            0.0
        };
        let (aim, aim_met) = match about.name {
            // Issue 19's aims hold for each path's best mode; binary mode is the contract's
            // default, structured the faster.
            "publish" | "publish_structured" => ("ratio >= 0.90 (best mode)", Some(ratio >= 0.90)),
            "relay" | "relay_structured" => ("ratio >= 0.80 (best mode)", Some(ratio >= 0.80)),
            "consume" => ("ratio >= 0.90", Some(ratio >= 0.90)),
            "end_to_end" => ("p99 <= 10 ms at 1,000 events/s", None),
            "mediator" => ("overhead <= 100 ns", None),
            _ => ("report", None),
        };
        Self {
            name: about.name,
            ferry_per_s,
            baseline_per_s,
            ratio,
            aim,
            aim_met,
            ferry: about.ferry,
            baseline: about.baseline,
            ferry_rounds_per_s: ferry_rounds,
            baseline_rounds_per_s: baseline_rounds,
            latency_ms: None,
            baseline_latency_ms: None,
            overhead_ns: None,
            ns_per_call: None,
            same_wire_per_s: None,
            ratio_same_wire: None,
            same_wire_rounds_per_s: None,
            ferry_breakdown: median_round(ferry_rounds_m).and_then(|m| m.breakdown.clone()),
        }
    }

    /// Adds the second baseline (raw lapin with ferry's wire messages).
    pub fn with_same_wire(mut self, rounds: &[Measured]) -> Self {
        if rounds.is_empty() {
            return self;
        }
        let (per_round, per_s) = rates(rounds);
        self.same_wire_per_s = Some(per_s);
        self.ratio_same_wire = (per_s > 0.0).then(|| round_to(self.ferry_per_s / per_s, 3));
        self.same_wire_rounds_per_s = Some(per_round);
        self
    }

    /// Adds both sides' latency (median of the rounds' percentiles); the aim is on ferry's p99.
    pub fn with_latency(mut self, ferry: &[Measured], baseline: &[Measured]) -> Self {
        let of = |rounds: &[Measured]| {
            let l: Vec<Latency> = rounds.iter().filter_map(|m| m.latency).collect();
            (!l.is_empty()).then(|| Latency::median_of(&l))
        };
        self.latency_ms = of(ferry);
        self.baseline_latency_ms = of(baseline);
        self.aim_met = self.latency_ms.map(|l| l.p99 <= 10.0);
        self
    }

    /// Adds the Mediator's overhead (median ns per call of each side, and their difference).
    pub fn with_overhead(mut self, ferry: &[Measured], baseline: &[Measured]) -> Self {
        let of = |rounds: &[Measured]| {
            median(
                &rounds
                    .iter()
                    .filter_map(|m| m.ns_per_call)
                    .collect::<Vec<_>>(),
            )
        };
        let (send, direct) = (of(ferry), of(baseline));
        let overhead = round_to(send - direct, 1);
        self.ns_per_call = Some(NsPerCall {
            ferry: round_to(send, 1),
            baseline: round_to(direct, 1),
        });
        self.overhead_ns = Some(overhead);
        self.aim_met = Some(overhead <= 100.0);
        self
    }
}

/// Each round's rate (to 0.1/s) and their median.
fn rates(rounds: &[Measured]) -> (Vec<f64>, f64) {
    let per_round: Vec<f64> = rounds.iter().map(|m| round_to(m.per_s, 1)).collect();
    let median = round_to(median(&per_round), 1);
    (per_round, median)
}

/// The round whose rate is the median (the lower middle for an even count).
fn median_round(rounds: &[Measured]) -> Option<&Measured> {
    let mut sorted: Vec<&Measured> = rounds.iter().collect();
    sorted.sort_by(|a, b| a.per_s.total_cmp(&b.per_s));
    let n = sorted.len();
    (n > 0).then(|| sorted[(n - 1) / 2])
}

/// What `ferry bench` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The fixed settings.
    pub settings: Settings,
    /// Each scenario run, in order.
    pub scenarios: Vec<ScenarioResult>,
    /// ferry's end-to-end latency (outbox commit to handler start).
    pub latency_ms: Option<Latency>,
    /// ns per Mediator `send` beyond a direct call.
    pub mediator_overhead_ns: Option<f64>,
    /// The process's peak resident memory.
    pub peak_rss_mb: f64,
    /// Outbox commit to publisher confirm through the relay at a steady pace, and the broker
    /// alone at that pace (measured with the `relay` scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_latency_ms: Option<RelayLatency>,
}

impl Report {
    /// The report of these results.
    pub fn new(
        settings: Settings,
        scenarios: Vec<ScenarioResult>,
        relay_latency_ms: Option<RelayLatency>,
    ) -> Self {
        let latency_ms = scenarios.iter().find_map(|s| s.latency_ms);
        let mediator_overhead_ns = scenarios.iter().find_map(|s| s.overhead_ns);
        Self {
            settings,
            scenarios,
            latency_ms,
            mediator_overhead_ns,
            peak_rss_mb: peak_rss_mb().unwrap_or(0.0),
            relay_latency_ms,
        }
    }

    /// The table for a terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<18} {:>14} {:>14} {:>7}  {:<32} met",
            "scenario", "ferry", "baseline", "ratio", "aim"
        );
        for s in &self.scenarios {
            let (ferry, baseline) = match (s.name, s.ns_per_call) {
                ("mediator", Some(ns)) => (
                    format!("{:.1} ns/send", ns.ferry),
                    format!("{:.1} ns/call", ns.baseline),
                ),
                _ => (
                    format!("{}/s", thousands(s.ferry_per_s)),
                    format!("{}/s", thousands(s.baseline_per_s)),
                ),
            };
            let met = match s.aim_met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            let _ = writeln!(
                out,
                "{:<18} {:>14} {:>14} {:>7.3}  {:<32} {}",
                s.name, ferry, baseline, s.ratio, s.aim, met
            );
        }
        for s in &self.scenarios {
            if let Some(l) = s.latency_ms {
                let _ = write!(
                    out,
                    "\nend to end latency (outbox commit -> handler start): p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    l.p50, l.p95, l.p99, l.max
                );
                if let Some(b) = s.baseline_latency_ms {
                    let _ = write!(
                        out,
                        "\n  raw lapin publish -> delivery:                      p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                        b.p50, b.p95, b.p99, b.max
                    );
                }
            }
            if let (Some(w), Some(r)) = (s.same_wire_per_s, s.ratio_same_wire) {
                let _ = write!(
                    out,
                    "\n{}: raw lapin with ferry's exact wire messages ({}): {}/s, ratio {r:.3}",
                    s.name,
                    if s.name.ends_with("_structured") {
                        "structured mode, no headers"
                    } else {
                        "CloudEvents headers"
                    },
                    thousands(w)
                );
            }
            if let Some(b) = &s.ferry_breakdown {
                let parts: Vec<String> = b.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let _ = write!(out, "\n{} (ferry): {}", s.name, parts.join(", "));
            }
            if let Some(o) = s.overhead_ns {
                let _ = write!(out, "\nmediator overhead: {o:.1} ns per send");
            }
        }
        if let Some(r) = &self.relay_latency_ms {
            let _ = write!(
                out,
                "\nrelay latency (outbox commit -> publisher confirm, {}/s, LISTEN/NOTIFY): p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n  broker alone (raw lapin publish -> confirm):                       p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                r.rate_per_s,
                r.p50,
                r.p95,
                r.p99,
                r.max,
                r.broker.p50,
                r.broker.p95,
                r.broker.p99,
                r.broker.max
            );
        }
        let st = &self.settings;
        let _ = write!(
            out,
            "\npeak RSS: {:.1} MB\nsettings: {} messages x {} rounds, {}-byte bodies, {} publishes in flight, \
             prefetch {}, persistent, confirms, consumer concurrency {}, relay batch {} ({} at once); \
             {} CPUs ({}), {} build\n",
            self.peak_rss_mb,
            thousands(st.messages as f64),
            st.rounds,
            st.body_bytes,
            st.publishes_in_flight,
            st.prefetch,
            st.consumer_concurrency,
            st.relay_batch_size,
            st.relay_batches_in_flight,
            st.machine.cpus,
            st.machine.cpu_model,
            st.machine.build
        );
        out
    }
}

fn status_kb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb)
}

/// The process's resident memory now, in MB (`VmRSS`; `None` off Linux).
pub fn rss_mb() -> Option<f64> {
    status_kb("VmRSS:").map(|kb| round_to(kb / 1024.0, 1))
}

/// The process's peak resident memory, in MB (`VmHWM`; `None` off Linux).
pub fn peak_rss_mb() -> Option<f64> {
    status_kb("VmHWM:").map(|kb| round_to(kb / 1024.0, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_mb().is_some_and(|mb| mb > 0.0));
            assert!(peak_rss_mb().is_some_and(|mb| mb > 0.0));
        }
    }
}
