//! `ferry outbox status|list|retry`: the operator's view of the outbox on `--database-url`
//! (PostgreSQL or SQLite); without one, the demo's database (`ferry-demo.sqlite` in the
//! current directory), as `ferry demo` does.

use std::{process::ExitCode, str::FromStr, time::Duration};

use ferry::{
    admin::{OutboxStats, OutboxStatus},
    plumbing::{OutboxError, OutboxStore},
};
use serde_json::json;

use crate::{
    Global,
    error::{CliError, CliResult},
};

/// Arguments of `ferry outbox`.
#[derive(Debug, clap::Args)]
pub struct OutboxArgs {
    #[command(subcommand)]
    command: OutboxCommand,
}

#[derive(Debug, clap::Subcommand)]
enum OutboxCommand {
    /// Counts by status, the oldest pending row's age, dead rows.
    Status {
        /// JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Rows, newest first (the body left out).
    List {
        /// Only rows with this status.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// At most this many rows.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
        /// JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Brings rows back to pending, attempts reset, due now.
    Retry {
        /// The row to retry.
        #[arg(
            long,
            conflicts_with = "all_dead",
            required_unless_present = "all_dead"
        )]
        id: Option<String>,
        /// Every dead row.
        #[arg(long)]
        all_dead: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Status {
    Pending,
    Published,
    Dead,
}

impl From<Status> for OutboxStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Pending => OutboxStatus::Pending,
            Status::Published => OutboxStatus::Published,
            Status::Dead => OutboxStatus::Dead,
        }
    }
}

/// The outbox on one of the two databases.
enum Outbox {
    Pg(ferry::postgres::PgOutbox),
    Sqlite(ferry::sqlite::SqliteOutbox),
}

macro_rules! each {
    ($outbox:expr, $o:ident => $body:expr) => {
        match $outbox {
            Outbox::Pg($o) => $body,
            Outbox::Sqlite($o) => $body,
        }
    };
}

impl Outbox {
    async fn open(global: &Global) -> Result<Self, CliError> {
        let url = match global.database_url.as_deref() {
            Some(url) => url,
            // Opening it would create an empty file: say what is missing instead.
            None if !std::path::Path::new(crate::demo::DEFAULT_DATABASE_FILE).exists() => {
                return Err(CliError::Usage(format!(
                    "no {} (the demo's database) in the current directory: run `ferry demo` \
                     here or pass --database-url (or DATABASE_URL): postgres://… or sqlite:…",
                    crate::demo::DEFAULT_DATABASE_FILE
                )));
            }
            None => crate::demo::DEFAULT_DATABASE_URL,
        };
        let failed =
            |e: sqlx::Error| CliError::Runtime(format!("cannot open {}: {e}", crate::redact(url)));
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(failed)?;
            Ok(Outbox::Pg(ferry::postgres::PgOutbox::new(pool)))
        } else if url.starts_with("sqlite:") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .map_err(|e| CliError::Usage(format!("bad --database-url: {e}")))?
                .busy_timeout(Duration::from_secs(10));
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .map_err(failed)?;
            Ok(Outbox::Sqlite(ferry::sqlite::SqliteOutbox::new(pool)))
        } else {
            Err(CliError::Usage(format!(
                "--database-url must start with postgres:// or sqlite: (got `{}`)",
                crate::redact(url)
            )))
        }
    }
}

/// A row as `list` shows it.
struct Row {
    id: String,
    status: OutboxStatus,
    attempts: u32,
    routing_key: String,
    created_at: chrono::DateTime<chrono::Utc>,
    last_error: Option<String>,
    json: serde_json::Value,
}

fn runtime(e: OutboxError) -> CliError {
    // The error, then its cause (the driver's error): one line, as before the error kept it.
    let text = match std::error::Error::source(&e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    };
    if text.contains("ferry_outbox")
        && (text.contains("does not exist") || text.contains("no such table"))
    {
        return CliError::Runtime(
            "the database has no ferry_outbox table: ferry's migrations have not run on it \
             (the application runs them with ferry::postgres::migrate / ferry::sqlite::migrate)"
                .into(),
        );
    }
    CliError::Runtime(text)
}

/// Dead rows shown by `status` at most.
const DEAD_ROWS_SHOWN: u32 = 10;

/// Runs `ferry outbox`.
pub async fn run(global: &Global, args: OutboxArgs) -> CliResult {
    let outbox = Outbox::open(global).await?;
    match args.command {
        OutboxCommand::Status { json } => {
            let stats: OutboxStats = each!(&outbox, o => o.stats().await).map_err(runtime)?;
            // The newest dead rows: what an operator looks at first.
            let dead_rows: Vec<serde_json::Value> = if stats.dead > 0 {
                each!(&outbox, o => o
                    .list(Some(OutboxStatus::Dead), DEAD_ROWS_SHOWN)
                    .await
                    .map_err(runtime)?
                    .into_iter()
                    .map(|r| json!({
                        "id": r.id,
                        "event_type": r.event_type,
                        "routing_key": r.routing_key,
                        "attempts": r.attempts,
                        "last_error": r.last_error,
                        "created_at": r.created_at,
                    }))
                    .collect())
            } else {
                Vec::new()
            };
            if json {
                println!(
                    "{}",
                    json!({
                        "pending": stats.pending,
                        "published": stats.published,
                        "dead": stats.dead,
                        "oldest_pending_age_s": stats.oldest_pending_age_s,
                        "dead_rows": dead_rows,
                    })
                );
            } else {
                println!("pending    {}", stats.pending);
                println!("published  {}", stats.published);
                println!("dead       {}", stats.dead);
                match stats.oldest_pending_age_s {
                    Some(age) => println!("oldest pending  {age:.1} s"),
                    None => println!("oldest pending  -"),
                }
                if !dead_rows.is_empty() {
                    println!();
                    println!("dead rows (newest {}):", dead_rows.len());
                    for row in &dead_rows {
                        println!(
                            "  {}  {}  attempts {}  {}",
                            row["id"].as_str().unwrap_or(""),
                            row["routing_key"].as_str().unwrap_or(""),
                            row["attempts"],
                            row["last_error"].as_str().unwrap_or("")
                        );
                    }
                }
            }
        }
        OutboxCommand::List {
            status,
            limit,
            json,
        } => {
            let status = status.map(OutboxStatus::from);
            // The two stores' rows have the same fields; one view of them here.
            let rows: Vec<Row> = each!(&outbox, o => o
                .list(status, limit)
                .await
                .map_err(runtime)?
                .into_iter()
                .map(|r| Row {
                    json: serde_json::to_value(&r).unwrap_or_default(),
                    id: r.id,
                    status: r.status,
                    attempts: r.attempts,
                    routing_key: r.routing_key,
                    created_at: r.created_at,
                    last_error: r.last_error,
                })
                .collect());
            if json {
                let rows: Vec<&serde_json::Value> = rows.iter().map(|r| &r.json).collect();
                println!(
                    "{}",
                    serde_json::Value::from(rows.into_iter().cloned().collect::<Vec<_>>())
                );
            } else {
                println!(
                    "{:<36}  {:<9}  {:>8}  {:<32}  {:<25}  last error",
                    "id", "status", "attempts", "routing key", "created"
                );
                for row in &rows {
                    println!(
                        "{:<36}  {:<9}  {:>8}  {:<32}  {:<25}  {}",
                        row.id,
                        row.status.as_str(),
                        row.attempts,
                        row.routing_key,
                        row.created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        row.last_error.as_deref().unwrap_or("")
                    );
                }
                eprintln!("{} row(s)", rows.len());
            }
        }
        OutboxCommand::Retry { id: Some(id), .. } => {
            let retried = match &outbox {
                Outbox::Pg(o) => o
                    .retry(&id)
                    .await
                    .map(|r| r == ferry::postgres::RetryOutcome::Retried),
                Outbox::Sqlite(o) => o
                    .retry(&id)
                    .await
                    .map(|r| r == ferry::sqlite::RetryOutcome::Retried),
            };
            match retried {
                Ok(true) => println!("{id}"),
                Ok(false) => {
                    return Err(CliError::Runtime(format!(
                        "outbox row `{id}` is already published: only dead or pending rows can be retried"
                    )));
                }
                Err(OutboxError::NotFound(_)) => {
                    return Err(CliError::Runtime(format!("no outbox row with id `{id}`")));
                }
                Err(e) => return Err(runtime(e)),
            }
        }
        OutboxCommand::Retry { id: None, .. } => {
            let ids = each!(&outbox, o => o.retry_all_dead().await).map_err(runtime)?;
            for id in &ids {
                println!("{id}");
            }
            eprintln!("{} dead row(s) back to pending", ids.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
