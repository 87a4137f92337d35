//! Topology: the events exchange, consumer queues and their bindings, the retry queues of
//! `docs/wire-format.md`, the dead-letter exchange and queue; declared, or checked in passive mode.
//!
//! A declare that meets an existing queue or exchange with other arguments fails with
//! [`TopologyError::Inequivalent`], which names the argument, what ferry asked for and what
//! the broker has (read from the broker's `PRECONDITION_FAILED` reply).

use std::{fmt, time::Duration};

mod error;
mod partition;

pub(crate) use error::parse_inequivalent;
pub use error::{ObjectKind, TopologyError};
pub use partition::{
    CONSISTENT_HASH, PARTITION_KEY_HEADER, PARTITION_WEIGHT, partition_exchange_name,
};
pub(crate) use partition::{bind_exchange, declare_partition_exchange};

use ferry_core::QueueType;
use lapin::{
    Channel,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    protocol::AMQPSoftError,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

use crate::{
    ExchangeKind, RabbitMqError, TopologyMode,
    connection::with_timeout,
    error::{is_connection_error, soft_error},
};

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
    fn at_least_once(self) -> Self {
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

    fn field_table(&self) -> FieldTable {
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

/// The delay in whole milliseconds (what the retry queue's name and TTL carry).
pub fn delay_ms(delay: Duration) -> u64 {
    u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
}

/// The name of the retry queue for `queue` and `delay`: `<queue>.retry.<delay_ms>`.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(
///     ferry_rabbitmq::topology::retry_queue_name("inventory.order-created", Duration::from_secs(2)),
///     "inventory.order-created.retry.2000"
/// );
/// ```
pub fn retry_queue_name(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}", delay_ms(delay))
}

pub(crate) fn short(kind: ObjectKind, name: &str) -> Result<ShortString, RabbitMqError> {
    ShortString::try_new(name).map_err(|_| {
        TopologyError::NameTooLong {
            kind,
            name: name.to_owned(),
        }
        .into()
    })
}

/// Declares (or, passive, checks) an exchange: durable, of `kind`.
pub(crate) async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
    mode: TopologyMode,
    timeout: Duration,
) -> Result<(), RabbitMqError> {
    if name.is_empty() {
        return Ok(()); // the default exchange always exists
    }
    let exchange = short(ObjectKind::Exchange, name)?;
    let passive = mode == TopologyMode::Passive;
    let options = ExchangeDeclareOptions {
        passive,
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let result = with_timeout(
        format!("declare exchange `{name}`"),
        timeout,
        channel.exchange_declare(exchange, kind.to_lapin(), options, FieldTable::default()),
    )
    .await?;
    result.map_err(|e| {
        let declared = format!("type={kind}, durable=true");
        classify(&e, ObjectKind::Exchange, name, passive, &declared)
    })
}

/// Declares (or, passive, checks) a queue; returns its message and consumer counts.
pub(crate) async fn declare_queue(
    channel: &Channel,
    decl: &QueueDecl,
    mode: TopologyMode,
    timeout: Duration,
) -> Result<(u32, u32), RabbitMqError> {
    let queue = short(ObjectKind::Queue, &decl.name)?;
    let passive = mode == TopologyMode::Passive;
    let options = QueueDeclareOptions {
        passive,
        durable: decl.durable,
        exclusive: decl.exclusive,
        auto_delete: decl.auto_delete,
        nowait: false,
    };
    let arguments = if passive {
        FieldTable::default()
    } else {
        decl.field_table()
    };
    let result = with_timeout(
        format!("declare queue `{}`", decl.name),
        timeout,
        channel.queue_declare(queue, options, arguments),
    )
    .await?;
    match result {
        Ok(q) => Ok((q.message_count(), q.consumer_count())),
        Err(e) => Err(classify(
            &e,
            ObjectKind::Queue,
            &decl.name,
            passive,
            &decl.describe(),
        )),
    }
}

/// Declares a queue, or in passive mode checks it: that it exists (a passive declare), and
/// then, since a passive declare ignores arguments, that its arguments are those asked for
/// (its type among them), by declaring it with them on a throwaway channel of `connection`,
/// where a difference is the broker's 406 (the broker closes that channel). A user who may not
/// declare gets 403 there: the arguments are then left unchecked.
pub(crate) async fn declare_queue_checked(
    connection: &lapin::Connection,
    channel: &Channel,
    decl: &QueueDecl,
    mode: TopologyMode,
    timeout: Duration,
) -> Result<(u32, u32), RabbitMqError> {
    let result = match declare_queue(channel, decl, mode, timeout).await {
        Ok(counts) if mode == TopologyMode::Passive => check_arguments(connection, decl, timeout)
            .await
            .map(|()| counts),
        other => other,
    };
    match result {
        Err(e) => Err(name_other_type(connection, decl, e, timeout).await),
        ok => ok,
    }
}

/// The arguments only quorum queues take, which a classic queue of the same name lacks.
const QUORUM_ONLY: [&str; 3] = ["x-delivery-limit", "x-dead-letter-strategy", "x-overflow"];

/// The broker names the first argument that differs, in its own order: for a queue of the
/// other type that is often a quorum-only argument (`x-overflow`). When the queue turns out
/// to be of the other type (it is equivalent to the declaration made for that type), the
/// error says so: `x-queue-type` differs.
async fn name_other_type(
    connection: &lapin::Connection,
    decl: &QueueDecl,
    error: RabbitMqError,
    timeout: Duration,
) -> RabbitMqError {
    let Some(TopologyError::Inequivalent {
        argument,
        declared,
        reply,
        ..
    }) = error.topology()
    else {
        return error;
    };
    let asked = decl.arguments.iter().find_map(|(k, v)| match v {
        Arg::Str(t) if k == "x-queue-type" => t.parse::<QueueType>().ok(),
        _ => None,
    });
    let Some(asked) = asked.filter(|_| argument != "x-queue-type") else {
        return error;
    };
    let other = match asked {
        QueueType::Classic => QueueType::Quorum,
        QueueType::Quorum => QueueType::Classic,
    };
    let mut probe = decl.clone();
    probe
        .arguments
        .retain(|(k, _)| !QUORUM_ONLY.contains(&k.as_str()));
    for (k, v) in &mut probe.arguments {
        if k == "x-queue-type" {
            *v = Arg::Str(other.as_str().into());
        }
    }
    let mut probes = vec![probe.clone()];
    if other == QueueType::Quorum {
        probes.push(probe.at_least_once());
    }
    for probe in probes {
        let Ok(throwaway) = connection.create_channel().await else {
            break;
        };
        let found = declare_queue(&throwaway, &probe, TopologyMode::Declare, timeout)
            .await
            .is_ok();
        close_throwaway(&throwaway).await;
        if found {
            return TopologyError::Inequivalent {
                kind: ObjectKind::Queue,
                name: decl.name.clone(),
                argument: "x-queue-type".to_owned(),
                requested: format!("`{asked}`"),
                current: format!("`{other}`"),
                declared: declared.clone(),
                reply: reply.clone(),
            }
            .into();
        }
    }
    error
}

async fn close_throwaway(channel: &Channel) {
    if channel.status().connected() {
        let _ = tokio::time::timeout(Duration::from_secs(5), channel.close(200, "checked".into()))
            .await;
    }
}

async fn check_arguments(
    connection: &lapin::Connection,
    decl: &QueueDecl,
    timeout: Duration,
) -> Result<(), RabbitMqError> {
    let op = format!("check the arguments of queue `{}`", decl.name);
    let throwaway = with_timeout(op.clone(), timeout, connection.create_channel())
        .await?
        .map_err(|e| RabbitMqError::operation(op, &e))?;
    let result = declare_queue(&throwaway, decl, TopologyMode::Declare, timeout).await;
    close_throwaway(&throwaway).await;
    match result {
        Err(e) if matches!(e.topology(), Some(TopologyError::AccessRefused { .. })) => {
            tracing::debug!(
                queue = %decl.name,
                "may not declare the queue, so its arguments are not checked"
            );
            Ok(())
        }
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

/// Checks that a queue exists and returns its message and consumer counts.
pub(crate) async fn inspect_queue(
    channel: &Channel,
    name: &str,
    timeout: Duration,
) -> Result<(u32, u32), RabbitMqError> {
    declare_queue(
        channel,
        &QueueDecl::durable(name),
        TopologyMode::Passive,
        timeout,
    )
    .await
    .map_err(|e| match e.topology() {
        // A look, not a passive topology: no hint about topology modes.
        Some(TopologyError::NotFound {
            kind, name, reply, ..
        }) => TopologyError::NotFound {
            kind: *kind,
            name: name.clone(),
            hint: String::new(),
            reply: reply.clone(),
        }
        .into(),
        _ => e,
    })
}

/// A binding pattern as an AMQP short string; `kind` and `name` say what was being bound.
pub(crate) fn binding_key(
    pattern: &str,
    kind: ObjectKind,
    name: &str,
) -> Result<ShortString, RabbitMqError> {
    ShortString::try_new(pattern).map_err(|_| {
        TopologyError::Failed {
            action: "bind",
            kind,
            name: name.to_owned(),
            reason: format!("binding pattern `{pattern}` is longer than 255 bytes"),
        }
        .into()
    })
}

/// Binds a queue to an exchange with a pattern (skipped in passive mode).
pub(crate) async fn bind_queue(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    pattern: &str,
    mode: TopologyMode,
    timeout: Duration,
) -> Result<(), RabbitMqError> {
    if mode == TopologyMode::Passive {
        return Ok(());
    }
    let q = short(ObjectKind::Queue, queue)?;
    let x = short(ObjectKind::Exchange, exchange)?;
    let key = binding_key(pattern, ObjectKind::Queue, queue)?;
    let result = with_timeout(
        format!("bind queue `{queue}` to `{exchange}` with `{pattern}`"),
        timeout,
        channel.queue_bind(
            q,
            x,
            key,
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await?;
    result.map_err(|e| {
        if is_connection_error(&e) {
            return RabbitMqError::operation(format!("bind queue `{queue}`"), &e);
        }
        match soft_error(&e) {
            Some((AMQPSoftError::NOTFOUND, reply)) => TopologyError::NotFound {
                kind: ObjectKind::Exchange,
                name: exchange.to_owned(),
                hint: format!(" (binding queue `{queue}` to it)"),
                reply,
            }
            .into(),
            _ => TopologyError::Failed {
                action: "bind",
                kind: ObjectKind::Queue,
                name: queue.to_owned(),
                reason: format!("to exchange `{exchange}` with `{pattern}`: {e}"),
            }
            .into(),
        }
    })
}

fn classify(
    error: &lapin::Error,
    kind: ObjectKind,
    name: &str,
    passive: bool,
    declared: &str,
) -> RabbitMqError {
    if is_connection_error(error) {
        let action = if passive { "check" } else { "declare" };
        return RabbitMqError::operation(format!("{action} {kind} `{name}`"), error);
    }
    let err = match soft_error(error) {
        Some((AMQPSoftError::PRECONDITIONFAILED, reply)) => match parse_inequivalent(&reply) {
            Some(diff) => TopologyError::Inequivalent {
                kind,
                name: name.to_owned(),
                argument: diff.argument,
                requested: diff.received,
                current: diff.current,
                declared: declared.to_owned(),
                reply,
            },
            None => TopologyError::Failed {
                action: "declare",
                kind,
                name: name.to_owned(),
                reason: reply,
            },
        },
        Some((AMQPSoftError::NOTFOUND, reply)) => TopologyError::NotFound {
            kind,
            name: name.to_owned(),
            hint: if passive {
                " (the topology is passive, so ferry only checks it); declare it beforehand or \
                 switch to TopologyMode::Declare"
                    .to_owned()
            } else {
                String::new()
            },
            reply,
        },
        Some((AMQPSoftError::ACCESSREFUSED, reply)) => TopologyError::AccessRefused {
            kind,
            name: name.to_owned(),
            reply,
        },
        Some((_, reply)) => TopologyError::Failed {
            action: if passive { "check" } else { "declare" },
            kind,
            name: name.to_owned(),
            reason: reply,
        },
        None => TopologyError::Failed {
            action: if passive { "check" } else { "declare" },
            kind,
            name: name.to_owned(),
            reason: error.to_string(),
        },
    };
    err.into()
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
