//! The scenarios behind `ferry bench`: ferry against raw lapin (and a direct call, for the
//! Mediator), each scenario's two sides run alternately in this process, the median of the
//! rounds reported. Not published: the `ferry` command (ferry-cli) parses the flags
//! (`docs/command.md`) and calls [`run`].
//!
//! Everything runs on what the bench creates and removes: an exchange, queues and a
//! PostgreSQL database named with a random suffix (`ferry-bench-<suffix>.*`,
//! `ferry_bench_<suffix>`). Fixed settings for both sides: 256-byte bodies, 1,000 publishes
//! in flight, prefetch 200, persistent messages, publisher confirms.
//!
//! [`Outcome::render`] gives the table (or one JSON object) for standard output; progress goes
//! to standard error.

mod baseline;
mod consume;
mod end_to_end;
mod error;
mod event;
mod harness;
mod mediator;
mod probes;
mod publish;
mod relay;
mod relay_latency;
mod report;
mod soak;
pub mod stats;

use ferry::{ContentMode, RelayOptions};

pub use error::BenchError;

pub use harness::DEFAULT_DATABASE_URL;
use harness::{Database, Harness};
pub use report::Report;
use report::{Machine, Measured, ScenarioResult, Settings};
pub use soak::SoakReport;
use stats::thousands;

/// Messages per round when `--messages` is not given.
pub const DEFAULT_MESSAGES: u64 = 20_000;

/// Messages of a soak when `--messages` is not given.
pub const DEFAULT_SOAK_MESSAGES: u64 = 1_000_000;

/// Handlers ferry's consumers run at once unless told otherwise.
pub const DEFAULT_CONSUMER_CONCURRENCY: u16 = 16;

/// Calls per Mediator round.
const MEDIATOR_ITERATIONS: u64 = 1_000_000;

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum ScenarioName {
    /// ferry's publisher against raw lapin.
    #[value(name = "publish")]
    Publish,
    /// ferry's publisher in structured content mode against raw lapin.
    #[value(name = "publish_structured")]
    PublishStructured,
    /// The outbox relay against raw lapin.
    #[value(name = "relay")]
    Relay,
    /// The outbox relay publishing in structured content mode against raw lapin.
    #[value(name = "relay_structured")]
    RelayStructured,
    /// ferry's consumer against raw lapin.
    #[value(name = "consume")]
    Consume,
    /// ferry's consumer with the PostgreSQL inbox against raw lapin.
    #[value(name = "consume_inbox")]
    ConsumeInbox,
    /// Outbox commit to handler start, against raw publish to delivery.
    #[value(name = "end_to_end")]
    EndToEnd,
    /// Mediator `send` against a direct call.
    #[value(name = "mediator")]
    Mediator,
}

impl ScenarioName {
    const ALL: [ScenarioName; 8] = [
        ScenarioName::Publish,
        ScenarioName::PublishStructured,
        ScenarioName::Relay,
        ScenarioName::RelayStructured,
        ScenarioName::Consume,
        ScenarioName::ConsumeInbox,
        ScenarioName::EndToEnd,
        ScenarioName::Mediator,
    ];

    fn needs_database(self) -> bool {
        matches!(
            self,
            ScenarioName::Relay
                | ScenarioName::RelayStructured
                | ScenarioName::ConsumeInbox
                | ScenarioName::EndToEnd
        )
    }
}

/// What one run of the bench does: the flags of `ferry bench` (`docs/command.md`).
#[derive(Debug, Clone)]
pub struct Options {
    /// The AMQP URL of the broker.
    pub amqp_url: String,
    /// The PostgreSQL server the bench creates its database on ([`DEFAULT_DATABASE_URL`]
    /// when `None`).
    pub database_url: Option<String>,
    /// Messages per round of each throughput scenario ([`DEFAULT_MESSAGES`], or
    /// [`DEFAULT_SOAK_MESSAGES`] with `soak`, when `None`).
    pub messages: Option<u64>,
    /// Rounds of each side of a scenario, run alternately; the median is reported.
    pub rounds: u32,
    /// The scenarios to run (all when empty).
    pub scenarios: Vec<ScenarioName>,
    /// Instead of the scenarios: consume `messages` with ferry while sampling memory.
    pub soak: bool,
    /// Handlers ferry's consumers run at once.
    pub consumer_concurrency: u16,
    /// Rows the outbox relay claims and publishes per batch (the relay's default when `None`).
    pub relay_batch_size: Option<u16>,
    /// Batches the outbox relay publishes at once (the relay's default when `None`); ferry's
    /// publisher gets as many confirm channels.
    pub relay_batches_in_flight: Option<u16>,
    /// The type of every queue of the run, ferry's and the baselines' (classic by default).
    pub queue_type: ferry::QueueType,
}

/// A scenario's name in the report and what each of its sides does, in words.
#[derive(Debug)]
pub struct About {
    /// The name in the report.
    pub name: &'static str,
    /// What the ferry side does.
    pub ferry: &'static str,
    /// What the baseline does.
    pub baseline: &'static str,
}

/// One scenario: a ferry side and a baseline side, run alternately.
trait Scenario {
    /// The scenario's name and what each side does.
    fn about(&self) -> &'static About;

    /// The name in the report.
    fn name(&self) -> &'static str {
        self.about().name
    }

    /// One round of ferry.
    async fn ferry(&mut self, harness: &Harness) -> Result<Measured, BenchError>;

    /// One round of the baseline.
    async fn baseline(&mut self, harness: &Harness) -> Result<Measured, BenchError>;

    /// One round of a second baseline (raw lapin with ferry's exact wire messages), for the
    /// scenarios that have one.
    async fn same_wire(&mut self, _harness: &Harness) -> Option<Result<Measured, BenchError>> {
        None
    }

    /// The result of all rounds.
    fn result(
        &self,
        ferry: &[Measured],
        baseline: &[Measured],
        same_wire: &[Measured],
    ) -> ScenarioResult {
        ScenarioResult::new(self.about(), ferry, baseline).with_same_wire(same_wire)
    }
}

/// Runs `rounds` rounds of each side, alternating which goes first.
async fn measure<S: Scenario>(
    harness: &Harness,
    mut scenario: S,
    rounds: u32,
) -> Result<ScenarioResult, BenchError> {
    let (mut ferry, mut baseline, mut same_wire) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (f, b, w) = if round % 2 == 0 {
            let f = scenario.ferry(harness).await?;
            let b = scenario.baseline(harness).await?;
            (f, b, scenario.same_wire(harness).await.transpose()?)
        } else {
            let w = scenario.same_wire(harness).await.transpose()?;
            let b = scenario.baseline(harness).await?;
            (scenario.ferry(harness).await?, b, w)
        };
        let detail = match (f.ns_per_call, b.ns_per_call, f.latency) {
            (Some(fns), Some(bns), _) => format!("send {fns:.1} ns, direct {bns:.1} ns"),
            (_, _, Some(l)) => format!(
                "ferry {}/s p99 {:.2} ms, baseline {}/s p99 {:.2} ms",
                thousands(f.per_s),
                l.p99,
                thousands(b.per_s),
                b.latency.map_or(0.0, |l| l.p99)
            ),
            _ => format!(
                "ferry {}/s, baseline {}/s{}",
                thousands(f.per_s),
                thousands(b.per_s),
                w.as_ref().map_or(String::new(), |w| format!(
                    ", raw with ferry's wire {}/s",
                    thousands(w.per_s)
                ))
            ),
        };
        eprintln!(
            "bench: [{:>6.1} s] {} round {}/{rounds}: {detail}",
            harness.elapsed_s(),
            scenario.name(),
            round + 1
        );
        ferry.push(f);
        baseline.push(b);
        same_wire.extend(w);
    }
    Ok(scenario.result(&ferry, &baseline, &same_wire))
}

/// What one run was asked to do.
struct Plan {
    messages: u64,
    rounds: u32,
    concurrency: usize,
    relay: RelayOptions,
    scenarios: Vec<ScenarioName>,
}

impl Plan {
    fn end_to_end_events(&self) -> u64 {
        self.messages.min(end_to_end::MAX_EVENTS)
    }

    fn settings(&self, harness: &Harness) -> Settings {
        Settings {
            messages: self.messages,
            rounds: self.rounds,
            body_bytes: event::BODY_BYTES,
            publishes_in_flight: baseline::WINDOW,
            prefetch: baseline::PREFETCH,
            persistent: true,
            publisher_confirms: true,
            mandatory: true,
            consumer_concurrency: self.concurrency,
            relay_batch_size: self.relay.batch_size,
            relay_batches_in_flight: self.relay.batches_in_flight,
            end_to_end_events: self.end_to_end_events(),
            end_to_end_rate_per_s: end_to_end::RATE_PER_S,
            mediator_iterations: MEDIATOR_ITERATIONS,
            postgresql: harness.db.as_ref().map(|db| db.server_version.clone()),
            machine: Machine::detect(),
            queue_type: (harness.queue_type != ferry::QueueType::Classic)
                .then(|| harness.queue_type.to_string()),
        }
    }

    async fn run(
        &self,
        harness: &Harness,
    ) -> Result<(Vec<ScenarioResult>, Option<relay_latency::RelayLatency>), BenchError> {
        let mut results = Vec::new();
        let mut commit_to_confirm = None;
        for name in &self.scenarios {
            eprintln!(
                "bench: [{:>6.1} s] {name:?}: preparing",
                harness.elapsed_s()
            );
            let (n, rounds, c) = (self.messages, self.rounds, self.concurrency);
            let result = match name {
                ScenarioName::Publish | ScenarioName::PublishStructured => {
                    let mode = content_mode(*name == ScenarioName::PublishStructured);
                    let scenario = publish::Publish::prepare(harness, n, mode).await?;
                    measure(harness, scenario, rounds).await
                }
                ScenarioName::RelayStructured => {
                    let mode = ContentMode::Structured;
                    let scenario = relay::Relay::prepare(harness, n, self.relay, mode).await?;
                    measure(harness, scenario, rounds).await
                }
                ScenarioName::Relay => {
                    let mode = ContentMode::Binary;
                    let scenario = relay::Relay::prepare(harness, n, self.relay, mode).await?;
                    let drained = measure(harness, scenario, rounds).await?;
                    eprintln!(
                        "bench: [{:>6.1} s] relay latency at {}/s: preparing",
                        harness.elapsed_s(),
                        relay_latency::RATE_PER_S
                    );
                    let latency =
                        relay_latency::RelayLatencyBench::prepare(harness, n, self.relay).await?;
                    commit_to_confirm = Some(latency.measure(harness, rounds).await?);
                    Ok(drained)
                }
                ScenarioName::Consume => {
                    let scenario = consume::Consume::prepare(harness, n, c, false).await?;
                    measure(harness, scenario, rounds).await
                }
                ScenarioName::ConsumeInbox => {
                    let scenario = consume::Consume::prepare(harness, n, c, true).await?;
                    measure(harness, scenario, rounds).await
                }
                ScenarioName::EndToEnd => {
                    let events = self.end_to_end_events();
                    let scenario =
                        end_to_end::EndToEnd::prepare(harness, events, c, self.relay).await?;
                    measure(harness, scenario, rounds).await
                }
                ScenarioName::Mediator => {
                    let scenario = mediator::MediatorBench::prepare(MEDIATOR_ITERATIONS)?;
                    measure(harness, scenario, rounds).await
                }
            }?;
            results.push(result);
        }
        Ok((results, commit_to_confirm))
    }
}

fn content_mode(structured: bool) -> ContentMode {
    if structured {
        ContentMode::Structured
    } else {
        ContentMode::Binary
    }
}

/// What a run found: the report `ferry bench` prints.
#[derive(Debug)]
pub enum Outcome {
    /// The scenarios' report.
    Scenarios(Report),
    /// The soak's report.
    Soak(SoakReport),
}

impl Outcome {
    /// The table for a terminal, or with `json` one JSON object (no newline at its end).
    pub fn render(&self, json: bool) -> Result<String, BenchError> {
        let text = match (self, json) {
            (Outcome::Scenarios(report), false) => return Ok(report.table()),
            (Outcome::Soak(report), false) => return Ok(report.table()),
            (Outcome::Scenarios(report), true) => serde_json::to_string(report),
            (Outcome::Soak(report), true) => serde_json::to_string(report),
        };
        text.map_err(|e| BenchError::Runtime(format!("cannot write the report: {e}")))
    }

    /// Why the run failed although it completed: a soak whose memory did not stay flat.
    pub fn failure(&self) -> Option<String> {
        match self {
            Outcome::Soak(report) if !report.soak.flat => Some(format!(
                "bench: memory grew {:.1} MB during the soak: not flat",
                report.soak.growth_mb
            )),
            _ => None,
        }
    }
}

/// Runs the bench: creates what it runs on, runs the scenarios (or the soak), removes what it
/// created (also on Ctrl-C) and returns the report.
pub async fn run(options: Options) -> Result<Outcome, BenchError> {
    let mut scenarios = if options.scenarios.is_empty() {
        ScenarioName::ALL.to_vec()
    } else {
        options.scenarios.clone()
    };
    scenarios.sort_unstable();
    scenarios.dedup();
    let plan = Plan {
        messages: options.messages.unwrap_or(if options.soak {
            DEFAULT_SOAK_MESSAGES
        } else {
            DEFAULT_MESSAGES
        }),
        rounds: options.rounds,
        concurrency: usize::from(options.consumer_concurrency),
        relay: RelayOptions {
            batch_size: options
                .relay_batch_size
                .map_or(RelayOptions::default().batch_size, usize::from),
            batches_in_flight: options
                .relay_batches_in_flight
                .map_or(RelayOptions::default().batches_in_flight, usize::from),
            ..RelayOptions::default()
        },
        scenarios,
    };
    let needs_database = !options.soak && plan.scenarios.iter().any(|s| s.needs_database());
    let database = if needs_database {
        Some(Database::options(options.database_url.as_deref())?)
    } else {
        None
    };
    let harness = Harness::open(
        &options.amqp_url,
        database,
        plan.relay.batches_in_flight,
        options.queue_type,
    )
    .await?;
    eprintln!(
        "bench: exchange {}, database {}{}",
        harness.names.exchange,
        if harness.db.is_some() {
            harness.names.database.as_str()
        } else {
            "(none)"
        },
        if cfg!(debug_assertions) {
            "; a debug build: build with --release for figures that mean something"
        } else {
            ""
        }
    );
    let outcome = {
        let work = async {
            if options.soak {
                let result = soak::run(&harness, plan.messages, plan.concurrency).await?;
                Ok(Outcome::Soak(soak::report(plan.settings(&harness), result)))
            } else {
                let (results, relay_latency) = plan.run(&harness).await?;
                Ok(Outcome::Scenarios(Report::new(
                    plan.settings(&harness),
                    results,
                    relay_latency,
                )))
            }
        };
        tokio::select! {
            outcome = work => outcome,
            _ = tokio::signal::ctrl_c() => Err(BenchError::Runtime(
                "interrupted; the bench's queues, exchanges and database are removed".into(),
            )),
        }
    };
    harness.cleanup().await;
    outcome
}
