//! Publishing: the source of published events, how long a publish waits for its confirm or
//! for a lost connection, and how many confirm channels publishes are spread over.

use std::time::Duration;

use super::RabbitMqOptions;

impl RabbitMqOptions {
    /// Sets the source (`ce-source`) of events published with [`crate::RabbitMq::publish`].
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets how long a publish waits for the broker's confirm before it fails with
    /// [`ferry_core::PublishError::ConfirmTimeout`].
    pub fn with_confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// Sets how long a publish waits for a lost connection to come back before it fails with
    /// [`ferry_core::PublishError::Unavailable`] (default 5 s; zero fails at once).
    pub fn with_publish_reconnect_wait(mut self, wait: Duration) -> Self {
        self.publish_reconnect_wait = wait;
        self
    }

    /// Sets how many confirm channels publishes are spread over (default 2, at least 1).
    pub fn with_publisher_channels(mut self, channels: usize) -> Self {
        self.publisher_channels = channels.max(1);
        self
    }

    /// The source of published events.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The confirm timeout.
    pub fn confirm_timeout(&self) -> Duration {
        self.confirm_timeout
    }

    /// How long a publish waits for a lost connection.
    pub fn publish_reconnect_wait(&self) -> Duration {
        self.publish_reconnect_wait
    }

    /// The number of confirm channels.
    pub fn publisher_channels(&self) -> usize {
        self.publisher_channels
    }
}
