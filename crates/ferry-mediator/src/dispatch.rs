//! The built [`Mediator`]: finds a request's handler by its type and runs it, through the
//! behaviors when there are any.

use std::{
    any::{Any, TypeId, type_name},
    fmt,
    future::Future,
    sync::Arc,
};

use futures::{StreamExt, future::BoxFuture};

use super::{
    AnyRequest, MediatorBuilder, MediatorError, Notification, PublishStrategy, RequestContext,
    ResponseStream, StreamRequest,
    behavior::{BehaviorChain, downcast_output},
    notification::NotificationRoute,
    request::{DynRequestHandler, Request, RequestInfo},
    stream::{Cancellable, DynStreamHandler},
    typemap::TypeMap,
};

/// Sends commands and queries to their handler, streams to theirs, and notifications to all of
/// theirs.
///
/// Built once with [`Mediator::builder`]; cheap to clone (one reference count) and shared
/// across tasks. A request with no behaviors goes straight to its handler: a map lookup and the
/// handler's own (boxed) future, nothing else allocated.
///
/// ```
/// use ferry_mediator::{Mediator, Request, RequestContext};
///
/// struct Ping;
/// impl Request for Ping { type Output = &'static str; }
///
/// async fn pong(_: Ping, _: RequestContext) -> Result<&'static str, std::convert::Infallible> {
///     Ok("pong")
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ferry_mediator::MediatorError> {
/// let mediator = Mediator::builder().query(pong).build()?;
/// assert_eq!(mediator.send(Ping).await?, "pong");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Mediator {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// `RequestRoute<R>` by `TypeId::of::<R>()`.
    pub(crate) requests: TypeMap<Box<dyn Any + Send + Sync>>,
    /// `StreamRoute<R>` by `TypeId::of::<R>()`.
    pub(crate) streams: TypeMap<Box<dyn Any + Send + Sync>>,
    /// `NotificationRoute<N>` by `TypeId::of::<N>()`.
    pub(crate) notifications: TypeMap<Box<dyn Any + Send + Sync>>,
    pub(crate) strategy: PublishStrategy,
    pub(crate) observers: Vec<Arc<dyn crate::NotificationObserver>>,
    pub(crate) behaviors: usize,
    pub(crate) notification_handlers: usize,
}

/// A request type's handler, and its pipeline when behaviors wrap it.
pub(crate) struct RequestRoute<R: Request> {
    pub(crate) info: RequestInfo,
    pub(crate) handler: Arc<dyn DynRequestHandler<R>>,
    pub(crate) behaviors: Option<BehaviorChain>,
}

impl<R: Request> RequestRoute<R> {
    /// The path with behaviors or a cancellation token.
    async fn dispatch(&self, request: R, ctx: RequestContext) -> Result<R::Output, MediatorError> {
        match ctx.cancellation().cloned() {
            None => self.run(request, ctx).await,
            Some(token) => {
                tokio::select! {
                    biased;
                    () = token.cancelled() => Err(MediatorError::Cancelled {
                        request: self.info.type_name,
                    }),
                    result = self.run(request, ctx) => result,
                }
            }
        }
    }

    async fn run(&self, request: R, ctx: RequestContext) -> Result<R::Output, MediatorError> {
        match &self.behaviors {
            None => self.handler.call(request, ctx).await,
            Some(pipeline) => {
                let output = pipeline
                    .start()
                    .run(AnyRequest::new(request, self.info), ctx)
                    .await?;
                downcast_output::<R>(output, self.info)
            }
        }
    }
}

/// A stream request type's handler.
pub(crate) struct StreamRoute<R: StreamRequest> {
    pub(crate) handler: Box<dyn DynStreamHandler<R>>,
}

impl Mediator {
    /// A builder to register handlers and behaviors with.
    pub fn builder() -> MediatorBuilder {
        MediatorBuilder::new()
    }

    /// Sends a command or query to its handler, through the behaviors, with a fresh
    /// [`RequestContext`].
    ///
    /// # Errors
    ///
    /// [`MediatorError::NoHandler`] when no handler is registered for `R`;
    /// [`MediatorError::Handler`] with the handler's error; whatever a behavior returns
    /// ([`MediatorError::Validation`], [`MediatorError::Timeout`], …).
    pub fn send<R: Request>(
        &self,
        request: R,
    ) -> impl Future<Output = Result<R::Output, MediatorError>> + Send + '_ {
        self.send_with(request, RequestContext::new())
    }

    /// Sends a request with its context: the ids its handler and the events it emits carry,
    /// and its cancellation.
    ///
    /// Nothing runs until the returned future is polled.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), and [`MediatorError::Cancelled`] when the context's
    /// cancellation token fires first (the handler is stopped at its next await).
    pub fn send_with<R: Request>(
        &self,
        request: R,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<R::Output, MediatorError>> + Send + '_ {
        let future: BoxFuture<'_, Result<R::Output, MediatorError>> =
            match self.request_route::<R>() {
                Err(error) => Box::pin(std::future::ready(Err(error))),
                // The fast path: the handler's own future and nothing else.
                Ok(route) if route.behaviors.is_none() && ctx.cancellation().is_none() => {
                    route.handler.call(request, ctx)
                }
                Ok(route) => Box::pin(route.dispatch(request, ctx)),
            };
        future
    }

    /// Publishes a notification to all its handlers with the configured strategy and a fresh
    /// context. A notification without handlers is fine: nothing runs.
    ///
    /// # Errors
    ///
    /// [`MediatorError::Notification`] listing the handlers that failed (with
    /// [`PublishStrategy::Sequential`], the first one, after which the rest did not run).
    pub async fn publish<N: Notification>(&self, notification: N) -> Result<(), MediatorError> {
        self.publish_using(notification, RequestContext::new(), self.inner.strategy)
            .await
    }

    /// Publishes a notification with a context (ids, cancellation), with the configured
    /// strategy.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish), and [`MediatorError::Cancelled`] when the context is
    /// cancelled before a handler starts.
    pub async fn publish_with<N: Notification>(
        &self,
        notification: N,
        ctx: RequestContext,
    ) -> Result<(), MediatorError> {
        self.publish_using(notification, ctx, self.inner.strategy)
            .await
    }

    /// Publishes a notification with a context and a strategy for this publish.
    ///
    /// # Errors
    ///
    /// As [`publish_with`](Self::publish_with).
    pub async fn publish_using<N: Notification>(
        &self,
        notification: N,
        ctx: RequestContext,
        strategy: PublishStrategy,
    ) -> Result<(), MediatorError> {
        if self.inner.observers.is_empty() {
            return self.publish_routed(notification, ctx, strategy).await;
        }
        let observed = ctx.clone();
        let result = self.publish_routed(notification, ctx, strategy).await;
        for observer in &self.inner.observers {
            observer.published(type_name::<N>(), &observed, result.as_ref().copied());
        }
        result
    }

    async fn publish_routed<N: Notification>(
        &self,
        notification: N,
        ctx: RequestContext,
        strategy: PublishStrategy,
    ) -> Result<(), MediatorError> {
        match self.notification_route::<N>() {
            Some(route) => route.publish(notification, ctx, strategy).await,
            None => {
                tracing::trace!(
                    notification = type_name::<N>(),
                    "no handlers for notification"
                );
                Ok(())
            }
        }
    }

    /// Starts a stream request with a fresh context.
    ///
    /// # Errors
    ///
    /// [`MediatorError::NoHandler`] when no handler is registered for `R`. The handler's errors
    /// come as items of the stream.
    pub fn stream<R: StreamRequest>(
        &self,
        request: R,
    ) -> Result<ResponseStream<R::Item>, MediatorError> {
        self.stream_with(request, RequestContext::new())
    }

    /// Starts a stream request with its context. When the context's cancellation token fires,
    /// the stream yields [`MediatorError::Cancelled`] and ends.
    ///
    /// # Errors
    ///
    /// As [`stream`](Self::stream).
    pub fn stream_with<R: StreamRequest>(
        &self,
        request: R,
        ctx: RequestContext,
    ) -> Result<ResponseStream<R::Item>, MediatorError> {
        let route = self
            .inner
            .streams
            .get(&TypeId::of::<R>())
            .and_then(|route| route.downcast_ref::<StreamRoute<R>>())
            .ok_or(MediatorError::NoHandler {
                request: type_name::<R>(),
            })?;
        let cancellation = ctx.cancellation().cloned();
        let stream = route.handler.call(request, ctx);
        Ok(match cancellation {
            None => stream,
            Some(token) => Cancellable::new::<R>(stream, token).boxed(),
        })
    }

    /// Whether a handler is registered for request type `R`.
    pub fn handles<R: Request>(&self) -> bool {
        self.request_route::<R>().is_ok()
    }

    fn request_route<R: Request>(&self) -> Result<&RequestRoute<R>, MediatorError> {
        self.inner
            .requests
            .get(&TypeId::of::<R>())
            .and_then(|route| route.downcast_ref::<RequestRoute<R>>())
            .ok_or(MediatorError::NoHandler {
                request: type_name::<R>(),
            })
    }

    fn notification_route<N: Notification>(&self) -> Option<&NotificationRoute<N>> {
        self.inner
            .notifications
            .get(&TypeId::of::<N>())
            .and_then(|route| route.downcast_ref::<NotificationRoute<N>>())
    }
}

impl fmt::Debug for Mediator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mediator")
            .field("requests", &self.inner.requests.len())
            .field("streams", &self.inner.streams.len())
            .field("notifications", &self.inner.notifications.len())
            .field("notification_handlers", &self.inner.notification_handlers)
            .field("behaviors", &self.inner.behaviors)
            .field("strategy", &self.inner.strategy)
            .finish()
    }
}
