//! `ferry tail`. (Being written.)

use crate::{
    Global,
    error::{CliError, CliResult},
};

/// Arguments of `ferry tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {}

/// Runs `ferry tail`.
pub async fn run(_global: &Global, _args: TailArgs) -> CliResult {
    Err(CliError::Runtime(
        "`ferry tail` is not available yet".into(),
    ))
}
