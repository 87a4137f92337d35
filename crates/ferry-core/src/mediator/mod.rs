//! The Mediator (the ferry-mediator crate, usable on its own), joined to ferry's messaging:
//! a handler's [`MessageContext`] and an [`Envelope`] are a request's [`Cause`]
//! ([`RequestContext::caused_by`]), a request's [`Propagation`] makes the [`PublishOptions`] of
//! the events its handler publishes ([`RequestContext::publish_options`]), and
//! [`RetryBehavior`] retries a request with a consumer's [`RetryPolicy`](crate::RetryPolicy).
//!
//! ```
//! use ferry_core::{PublishOptions, mediator::RequestContext};
//!
//! let ctx = RequestContext::new().with_correlation_id("c-42");
//! let options: PublishOptions = ctx.publish_options();
//! assert_eq!(options.correlation_id.as_deref(), Some("c-42"));
//! assert_eq!(options.causation_id, Some(ctx.request_id().to_string()));
//! ```

mod retry;

#[doc(inline)]
pub use ferry_mediator::*;
pub use retry::RetryBehavior;

use crate::{Envelope, MessageContext, PublishOptions};

impl Cause for MessageContext {
    fn cause_id(&self) -> &str {
        &self.envelope().id
    }

    fn correlation_id(&self) -> Option<&str> {
        self.envelope().correlation_id.as_deref()
    }

    fn traceparent(&self) -> Option<&str> {
        self.envelope().traceparent.as_deref()
    }

    fn cancellation(&self) -> Option<&CancellationToken> {
        Some(MessageContext::cancellation(self))
    }
}

impl Cause for Envelope {
    fn cause_id(&self) -> &str {
        &self.id
    }

    fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }
}

impl From<Propagation> for PublishOptions {
    fn from(p: Propagation) -> Self {
        PublishOptions {
            correlation_id: Some(p.correlation_id),
            causation_id: Some(p.causation_id),
            traceparent: p.traceparent,
            ..PublishOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_an_envelope_the_event_is_the_cause() {
        let event = Envelope::new("orders.order.created").with_correlation_id("c-7");
        let ctx = RequestContext::from_envelope(&event);
        assert_eq!(ctx.correlation_id(), "c-7");
        assert_eq!(ctx.causation_id(), Some(event.id.as_str()));

        let root = Envelope::new("orders.order.created");
        let ctx = RequestContext::from_envelope(&root);
        assert_eq!(ctx.correlation_id(), root.id);
    }
}
