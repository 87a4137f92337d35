//! A warning for requests that take long.

use std::{fmt, sync::Arc, time::Duration};

// tokio's clock: the same as std's, except that it can be paused in tests.
use tokio::time::Instant;

use crate::{AnyOutput, AnyRequest, Behavior, MediatorError, Next, RequestContext, RequestKind};

/// The threshold of [`SlowRequestBehavior::new`]: 500 ms, as in the seed's framework.
pub const DEFAULT_SLOW_REQUEST_THRESHOLD: Duration = Duration::from_millis(500);

/// A request that took at least the threshold, as [`SlowRequestBehavior::on_slow`] sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SlowRequest {
    /// The request type.
    pub request: &'static str,
    /// Command or query.
    pub kind: RequestKind,
    /// How long it took.
    pub elapsed: Duration,
    /// The threshold it reached.
    pub threshold: Duration,
    /// Its request id.
    pub request_id: String,
    /// Its correlation id.
    pub correlation_id: String,
    /// Whether it succeeded.
    pub succeeded: bool,
}

type OnSlow = Arc<dyn Fn(&SlowRequest) + Send + Sync>;

/// Logs a `warn` ("slow request", with `request`, `kind`, `elapsed_ms`, `threshold_ms`,
/// `request_id`, `correlation_id`) for each request that took the threshold or longer,
/// 500 ms by default; optionally calls a function too (for a metric, or a test).
///
/// ```
/// use std::time::Duration;
/// use ferry_mediator::{Mediator, SlowRequestBehavior};
///
/// let slow = SlowRequestBehavior::new()
///     .with_threshold(Duration::from_millis(200))
///     .on_slow(|slow| metrics::counter!("slow_requests", "request" => slow.request).increment(1));
/// let builder = Mediator::builder().behavior(slow);
/// ```
#[derive(Clone)]
pub struct SlowRequestBehavior {
    threshold: Duration,
    on_slow: Option<OnSlow>,
}

impl SlowRequestBehavior {
    /// With the default threshold of 500 ms.
    pub fn new() -> Self {
        Self {
            threshold: DEFAULT_SLOW_REQUEST_THRESHOLD,
            on_slow: None,
        }
    }

    /// Sets the threshold.
    pub fn with_threshold(mut self, threshold: Duration) -> Self {
        self.threshold = threshold;
        self
    }

    /// Calls `f` for each slow request, besides the warning.
    pub fn on_slow(mut self, f: impl Fn(&SlowRequest) + Send + Sync + 'static) -> Self {
        self.on_slow = Some(Arc::new(f));
        self
    }

    /// The threshold.
    pub fn threshold(&self) -> Duration {
        self.threshold
    }
}

impl Default for SlowRequestBehavior {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SlowRequestBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlowRequestBehavior")
            .field("threshold", &self.threshold)
            .field("on_slow", &self.on_slow.is_some())
            .finish()
    }
}

impl Behavior for SlowRequestBehavior {
    async fn handle(
        &self,
        request: AnyRequest,
        ctx: RequestContext,
        next: Next,
    ) -> Result<AnyOutput, MediatorError> {
        let info = request.info();
        let start = Instant::now();
        let result = next.run(request, ctx.clone()).await;
        let elapsed = start.elapsed();
        if elapsed >= self.threshold {
            let slow = SlowRequest {
                request: info.type_name,
                kind: info.kind,
                elapsed,
                threshold: self.threshold,
                request_id: ctx.request_id().to_string(),
                correlation_id: ctx.correlation_id().into_owned(),
                succeeded: result.is_ok(),
            };
            tracing::warn!(
                request = slow.request,
                kind = slow.kind.as_str(),
                elapsed_ms = slow.elapsed.as_millis() as u64,
                threshold_ms = slow.threshold.as_millis() as u64,
                request_id = %slow.request_id,
                correlation_id = %slow.correlation_id,
                succeeded = slow.succeeded,
                "slow request"
            );
            if let Some(on_slow) = &self.on_slow {
                on_slow(&slow);
            }
        }
        result
    }
}
