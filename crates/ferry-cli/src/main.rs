//! The `ferry` command.

use clap::Parser;

/// ferry: integration events between bounded contexts over RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about)]
struct Cli {
    /// The AMQP URL.
    #[arg(
        long,
        global = true,
        env = "FERRY_AMQP_URL",
        default_value = "amqp://guest:guest@localhost:5672/%2f",
        hide_env_values = true
    )]
    amqp_url: String,
}

fn main() {
    let cli = Cli::parse();
    let _ = cli;
}
