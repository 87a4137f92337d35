//! `ferry console`: the web console (crate `ferry-console`) on `--database-url` (default the
//! demo's `ferry-demo.sqlite`) and `--amqp-url`. Prints its URL on standard output once it
//! listens, and runs until interrupted.

use std::{io::Write, net::SocketAddr, process::ExitCode, time::Duration};

use ferry::rabbitmq::RabbitMq;
use ferry_console::{Console, ConsoleError, ConsoleOptions};
use tokio_util::sync::CancellationToken;

use crate::{
    Global,
    error::{CliError, CliResult},
};

/// Arguments of `ferry console`.
#[derive(clap::Args)]
pub struct ConsoleArgs {
    /// The address to listen on (without --token: a loopback address only).
    #[arg(long, default_value = ferry_console::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// The operator token: may read and act (replay, delete, retry).
    #[arg(long, env = "FERRY_CONSOLE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The read token: may only read (needs --token).
    #[arg(long, env = "FERRY_CONSOLE_READ_TOKEN", hide_env_values = true)]
    read_token: Option<String>,
    /// A queue to show (besides those dead letters failed on); repeat for more.
    #[arg(long = "queue")]
    queues: Vec<String>,
}

impl std::fmt::Debug for ConsoleArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleArgs")
            .field("listen", &self.listen)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

fn usage(e: ConsoleError) -> CliError {
    match e {
        ConsoleError::Bind { addr, source } => {
            CliError::Runtime(format!("cannot listen on {addr}: {source}"))
        }
        ConsoleError::Serve(source) => CliError::Runtime(format!("the console failed: {source}")),
        other => CliError::Usage(other.to_string()),
    }
}

/// Runs `ferry console`.
pub async fn run(global: &Global, args: ConsoleArgs) -> CliResult {
    let options = ConsoleOptions {
        listen: args.listen,
        token: args.token,
        read_token: args.read_token,
        queues: args.queues,
    };
    // The configuration is checked before anything is opened: bad usage exits 2 at once.
    check(&options)?;
    let url = database_url(global)?;
    let shutdown = CancellationToken::new();
    let bus = connect_broker(global).await;
    let listening = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await
            .map_err(|e| opened(&url, e))?;
        ferry::postgres::migrate(&pool)
            .await
            .map_err(|e| CliError::Runtime(format!("{e}")))?;
        Console::<ferry::postgres::Postgres>::new(pool, bus, options)
            .map_err(usage)?
            .bind()
            .await
            .map_err(usage)?
    } else if url.starts_with("sqlite:") {
        let options_db = ferry::sqlite::connect_options(&url)
            .map_err(|e| CliError::Usage(format!("bad --database-url: {e}")))?;
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options_db)
            .await
            .map_err(|e| opened(&url, e))?;
        ferry::sqlite::migrate(&pool)
            .await
            .map_err(|e| CliError::Runtime(format!("{e}")))?;
        Console::<ferry::sqlite::Sqlite>::new(pool, bus, options)
            .map_err(usage)?
            .bind()
            .await
            .map_err(usage)?
    } else {
        return Err(CliError::Usage(format!(
            "--database-url must start with postgres:// or sqlite: (got `{}`)",
            crate::redact(&url)
        )));
    };
    println!("{}", listening.url());
    let _ = std::io::stdout().flush();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    listening.serve(shutdown).await.map_err(usage)?;
    Ok(ExitCode::SUCCESS)
}

fn check(options: &ConsoleOptions) -> Result<(), CliError> {
    if options.read_token.is_some() && options.token.is_none() {
        return Err(usage(ConsoleError::ReadTokenWithoutToken));
    }
    if options.token.is_none() && !options.listen.ip().is_loopback() {
        return Err(usage(ConsoleError::InsecureListen(options.listen)));
    }
    Ok(())
}

fn opened(url: &str, e: sqlx::Error) -> CliError {
    CliError::Runtime(format!("cannot open {}: {e}", crate::redact(url)))
}

fn database_url(global: &Global) -> Result<String, CliError> {
    match global.database_url.as_deref() {
        Some(url) => Ok(url.to_owned()),
        None if !std::path::Path::new(crate::demo::DEFAULT_DATABASE_FILE).exists() => {
            Err(CliError::Usage(format!(
                "no {} (the demo's database) in the current directory: run `ferry demo` here \
                 or pass --database-url (or DATABASE_URL): postgres://… or sqlite:…",
                crate::demo::DEFAULT_DATABASE_FILE
            )))
        }
        None => Ok(crate::demo::DEFAULT_DATABASE_URL.to_owned()),
    }
}

/// The broker, when it can be reached; without it the console still shows the database
/// (queues without depth, replays refused).
async fn connect_broker(global: &Global) -> Option<RabbitMq> {
    match crate::rabbit::connect(global, Duration::from_secs(5)).await {
        Ok(bus) => Some(bus),
        Err(e) => {
            tracing::warn!("{e}; the console runs without the broker");
            eprintln!("warning: {e}; the console runs without the broker");
            None
        }
    }
}
