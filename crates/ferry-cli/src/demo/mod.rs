//! `ferry demo`: the seed's scenario end to end (`docs/command.md`).

mod contract;
mod db;
mod events;
mod faults;
#[cfg(test)]
mod harness_tests;
mod orders;
mod progress;
mod report;
mod scenario;
mod sql;
mod stores;

use std::{process::ExitCode, str::FromStr, time::Duration};

use sqlx::{
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::{
    Global,
    error::{CliError, CliResult},
};

pub use scenario::DemoTransport;

/// The demo's database file when no `--database-url` is given (in the current directory).
pub const DEFAULT_DATABASE_FILE: &str = "ferry-demo.sqlite";
/// [`DEFAULT_DATABASE_FILE`] as a database URL.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://ferry-demo.sqlite";

/// The demo's queues, emptied at the start of a run.
pub const DEMO_QUEUES: [&str; 3] = [db::INVENTORY_QUEUE, db::ORDERS_QUEUE, db::DEAD_LETTER_QUEUE];

/// The transport the demo runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// RabbitMQ (the default).
    Rabbitmq,
    /// The in-memory bus: no broker needed.
    Memory,
}

/// Arguments of `ferry demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Orders to create.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub events: u64,
    /// Share of inventory handler attempts that fail transiently (retried; never dead-letters alone).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub fail_rate: f64,
    /// Share of orders whose inventory handler fails permanently (dead-lettered at once).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub permanent_fail_rate: f64,
    /// Seed of the failure decisions.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Give up (exit 3) after this many seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_s: u64,
    /// The transport.
    #[arg(long, value_enum, default_value_t = Transport::Rabbitmq)]
    pub transport: Transport,
    /// The type of the demo's queues [default: quorum when --amqp-url names several nodes,
    /// else classic].
    #[arg(long, value_enum)]
    pub queue_type: Option<crate::commands::bench::QueueTypeArg>,
    /// The first retry delay in milliseconds (then doubling: 3 retries).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub retry_delay_ms: u64,
    /// Print one JSON object on standard output instead of the readable summary.
    #[arg(long)]
    pub json: bool,
    /// Print the demo's AsyncAPI 3.0 document (JSON) on standard output and exit, without
    /// running the demo or connecting to anything.
    #[arg(long)]
    pub print_asyncapi: bool,
    /// Create orders at this steady pace, orders a second (default: all at once, a burst).
    #[arg(long, value_name = "N", value_parser = orders_per_second)]
    pub rate: Option<f64>,
    /// Serve the metrics in Prometheus format at http://ADDR/metrics while the demo runs.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

fn rate(s: &str) -> Result<f64, String> {
    let value: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("`{s}` is not between 0 and 1"))
    }
}

fn orders_per_second(s: &str) -> Result<f64, String> {
    let value: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if value.is_finite() && value > 0.0 && value <= 1_000_000.0 {
        Ok(value)
    } else {
        Err(format!(
            "`{s}` is not an order rate: more than 0 and at most 1000000 a second"
        ))
    }
}

/// Runs `ferry demo`.
pub async fn run(global: &Global, args: DemoArgs) -> CliResult {
    if args.print_asyncapi {
        let document =
            contract::document(&global.exchange, Duration::from_millis(args.retry_delay_ms))
                .map_err(|e| {
                    CliError::Runtime(format!("cannot build the demo's AsyncAPI document: {e}"))
                })?;
        println!("{}", document.to_json_pretty());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(addr) = args.metrics_addr {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| CliError::Runtime(format!("cannot serve metrics at {addr}: {e}")))?;
        tracing::info!(%addr, "serving metrics");
    }
    let config = scenario::Config {
        events: args.events,
        plan: faults::FailurePlan {
            seed: args.seed,
            fail_rate: args.fail_rate,
            permanent_fail_rate: args.permanent_fail_rate,
            max_retries: 3,
        },
        retry_delay: Duration::from_millis(args.retry_delay_ms),
        timeout: Duration::from_secs(args.timeout_s),
        concurrency: 8,
        rate_per_s: args.rate,
        progress: progress::ProgressView::detect(),
    };
    let url = global
        .database_url
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let database = Database::parse(&url)?;
    // The broker first: without one there is nothing to run, and no database file to leave.
    let outcome = match args.transport {
        Transport::Memory => {
            let bus = ferry::memory::MemoryBus::new(global.exchange.clone());
            with_database(&url, database, bus, config).await?
        }
        Transport::Rabbitmq => {
            let queue_type =
                crate::rabbit::demo_queue_type(&global.amqp_url, args.queue_type.map(Into::into));
            let bus = crate::rabbit::connect_for_demo(global, queue_type).await?;
            let outcome = with_database(&url, database, bus.clone(), config).await;
            bus.close().await;
            outcome?
        }
    };
    let (summary, timed_out, interrupted) = match outcome {
        scenario::Outcome::Finished(s) => (s, false, false),
        scenario::Outcome::TimedOut(s) => (s, true, false),
        scenario::Outcome::Interrupted(s) => (s, false, true),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summary).map_err(|e| CliError::Runtime(e.to_string()))?
        );
    } else {
        println!("{}", summary.render());
    }
    if interrupted {
        return Err(CliError::Runtime(format!(
            "interrupted with {} of {} orders settled; the rest stay on the broker and in the outbox",
            summary.orders_confirmed + summary.dead_lettered.min(summary.orders_created),
            args.events
        )));
    }
    if timed_out {
        return Err(CliError::Timeout(format!(
            "timed out after {} s with {} of {} orders settled",
            args.timeout_s,
            summary.orders_confirmed + summary.dead_lettered.min(summary.orders_created),
            args.events
        )));
    }
    Ok(if summary.lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The kind of database a URL names (checked before anything connects).
enum Database {
    Postgres,
    Sqlite(Box<SqliteConnectOptions>),
}

impl Database {
    fn parse(url: &str) -> Result<Self, CliError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Database::Postgres)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| CliError::Usage(format!("bad --database-url: {e}")))?;
            Ok(Database::Sqlite(Box::new(options)))
        } else {
            Err(CliError::Usage(format!(
                "--database-url must start with postgres:// or sqlite: (got `{}`)",
                crate::redact(url)
            )))
        }
    }
}

/// Opens the database (creating the SQLite file if missing) and runs the scenario on it.
async fn with_database<T: DemoTransport>(
    url: &str,
    database: Database,
    bus: T,
    config: scenario::Config,
) -> Result<scenario::Outcome, CliError> {
    match database {
        Database::Postgres => {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(|e| db_error(url, e))?;
            let outbox = ferry::postgres::PgOutbox::new(pool.clone());
            let inbox = ferry::postgres::PgInbox::new(pool.clone());
            let db = stores::PgDemoDb::open(pool, outbox, inbox)
                .await
                .map_err(runtime)?;
            scenario::run(db, bus, config).await.map_err(runtime)
        }
        Database::Sqlite(options) => {
            let options = (*options)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .map_err(|e| db_error(url, e))?;
            let outbox = ferry::sqlite::SqliteOutbox::new(pool.clone());
            let inbox = ferry::sqlite::SqliteInbox::new(pool.clone());
            let db = stores::SqliteDemoDb::open(pool, outbox, inbox)
                .await
                .map_err(runtime)?;
            scenario::run(db, bus, config).await.map_err(runtime)
        }
    }
}

fn runtime(e: anyhow::Error) -> CliError {
    CliError::Runtime(format!("{e:#}"))
}

fn db_error(url: &str, e: sqlx::Error) -> CliError {
    CliError::Runtime(format!(
        "cannot open the database at {}: {e}",
        crate::redact(url)
    ))
}
