//! The bench's errors: what the `ferry` command turns into its exit codes.

/// A bench failure, one line for standard error.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad usage or bad input (`ferry bench` exits 2).
    #[error("{0}")]
    Usage(String),
    /// A runtime failure (exit 1).
    #[error("{0}")]
    Runtime(String),
    /// Timed out (exit 3).
    #[error("{0}")]
    Timeout(String),
}
