//! [`RabbitMqOptions`]: where the broker is, which exchange, and how patient to be.
//!
//! This module holds the options themselves, their defaults, reading them from the
//! environment, checking them, and their `Debug` and `Display`, which hide the password (next
//! to the struct, so that `Debug` lists every field). The settings and their accessors are
//! grouped by concern in the submodules: `connection` (the URL or cluster nodes, TLS,
//! timeouts, reconnection), `exchange` (the events exchange and the topology mode),
//! `publishing` (source, confirms, publisher channels) and `consumers` (the defaults of
//! consumers that do not set their own, queue sampling).

use std::{fmt, path::PathBuf, time::Duration};

use ferry_core::{Limits, QueueType};

use crate::RabbitMqError;

mod connection;
mod consumers;
mod exchange;
mod publishing;

pub use consumers::{DEFAULT_CONSUMER_STALL_CHECK, DEFAULT_QUEUE_SAMPLE_INTERVAL};
pub use exchange::{ExchangeKind, TopologyMode};

/// The URL used when none is given: the local broker, user `guest`, vhost `/`.
pub const DEFAULT_URL: &str = "amqp://guest:guest@localhost:5672/%2f";

/// The events exchange used when none is given.
pub const DEFAULT_EXCHANGE: &str = "ferry.events";

/// The environment variable [`RabbitMqOptions::from_env`] reads the URL from.
pub const URL_ENV: &str = "FERRY_AMQP_URL";

/// The environment variable [`RabbitMqOptions::from_env`] reads the exchange from.
pub const EXCHANGE_ENV: &str = "FERRY_EXCHANGE";

/// The environment variable [`RabbitMqOptions::from_env`] reads a CA file path from.
pub const CA_FILE_ENV: &str = "FERRY_AMQP_CA_FILE";

/// How to reach RabbitMQ and how to behave there.
///
/// Built in code with the `with_*` methods, or from the environment with
/// [`RabbitMqOptions::from_env`]. The password in the URL never shows in `Debug`, in errors
/// or in logs (see [`redact_url`](crate::redact_url)).
///
/// ```
/// use std::time::Duration;
/// use ferry_rabbitmq::{ExchangeKind, RabbitMqOptions};
///
/// let options = RabbitMqOptions::new("amqp://app:s3cret@rabbit:5672/orders")
///     .with_exchange("orders.events")
///     .with_exchange_kind(ExchangeKind::Topic)
///     .with_connection_name("orders-service")
///     .with_confirm_timeout(Duration::from_secs(5));
/// assert_eq!(options.exchange(), "orders.events");
/// assert!(!format!("{options:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct RabbitMqOptions {
    url: String,
    exchange: String,
    exchange_kind: ExchangeKind,
    connection_name: String,
    source: String,
    heartbeat: Duration,
    connect_timeout: Duration,
    confirm_timeout: Duration,
    operation_timeout: Duration,
    publish_reconnect_wait: Duration,
    reconnect_min_backoff: Duration,
    reconnect_max_backoff: Duration,
    ca_file: Option<PathBuf>,
    topology: TopologyMode,
    dead_letter_exchange: Option<String>,
    publisher_channels: usize,
    consumer_limits: Option<Limits>,
    queue_type: QueueType,
    delivery_limit: Option<u32>,
    queue_sample_interval: Option<Duration>,
    consumer_stall_check: Option<Duration>,
}

impl Default for RabbitMqOptions {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            exchange: DEFAULT_EXCHANGE.to_owned(),
            exchange_kind: ExchangeKind::Topic,
            connection_name: "ferry".to_owned(),
            source: ferry_core::envelope::DEFAULT_SOURCE.to_owned(),
            heartbeat: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            confirm_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            publish_reconnect_wait: Duration::from_secs(5),
            reconnect_min_backoff: Duration::from_millis(100),
            reconnect_max_backoff: Duration::from_secs(10),
            ca_file: None,
            topology: TopologyMode::Declare,
            dead_letter_exchange: None,
            publisher_channels: 2,
            consumer_limits: None,
            queue_type: QueueType::Classic,
            delivery_limit: None,
            queue_sample_interval: Some(DEFAULT_QUEUE_SAMPLE_INTERVAL),
            consumer_stall_check: Some(DEFAULT_CONSUMER_STALL_CHECK),
        }
    }
}

impl RabbitMqOptions {
    /// The defaults with another URL (`amqp://user:password@host:port/vhost`; the vhost is
    /// percent-encoded, `%2f` for `/`; `amqps://` for TLS).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Options from the environment: `FERRY_AMQP_URL` (default [`DEFAULT_URL`]),
    /// `FERRY_EXCHANGE` (default [`DEFAULT_EXCHANGE`]) and, if set, `FERRY_AMQP_CA_FILE`.
    /// Empty variables count as unset.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut options = Self::default();
        if let Some(url) = var(URL_ENV) {
            options.url = url;
        }
        if let Some(exchange) = var(EXCHANGE_ENV) {
            options.exchange = exchange;
        }
        if let Some(ca) = var(CA_FILE_ENV) {
            options.ca_file = Some(PathBuf::from(ca));
        }
        options
    }

    /// Checks the options: a parseable `amqp://` or `amqps://` URL, names within AMQP's 255
    /// bytes, a non-zero confirm timeout, a non-zero queue sample interval.
    pub fn validate(&self) -> Result<(), RabbitMqError> {
        let nodes = self.nodes();
        if nodes.is_empty() {
            return Err(RabbitMqError::InvalidOption(
                "no broker URL is given".to_owned(),
            ));
        }
        for node in nodes {
            crate::connection::parse_uri(self, node)?;
        }
        if self.exchange.len() > 255 {
            return Err(RabbitMqError::InvalidOption(format!(
                "exchange name `{}` is longer than 255 bytes",
                self.exchange
            )));
        }
        if self.exchange.is_empty() {
            return Err(RabbitMqError::InvalidOption(
                "the events exchange name is empty; give one with `with_exchange` or FERRY_EXCHANGE"
                    .into(),
            ));
        }
        if self.confirm_timeout.is_zero() {
            return Err(RabbitMqError::InvalidOption(
                "the confirm timeout is zero; give it a few seconds".into(),
            ));
        }
        if self.queue_sample_interval.is_some_and(|i| i.is_zero()) {
            return Err(RabbitMqError::InvalidOption(
                "the queue sample interval is zero; give it a few seconds, or `None` to turn \
                 sampling off"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for RabbitMqOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqOptions")
            .field("url", &self.redacted_url())
            .field("exchange", &self.exchange)
            .field("exchange_kind", &self.exchange_kind)
            .field("connection_name", &self.connection_name)
            .field("source", &self.source)
            .field("heartbeat", &self.heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("publish_reconnect_wait", &self.publish_reconnect_wait)
            .field("reconnect_min_backoff", &self.reconnect_min_backoff)
            .field("reconnect_max_backoff", &self.reconnect_max_backoff)
            .field("ca_file", &self.ca_file)
            .field("topology", &self.topology)
            .field("dead_letter_exchange", &self.dead_letter_exchange)
            .field("publisher_channels", &self.publisher_channels)
            .field("consumer_limits", &self.consumer_limits)
            .field("queue_type", &self.queue_type)
            .field("delivery_limit", &self.delivery_limit)
            .field("queue_sample_interval", &self.queue_sample_interval)
            .field("consumer_stall_check", &self.consumer_stall_check)
            .finish()
    }
}

impl fmt::Display for RabbitMqOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (exchange `{}`, {})",
            self.redacted_url(),
            self.exchange,
            self.exchange_kind
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_password() {
        let options = RabbitMqOptions::new("amqp://app:hunter2@rabbit/%2f");
        assert!(!format!("{options:?}").contains("hunter2"));
        assert!(!format!("{options}").contains("hunter2"));
        assert!(format!("{options}").contains("app:***@rabbit"));
    }

    #[test]
    fn builder_sets_fields() {
        let options = RabbitMqOptions::default()
            .with_exchange("x")
            .with_exchange_kind(ExchangeKind::Fanout)
            .with_publisher_channels(0)
            .with_reconnect_backoff(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(options.exchange(), "x");
        assert_eq!(options.exchange_kind(), ExchangeKind::Fanout);
        assert_eq!(options.publisher_channels(), 1);
        assert_eq!(options.reconnect_max_backoff(), Duration::from_secs(2));
    }
}
