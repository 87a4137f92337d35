//! The Mediator: commands, queries, stream requests and notifications, dispatched in process to
//! their handlers, with behaviors (layers) around requests.
//!
//! In the style of axum and tower: a handler is an async fn (or a type implementing
//! [`RequestHandler`]), a behavior is a layer around the next step ([`Behavior`],
//! [`RequestBehavior`]), and everything is registered explicitly with [`Mediator::builder`],
//! whose [`build`](MediatorBuilder::build) rejects a second handler for the same request.
//!
//! - **Requests** ([`Request`]): a command or query with a typed `Output`, one handler;
//!   [`Mediator::send`] returns `Result<R::Output, MediatorError>`. A handler's own error is
//!   carried in [`MediatorError::Handler`] and comes back typed through
//!   [`MediatorError::handler_error`].
//! - **Stream requests** ([`StreamRequest`]): one handler returns a `Stream`;
//!   [`Mediator::stream`].
//! - **Notifications** ([`Notification`]): in-process domain events for any number of handlers,
//!   run [`Sequential`](PublishStrategy::Sequential)ly (stop at the first error),
//!   [`SequentialContinueOnError`](PublishStrategy::SequentialContinueOnError) or in
//!   [`Parallel`](PublishStrategy::Parallel) (errors gathered); [`Mediator::publish`].
//! - **Context** ([`RequestContext`]): request id, correlation and causation ids, trace context
//!   and cancellation; handlers receive it, and
//!   [`publish_options`](RequestContext::publish_options) carries it into the envelope of the
//!   integration events they publish or add to the outbox (ferry's `PublishOptions`; this crate
//!   knows nothing of messaging: [`Cause`] and [`Propagation`] are the seams).
//! - **Behaviors**, outermost first: [`TracingBehavior`], [`TimeoutBehavior`],
//!   [`SlowRequestBehavior`], [`ValidationBehavior`] (with [`Validate`]), ferry's
//!   `RetryBehavior` (in `ferry::mediator`, with a consumer's retry policy), or your own.
//!
//! ```
//! use std::time::Duration;
//! use ferry_mediator::{
//!     Mediator, MediatorError, Request, RequestContext, TimeoutBehavior, TracingBehavior,
//!     Validate, ValidationErrors,
//! };
//!
//! struct CreateOrder { customer_email: String, total_amount: u64 }
//! #[derive(Debug, PartialEq)]
//! struct OrderDto { id: u64, total_amount: u64 }
//!
//! impl Request for CreateOrder { type Output = OrderDto; }
//! impl Validate for CreateOrder {
//!     fn validate(&self) -> Result<(), ValidationErrors> {
//!         let mut errors = ValidationErrors::new();
//!         errors.ensure(self.customer_email.contains('@'), "customer_email", "must be an e-mail address");
//!         errors.into_result()
//!     }
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("the order total must be positive")]
//! struct EmptyOrder;
//!
//! async fn create_order(cmd: CreateOrder, ctx: RequestContext) -> Result<OrderDto, EmptyOrder> {
//!     if cmd.total_amount == 0 {
//!         return Err(EmptyOrder);
//!     }
//!     tracing::info!(correlation_id = %ctx.correlation_id(), "creating order");
//!     Ok(OrderDto { id: 1, total_amount: cmd.total_amount })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), MediatorError> {
//! let mediator = Mediator::builder()
//!     .behavior(TracingBehavior)
//!     .behavior(TimeoutBehavior::new(Duration::from_secs(5)))
//!     .validate::<CreateOrder>()
//!     .command(create_order)
//!     .build()?;
//!
//! let order = mediator.send(CreateOrder { customer_email: "a@example.com".into(), total_amount: 42 }).await?;
//! assert_eq!(order, OrderDto { id: 1, total_amount: 42 });
//!
//! let err = mediator.send(CreateOrder { customer_email: "a@example.com".into(), total_amount: 0 }).await.unwrap_err();
//! assert!(err.handler_error::<EmptyOrder>().is_some());
//!
//! let err = mediator.send(CreateOrder { customer_email: "nobody".into(), total_amount: 1 }).await.unwrap_err();
//! assert!(err.validation_errors().is_some_and(|e| e.has("customer_email")));
//! # Ok(()) }
//! ```

mod behavior;
mod behaviors;
mod builder;
mod context;
mod dispatch;
mod error;
mod notification;
mod request;
mod stream;
mod typemap;

pub use behavior::{
    AnyOutput, AnyRequest, Behavior, BehaviorFn, Next, RequestBehavior, RequestNext, behavior_fn,
};
pub use behaviors::{
    DEFAULT_SLOW_REQUEST_THRESHOLD, FieldError, SlowRequest, SlowRequestBehavior, TimeoutBehavior,
    TracingBehavior, Validate, ValidationBehavior, ValidationErrors,
};
pub use builder::MediatorBuilder;
pub use context::{Cause, Propagation, RequestContext, RequestId};
pub use dispatch::Mediator;
pub use error::{BoxError, MediatorError, NotificationFailure};
pub use notification::{Notification, NotificationHandler, NotificationObserver, PublishStrategy};
pub use request::{Request, RequestHandler, RequestInfo, RequestKind};
pub use stream::{ResponseStream, StreamHandler, StreamRequest};
/// The token that cancels a request ([`RequestContext::with_cancellation`]).
pub use tokio_util::sync::CancellationToken;
