//! Stream requests: one handler answers with a stream of items.

use std::{
    any::type_name,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{
    Stream, StreamExt,
    future::{BoxFuture, FutureExt},
    stream::BoxStream,
};
use tokio_util::sync::CancellationToken;

use super::{BoxError, MediatorError, RequestContext};

/// A request answered with a stream of `Item`s (a large query read as it comes, a feed).
///
/// ```
/// use ferry_mediator::StreamRequest;
///
/// struct OrdersOfCustomer { email: String }
/// impl StreamRequest for OrdersOfCustomer {
///     type Item = String;
/// }
/// ```
pub trait StreamRequest: Send + 'static {
    /// What the stream yields.
    type Item: Send + 'static;
}

/// The stream [`Mediator::stream`](super::Mediator::stream) returns: the handler's items, its
/// errors as [`MediatorError::Handler`], and a last [`MediatorError::Cancelled`] if the
/// request's cancellation token fires first.
pub type ResponseStream<T> = BoxStream<'static, Result<T, MediatorError>>;

/// Handles one stream request type.
///
/// A closure or fn `Fn(R, RequestContext) -> impl Stream<Item = Result<R::Item, E>>` is a
/// handler; so is any type that implements this trait. The stream must own what it reads (be
/// `'static`): clone the handler's state into it.
///
/// ```
/// use ferry_mediator::{RequestContext, StreamHandler, StreamRequest};
/// use futures::stream::{self, Stream};
///
/// struct Countdown { from: u32 }
/// impl StreamRequest for Countdown { type Item = u32; }
///
/// fn countdown(request: Countdown, _ctx: RequestContext)
///     -> impl Stream<Item = Result<u32, std::convert::Infallible>>
/// {
///     stream::iter((0..=request.from).rev().map(Ok))
/// }
///
/// fn assert_handler<R: StreamRequest, H: StreamHandler<R>>(_: H) {}
/// assert_handler(countdown);
/// ```
pub trait StreamHandler<R: StreamRequest>: Send + Sync + 'static {
    /// The error an item can be.
    type Error: Into<BoxError>;

    /// Starts the stream.
    fn handle(
        &self,
        request: R,
        ctx: RequestContext,
    ) -> impl Stream<Item = Result<R::Item, Self::Error>> + Send + 'static;
}

impl<R, F, S, E> StreamHandler<R> for F
where
    R: StreamRequest,
    F: Fn(R, RequestContext) -> S + Send + Sync + 'static,
    S: Stream<Item = Result<R::Item, E>> + Send + 'static,
    E: Into<BoxError>,
{
    type Error = E;

    fn handle(
        &self,
        request: R,
        ctx: RequestContext,
    ) -> impl Stream<Item = Result<R::Item, E>> + Send + 'static {
        (self)(request, ctx)
    }
}

pub(crate) trait DynStreamHandler<R: StreamRequest>: Send + Sync {
    fn call(&self, request: R, ctx: RequestContext) -> ResponseStream<R::Item>;
}

pub(crate) struct StreamService<H>(pub(crate) H);

impl<R: StreamRequest, H: StreamHandler<R>> DynStreamHandler<R> for StreamService<H> {
    fn call(&self, request: R, ctx: RequestContext) -> ResponseStream<R::Item> {
        self.0
            .handle(request, ctx)
            .map(|item| item.map_err(MediatorError::handler::<R>))
            .boxed()
    }
}

/// Ends a stream with [`MediatorError::Cancelled`] once its token is cancelled.
pub(crate) struct Cancellable<T> {
    inner: Option<ResponseStream<T>>,
    cancelled: BoxFuture<'static, ()>,
    request: &'static str,
}

impl<T> Cancellable<T> {
    pub(crate) fn new<R>(inner: ResponseStream<T>, token: CancellationToken) -> Self {
        Self {
            inner: Some(inner),
            cancelled: token.cancelled_owned().boxed(),
            request: type_name::<R>(),
        }
    }
}

impl<T> Stream for Cancellable<T> {
    type Item = Result<T, MediatorError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if this.cancelled.poll_unpin(cx).is_ready() {
            this.inner = None;
            return Poll::Ready(Some(Err(MediatorError::Cancelled {
                request: this.request,
            })));
        }
        let item = inner.poll_next_unpin(cx);
        if let Poll::Ready(None) = item {
            this.inner = None;
        }
        item
    }
}
