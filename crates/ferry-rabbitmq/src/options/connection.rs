//! Reaching the broker: the URL or the nodes of a cluster, the CA file for TLS, the connection
//! name, the heartbeat and timeouts of the connection, and the reconnection backoff.

use std::{path::PathBuf, time::Duration};

use super::RabbitMqOptions;
use crate::redact::redact_url;

impl RabbitMqOptions {
    /// Sets the URL.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Sets the connection name the broker shows (management UI, `rabbitmqctl`).
    pub fn with_connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
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

    /// Sets how long a broker operation (opening a channel, declaring) may take.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
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

    /// The connection name.
    pub fn connection_name(&self) -> &str {
        &self.connection_name
    }

    /// The proposed heartbeat.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The timeout of broker operations.
    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
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
}
