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
    /// The TLS handshake failed: the broker's certificate was refused (not trusted, issued
    /// for another host name, expired …) or the port does not speak TLS.
    #[error("TLS with RabbitMQ at `{url}` failed: {reason}")]
    Tls {
        /// The URL, password redacted.
        url: String,
        /// What is wrong, and what to do about it.
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
    /// A broker operation failed; the broker's or client's error is the source.
    #[error("RabbitMQ operation `{operation}` failed")]
    Operation {
        /// What ferry was doing.
        operation: String,
        /// The broker's or client's error.
        #[source]
        source: lapin::Error,
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
            source: error.clone(),
        }
    }

    /// This error and its sources in one line (`RabbitMQ operation `purge queue `q`` failed:
    /// …`), for a log field or a command's message.
    pub fn report(&self) -> String {
        ferry_core::publisher::error_chain(self)
    }
}

/// What a TLS failure in an error's text means, in words a user can act on; `None` when the
/// error is not about TLS. `host` is the host the URL names.
///
/// rustls reports certificate problems as `invalid peer certificate: …` (`UnknownIssuer`,
/// `certificate not valid for name …`, `certificate expired …`), and a handshake with a port
/// that does not speak TLS as a corrupt or unexpected message.
pub(crate) fn tls_problem(text: &str, host: &str) -> Option<String> {
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    let reason = if has(&["NotValidForName", "not valid for name"]) {
        format!(
            "host name mismatch: the broker's certificate is not valid for `{host}`; connect with \
             a host name the certificate names, or give the broker a certificate for `{host}`"
        )
    } else if has(&[
        "UnknownIssuer",
        "BadSignature",
        "UnknownIssuerContext",
        "unknown issuer",
    ]) {
        "the broker's certificate is not trusted (no trusted CA signed it); trust the CA that \
         signed it with a CA file (RabbitMqOptions::with_ca_file, or FERRY_AMQP_CA_FILE)"
            .to_owned()
    } else if has(&["Expired", "certificate expired"]) {
        "the broker's certificate has expired".to_owned()
    } else if has(&["NotValidYet", "certificate not valid yet"]) {
        "the broker's certificate is not valid yet (check the clocks)".to_owned()
    } else if has(&["Revoked"]) {
        "the broker's certificate was revoked".to_owned()
    } else if has(&["invalid peer certificate"]) {
        "the broker's certificate was refused".to_owned()
    } else if has(&[
        "InvalidContentType",
        "corrupt message",
        "InvalidMessage",
        "peer is incompatible",
        "HandshakeFailure",
    ]) {
        "the TLS handshake failed; check that the port speaks TLS (amqps://, usually 5671)"
            .to_owned()
    } else {
        return None;
    };
    Some(format!("{reason} ({})", text.trim()))
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// The lapin error at the end of `error`'s sources, if any.
    fn lapin_source<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a lapin::Error> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<lapin::Error>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }

    #[test]
    fn a_failed_operation_keeps_lapins_error_as_its_source() {
        let lapin_error = lapin::Error::from(lapin::ErrorKind::ChannelsLimitReached);
        let e = RabbitMqError::operation("open a channel", &lapin_error);
        assert_eq!(e.to_string(), "RabbitMQ operation `open a channel` failed");
        let source = e.source().expect("a source");
        assert_eq!(source.to_string(), lapin_error.to_string());
        assert!(matches!(
            lapin_source(&e).map(lapin::Error::kind),
            Some(lapin::ErrorKind::ChannelsLimitReached)
        ));
        assert_eq!(
            e.report(),
            format!("RabbitMQ operation `open a channel` failed: {lapin_error}")
        );
    }

    #[test]
    fn a_failed_publish_keeps_lapins_error_as_its_source() {
        let refused = lapin::Error::from(lapin::ErrorKind::ChannelsLimitReached);
        let e = crate::publisher::map_lapin(&refused);
        assert!(matches!(e, ferry_core::PublishError::Other(_)), "{e:?}");
        assert!(!e.to_string().contains(&refused.to_string()), "{e}");
        assert!(matches!(
            lapin_source(&e).map(lapin::Error::kind),
            Some(lapin::ErrorKind::ChannelsLimitReached)
        ));

        let io = std::io::Error::other("connection reset by peer");
        let down = lapin::Error::from(lapin::ErrorKind::IOError(std::sync::Arc::new(io)));
        let e = crate::publisher::map_lapin(&down);
        assert!(e.is_unavailable(), "{e:?}");
        assert!(matches!(
            lapin_source(&e).map(lapin::Error::kind),
            Some(lapin::ErrorKind::IOError(_))
        ));
    }

    #[test]
    fn tls_problems_say_what_is_wrong() {
        let untrusted = tls_problem("invalid peer certificate: UnknownIssuer", "h").unwrap();
        assert!(
            untrusted.starts_with("the broker's certificate is not trusted"),
            "{untrusted}"
        );
        assert!(untrusted.contains("UnknownIssuer"), "{untrusted}");
        let name = tls_problem(
            "invalid peer certificate: certificate not valid for name \"10.0.0.1\"; certificate \
             is only valid for DnsName(\"rabbit\")",
            "10.0.0.1",
        )
        .unwrap();
        assert!(name.starts_with("host name mismatch"), "{name}");
        assert!(name.contains("`10.0.0.1`"), "{name}");
        let expired = tls_problem("invalid peer certificate: Expired", "h").unwrap();
        assert!(expired.contains("expired"), "{expired}");
        let plain = tls_problem("received corrupt message of type InvalidContentType", "h");
        assert!(plain.unwrap().contains("speaks TLS"));
        assert_eq!(tls_problem("Connection refused (os error 111)", "h"), None);
    }
}
