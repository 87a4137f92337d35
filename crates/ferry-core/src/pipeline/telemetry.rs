//! The pipeline's traces and metrics (see [`crate::telemetry`]): the `ferry.consume` span of a
//! delivery takes the message's trace context as parent once decoded, each handler call has
//! its `ferry.handle` span and duration, and a message that reaches its handler its lag.

use std::{sync::Arc, time::Instant};

use tracing::Instrument;

use super::{
    layer::{Incoming, Layer, Next},
    outcome::Outcome,
};
use crate::telemetry::{self, metric};

/// Right after decoding: records the envelope on the `ferry.consume` span, makes the
/// message's trace context its parent, and runs the rest inside it.
pub(crate) struct ConsumeSpan;

impl Layer for ConsumeSpan {
    async fn handle(&self, message: Incoming, next: Next) -> Outcome {
        let span = message.span().clone();
        if let Some(envelope) = message.envelope() {
            telemetry::record_envelope(&span, envelope);
            telemetry::set_parent_from_traceparent(&span, envelope.traceparent.as_deref());
        }
        next.run(message).instrument(span).await
    }
}

/// Records the consume lag (event time to handler start) of a message that reaches its
/// handler: after the inbox look-up, before the retries.
pub(crate) struct ConsumeLag {
    pub(crate) queue: Arc<str>,
}

impl Layer for ConsumeLag {
    async fn handle(&self, message: Incoming, next: Next) -> Outcome {
        if let Some(envelope) = message.envelope() {
            metric::record_consume_lag(&self.queue, envelope.time);
        }
        next.run(message).await
    }
}

/// Around each handler call: its `ferry.handle` span (failed when it fails) and duration.
pub(crate) struct HandleSpan {
    pub(crate) queue: Arc<str>,
}

impl Layer for HandleSpan {
    async fn handle(&self, message: Incoming, next: Next) -> Outcome {
        let span =
            telemetry::handle_span(message.event_type().unwrap_or_default(), message.attempt());
        let started = Instant::now();
        let outcome = next.run(message).instrument(span.clone()).await;
        metric::record_handler_duration(&self.queue, started.elapsed());
        if let Err(failure) = &outcome {
            telemetry::record_error(&span, failure.kind().as_str(), failure.message());
        }
        outcome
    }
}
