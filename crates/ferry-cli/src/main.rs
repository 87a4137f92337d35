//! The `ferry` command: demo, publish, tail, outbox, dlq, contracts, console, bench.
//!
//! Standard output carries only the result; logs and progress go to standard error. Exit codes:
//! 0 success, 1 runtime failure, 2 bad usage or input, 3 timed out.

mod commands;
mod demo;
mod error;
mod rabbit;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::CliError;

/// The options every subcommand takes (before or after the subcommand).
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// The AMQP URL of the broker.
    #[arg(
        long,
        global = true,
        env = "FERRY_AMQP_URL",
        default_value = "amqp://guest:guest@localhost:5672/%2f",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub amqp_url: String,
    /// The database URL (postgres://… or sqlite:…); `demo` and `outbox` default to
    /// ./ferry-demo.sqlite.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The events exchange.
    #[arg(
        long,
        global = true,
        env = "FERRY_EXCHANGE",
        default_value = "myapp.events",
        hide_env_values = true
    )]
    pub exchange: String,
}

/// ferry: integration events between bounded contexts over RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the seed's scenario end to end: orders → outbox → relay → inventory → orders.
    Demo(demo::DemoArgs),
    /// Publish one event in ferry's wire format and print its id.
    Publish(commands::publish::PublishArgs),
    /// Bind a temporary queue to the exchange and print what arrives.
    Tail(commands::tail::TailArgs),
    /// Inspect and replay the dead-letter queue.
    Dlq(commands::dlq::DlqArgs),
    /// Inspect and retry the outbox.
    Outbox(commands::outbox::OutboxArgs),
    /// Serve the web console: dead letters, the outbox, live rates.
    Console(commands::console::ConsoleArgs),
    /// Check event contracts: compare two AsyncAPI documents for breaking changes.
    Contracts(commands::contracts::ContractsArgs),
    /// Measure ferry against raw lapin: publish, relay, consume, inbox, end to end, Mediator.
    Bench(commands::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            eprintln!("{}", usage_line(&e));
            return ExitCode::from(2);
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => demo::run(&cli.global, args).await,
            Command::Publish(args) => commands::publish::run(&cli.global, args).await,
            Command::Tail(args) => commands::tail::run(&cli.global, args).await,
            Command::Dlq(args) => commands::dlq::run(&cli.global, args).await,
            Command::Outbox(args) => commands::outbox::run(&cli.global, args).await,
            Command::Bench(args) => commands::bench::run(&cli.global, args).await,
            Command::Console(args) => commands::console::run(&cli.global, args).await,
            Command::Contracts(args) => commands::contracts::run(args),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

/// Parses the command line. A command run without its subcommand is bad usage like any other
/// (one line, exit 2), not a reason to print the whole help: clap would otherwise print it.
fn parse() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    fn no_help_instead_of_error(command: clap::Command) -> clap::Command {
        let names: Vec<String> = command
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        names
            .iter()
            .fold(command.arg_required_else_help(false), |command, name| {
                command.mut_subcommand(name, no_help_instead_of_error)
            })
    }
    let mut command = no_help_instead_of_error(Cli::command());
    let matches = command.try_get_matches_from_mut(std::env::args_os())?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}

/// The one line that says what is wrong with the command line.
fn usage_line(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() == ErrorKind::MissingSubcommand {
        let command = match e.get(ContextKind::InvalidSubcommand) {
            Some(ContextValue::String(name)) => name.clone(),
            _ => "ferry".to_owned(),
        };
        let choices = match e.get(ContextKind::ValidSubcommand) {
            Some(ContextValue::Strings(names)) => names
                .iter()
                .filter(|n| n.as_str() != "help")
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        return format!("`{command}` needs a subcommand ({choices}); see `{command} --help`");
    }
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut line = lines
        .next()
        .unwrap_or("bad usage")
        .trim_start_matches("error: ")
        .to_owned();
    if line.ends_with(':') {
        // "the following required arguments were not provided:" names them next.
        if let Some(next) = lines.next() {
            line = format!("{line} {next}");
        }
    }
    line
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,ferry_core::pipeline=error,lapin=off")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A URL with its password replaced, for messages.
pub fn redact(url: &str) -> String {
    ferry::rabbitmq::redact_url(url)
}
