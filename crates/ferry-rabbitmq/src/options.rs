//! [`RabbitMqOptions`]: where the broker is, which exchange, and how patient to be.

use std::{fmt, path::PathBuf, time::Duration};

use ferry_core::{Limits, QueueType};

use crate::{RabbitMqError, redact::redact_url};

/// The URL used when none is given: the local broker, user `guest`, vhost `/`.
pub const DEFAULT_URL: &str = "amqp://guest:guest@localhost:5672/%2f";

/// The events exchange used when none is given.
pub const DEFAULT_EXCHANGE: &str = "ferry.events";

/// How often a running consumer samples its queue's depth and consumers unless told
/// otherwise ([`RabbitMqOptions::with_queue_sample_interval`]).
pub const DEFAULT_QUEUE_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// The environment variable [`RabbitMqOptions::from_env`] reads the URL from.
pub const URL_ENV: &str = "FERRY_AMQP_URL";

/// The environment variable [`RabbitMqOptions::from_env`] reads the exchange from.
pub const EXCHANGE_ENV: &str = "FERRY_EXCHANGE";

/// The environment variable [`RabbitMqOptions::from_env`] reads a CA file path from.
pub const CA_FILE_ENV: &str = "FERRY_AMQP_CA_FILE";

/// The type of the events exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExchangeKind {
    /// Routing keys matched against binding patterns (`*` one word, `#` any words). The default.
    #[default]
    Topic,
    /// Routing keys matched exactly.
    Direct,
    /// Every bound queue gets every message.
    Fanout,
    /// Routed on headers rather than routing keys.
    Headers,
}

impl ExchangeKind {
    /// The name RabbitMQ uses for this type.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Topic => "topic",
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Headers => "headers",
        }
    }

    pub(crate) fn to_lapin(self) -> lapin::ExchangeKind {
        match self {
            ExchangeKind::Topic => lapin::ExchangeKind::Topic,
            ExchangeKind::Direct => lapin::ExchangeKind::Direct,
            ExchangeKind::Fanout => lapin::ExchangeKind::Fanout,
            ExchangeKind::Headers => lapin::ExchangeKind::Headers,
        }
    }
}

impl fmt::Display for ExchangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether ferry declares its topology or only checks that it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TopologyMode {
    /// Declare exchanges, queues and bindings (idempotent). The default.
    #[default]
    Declare,
    /// Only check that exchanges and queues exist (passive declares), for brokers where the
    /// application may not declare; bindings are assumed to be in place.
    Passive,
}

/// How to reach RabbitMQ and how to behave there.
///
/// Built in code with the `with_*` methods, or from the environment with
/// [`RabbitMqOptions::from_env`]. The password in the URL never shows in `Debug`, in errors
/// or in logs (see [`redact_url`]).
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

    /// Sets the URL.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Sets the events exchange (durable; declared unless the topology is passive).
    pub fn with_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = exchange.into();
        self
    }

    /// Sets the type of the events exchange (topic by default).
    pub fn with_exchange_kind(mut self, kind: ExchangeKind) -> Self {
        self.exchange_kind = kind;
        self
    }

    /// Sets the connection name the broker shows (management UI, `rabbitmqctl`).
    pub fn with_connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// Sets the source (`ce-source`) of events published with [`crate::RabbitMq::publish`].
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets the heartbeat ferry proposes (unless the URL has `?heartbeat=`); a dead peer is
    /// noticed after about twice this. Zero turns heartbeats off.
    pub fn with_heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sets how long one connection attempt may take (TCP, TLS and the AMQP handshake).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long a publish waits for the broker's confirm before it fails with
    /// [`ferry_core::PublishError::ConfirmTimeout`].
    pub fn with_confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// Sets how long a broker operation (opening a channel, declaring) may take.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets how long a publish waits for a lost connection to come back before it fails with
    /// [`ferry_core::PublishError::Unavailable`] (default 5 s; zero fails at once).
    pub fn with_publish_reconnect_wait(mut self, wait: Duration) -> Self {
        self.publish_reconnect_wait = wait;
        self
    }

    /// Sets the pauses between reconnection attempts: from `min`, doubling up to `max`.
    pub fn with_reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min_backoff = min;
        self.reconnect_max_backoff = max.max(min);
        self
    }

    /// Trusts the CA certificates in this PEM file for `amqps://` connections (in addition
    /// to the platform's).
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Declare the topology, or only check it (passive).
    pub fn with_topology(mut self, mode: TopologyMode) -> Self {
        self.topology = mode;
        self
    }

    /// Sets the dead-letter exchange for consumers that do not name their own with
    /// `.dead_letter(..)`.
    pub fn with_dead_letter_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.dead_letter_exchange = Some(exchange.into());
        self
    }

    /// Sets the body size and header count limits of consumers that do not set their own
    /// with `.limits(..)` (without this, [`Limits::default`]: 4 MiB, 256 headers).
    pub fn with_consumer_limits(mut self, limits: Limits) -> Self {
        self.consumer_limits = Some(limits);
        self
    }

    /// Sets the queue type of consumers that do not choose their own with `.queue_type(..)` or
    /// `.quorum()` (default classic). With quorum, a consumer's retry queues and a dead-letter
    /// consumer's queue are quorum queues too (`docs/wire-format.md`, retries).
    ///
    /// ```
    /// use ferry_core::QueueType;
    /// use ferry_rabbitmq::RabbitMqOptions;
    /// let options = RabbitMqOptions::default().with_queue_type(QueueType::Quorum);
    /// assert_eq!(options.queue_type(), QueueType::Quorum);
    /// ```
    pub fn with_queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// Sets the delivery limit (`x-delivery-limit`) of quorum consumer queues that do not set
    /// their own with `.delivery_limit(..)` (default none); see
    /// [`ConsumerBuilder::delivery_limit`](ferry_core::ConsumerBuilder::delivery_limit).
    pub fn with_delivery_limit(mut self, limit: Option<u32>) -> Self {
        self.delivery_limit = limit;
        self
    }

    /// Sets how many confirm channels publishes are spread over (default 2, at least 1).
    pub fn with_publisher_channels(mut self, channels: usize) -> Self {
        self.publisher_channels = channels.max(1);
        self
    }

    /// Sets how often each running consumer samples its queue into the
    /// `ferry_queue_messages_ready{queue}` and `ferry_queue_consumers{queue}` gauges (a passive
    /// queue declare on a short-lived channel); `None` turns sampling off. Default
    /// [`DEFAULT_QUEUE_SAMPLE_INTERVAL`] (5 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ferry_rabbitmq::RabbitMqOptions;
    /// let options = RabbitMqOptions::default().with_queue_sample_interval(Some(Duration::from_secs(1)));
    /// assert_eq!(options.queue_sample_interval(), Some(Duration::from_secs(1)));
    /// let off = RabbitMqOptions::default().with_queue_sample_interval(None);
    /// assert_eq!(off.queue_sample_interval(), None);
    /// ```
    pub fn with_queue_sample_interval(mut self, interval: Option<Duration>) -> Self {
        self.queue_sample_interval = interval;
        self
    }

    /// The URL, password included: keep it out of logs; use [`RabbitMqOptions::redacted_url`].
    /// A comma-separated list names the nodes of one cluster (see [`RabbitMqOptions::nodes`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The nodes to connect to: the URL, or each URL of a comma-separated list (the nodes of
    /// one cluster, each with its own scheme, credentials and TLS). Connecting and every
    /// reconnection try them in turn from a node chosen at random, so that many processes
    /// spread over the cluster. A comma inside a password must be percent-encoded (`%2C`).
    ///
    /// ```
    /// use ferry_rabbitmq::RabbitMqOptions;
    ///
    /// let options = RabbitMqOptions::new("amqp://app:pw@rabbit-1:5672/%2f")
    ///     .with_nodes(["amqp://app:pw@rabbit-1:5672/%2f", "amqps://app:pw@rabbit-2:5671/%2f"]);
    /// assert_eq!(options.nodes().len(), 2);
    /// assert_eq!(
    ///     options.redacted_url(),
    ///     "amqp://app:***@rabbit-1:5672/%2f,amqps://app:***@rabbit-2:5671/%2f"
    /// );
    /// ```
    pub fn nodes(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .collect()
    }

    /// Sets the nodes of a cluster to connect to (see [`RabbitMqOptions::nodes`]).
    pub fn with_nodes<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.url = nodes
            .into_iter()
            .map(|node| node.as_ref().trim().to_owned())
            .collect::<Vec<_>>()
            .join(",");
        self
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The events exchange.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The type of the events exchange.
    pub fn exchange_kind(&self) -> ExchangeKind {
        self.exchange_kind
    }

    /// The connection name.
    pub fn connection_name(&self) -> &str {
        &self.connection_name
    }

    /// The source of published events.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The proposed heartbeat.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The confirm timeout.
    pub fn confirm_timeout(&self) -> Duration {
        self.confirm_timeout
    }

    /// The timeout of broker operations.
    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// How long a publish waits for a lost connection.
    pub fn publish_reconnect_wait(&self) -> Duration {
        self.publish_reconnect_wait
    }

    /// The first pause between reconnection attempts.
    pub fn reconnect_min_backoff(&self) -> Duration {
        self.reconnect_min_backoff
    }

    /// The longest pause between reconnection attempts.
    pub fn reconnect_max_backoff(&self) -> Duration {
        self.reconnect_max_backoff
    }

    /// The CA file, if any.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file.as_deref()
    }

    /// Declare or passive.
    pub fn topology(&self) -> TopologyMode {
        self.topology
    }

    /// The default dead-letter exchange, if any.
    pub fn dead_letter_exchange(&self) -> Option<&str> {
        self.dead_letter_exchange.as_deref()
    }

    /// The limits of consumers that do not set their own, if set.
    pub fn consumer_limits(&self) -> Option<Limits> {
        self.consumer_limits
    }

    /// The queue type of consumers that do not choose their own.
    pub fn queue_type(&self) -> QueueType {
        self.queue_type
    }

    /// The delivery limit of quorum consumer queues that do not set their own, if set.
    pub fn delivery_limit(&self) -> Option<u32> {
        self.delivery_limit
    }

    /// The number of confirm channels.
    pub fn publisher_channels(&self) -> usize {
        self.publisher_channels
    }

    /// How often consumers sample their queue (`None`: never).
    pub fn queue_sample_interval(&self) -> Option<Duration> {
        self.queue_sample_interval
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
