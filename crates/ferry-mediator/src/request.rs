//! Requests (commands and queries) and their handlers.

use std::{any::type_name, fmt, future::Future};

use futures::future::BoxFuture;

use super::{BoxError, MediatorError, RequestContext};

/// A request: a command or a query, handled by exactly one handler, answered with an `Output`.
///
/// A command without a result has `type Output = ()`. A handler's domain errors travel in
/// [`MediatorError::Handler`] (get them back with [`MediatorError::handler_error`]); an outcome
/// the caller must always look at can also be the output itself
/// (`type Output = Result<OrderDto, OrderRejected>`).
///
/// ```
/// use ferry_mediator::Request;
///
/// struct CreateOrder { customer_email: String }
/// struct OrderDto { id: String }
///
/// impl Request for CreateOrder {
///     type Output = OrderDto;
/// }
/// ```
pub trait Request: Send + 'static {
    /// What the handler returns.
    type Output: Send + 'static;
}

/// Whether a request changes state (a command) or only reads (a query). It says how the request
/// was registered and shows in traces; the Mediator treats both alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// Registered with [`MediatorBuilder::command`](super::MediatorBuilder::command).
    Command,
    /// Registered with [`MediatorBuilder::query`](super::MediatorBuilder::query).
    Query,
}

impl RequestKind {
    /// `command` or `query`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Command => "command",
            RequestKind::Query => "query",
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a behavior can know about a request without knowing its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestInfo {
    /// The request's type name (`std::any::type_name`).
    pub type_name: &'static str,
    /// Command or query.
    pub kind: RequestKind,
}

impl RequestInfo {
    /// The info of request type `R`.
    pub fn of<R: Request>(kind: RequestKind) -> Self {
        Self {
            type_name: type_name::<R>(),
            kind,
        }
    }

    /// The type name without its module path (`CreateOrder` for `app::orders::CreateOrder`).
    pub fn short_name(&self) -> &'static str {
        short_type_name(self.type_name)
    }
}

/// `app::orders::CreateOrder` → `CreateOrder`; generic arguments are kept.
pub(crate) fn short_type_name(name: &'static str) -> &'static str {
    let end = name.find('<').unwrap_or(name.len());
    match name[..end].rfind("::") {
        Some(i) => &name[i + 2..],
        None => name,
    }
}

/// Handles one request type.
///
/// An async fn or closure `Fn(R, RequestContext) -> impl Future<Output = Result<R::Output, E>>`
/// is a handler, for any error `E` that converts into a boxed error; so is any type that
/// implements this trait (useful when the handler holds a repository, a publisher or an outbox).
///
/// ```
/// use ferry_mediator::{Request, RequestContext, RequestHandler};
///
/// struct GetOrder { id: u64 }
/// impl Request for GetOrder { type Output = Option<String>; }
///
/// // A function…
/// async fn get_order(query: GetOrder, _ctx: RequestContext) -> Result<Option<String>, std::io::Error> {
///     Ok(Some(format!("order {}", query.id)))
/// }
///
/// // …or a type.
/// struct GetOrderHandler { prefix: String }
/// impl RequestHandler<GetOrder> for GetOrderHandler {
///     type Error = std::convert::Infallible;
///     async fn handle(&self, query: GetOrder, _ctx: RequestContext) -> Result<Option<String>, Self::Error> {
///         Ok(Some(format!("{} {}", self.prefix, query.id)))
///     }
/// }
///
/// fn assert_handler<R: Request, H: RequestHandler<R>>(_: H) {}
/// assert_handler(get_order);
/// assert_handler(GetOrderHandler { prefix: "order".into() });
/// ```
pub trait RequestHandler<R: Request>: Send + Sync + 'static {
    /// The handler's error.
    type Error: Into<BoxError>;

    /// Handles the request.
    fn handle(
        &self,
        request: R,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<R::Output, Self::Error>> + Send;
}

impl<R, F, Fut, E> RequestHandler<R> for F
where
    R: Request,
    F: Fn(R, RequestContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R::Output, E>> + Send,
    E: Into<BoxError>,
{
    type Error = E;

    fn handle(
        &self,
        request: R,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<R::Output, E>> + Send {
        (self)(request, ctx)
    }
}

/// A handler with its type erased: its future boxed, its error made a [`MediatorError`].
pub(crate) trait DynRequestHandler<R: Request>: Send + Sync {
    fn call(
        &self,
        request: R,
        ctx: RequestContext,
    ) -> BoxFuture<'_, Result<R::Output, MediatorError>>;
}

/// Wraps a [`RequestHandler`] as a [`DynRequestHandler`].
pub(crate) struct HandlerService<H>(pub(crate) H);

impl<R, H> DynRequestHandler<R> for HandlerService<H>
where
    R: Request,
    H: RequestHandler<R>,
{
    fn call(
        &self,
        request: R,
        ctx: RequestContext,
    ) -> BoxFuture<'_, Result<R::Output, MediatorError>> {
        Box::pin(async move {
            self.0
                .handle(request, ctx)
                .await
                .map_err(MediatorError::handler::<R>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_drop_the_path() {
        assert_eq!(short_type_name("app::orders::CreateOrder"), "CreateOrder");
        assert_eq!(short_type_name("CreateOrder"), "CreateOrder");
        assert_eq!(short_type_name("app::Wrap<app::Inner>"), "Wrap<app::Inner>");
    }
}
