//! # ferry
//!
//! Integration events between bounded contexts over RabbitMQ, with a transactional outbox,
//! idempotent consumers, plugin-free delayed retries, dead-lettering with replay tools, and a
//! Mediator for commands, queries and notifications.
//!
//! This crate is the facade: it re-exports [`ferry_core`] and, behind features, the adapters
//! (`rabbitmq`, on by default; `postgres`; `sqlite`). [`prelude`] has what an application
//! needs:
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

pub use ferry_core::*;
pub use ferry_macros::IntegrationEvent;

#[cfg(feature = "rabbitmq")]
#[doc(inline)]
pub use ferry_rabbitmq as rabbitmq;

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

/// What an application needs, in one `use ferry::prelude::*;`: events and their derive,
/// handlers and their context, publishing, consumers' retry policy, the outbox relay, the
/// transactional consumer's handler, the Mediator, and the adapters' main types (behind their
/// features). Operator tools and transport plumbing stay in their modules.
pub mod prelude {
    pub use ferry_core::{
        CancellationToken, ConsumerHandle, DeadLetter, Fault, FaultKind, HandlerError,
        IntegrationEvent, IntegrationEventHandler, MessageContext, OutboxRelay, PublishOptions,
        Publisher, PublisherExt, RelayOptions, RetryPolicy,
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
