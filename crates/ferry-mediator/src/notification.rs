//! Notifications: in-process domain events, delivered to any number of handlers.

use std::{any::type_name, future::Future};

use futures::future::{BoxFuture, join_all};

use super::{BoxError, MediatorError, NotificationFailure, RequestContext};

/// An in-process domain event: any number of handlers receive a copy (none is fine too).
///
/// Unlike an integration event (ferry's `IntegrationEvent`) it never leaves the process; a
/// notification handler that must tell other bounded contexts adds an integration event to the
/// outbox.
///
/// ```
/// use ferry_mediator::Notification;
///
/// #[derive(Clone)]
/// struct OrderPlaced { order_id: String }
/// impl Notification for OrderPlaced {}
/// ```
pub trait Notification: Clone + Send + Sync + 'static {}

/// How [`Mediator::publish`](super::Mediator::publish) runs a notification's handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublishStrategy {
    /// One after the other, in registration order; the first error stops the rest and is
    /// returned (the default, as in MediatR).
    #[default]
    Sequential,
    /// One after the other; every handler runs, and the errors are gathered into one
    /// [`MediatorError::Notification`].
    SequentialContinueOnError,
    /// All at once (joined on the publishing task, not spawned); every handler runs, and the
    /// errors are gathered.
    Parallel,
}

/// Handles one notification type.
///
/// An async fn or closure `Fn(N, RequestContext) -> impl Future<Output = Result<(), E>>` is a
/// handler; so is any type that implements this trait.
///
/// ```
/// use ferry_mediator::{Notification, NotificationHandler, RequestContext};
///
/// #[derive(Clone)]
/// struct OrderPlaced { order_id: String }
/// impl Notification for OrderPlaced {}
///
/// async fn send_receipt(event: OrderPlaced, _ctx: RequestContext) -> Result<(), std::io::Error> {
///     tracing::info!(order_id = %event.order_id, "receipt sent");
///     Ok(())
/// }
///
/// fn assert_handler<N: Notification, H: NotificationHandler<N>>(_: H) {}
/// assert_handler(send_receipt);
/// ```
pub trait NotificationHandler<N: Notification>: Send + Sync + 'static {
    /// The handler's error.
    type Error: Into<BoxError>;

    /// Handles the notification.
    fn handle(
        &self,
        notification: N,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl<N, F, Fut, E> NotificationHandler<N> for F
where
    N: Notification,
    F: Fn(N, RequestContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Into<BoxError>,
{
    type Error = E;

    fn handle(
        &self,
        notification: N,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<(), E>> + Send {
        (self)(notification, ctx)
    }
}

trait DynNotificationHandler<N>: Send + Sync {
    fn call(&self, notification: N, ctx: RequestContext) -> BoxFuture<'_, Result<(), BoxError>>;
}

struct NotificationService<H>(H);

impl<N: Notification, H: NotificationHandler<N>> DynNotificationHandler<N>
    for NotificationService<H>
{
    fn call(&self, notification: N, ctx: RequestContext) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move { self.0.handle(notification, ctx).await.map_err(Into::into) })
    }
}

struct Slot<N> {
    name: &'static str,
    handler: Box<dyn DynNotificationHandler<N>>,
}

/// The handlers of one notification type.
pub(crate) struct NotificationRoute<N> {
    slots: Vec<Slot<N>>,
}

impl<N: Notification> NotificationRoute<N> {
    pub(crate) fn new() -> Self {
        Self { slots: Vec::new() }
    }

    pub(crate) fn push<H: NotificationHandler<N>>(&mut self, handler: H) {
        self.slots.push(Slot {
            name: type_name::<H>(),
            handler: Box::new(NotificationService(handler)),
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) async fn publish(
        &self,
        notification: N,
        ctx: RequestContext,
        strategy: PublishStrategy,
    ) -> Result<(), MediatorError> {
        let cancelled = || MediatorError::Cancelled {
            request: type_name::<N>(),
        };
        if ctx.is_cancelled() {
            return Err(cancelled());
        }
        let mut failures = Vec::new();
        match strategy {
            PublishStrategy::Sequential | PublishStrategy::SequentialContinueOnError => {
                let last = self.slots.len().saturating_sub(1);
                let mut notification = Some(notification);
                for (position, slot) in self.slots.iter().enumerate() {
                    if position > 0 && ctx.is_cancelled() {
                        return Err(cancelled());
                    }
                    // The last handler takes the notification itself; the others a copy.
                    let copy = if position == last {
                        notification.take()
                    } else {
                        notification.clone()
                    };
                    let Some(copy) = copy else { break };
                    if let Err(error) = slot.handler.call(copy, ctx.clone()).await {
                        failures.push(NotificationFailure {
                            handler: slot.name,
                            position,
                            error,
                        });
                        if strategy == PublishStrategy::Sequential {
                            break;
                        }
                    }
                }
            }
            PublishStrategy::Parallel => {
                let results = join_all(
                    self.slots
                        .iter()
                        .map(|slot| slot.handler.call(notification.clone(), ctx.clone())),
                )
                .await;
                for (position, (slot, result)) in self.slots.iter().zip(results).enumerate() {
                    if let Err(error) = result {
                        failures.push(NotificationFailure {
                            handler: slot.name,
                            position,
                            error,
                        });
                    }
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(MediatorError::Notification {
                notification: type_name::<N>(),
                failures,
            })
        }
    }
}

/// Sees every notification published, after its handlers ran: its type name
/// (`std::any::type_name`), its context and the result. Behaviors do not wrap notifications;
/// an observer is how a test harness or an audit log sees them. Register one with
/// [`MediatorBuilder::observe_notifications`](crate::MediatorBuilder::observe_notifications).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use ferry_mediator::{Mediator, MediatorError, Notification, NotificationObserver, RequestContext};
///
/// #[derive(Clone)]
/// struct OrderShipped;
/// impl Notification for OrderShipped {}
///
/// #[derive(Default, Clone)]
/// struct Seen(Arc<Mutex<Vec<&'static str>>>);
///
/// impl NotificationObserver for Seen {
///     fn published(&self, notification: &'static str, _: &RequestContext, _: Result<(), &MediatorError>) {
///         self.0.lock().unwrap_or_else(|e| e.into_inner()).push(notification);
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), MediatorError> {
/// let seen = Seen::default();
/// let mediator = Mediator::builder().observe_notifications(seen.clone()).build()?;
/// mediator.publish(OrderShipped).await?; // no handler: observed all the same
/// assert_eq!(seen.0.lock().unwrap_or_else(|e| e.into_inner()).len(), 1);
/// # Ok(()) }
/// ```
pub trait NotificationObserver: Send + Sync + 'static {
    /// `notification` was published with `ctx`; its handlers returned `result`.
    fn published(
        &self,
        notification: &'static str,
        ctx: &RequestContext,
        result: Result<(), &MediatorError>,
    );
}
