//! `ferry bench`: ferry against raw lapin (and a direct call, for the Mediator), each
//! scenario's two sides run alternately in this process, the median of the rounds reported.
//!
//! Everything runs on what the bench creates and removes: an exchange, queues and a
//! PostgreSQL database named with a random suffix (`ferry-bench-<suffix>.*`,
//! `ferry_bench_<suffix>`). Fixed settings for both sides: 256-byte bodies, 1,000 publishes
//! in flight, prefetch 200, persistent messages, publisher confirms.
//!
//! Standard output carries the table (or, with `--json`, one JSON object); progress goes to
//! standard error.

mod baseline;
mod consume;
mod end_to_end;
mod event;
mod harness;
mod mediator;
mod probes;
mod publish;
mod relay;
mod relay_latency;
mod report;
mod soak;

use std::process::ExitCode;

use ferry::RelayOptions;

use crate::{
    Global,
    error::{CliError, CliResult},
};

use harness::{Database, Harness};
use report::{Machine, Measured, Report, ScenarioResult, Settings, thousands};

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
    /// The outbox relay against raw lapin.
    #[value(name = "relay")]
    Relay,
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
    const ALL: [ScenarioName; 6] = [
        ScenarioName::Publish,
        ScenarioName::Relay,
        ScenarioName::Consume,
        ScenarioName::ConsumeInbox,
        ScenarioName::EndToEnd,
        ScenarioName::Mediator,
    ];

    fn needs_database(self) -> bool {
        matches!(
            self,
            ScenarioName::Relay | ScenarioName::ConsumeInbox | ScenarioName::EndToEnd
        )
    }
}

/// Arguments of `ferry bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Messages per round of each throughput scenario [default: 20000; 1000000 with --soak].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub messages: Option<u64>,
    /// Rounds of each side of a scenario, run alternately; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run only these scenarios (comma-separated): publish, relay, consume, consume_inbox,
    /// end_to_end, mediator.
    #[arg(
        long = "scenario",
        value_enum,
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub scenarios: Vec<ScenarioName>,
    /// Instead of the scenarios: consume --messages (default 1,000,000) with ferry while
    /// sampling memory; exit 1 when it does not stay flat.
    #[arg(long, conflicts_with = "scenarios")]
    pub soak: bool,
    /// Handlers ferry's consumers run at once.
    #[arg(long, default_value_t = DEFAULT_CONSUMER_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub consumer_concurrency: u16,
    /// Rows the outbox relay claims and publishes per batch [default: the relay's default].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub relay_batch_size: Option<u16>,
    /// Batches the outbox relay publishes at once [default: the relay's default]; ferry's
    /// publisher gets as many confirm channels.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub relay_batches_in_flight: Option<u16>,
}

/// One scenario: a ferry side and a baseline side, run alternately.
trait Scenario {
    /// The name in the report.
    fn name(&self) -> &'static str;

    /// What each side does, in words.
    fn sides(&self) -> (&'static str, &'static str);

    /// One round of ferry.
    async fn ferry(&mut self, harness: &Harness) -> Result<Measured, CliError>;

    /// One round of the baseline.
    async fn baseline(&mut self, harness: &Harness) -> Result<Measured, CliError>;

    /// One round of a second baseline (raw lapin with ferry's exact wire messages), for the
    /// scenarios that have one.
    async fn same_wire(&mut self, _harness: &Harness) -> Option<Result<Measured, CliError>> {
        None
    }

    /// The result of all rounds.
    fn result(
        &self,
        ferry: &[Measured],
        baseline: &[Measured],
        same_wire: &[Measured],
    ) -> ScenarioResult {
        ScenarioResult::new(self.name(), self.sides(), ferry, baseline).with_same_wire(same_wire)
    }
}

/// Runs `rounds` rounds of each side, alternating which goes first.
async fn measure<S: Scenario>(
    harness: &Harness,
    mut scenario: S,
    rounds: u32,
) -> Result<ScenarioResult, CliError> {
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
        }
    }

    async fn run(
        &self,
        harness: &Harness,
    ) -> Result<(Vec<ScenarioResult>, Option<relay_latency::RelayLatency>), CliError> {
        let mut results = Vec::new();
        let mut commit_to_confirm = None;
        for name in &self.scenarios {
            eprintln!(
                "bench: [{:>6.1} s] {name:?}: preparing",
                harness.elapsed_s()
            );
            let (n, rounds, c) = (self.messages, self.rounds, self.concurrency);
            let result = match name {
                ScenarioName::Publish => {
                    measure(
                        harness,
                        publish::Publish::prepare(harness, n).await?,
                        rounds,
                    )
                    .await
                }
                ScenarioName::Relay => {
                    let scenario = relay::Relay::prepare(harness, n, self.relay).await?;
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

enum Outcome {
    Scenarios(
        Vec<ScenarioResult>,
        Option<relay_latency::RelayLatency>,
        Settings,
    ),
    Soak(soak::SoakResult, Settings),
}

/// Runs `ferry bench`.
pub async fn run(global: &Global, args: BenchArgs) -> CliResult {
    let mut scenarios = if args.scenarios.is_empty() {
        ScenarioName::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    scenarios.sort_unstable();
    scenarios.dedup();
    let plan = Plan {
        messages: args.messages.unwrap_or(if args.soak {
            DEFAULT_SOAK_MESSAGES
        } else {
            DEFAULT_MESSAGES
        }),
        rounds: args.rounds,
        concurrency: usize::from(args.consumer_concurrency),
        relay: RelayOptions {
            batch_size: args
                .relay_batch_size
                .map_or(RelayOptions::default().batch_size, usize::from),
            batches_in_flight: args
                .relay_batches_in_flight
                .map_or(RelayOptions::default().batches_in_flight, usize::from),
            ..RelayOptions::default()
        },
        scenarios,
    };
    let needs_database = !args.soak && plan.scenarios.iter().any(|s| s.needs_database());
    let database = if needs_database {
        Some(Database::options(global.database_url.as_deref())?)
    } else {
        None
    };
    let harness = Harness::open(global, database, plan.relay.batches_in_flight).await?;
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
            if args.soak {
                let result = soak::run(&harness, plan.messages, plan.concurrency).await?;
                Ok(Outcome::Soak(result, plan.settings(&harness)))
            } else {
                let (results, relay_latency) = plan.run(&harness).await?;
                Ok(Outcome::Scenarios(
                    results,
                    relay_latency,
                    plan.settings(&harness),
                ))
            }
        };
        tokio::select! {
            outcome = work => outcome,
            _ = tokio::signal::ctrl_c() => Err(CliError::Runtime(
                "interrupted; the bench's queues, exchanges and database are removed".into(),
            )),
        }
    };
    harness.cleanup().await;
    match outcome? {
        Outcome::Scenarios(results, relay_latency, settings) => {
            let report = Report::new(settings, results, relay_latency);
            print(args.json, &report, Report::table)?;
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Soak(result, settings) => {
            let report = soak::report(settings, result);
            print(args.json, &report, soak::SoakReport::table)?;
            if report.soak.flat {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "bench: memory grew {:.1} MB during the soak: not flat",
                    report.soak.growth_mb
                );
                Ok(ExitCode::from(1))
            }
        }
    }
}

fn print<T: serde::Serialize>(
    json: bool,
    value: &T,
    table: fn(&T) -> String,
) -> Result<(), CliError> {
    if json {
        let text = serde_json::to_string(value)
            .map_err(|e| CliError::Runtime(format!("cannot write the report: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", table(value));
    }
    Ok(())
}
