//! Behaviors: layers around the handling of requests, tower style. Each receives the request,
//! its context and [`Next`] — the rest of the pipeline — and decides whether, how often and with
//! what to call it.

use std::{any::Any, fmt, future::Future, marker::PhantomData, sync::Arc};

use futures::future::BoxFuture;

use super::{
    MediatorError, RequestContext, RequestInfo,
    request::{DynRequestHandler, Request},
};

/// A request whose type a generic [`Behavior`] does not know: its [`RequestInfo`] and the value,
/// which can be inspected or changed through a downcast.
pub struct AnyRequest {
    value: Box<dyn Any + Send>,
    info: RequestInfo,
}

impl AnyRequest {
    pub(crate) fn new<R: Request>(request: R, info: RequestInfo) -> Self {
        Self {
            value: Box::new(request),
            info,
        }
    }

    /// Its type name and kind.
    pub fn info(&self) -> RequestInfo {
        self.info
    }

    /// Its type name (`std::any::type_name`).
    pub fn type_name(&self) -> &'static str {
        self.info.type_name
    }

    /// Whether it is an `R`.
    pub fn is<R: Request>(&self) -> bool {
        self.value.is::<R>()
    }

    /// The request, if it is an `R`.
    pub fn downcast_ref<R: Request>(&self) -> Option<&R> {
        self.value.downcast_ref::<R>()
    }

    /// The request, mutably, if it is an `R`.
    pub fn downcast_mut<R: Request>(&mut self) -> Option<&mut R> {
        self.value.downcast_mut::<R>()
    }

    /// Takes the request out as an `R`; gives it back when it is something else.
    pub fn into_inner<R: Request>(self) -> Result<R, Self> {
        let info = self.info;
        self.value
            .downcast::<R>()
            .map(|request| *request)
            .map_err(|value| Self { value, info })
    }
}

impl fmt::Debug for AnyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyRequest")
            .field("type_name", &self.info.type_name)
            .field("kind", &self.info.kind)
            .finish_non_exhaustive()
    }
}

/// A handler's output, type-erased, as a generic [`Behavior`] sees it.
pub struct AnyOutput {
    value: Box<dyn Any + Send>,
    type_name: &'static str,
}

impl AnyOutput {
    /// Wraps an output; a behavior that replaces the handler's result makes one of the same type.
    pub fn new<T: Send + 'static>(value: T) -> Self {
        Self {
            value: Box::new(value),
            type_name: std::any::type_name::<T>(),
        }
    }

    /// The output's type name.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Whether it is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        self.value.is::<T>()
    }

    /// The output, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.value.downcast_ref::<T>()
    }

    /// The output, mutably, if it is a `T`.
    pub fn downcast_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.value.downcast_mut::<T>()
    }

    /// Takes the output out as a `T`; gives it back when it is something else.
    pub fn into_inner<T: 'static>(self) -> Result<T, Self> {
        let type_name = self.type_name;
        self.value
            .downcast::<T>()
            .map(|value| *value)
            .map_err(|value| Self { value, type_name })
    }
}

impl fmt::Debug for AnyOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyOutput")
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

/// A layer around every request: tracing, timing, timeouts, authorization, transactions…
///
/// It gets the request type-erased ([`AnyRequest`]: its type name and kind, downcasts), may
/// return early (short-circuit), call [`Next::run`] to go on, change the result, or call it
/// again (a clone of `Next`, for a request it can rebuild). Behaviors registered first are
/// outermost. For a layer around one request type, with the request typed, see
/// [`RequestBehavior`].
///
/// ```
/// use ferry_mediator::{AnyOutput, AnyRequest, Behavior, MediatorError, Next, RequestContext};
///
/// /// Refuses every command while the service is read-only.
/// struct ReadOnly;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("the service is read-only")]
/// struct ReadOnlyError;
///
/// impl Behavior for ReadOnly {
///     async fn handle(&self, request: AnyRequest, ctx: RequestContext, next: Next)
///         -> Result<AnyOutput, MediatorError>
///     {
///         if request.info().kind == ferry_mediator::RequestKind::Command {
///             return Err(MediatorError::Behavior {
///                 request: request.type_name(),
///                 source: Box::new(ReadOnlyError),
///             });
///         }
///         next.run(request, ctx).await
///     }
/// }
/// ```
pub trait Behavior: Send + Sync + 'static {
    /// Handles the request, usually by calling `next`.
    fn handle(
        &self,
        request: AnyRequest,
        ctx: RequestContext,
        next: Next,
    ) -> impl Future<Output = Result<AnyOutput, MediatorError>> + Send;
}

/// A generic behavior from a closure `Fn(AnyRequest, RequestContext, Next) -> impl Future`.
///
/// ```
/// use ferry_mediator::{Mediator, behavior_fn};
///
/// let builder = Mediator::builder().behavior(behavior_fn(|request, ctx, next| async move {
///     tracing::debug!(request = request.type_name(), "before");
///     next.run(request, ctx).await
/// }));
/// ```
pub fn behavior_fn<F, Fut>(f: F) -> BehaviorFn<F>
where
    F: Fn(AnyRequest, RequestContext, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AnyOutput, MediatorError>> + Send + 'static,
{
    BehaviorFn(f)
}

/// A generic behavior made by [`behavior_fn`].
#[derive(Clone, Copy)]
pub struct BehaviorFn<F>(F);

impl<F> fmt::Debug for BehaviorFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BehaviorFn")
    }
}

impl<F, Fut> Behavior for BehaviorFn<F>
where
    F: Fn(AnyRequest, RequestContext, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AnyOutput, MediatorError>> + Send + 'static,
{
    fn handle(
        &self,
        request: AnyRequest,
        ctx: RequestContext,
        next: Next,
    ) -> impl Future<Output = Result<AnyOutput, MediatorError>> + Send {
        (self.0)(request, ctx, next)
    }
}

/// A layer around one request type, which sees the request and its output typed: validation,
/// retries, caching, a per-request timeout. Register it with
/// [`MediatorBuilder::behavior_for`](super::MediatorBuilder::behavior_for).
///
/// A closure `Fn(R, RequestContext, RequestNext<R>) -> impl Future` is one too.
///
/// ```
/// use ferry_mediator::{MediatorError, Request, RequestBehavior, RequestContext, RequestNext};
///
/// #[derive(Clone)]
/// struct GetPrice { sku: String }
/// impl Request for GetPrice { type Output = u64; }
///
/// /// Gives every price a 10 % discount.
/// struct Discount;
///
/// impl RequestBehavior<GetPrice> for Discount {
///     async fn handle(&self, request: GetPrice, ctx: RequestContext, next: RequestNext<GetPrice>)
///         -> Result<u64, MediatorError>
///     {
///         let price = next.run(request, ctx).await?;
///         Ok(price * 9 / 10)
///     }
/// }
/// ```
pub trait RequestBehavior<R: Request>: Send + Sync + 'static {
    /// Handles the request, usually by calling `next`.
    fn handle(
        &self,
        request: R,
        ctx: RequestContext,
        next: RequestNext<R>,
    ) -> impl Future<Output = Result<R::Output, MediatorError>> + Send;
}

impl<R, F, Fut> RequestBehavior<R> for F
where
    R: Request,
    F: Fn(R, RequestContext, RequestNext<R>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R::Output, MediatorError>> + Send,
{
    fn handle(
        &self,
        request: R,
        ctx: RequestContext,
        next: RequestNext<R>,
    ) -> impl Future<Output = Result<R::Output, MediatorError>> + Send {
        (self)(request, ctx, next)
    }
}

/// The behaviors around one request type, outermost first.
pub(crate) type Chain = Arc<[Arc<dyn DynBehavior>]>;

/// A request type's behaviors and its handler, as [`Next`] runs them.
pub(crate) struct BehaviorChain {
    pub(crate) chain: Chain,
    pub(crate) terminal: Arc<dyn Terminal>,
}

impl BehaviorChain {
    /// The whole pipeline, from its outermost behavior.
    pub(crate) fn start(&self) -> Next {
        Next {
            chain: Arc::clone(&self.chain),
            position: 0,
            terminal: Arc::clone(&self.terminal),
        }
    }
}

/// The rest of the pipeline after a generic behavior: the behaviors inside it, then the
/// handler. Cheap to clone (reference counts).
#[derive(Clone)]
pub struct Next {
    chain: Chain,
    position: usize,
    terminal: Arc<dyn Terminal>,
}

impl Next {
    /// Runs the rest of the pipeline on `request`.
    pub fn run(
        self,
        request: AnyRequest,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<AnyOutput, MediatorError>> + Send + 'static {
        match self.chain.get(self.position).cloned() {
            Some(behavior) => {
                let next = Next {
                    position: self.position + 1,
                    ..self
                };
                behavior.handle_dyn(request, ctx, next)
            }
            None => self.terminal.call(request, ctx),
        }
    }
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("behaviors_left", &(self.chain.len() - self.position))
            .finish_non_exhaustive()
    }
}

/// The rest of the pipeline after a [`RequestBehavior`] of `R`, typed.
pub struct RequestNext<R> {
    next: Next,
    info: RequestInfo,
    _request: PhantomData<fn(R)>,
}

impl<R> Clone for RequestNext<R> {
    fn clone(&self) -> Self {
        Self {
            next: self.next.clone(),
            info: self.info,
            _request: PhantomData,
        }
    }
}

impl<R> fmt::Debug for RequestNext<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestNext")
            .field("request", &self.info.type_name)
            .field("next", &self.next)
            .finish()
    }
}

impl<R: Request> RequestNext<R> {
    /// Runs the rest of the pipeline on `request`.
    pub async fn run(self, request: R, ctx: RequestContext) -> Result<R::Output, MediatorError> {
        let output = self
            .next
            .run(AnyRequest::new(request, self.info), ctx)
            .await?;
        downcast_output::<R>(output, self.info)
    }

    /// The request's type name and kind.
    pub fn info(&self) -> RequestInfo {
        self.info
    }
}

pub(crate) fn downcast_output<R: Request>(
    output: AnyOutput,
    info: RequestInfo,
) -> Result<R::Output, MediatorError> {
    output
        .into_inner::<R::Output>()
        .map_err(|output| MediatorError::TypeMismatch {
            request: info.type_name,
            expected: std::any::type_name::<R::Output>(),
            found: output.type_name(),
        })
}

/// A behavior as the pipeline stores it. Its future owns a reference to it, so that
/// [`Next::run`] hands the future on without wrapping it.
pub(crate) trait DynBehavior: Send + Sync {
    fn handle_dyn(
        self: Arc<Self>,
        request: AnyRequest,
        ctx: RequestContext,
        next: Next,
    ) -> BoxFuture<'static, Result<AnyOutput, MediatorError>>;
}

/// A generic [`Behavior`] in the pipeline.
pub(crate) struct Generic<B>(pub(crate) B);

impl<B: Behavior> DynBehavior for Generic<B> {
    fn handle_dyn(
        self: Arc<Self>,
        request: AnyRequest,
        ctx: RequestContext,
        next: Next,
    ) -> BoxFuture<'static, Result<AnyOutput, MediatorError>> {
        Box::pin(async move { self.0.handle(request, ctx, next).await })
    }
}

/// A [`RequestBehavior`] of `R` in the pipeline: it steps aside for any other request type.
pub(crate) struct ForRequest<R, B> {
    behavior: B,
    _request: PhantomData<fn(R)>,
}

impl<R, B> ForRequest<R, B> {
    pub(crate) fn new(behavior: B) -> Self {
        Self {
            behavior,
            _request: PhantomData,
        }
    }
}

impl<R: Request, B: RequestBehavior<R>> DynBehavior for ForRequest<R, B> {
    fn handle_dyn(
        self: Arc<Self>,
        request: AnyRequest,
        ctx: RequestContext,
        next: Next,
    ) -> BoxFuture<'static, Result<AnyOutput, MediatorError>> {
        Box::pin(async move {
            let info = request.info();
            match request.into_inner::<R>() {
                Ok(request) => {
                    let next = RequestNext {
                        next,
                        info,
                        _request: PhantomData,
                    };
                    self.behavior
                        .handle(request, ctx, next)
                        .await
                        .map(AnyOutput::new)
                }
                Err(request) => next.run(request, ctx).await,
            }
        })
    }
}

/// The end of the pipeline: the handler.
pub(crate) trait Terminal: Send + Sync {
    fn call(
        &self,
        request: AnyRequest,
        ctx: RequestContext,
    ) -> BoxFuture<'static, Result<AnyOutput, MediatorError>>;
}

pub(crate) struct HandlerTerminal<R: Request> {
    pub(crate) handler: Arc<dyn DynRequestHandler<R>>,
}

impl<R: Request> Terminal for HandlerTerminal<R> {
    fn call(
        &self,
        request: AnyRequest,
        ctx: RequestContext,
    ) -> BoxFuture<'static, Result<AnyOutput, MediatorError>> {
        let handler = Arc::clone(&self.handler);
        Box::pin(async move {
            let request =
                request
                    .into_inner::<R>()
                    .map_err(|request| MediatorError::TypeMismatch {
                        request: request.type_name(),
                        expected: std::any::type_name::<R>(),
                        found: request.type_name(),
                    })?;
            handler.call(request, ctx).await.map(AnyOutput::new)
        })
    }
}
