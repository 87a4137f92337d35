//! `ferry dlq`. (Being written.)

use crate::{
    Global,
    error::{CliError, CliResult},
};

/// Arguments of `ferry dlq`.
#[derive(Debug, clap::Args)]
pub struct DlqArgs {}

/// Runs `ferry dlq`.
pub async fn run(_global: &Global, _args: DlqArgs) -> CliResult {
    Err(CliError::Runtime("`ferry dlq` is not available yet".into()))
}
