//! # ferry
//!
//! Integration events between bounded contexts over RabbitMQ, with a transactional outbox,
//! idempotent consumers, plugin-free delayed retries, dead-lettering with replay tools, and a
//! Mediator for commands, queries and notifications.
//!
//! This crate is the facade over ferry-core and, behind features, the adapters (`rabbitmq`, on
//! by default; `postgres`; `sqlite`) and the event contracts (`contracts`: JSON Schemas, the
//! AsyncAPI document, the compatibility gate). [`prelude`] has what an application needs; the root has
//! the application's types, and one module a concept ([`mediator`], [`memory`], [`outbox`],
//! [`telemetry`], …). What transport and store authors implement is in [`plumbing`]; operator
//! actions (counts, purges, deletions, the dead-letter queue, the outbox's failed rows) in
//! [`admin`].
//!
//! ```
//! use ferry::prelude::*;
//!
//! #[derive(serde::Serialize, serde::Deserialize, IntegrationEvent)]
//! #[event(name = "orders.order.created")]
//! struct OrderCreated {
//!     order_id: String,
//! }
//!
//! async fn on_created(event: OrderCreated, ctx: MessageContext) -> Result<(), HandlerError> {
//!     tracing::info!(order_id = %event.order_id, message_id = ctx.message_id(), "created");
//!     Ok(())
//! }
//! # fn assert_handler<H: IntegrationEventHandler<OrderCreated>>(_: H) {}
//! # assert_handler(on_created);
//! ```

pub use ferry_macros::IntegrationEvent;

// What an application names: events, handlers, publishing, consumers, the relay, the Mediator.
pub use ferry_core::{
    CancellationToken, ConsumerHandle, DeadLetter, Envelope, FailureKind, Fault, FaultKind,
    HandlerError, IntegrationEvent, IntegrationEventHandler, Mediator, MediatorError,
    MessageContext, OutboxRelay, PublishError, PublishOptions, Publisher, PublisherExt, QueueType,
    RelayError, RelayOptions, RequestContext, RetryPolicy, Upcaster, codec::ContentMode,
    publisher::InContentMode,
};

// One module a concept, with everything in it.
pub use ferry_core::{
    codec, consume, consumer, envelope, event, fault, handler, host, inbox, mediator, memory,
    outbox, pipeline, publisher, relay, retry, routing, telemetry, transactional, wire,
};

#[cfg(feature = "rabbitmq")]
#[doc(inline)]
pub use ferry_rabbitmq as rabbitmq;

/// Event contracts (feature `contracts`): a JSON Schema per event version, the application's
/// AsyncAPI 3.0 document, and the compatibility gate against a committed baseline.
#[cfg(feature = "contracts")]
#[doc(inline)]
pub use ferry_contracts as contracts;

#[cfg(feature = "postgres")]
#[doc(inline)]
pub use ferry_sql::postgres;

#[cfg(feature = "sqlite")]
#[doc(inline)]
pub use ferry_sql::sqlite;

/// The SQL stores written once over their databases (`SqlOutbox<D>`, `SqlInbox<D>`), for code
/// generic over the database.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[doc(inline)]
pub use ferry_sql as sql;

#[cfg(feature = "testing")]
#[doc(inline)]
pub use ferry_testing as testing;

/// For those who write a transport or a store, not for applications: what a transport
/// implements (publishing a batch, hosting consumers), what it is handed (the consumer's spec,
/// deliveries, the pipeline's decisions, the message on the wire), and what an outbox store and
/// an inbox implement.
pub mod plumbing {
    pub use ferry_core::{
        BindingPattern, ClaimedOutboxRow, ConsumerBuilder, ConsumerHost, ConsumerSpec,
        DeadLetterConsumerBuilder, DeadLetterSpec, Decision, Delivery, HeaderValue, Headers, Inbox,
        InboxError, Limits, NewOutboxRow, OutboxError, OutboxFailure, OutboxRow, OutboxStats,
        OutboxStatus, OutboxStore, OutgoingMessage, Pipeline, Properties, PublishBatch,
        PublishTransport, QueueType, RelayBatch, RoutingError, RoutingKey, WireMessage,
    };
}

/// Operator actions, for tools and tests rather than the message flow: the outbox's counts and
/// row states, listing and retrying rows ([`RetryOutcome`](admin::RetryOutcome); the stores'
/// `list`, `row`, `retry`, `retry_all_dead`, `cleanup` on `PgOutbox` and `SqliteOutbox`), and, with the `rabbitmq` feature, the broker's queue tools —
/// [`RabbitMq::queue_counts`](admin::RabbitMq::queue_counts),
/// [`purge_queue`](admin::RabbitMq::purge_queue),
/// [`delete_queue`](admin::RabbitMq::delete_queue),
/// [`delete_exchange`](admin::RabbitMq::delete_exchange),
/// [`delete_consumer_queues`](admin::RabbitMq::delete_consumer_queues) — and the dead-letter
/// queue's ([`DeadLetterQueue`](admin::DeadLetterQueue): list, replay, purge).
pub mod admin {
    pub use ferry_core::outbox::RetryOutcome;
    pub use ferry_core::{OutboxStats, OutboxStatus};

    #[cfg(feature = "rabbitmq")]
    pub use ferry_rabbitmq::{DeadLetterQueue, DlqSelection, RabbitMq, ReplayReport};
}

/// What an application needs, in one `use ferry::prelude::*;`: events and their derive,
/// handlers and their context, publishing, consumers' retry policy, the outbox relay, the
/// transactional consumer's handler, the Mediator, and the adapters' main types (behind their
/// features). Operator tools and transport plumbing stay in their modules.
pub mod prelude {
    pub use ferry_core::{
        CancellationToken, ConsumerHandle, DeadLetter, Fault, FaultKind, HandlerError,
        IntegrationEvent, IntegrationEventHandler, MessageContext, OutboxRelay, PublishOptions,
        Publisher, PublisherExt, QueueType, RelayOptions, RetryPolicy,
        host::{Host, shutdown_signal},
        mediator::{
            Mediator, Notification, NotificationHandler, Request, RequestContext, RequestHandler,
            Validate, ValidationErrors,
        },
        transactional::{TransactionalHandler, TxContext},
    };
    pub use ferry_macros::IntegrationEvent;

    #[cfg(feature = "rabbitmq")]
    pub use ferry_rabbitmq::{ExchangeKind, RabbitMq, RabbitMqOptions};
    #[cfg(feature = "postgres")]
    pub use ferry_sql::postgres::{PgInbox, PgOutbox};
    #[cfg(feature = "sqlite")]
    pub use ferry_sql::sqlite::{SqliteInbox, SqliteOutbox};
}
