//! Retries of a failed request.

use std::{fmt, sync::Arc};

use ferry_mediator::{MediatorError, Request, RequestBehavior, RequestContext, RequestNext};

use crate::RetryPolicy;

type RetryIf = Arc<dyn Fn(&MediatorError) -> bool + Send + Sync>;

/// Runs the rest of the pipeline again when it fails, after the delays of a [`RetryPolicy`]
/// (`max_retry_attempts` retries). It copies the request for each attempt, so it wraps one
/// request type that is `Clone`:
///
/// ```
/// use std::time::Duration;
/// use ferry_core::{RetryPolicy, mediator::{Mediator, Request, RetryBehavior}};
///
/// #[derive(Clone)]
/// struct FetchRate { currency: String }
/// impl Request for FetchRate { type Output = f64; }
///
/// let builder = Mediator::builder().behavior_for::<FetchRate, _>(RetryBehavior::new(
///     RetryPolicy::exponential(3, Duration::from_millis(50)),
/// ));
/// ```
///
/// By default only handler failures and timeouts are retried; validation errors,
/// cancellations and the like are returned at once. [`retry_if`](Self::retry_if) changes that.
/// The request stops retrying when its context is cancelled.
#[derive(Clone)]
pub struct RetryBehavior {
    policy: RetryPolicy,
    retry_if: RetryIf,
}

impl RetryBehavior {
    /// Retries as `policy` says.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            retry_if: Arc::new(|error| {
                matches!(
                    error,
                    MediatorError::Handler { .. } | MediatorError::Timeout { .. }
                )
            }),
        }
    }

    /// Retries only the errors for which `f` is true.
    pub fn retry_if(mut self, f: impl Fn(&MediatorError) -> bool + Send + Sync + 'static) -> Self {
        self.retry_if = Arc::new(f);
        self
    }
}

impl fmt::Debug for RetryBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBehavior")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<R: Request + Clone> RequestBehavior<R> for RetryBehavior {
    async fn handle(
        &self,
        request: R,
        ctx: RequestContext,
        next: RequestNext<R>,
    ) -> Result<R::Output, MediatorError> {
        let mut attempt = 1u32;
        loop {
            let error = match next.clone().run(request.clone(), ctx.clone()).await {
                Ok(output) => return Ok(output),
                Err(error) => error,
            };
            attempt = attempt.saturating_add(1);
            let delay = match self.policy.delay_for(attempt) {
                Some(delay) if (self.retry_if)(&error) && !ctx.is_cancelled() => delay,
                _ => return Err(error),
            };
            tracing::debug!(
                request = next.info().type_name,
                attempt,
                delay_ms = delay.as_millis() as u64,
                %error,
                "retrying request"
            );
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = ctx.cancelled() => return Err(error),
                }
            }
        }
    }
}
