//! Declaring exchanges and queues (or, in passive mode, checking they exist) and binding
//! queues, with the broker's refusals turned into [`TopologyError`]s.

use std::time::Duration;

use lapin::{
    Channel,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    protocol::AMQPSoftError,
    types::FieldTable,
};

use super::{ObjectKind, QueueDecl, TopologyError, binding_key, parse_inequivalent, short};
use crate::{
    ExchangeKind, RabbitMqError, TopologyMode,
    connection::with_timeout,
    error::{is_connection_error, soft_error},
};

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

pub(super) fn classify(
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
