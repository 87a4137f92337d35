//! W3C trace context: the `traceparent` an event carries, captured when the event is built and
//! restored as the parent of the consumer's span.
//!
//! The [`TraceParent`] type (parse and format) is always there. Capture and restore need the
//! `opentelemetry` cargo feature and a `tracing-opentelemetry` layer in the application's
//! subscriber; without either they do nothing, and a traceparent set by hand still travels
//! unchanged.

use std::fmt;

use crate::{WireMessage, codec::attributes};

/// A W3C `traceparent` value: `00-{trace id}-{parent id}-{flags}`, all lowercase hex.
///
/// ```
/// use ferry_core::telemetry::TraceParent;
/// let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let tp = TraceParent::parse(text).unwrap();
/// assert!(tp.is_sampled());
/// assert_eq!(tp.to_string(), text);
/// assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace id (never zero).
    pub trace_id: u128,
    /// The id of the span that is the parent (never zero).
    pub span_id: u64,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` header value; `None` when it is not a valid one. Versions after
    /// `00` are read as the W3C specification says (their first four fields, `ff` refused).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let bytes = text.as_bytes();
        if bytes.len() < 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let version = u8::from_str_radix(text.get(0..2)?, 16).ok()?;
        if version == 0xff || (version == 0 && bytes.len() != 55) {
            return None;
        }
        if bytes.len() > 55 && bytes[55] != b'-' {
            return None;
        }
        let trace_id = hex::<u128>(text.get(3..35)?)?;
        let span_id = hex::<u64>(text.get(36..52)?)?;
        let flags = hex::<u8>(text.get(53..55)?)?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// Whether the sampled flag is set.
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

fn hex<T: FromHex>(text: &str) -> Option<T> {
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    T::from_hex(text)
}

trait FromHex: Sized {
    fn from_hex(text: &str) -> Option<Self>;
}

impl FromHex for u128 {
    fn from_hex(text: &str) -> Option<Self> {
        u128::from_str_radix(text, 16).ok()
    }
}

impl FromHex for u64 {
    fn from_hex(text: &str) -> Option<Self> {
        u64::from_str_radix(text, 16).ok()
    }
}

impl FromHex for u8 {
    fn from_hex(text: &str) -> Option<Self> {
        u8::from_str_radix(text, 16).ok()
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// The traceparent a wire message carries in a header (`ce-traceparent`, the AMQP binding's
/// `cloudEvents_traceparent` / `cloudEvents:traceparent`, or a bare `traceparent`).
pub fn traceparent_of(message: &WireMessage) -> Option<&str> {
    attributes::PREFIXES
        .iter()
        .map(|prefix| format!("{prefix}{}", attributes::TRACEPARENT))
        .chain(std::iter::once(attributes::TRACEPARENT.to_owned()))
        .find_map(|name| message.header_str(&name))
}

/// The traceparent of the current `tracing` span's OpenTelemetry context, if there is one.
///
/// Always `None` without the `opentelemetry` feature, or when no `tracing-opentelemetry` layer
/// is installed, or outside any span.
pub fn current_traceparent() -> Option<String> {
    #[cfg(feature = "opentelemetry")]
    {
        otel::traceparent_of_span(&tracing::Span::current()).map(|tp| tp.to_string())
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        None
    }
}

/// Makes the trace context in `traceparent` the parent of `span`, which must not have been
/// entered yet. Returns whether it did: `false` without the `opentelemetry` feature, without a
/// `tracing-opentelemetry` layer, for a disabled span, or for a missing or invalid traceparent.
///
/// Transports do not need this for consumers (the [`Pipeline`](crate::Pipeline) calls it);
/// it is here for spans of their own that continue a message's trace.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: Option<&str>) -> bool {
    #[cfg(feature = "opentelemetry")]
    {
        traceparent
            .and_then(TraceParent::parse)
            .is_some_and(|tp| otel::set_parent(span, tp))
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        let _ = (span, traceparent);
        false
    }
}

/// Adds a span link from `span` to the trace context in `traceparent` (a message's creation
/// context), as the messaging conventions ask of publish spans. A no-op without the
/// `opentelemetry` feature.
pub fn link_traceparent(span: &tracing::Span, traceparent: Option<&str>) {
    #[cfg(feature = "opentelemetry")]
    if let Some(tp) = traceparent.and_then(TraceParent::parse) {
        otel::add_link(span, tp);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, traceparent);
}

/// The traceparent for an event being built: the creation context of the message.
///
/// With the `opentelemetry` feature and a current span in an OpenTelemetry trace, a short
/// `create` span (kind producer) is opened under the current span and its context returned,
/// unless `given` names another trace (a context the caller set on purpose, which is kept).
/// A `given` traceparent of the current trace (one carried over from the message being
/// handled, by `caused_by`) is replaced by the more precise context. In every other case,
/// `given` is returned unchanged.
pub(crate) fn creation_traceparent(
    routing_key: &str,
    message_id: &str,
    correlation_id: Option<&str>,
    given: Option<&str>,
) -> Option<String> {
    #[cfg(feature = "opentelemetry")]
    {
        let current = tracing::Span::current();
        if let Some(current_tp) = otel::traceparent_of_span(&current) {
            let given_tp = given.and_then(TraceParent::parse);
            if given_tp.is_none_or(|g| g.trace_id == current_tp.trace_id) {
                let create = super::spans::create_span(routing_key, message_id, correlation_id);
                let created = otel::traceparent_of_span(&create)
                    .filter(|c| c.trace_id == current_tp.trace_id)
                    .unwrap_or(current_tp);
                return Some(created.to_string());
            }
        }
        given.map(str::to_owned)
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        let _ = (routing_key, message_id, correlation_id);
        given.map(str::to_owned)
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::{
        Context,
        trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TraceParent;

    pub(super) fn traceparent_of_span(span: &tracing::Span) -> Option<TraceParent> {
        if span.is_disabled() {
            return None;
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| TraceParent {
            trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            flags: sc.trace_flags().to_u8(),
        })
    }

    fn span_context(tp: TraceParent) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(tp.trace_id.to_be_bytes()),
            SpanId::from_bytes(tp.span_id.to_be_bytes()),
            TraceFlags::new(tp.flags),
            true,
            TraceState::default(),
        )
    }

    pub(super) fn set_parent(span: &tracing::Span, tp: TraceParent) -> bool {
        let cx = Context::new().with_remote_span_context(span_context(tp));
        match span.set_parent(cx) {
            Ok(()) => true,
            Err(e) => {
                tracing::trace!(error = %e, "could not restore the message's trace context");
                false
            }
        }
    }

    pub(super) fn add_link(span: &tracing::Span, tp: TraceParent) {
        span.add_link(span_context(tp));
    }
}
