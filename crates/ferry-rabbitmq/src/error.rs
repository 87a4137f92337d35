//! The transport's errors, and how lapin's errors map onto them.

use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

pub use crate::topology::TopologyError;

/// Why a RabbitMQ operation failed. Messages never carry the URL's password.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RabbitMqError {
    /// The URL cannot be used.
    #[error("invalid AMQP URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option has a value ferry cannot work with.
    #[error("invalid RabbitMQ option: {0}")]
    InvalidOption(String),
    /// The CA file cannot be read.
    #[error("cannot read the CA file `{path}`: {reason}")]
    CaFile {
        /// The path.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The broker refused or did not answer the connection.
    #[error(
        "cannot connect to RabbitMQ at `{url}`: {reason}. Check that the broker runs and that \
         the host, port, vhost, user and password in the URL are right"
    )]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The connection attempt took too long.
    #[error(
        "connecting to RabbitMQ at `{url}` took longer than {timeout_ms} ms. Check that the \
         broker runs and is reachable, or raise the connect timeout"
    )]
    ConnectTimeout {
        /// The URL, password redacted.
        url: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The topology could not be declared or checked (see [`RabbitMqError::topology`]).
    #[error(transparent)]
    Topology(Box<TopologyError>),
    /// A consumer's configuration is not usable.
    #[error("invalid consumer: {0}")]
    InvalidConsumer(String),
    /// The connection is down and did not come back in time.
    #[error(
        "RabbitMQ at `{url}` is unavailable: {reason}. ferry keeps reconnecting in the background"
    )]
    Unavailable {
        /// The URL, password redacted.
        url: String,
        /// The last error seen.
        reason: String,
    },
    /// A broker operation failed.
    #[error("RabbitMQ operation `{operation}` failed: {reason}")]
    Operation {
        /// What ferry was doing.
        operation: String,
        /// The broker's or client's error text.
        reason: String,
    },
    /// A broker operation did not finish in time.
    #[error("RabbitMQ operation `{operation}` took longer than {timeout_ms} ms")]
    Timeout {
        /// What ferry was doing.
        operation: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The transport was closed with [`crate::RabbitMq::close`].
    #[error("the RabbitMQ transport is closed")]
    Closed,
}

impl From<TopologyError> for RabbitMqError {
    fn from(error: TopologyError) -> Self {
        RabbitMqError::Topology(Box::new(error))
    }
}

impl RabbitMqError {
    /// The topology error, if this is one.
    pub fn topology(&self) -> Option<&TopologyError> {
        match self {
            RabbitMqError::Topology(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the connection being down is the cause (retrying later may succeed).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RabbitMqError::Unavailable { .. }
                | RabbitMqError::Connect { .. }
                | RabbitMqError::ConnectTimeout { .. }
        )
    }

    pub(crate) fn operation(operation: impl Into<String>, error: &lapin::Error) -> Self {
        RabbitMqError::Operation {
            operation: operation.into(),
            reason: error.to_string(),
        }
    }
}

/// Whether a lapin error means the connection or the channel is gone (as opposed to the
/// broker refusing what was asked).
pub(crate) fn is_connection_error(error: &lapin::Error) -> bool {
    use lapin::ErrorKind as K;
    match error.kind() {
        K::IOError(_)
        | K::InvalidChannel(_)
        | K::InvalidChannelState(..)
        | K::InvalidConnectionState(_)
        | K::MissingHeartbeatError
        | K::RuntimeShutdownError(_)
        | K::ParsingError(_)
        | K::SerialisationError(_) => true,
        K::ProtocolError(e) => matches!(e.kind(), AMQPErrorKind::Hard(_)),
        _ => false,
    }
}

/// The broker's soft error and reply text, if the error is one.
pub(crate) fn soft_error(error: &lapin::Error) -> Option<(AMQPSoftError, String)> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) => match e.kind() {
            AMQPErrorKind::Soft(soft) => Some((soft.clone(), e.get_message().to_string())),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}
