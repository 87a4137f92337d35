//! The topology of a partitioned consumer (`.partitions(n)`): the events exchange bound, with
//! the consumer's patterns, to an exchange of type `x-consistent-hash` named after the
//! consumer, which spreads messages over the partition queues `<queue>.p<i>` (each bound with
//! weight `1`) by the hash of their `ce-partitionkey` header. Messages sharing a key go to one
//! queue, so each queue consumed in order keeps the order of each key.

use std::time::Duration;

use lapin::{
    Channel,
    options::{ExchangeBindOptions, ExchangeDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

use super::{ObjectKind, TopologyError, classify, short};
use crate::{RabbitMqError, TopologyMode, connection::with_timeout};

/// The header the partitioning exchange hashes: the CloudEvents partitioning extension
/// (`partitionkey`), which ferry writes from the partition key of a publish or outbox add.
pub const PARTITION_KEY_HEADER: &str = "ce-partitionkey";

/// The exchange type of the broker's consistent-hash exchange plugin.
pub const CONSISTENT_HASH: &str = "x-consistent-hash";

/// The weight each partition queue is bound with: an equal share of the keys each.
pub const PARTITION_WEIGHT: &str = "1";

/// The partitioning exchange of a partitioned consumer: `<queue>.partitions`.
///
/// ```
/// assert_eq!(
///     ferry_rabbitmq::topology::partition_exchange_name("billing.order-created"),
///     "billing.order-created.partitions"
/// );
/// ```
pub fn partition_exchange_name(consumer: &str) -> String {
    format!("{consumer}.partitions")
}

/// Declares (or checks) the partitioning exchange: durable, `x-consistent-hash`, hashing
/// [`PARTITION_KEY_HEADER`].
pub(crate) async fn declare_partition_exchange(
    channel: &Channel,
    name: &str,
    mode: TopologyMode,
    timeout: Duration,
) -> Result<(), RabbitMqError> {
    let exchange = short(ObjectKind::Exchange, name)?;
    let passive = mode == TopologyMode::Passive;
    let mut arguments = FieldTable::default();
    arguments.insert(
        ShortString::from("hash-header"),
        AMQPValue::LongString(LongString::from(PARTITION_KEY_HEADER)),
    );
    let options = ExchangeDeclareOptions {
        passive,
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let result = with_timeout(
        format!("declare exchange `{name}`"),
        timeout,
        channel.exchange_declare(
            exchange,
            lapin::ExchangeKind::Custom(CONSISTENT_HASH.to_owned()),
            options,
            arguments,
        ),
    )
    .await?;
    result.map_err(|e| {
        let declared =
            format!("type={CONSISTENT_HASH}, durable=true, hash-header={PARTITION_KEY_HEADER}");
        let err = classify(&e, ObjectKind::Exchange, name, passive, &declared);
        match err.topology() {
            // The broker names the type it does not know: say where it comes from.
            Some(TopologyError::Failed { reason, .. })
                if reason.contains("invalid exchange type") =>
            {
                TopologyError::Failed {
                    action: "declare",
                    kind: ObjectKind::Exchange,
                    name: name.to_owned(),
                    reason: format!(
                        "{reason}; a partitioned consumer needs the broker's consistent-hash \
                         exchange: `rabbitmq-plugins enable rabbitmq_consistent_hash_exchange`"
                    ),
                }
                .into()
            }
            _ => err,
        }
    })
}

/// Binds exchange `destination` to exchange `source` with `pattern` (skipped in passive mode).
pub(crate) async fn bind_exchange(
    channel: &Channel,
    destination: &str,
    source: &str,
    pattern: &str,
    mode: TopologyMode,
    timeout: Duration,
) -> Result<(), RabbitMqError> {
    if mode == TopologyMode::Passive {
        return Ok(());
    }
    let to = short(ObjectKind::Exchange, destination)?;
    let from = short(ObjectKind::Exchange, source)?;
    let key = super::binding_key(pattern, ObjectKind::Exchange, destination)?;
    let op = format!("bind exchange `{destination}` to `{source}` with `{pattern}`");
    with_timeout(
        op.clone(),
        timeout,
        channel.exchange_bind(
            to,
            from,
            key,
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await?
    .map_err(|e| RabbitMqError::operation(op, &e))
}
