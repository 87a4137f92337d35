//! # ferry-testing
//!
//! A test harness for ferry applications (`ferry::testing`, the facade's feature `testing`).
//!
//! Your application wires its consumers, relays and Mediator in its own function — the one
//! production calls with its `RabbitMq` and database outbox. A test calls the same function
//! with a [`TestHarness`]'s [`transport`](TestHarness::transport) and
//! [`store`](TestHarness::store): on the in-memory bus and stores ([`TestHarness::memory`]),
//! or on RabbitMQ and PostgreSQL (`TestHarness::rabbitmq`, feature `rabbitmq`;
//! [`TestHarness::from_env`] picks one from `FERRY_TEST_BACKEND`). Then it:
//!
//! - records every event published (directly, or by an outbox relay), every delivery
//!   consumed and what became of it (handled, skipped by the inbox, retried with its delay,
//!   dead-lettered with its fault), and every Mediator request and notification — queried by
//!   type, with predicates and exact counts: `harness.published::<OrderCreated>().count()`,
//!   `harness.dead_lettered().single()?`;
//! - **waits until idle** ([`TestHarness::wait_idle`]): outbox drained, nothing in process,
//!   no retry waiting, nothing published still on its way — or fails with what is pending;
//! - on memory, lets a paused tokio clock run the retry delays at once;
//! - has [`fakes`] for your error paths.
//!
//! What "idle" covers, and each backend's names and clean-up: `docs/testing.md`.
//!
//! ```
//! use std::time::Duration;
//! use ferry_core::{HandlerError, MessageContext, PublisherExt, RetryPolicy, host::Host};
//! use ferry_testing::{TestHarness, TestTransport, TransportError};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
//! # #[event(name = "orders.order.created")]
//! # struct OrderCreated { order_id: String }
//!
//! async fn reserve(event: OrderCreated, _: MessageContext) -> Result<(), HandlerError> {
//!     tracing::info!(order_id = %event.order_id, "reserved");
//!     Ok(())
//! }
//!
//! // The application's wiring, generic over the transport so that tests can pass the harness's.
//! async fn wire<T>(transport: &T) -> Result<Host, T::Error>
//! where
//!     T: ferry_core::ConsumerHost,
//! {
//!     let inventory = ferry_core::ConsumerBuilder::new(transport, "inventory.order-created")
//!         .bind("orders.order.created")
//!         .retry(RetryPolicy::exponential(3, Duration::from_secs(1)))
//!         .dead_letter("app.dlx")
//!         .handle::<OrderCreated>(reserve)
//!         .start()
//!         .await?;
//!     Ok(Host::new().consumer("inventory", inventory))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let harness = TestHarness::memory();
//! harness.run(wire(harness.transport()).await?);
//!
//! harness.transport().publish(&OrderCreated { order_id: "o-1".into() }).await?;
//! harness.wait_idle().await?;
//!
//! assert_eq!(harness.published::<OrderCreated>().count(), 1);
//! let consumed = harness.consumed::<OrderCreated>();
//! assert_eq!(consumed.single()?.event.order_id, "o-1");
//! assert!(harness.dead_lettered().is_empty());
//! harness.shutdown().await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod fakes;
mod harness;
mod ledger;
mod mediator;
mod query;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
mod record;
mod store;
mod transport;

pub use harness::{DEFAULT_IDLE_TIMEOUT, HarnessError, TestHarness};
pub use ledger::{OutboxPending, Pending};
pub use query::{NotSingle, Records, Seen};
pub use record::{Consumption, Outcome, Published, RequestRecord};
pub use store::{TestStore, TestTransaction};
pub use transport::{TestTransport, TransportError};
