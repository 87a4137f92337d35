//! The command's errors and their exit codes.

use std::process::ExitCode;

/// A command failure: its message is one line on standard error, its kind the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad usage or bad input: exit 2.
    #[error("{0}")]
    Usage(String),
    /// A runtime failure: exit 1.
    #[error("{0}")]
    Runtime(String),
    /// Timed out: exit 3.
    #[error("{0}")]
    Timeout(String),
}

impl CliError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Runtime(_) => ExitCode::from(1),
            CliError::Timeout(_) => ExitCode::from(3),
        }
    }
}

/// A command's result: the exit code on success (0 unless the command says otherwise).
pub type CliResult = Result<ExitCode, CliError>;
