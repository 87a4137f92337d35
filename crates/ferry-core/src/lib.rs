//! # ferry-core
//!
//! The model of ferry: [`IntegrationEvent`]s and their [`Envelope`], the CloudEvents
//! [`codec`], the consumer [`Pipeline`] and the [`consume`] loop every transport runs, the
//! [`OutboxRelay`], the [`mediator`], and the in-memory transport and stores in [`memory`].
//!
//! The core does no network or database I/O of its own: the RabbitMQ, PostgreSQL and SQLite
//! adapters live in their own crates and implement the traits defined here ([`PublishTransport`],
//! [`ConsumerHost`], [`OutboxStore`], [`Inbox`]).
#![warn(missing_docs)]

pub mod codec;
pub mod consume;
pub mod consumer;
pub mod envelope;
pub mod event;
pub mod fault;
pub mod handler;
pub mod host;
pub mod inbox;
pub mod mediator;
pub mod memory;
pub mod outbox;
pub mod pipeline;
pub mod publisher;
pub mod relay;
pub mod retry;
pub mod routing;
pub mod telemetry;
pub mod transactional;
pub mod wire;

pub use consumer::{
    ConsumerBuilder, ConsumerHandle, ConsumerHost, ConsumerSpec, DeadLetterConsumerBuilder,
    DeadLetterSpec, QueueType,
};
pub use envelope::Envelope;
pub use event::{IntegrationEvent, Upcaster};
pub use fault::{DeadLetter, Fault, FaultKind};
pub use handler::{FailureKind, HandlerError, IntegrationEventHandler, MessageContext};
pub use inbox::{Inbox, InboxError};
pub use mediator::{Mediator, MediatorError, RequestContext};
pub use outbox::{
    ClaimedOutboxRow, NewOutboxRow, OutboxError, OutboxFailure, OutboxRow, OutboxStats,
    OutboxStatus, OutboxStore,
};
pub use pipeline::{Decision, Delivery, Limits, Pipeline};
pub use publisher::{
    PublishBatch, PublishError, PublishOptions, PublishTransport, Publisher, PublisherExt,
};
pub use relay::{OutboxRelay, RelayBatch, RelayError, RelayOptions};
pub use retry::RetryPolicy;
pub use routing::{BindingPattern, RoutingError, RoutingKey};
pub use wire::{HeaderValue, Headers, OutgoingMessage, Properties, WireMessage};

pub use tokio_util::sync::CancellationToken;
