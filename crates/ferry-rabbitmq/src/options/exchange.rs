//! The events exchange, its type ([`ExchangeKind`]), and whether ferry declares its topology
//! or only checks it ([`TopologyMode`]).

use std::fmt;

use super::RabbitMqOptions;

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

impl RabbitMqOptions {
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

    /// Declare the topology, or only check it (passive).
    pub fn with_topology(mut self, mode: TopologyMode) -> Self {
        self.topology = mode;
        self
    }

    /// The events exchange.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The type of the events exchange.
    pub fn exchange_kind(&self) -> ExchangeKind {
        self.exchange_kind
    }

    /// Declare or passive.
    pub fn topology(&self) -> TopologyMode {
        self.topology
    }
}
