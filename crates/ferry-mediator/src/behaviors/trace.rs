//! A tracing span around every request.

use tokio::time::Instant;
use tracing::Instrument;

use crate::{AnyOutput, AnyRequest, Behavior, MediatorError, Next, RequestContext};

/// Runs each request inside a `mediator.request` span (fields: `request` — the short type
/// name —, `request_type`, `kind`, `request_id`, `correlation_id`) and logs its outcome in it:
/// `debug` when handled, `warn` with the error when not, with `elapsed_ms`.
///
/// Register it first, so that the span covers the other behaviors too:
///
/// ```
/// use ferry_mediator::{Mediator, TracingBehavior};
/// let builder = Mediator::builder().behavior(TracingBehavior);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingBehavior;

impl Behavior for TracingBehavior {
    async fn handle(
        &self,
        request: AnyRequest,
        ctx: RequestContext,
        next: Next,
    ) -> Result<AnyOutput, MediatorError> {
        let info = request.info();
        let span = tracing::info_span!(
            "mediator.request",
            request = info.short_name(),
            request_type = info.type_name,
            kind = info.kind.as_str(),
            request_id = %ctx.request_id(),
            correlation_id = %ctx.correlation_id(),
        );
        async move {
            let start = Instant::now();
            let result = next.run(request, ctx).await;
            // Whole microseconds, so the log shows 0.011 rather than 0.011121000000000001.
            let elapsed_ms = start.elapsed().as_micros() as f64 / 1000.0;
            match &result {
                Ok(_) => tracing::debug!(elapsed_ms, "request handled"),
                Err(error) => tracing::warn!(elapsed_ms, %error, "request failed"),
            }
            result
        }
        .instrument(span)
        .await
    }
}
