//! `ferry bench`: the flags (`docs/command.md`); the scenarios are in the ferry-bench crate.

use std::process::ExitCode;

use ferry_bench::{BenchError, DEFAULT_CONSUMER_CONCURRENCY, Options, ScenarioName};

use crate::{
    Global,
    error::{CliError, CliResult},
};

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
    /// end_to_end, mediator (the default set); relay_sqlite, consume_inbox_sqlite, load_curve.
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
    /// Draw the load curve as a PNG at FILE (with --scenario load_curve).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<std::path::PathBuf>,
    /// The type of the queues, ferry's and the baselines': classic or quorum.
    #[arg(long, value_enum, default_value_t = QueueTypeArg::Classic)]
    pub queue_type: QueueTypeArg,
}

/// `--queue-type` of `ferry bench` and `ferry demo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueTypeArg {
    /// Classic queues.
    Classic,
    /// Quorum queues (replicated).
    Quorum,
}

impl From<QueueTypeArg> for ferry::QueueType {
    fn from(arg: QueueTypeArg) -> Self {
        match arg {
            QueueTypeArg::Classic => ferry::QueueType::Classic,
            QueueTypeArg::Quorum => ferry::QueueType::Quorum,
        }
    }
}

/// Runs `ferry bench`.
pub async fn run(global: &Global, args: BenchArgs) -> CliResult {
    let outcome = ferry_bench::run(Options {
        amqp_url: global.amqp_url.clone(),
        database_url: global.database_url.clone(),
        messages: args.messages,
        rounds: args.rounds,
        scenarios: args.scenarios,
        soak: args.soak,
        consumer_concurrency: args.consumer_concurrency,
        relay_batch_size: args.relay_batch_size,
        relay_batches_in_flight: args.relay_batches_in_flight,
        queue_type: args.queue_type.into(),
        plot: args.plot,
    })
    .await?;
    let text = outcome.render(args.json)?;
    if args.json {
        println!("{text}");
    } else {
        print!("{text}");
    }
    match outcome.failure() {
        None => Ok(ExitCode::SUCCESS),
        Some(why) => {
            eprintln!("{why}");
            Ok(ExitCode::from(1))
        }
    }
}

impl From<BenchError> for CliError {
    fn from(e: BenchError) -> Self {
        match e {
            BenchError::Usage(m) => CliError::Usage(m),
            BenchError::Runtime(m) => CliError::Runtime(m),
            BenchError::Timeout(m) => CliError::Timeout(m),
        }
    }
}
