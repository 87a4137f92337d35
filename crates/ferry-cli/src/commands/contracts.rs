//! `ferry contracts check BASELINE CURRENT`: the compatibility gate over two exported AsyncAPI
//! documents (`docs/command.md`).

use std::{path::Path, process::ExitCode};

use ferry::contracts::{Document, breaks};

use crate::error::{CliError, CliResult};

/// Arguments of `ferry contracts`.
#[derive(Debug, clap::Args)]
pub struct ContractsArgs {
    #[command(subcommand)]
    command: ContractsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ContractsCommand {
    /// Compare CURRENT with BASELINE: exit 0 compatible, 1 breaking (one line per break on
    /// standard output), 2 bad usage.
    Check {
        /// The baseline document (AsyncAPI 3.0 JSON, e.g. from `ferry demo --print-asyncapi`).
        baseline: std::path::PathBuf,
        /// The current document.
        current: std::path::PathBuf,
    },
}

/// Runs `ferry contracts`.
pub fn run(args: ContractsArgs) -> CliResult {
    match args.command {
        ContractsCommand::Check { baseline, current } => check(&baseline, &current),
    }
}

fn check(baseline: &Path, current: &Path) -> CliResult {
    let baseline = read(baseline)?;
    let current = read(current)?;
    // Both documents were read, so an error here is a document ferry cannot compare.
    let found = breaks(&baseline, &current).map_err(|e| CliError::Usage(e.to_string()))?;
    for found in &found {
        println!("{found}");
    }
    if found.is_empty() {
        eprintln!("compatible");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} breaking change(s)", found.len());
        Ok(ExitCode::from(1))
    }
}

fn read(path: &Path) -> Result<Document, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    Document::parse(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}
