//! `ferry publish`. (Being written.)

use crate::{
    Global,
    error::{CliError, CliResult},
};

/// Arguments of `ferry publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {}

/// Runs `ferry publish`.
pub async fn run(_global: &Global, _args: PublishArgs) -> CliResult {
    Err(CliError::Runtime(
        "`ferry publish` is not available yet".into(),
    ))
}
