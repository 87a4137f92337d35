//! A time limit on requests.

use std::{future::Future, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    AnyOutput, AnyRequest, Behavior, MediatorError, Next, Request, RequestBehavior, RequestContext,
    RequestNext,
};

/// Stops a request that has not finished within a limit, with [`MediatorError::Timeout`].
///
/// The rest of the pipeline is dropped (so the handler stops at its next await), and the
/// context it was given is cancelled, so work it started with that context's token stops too.
/// Needs a tokio runtime with the time driver.
///
/// Around every request, or one type:
///
/// ```
/// use std::time::Duration;
/// use ferry_mediator::{Mediator, Request, TimeoutBehavior};
///
/// struct Report;
/// impl Request for Report { type Output = String; }
///
/// let builder = Mediator::builder()
///     .behavior(TimeoutBehavior::new(Duration::from_secs(5)))
///     .behavior_for::<Report, _>(TimeoutBehavior::new(Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutBehavior {
    limit: Duration,
}

impl TimeoutBehavior {
    /// A timeout of `limit`.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }

    /// The limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    async fn run<T, F, Fut>(
        &self,
        request: &'static str,
        ctx: RequestContext,
        next: F,
    ) -> Result<T, MediatorError>
    where
        F: FnOnce(RequestContext) -> Fut,
        Fut: Future<Output = Result<T, MediatorError>>,
    {
        let token = ctx
            .cancellation()
            .map_or_else(CancellationToken::new, CancellationToken::child_token);
        let inner = ctx.with_cancellation(token.clone());
        match tokio::time::timeout(self.limit, next(inner)).await {
            Ok(result) => result,
            Err(_) => {
                token.cancel();
                Err(MediatorError::Timeout {
                    request,
                    timeout: self.limit,
                })
            }
        }
    }
}

impl Behavior for TimeoutBehavior {
    async fn handle(
        &self,
        request: AnyRequest,
        ctx: RequestContext,
        next: Next,
    ) -> Result<AnyOutput, MediatorError> {
        let name = request.type_name();
        self.run(name, ctx, |ctx| next.run(request, ctx)).await
    }
}

impl<R: Request> RequestBehavior<R> for TimeoutBehavior {
    async fn handle(
        &self,
        request: R,
        ctx: RequestContext,
        next: RequestNext<R>,
    ) -> Result<R::Output, MediatorError> {
        let name = next.info().type_name;
        self.run(name, ctx, |ctx| next.run(request, ctx)).await
    }
}
