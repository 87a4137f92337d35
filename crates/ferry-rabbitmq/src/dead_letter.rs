//! The dead-letter consumer: `bus.dead_letter_consumer("app.dlq").on_dead_letter(f)`.
//!
//! Topology: the dead-letter exchange is a durable **topic** exchange, and the dead-letter
//! queue is bound to it with `#`. Dead letters keep their original routing key (`docs/wire-format.md`),
//! so a topic exchange lets an operator bind extra queues for some event types only
//! (`orders.#`), while `#` gives the dead-letter queue all of them. Consumers declare the
//! same exchange the same way, so either may start first.
//!
//! Each dead letter is passed to the callback as a [`DeadLetter`](ferry_core::DeadLetter) (decoded where it can be,
//! raw where not, with its [`Fault`](ferry_core::Fault)); `Ok` acks it, an error or a panic
//! requeues it after a pause. The consume loop is the core's ([`ferry_core::consume`]).

use crate::{
    ExchangeKind, RabbitMq, RabbitMqError,
    topology::{self, QueueDecl},
};

/// The binding pattern of the dead-letter queue: every routing key.
pub const DEAD_LETTER_BINDING: &str = "#";

/// Declares (or checks) a dead-letter exchange and queue (of
/// [`RabbitMqOptions::queue_type`](crate::RabbitMqOptions::queue_type)) and the `#` binding between them.
pub(crate) async fn declare_dead_letter_topology(
    bus: &RabbitMq,
    channel: &lapin::Channel,
    exchange: &str,
    queue: &str,
) -> Result<(), RabbitMqError> {
    let options = bus.options();
    let mode = options.topology();
    let timeout = options.operation_timeout();
    topology::declare_exchange(channel, exchange, ExchangeKind::Topic, mode, timeout).await?;
    // The dead-letter queue is of the transport's queue type: with quorum, a dead letter
    // survives the loss of a node as the events it comes from do.
    let decl = QueueDecl::consumer(queue, options.queue_type());
    match bus.connection().current() {
        Some(link) => {
            topology::declare_queue_checked(&link.conn, channel, &decl, mode, timeout).await?
        }
        // The connection went with the channel: the declare fails and says so.
        None => topology::declare_queue(channel, &decl, mode, timeout).await?,
    };
    topology::bind_queue(channel, queue, exchange, DEAD_LETTER_BINDING, mode, timeout).await
}
