//! `ferry outbox`. (Being written.)

use crate::{
    Global,
    error::{CliError, CliResult},
};

/// Arguments of `ferry outbox`.
#[derive(Debug, clap::Args)]
pub struct OutboxArgs {}

/// Runs `ferry outbox`.
pub async fn run(_global: &Global, _args: OutboxArgs) -> CliResult {
    Err(CliError::Runtime(
        "`ferry outbox` is not available yet".into(),
    ))
}
