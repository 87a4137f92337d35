//! [`QueueDecl`]: a queue declaration (consumer, retry and dead-letter queues) and its
//! arguments ([`Arg`]), kept as data so errors can say what ferry asked for.

use std::{fmt, time::Duration};

use ferry_core::QueueType;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use super::{delay_ms, retry_queue_name};

/// A queue declaration, kept so errors can say what ferry asked for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueueDecl {
    pub name: String,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: Vec<(String, Arg)>,
}

/// A queue argument value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Str(s) => write!(f, "{s:?}"),
            Arg::Int(i) => write!(f, "{i}"),
            Arg::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl QueueDecl {
    /// A durable queue with no arguments.
    pub fn durable(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: Vec::new(),
        }
    }

    /// A consumer's queue: durable, classic or quorum.
    pub fn consumer(name: impl Into<String>, queue_type: QueueType) -> Self {
        Self::durable(name).arg("x-queue-type", Arg::Str(queue_type.as_str().into()))
    }

    /// A quorum queue's delivery limit: past `limit` deliveries the broker dead-letters a
    /// message to `dead_letter_exchange` with its routing key, at least once (it keeps the
    /// message until the dead-letter exchange's queues confirm it).
    pub fn delivery_limit(self, limit: u32, dead_letter_exchange: &str) -> Self {
        self.arg("x-delivery-limit", Arg::Int(i64::from(limit)))
            .arg(
                "x-dead-letter-exchange",
                Arg::Str(dead_letter_exchange.to_owned()),
            )
            .at_least_once()
    }

    /// One consumer of the queue at a time (`x-single-active-consumer`).
    pub fn single_active_consumer(self) -> Self {
        self.arg("x-single-active-consumer", Arg::Bool(true))
    }

    /// Dead-letters at least once (quorum queues): the broker keeps a dead-lettered message
    /// until its copy is confirmed, which needs `x-overflow = reject-publish`.
    pub(super) fn at_least_once(self) -> Self {
        self.arg("x-dead-letter-strategy", Arg::Str("at-least-once".into()))
            .arg("x-overflow", Arg::Str("reject-publish".into()))
    }

    /// The retry queue for `queue` and `delay` (`docs/wire-format.md`, retries): durable, `x-message-ttl`, and
    /// dead-lettering back to `queue` through the default exchange. A quorum retry queue
    /// dead-letters at least once, so an expiring copy is not lost when a node dies.
    pub fn retry(queue: &str, delay: Duration, queue_type: QueueType) -> Self {
        let ttl = delay_ms(delay);
        let decl = Self::consumer(retry_queue_name(queue, delay), queue_type)
            .arg("x-message-ttl", Arg::Int(ttl as i64))
            .arg("x-dead-letter-exchange", Arg::Str(String::new()))
            .arg("x-dead-letter-routing-key", Arg::Str(queue.to_owned()));
        match queue_type {
            QueueType::Classic => decl,
            QueueType::Quorum => decl.at_least_once(),
        }
    }

    fn arg(mut self, name: &str, value: Arg) -> Self {
        self.arguments.push((name.to_owned(), value));
        self
    }

    pub(super) fn field_table(&self) -> FieldTable {
        let mut table = FieldTable::default();
        for (name, value) in &self.arguments {
            let value = match value {
                Arg::Str(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
                Arg::Int(i) => AMQPValue::LongLongInt(*i),
                Arg::Bool(b) => AMQPValue::Boolean(*b),
            };
            // Argument names are ours and short.
            if let Ok(key) = ShortString::try_new(name.as_str()) {
                table.insert(key, value);
            }
        }
        table
    }

    /// What ferry asks for, for error messages.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("durable={}", self.durable)];
        if self.exclusive {
            parts.push("exclusive=true".into());
        }
        if self.auto_delete {
            parts.push("auto_delete=true".into());
        }
        parts.extend(self.arguments.iter().map(|(k, v)| format!("{k}={v}")));
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_queue_declaration() {
        let decl = QueueDecl::retry("q", Duration::from_millis(1500), QueueType::Classic);
        assert_eq!(decl.name, "q.retry.1500");
        assert_eq!(
            decl.describe(),
            "durable=true, x-queue-type=\"classic\", x-message-ttl=1500, \
             x-dead-letter-exchange=\"\", x-dead-letter-routing-key=\"q\""
        );
    }

    #[test]
    fn quorum_retry_queues_dead_letter_at_least_once() {
        let decl = QueueDecl::retry("q", Duration::from_millis(1500), QueueType::Quorum);
        assert_eq!(decl.name, "q.retry.1500");
        assert_eq!(
            decl.describe(),
            "durable=true, x-queue-type=\"quorum\", x-message-ttl=1500, \
             x-dead-letter-exchange=\"\", x-dead-letter-routing-key=\"q\", \
             x-dead-letter-strategy=\"at-least-once\", x-overflow=\"reject-publish\""
        );
    }
}
