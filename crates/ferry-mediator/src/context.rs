//! The request context: ids and cancellation that travel with a request into its handler, its
//! behaviors and the envelopes of the integration events the handler adds.

use std::{
    borrow::Cow,
    cell::Cell,
    fmt,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio_util::sync::CancellationToken;

/// What caused a request from outside the Mediator, e.g. an integration event being handled:
/// its id becomes the request's causation id, its correlation id (or else its id) the request's,
/// and its trace context and cancellation carry over. ferry implements it for its
/// `MessageContext` and `Envelope`.
pub trait Cause {
    /// The cause's own id.
    fn cause_id(&self) -> &str;

    /// The conversation the cause belongs to, if it names one.
    fn correlation_id(&self) -> Option<&str>;

    /// The W3C trace context, if any.
    fn traceparent(&self) -> Option<&str> {
        None
    }

    /// A token that cancels the work the cause started, if any.
    fn cancellation(&self) -> Option<&CancellationToken> {
        None
    }
}

/// What a request passes on to the messages its handler sends: the request's correlation id,
/// the request as their cause, and the trace context (see [`RequestContext::publish_options`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Propagation {
    /// The request's correlation id.
    pub correlation_id: String,
    /// The request's id, the messages' cause.
    pub causation_id: String,
    /// The W3C trace context, if any.
    pub traceparent: Option<String>,
}

/// The id of one request.
///
/// ferry makes them without a system call or an allocation: a per-process random prefix and a
/// sequence number, shown as a UUID (version 8, "custom"). They are rendered to text only when
/// read. An id from elsewhere (an HTTP `X-Request-Id`) is kept as given, see
/// [`RequestContext::with_request_id`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// The UUID's high and low halves (two words rather than a `u128`, which would double the
    /// alignment and so the size of every context).
    Made(u64, u64),
    Given(Arc<str>),
}

/// Ids handed out to a thread at a time, so making one touches no shared cache line.
const BLOCK: u64 = 4096;
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(0);
static PROCESS_PREFIX: OnceLock<u64> = OnceLock::new();

thread_local! {
    static SEQUENCE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

impl RequestId {
    /// A new, unique id.
    pub fn new() -> Self {
        let sequence = SEQUENCE.with(|cell| {
            let (mut next, mut end) = cell.get();
            if next == end {
                next = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
                end = next.saturating_add(BLOCK);
            }
            cell.set((next.wrapping_add(1), end));
            next
        });
        let prefix = *PROCESS_PREFIX.get_or_init(|| {
            let random = uuid::Uuid::new_v4().as_u128();
            (random >> 64) as u64 ^ random as u64
        });
        // UUID version 8: the version nibble in bits 76..80, the variant `10` in bits 62..64.
        let high = (prefix & !0xF000) | 0x8000;
        let low = (sequence & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        Self(Repr::Made(high, low))
    }

    /// An id given from elsewhere, kept as it is.
    pub fn from_string(id: impl Into<Arc<str>>) -> Self {
        Self(Repr::Given(id.into()))
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Made(high, low) => {
                let bits = (u128::from(*high) << 64) | u128::from(*low);
                fmt::Display::fmt(&uuid::Uuid::from_u128(bits).hyphenated(), f)
            }
            Repr::Given(id) => f.write_str(id),
        }
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({self})")
    }
}

/// What travels with a request: its id, the conversation it belongs to (correlation id), what
/// caused it (causation id), the trace context and a cancellation token.
///
/// [`Mediator::send`](super::Mediator::send) gives each request a fresh context;
/// [`Mediator::send_with`](super::Mediator::send_with) takes one, e.g. built from an HTTP
/// request's headers or, inside an integration event handler, with
/// [`RequestContext::caused_by`]. Handlers receive it as their second argument and use
/// [`publish_options`](RequestContext::publish_options) for the events they publish or add to
/// the outbox, so those events carry the request's correlation id and name the request as their
/// cause.
///
/// Creating one allocates nothing; cloning one copies at most two reference counts.
///
/// ```
/// use ferry_mediator::{Propagation, RequestContext};
///
/// let ctx = RequestContext::new().with_correlation_id("c-42");
/// let passed_on: Propagation = ctx.publish_options();
/// assert_eq!(passed_on.correlation_id, "c-42");
/// assert_eq!(passed_on.causation_id, ctx.request_id().to_string());
/// ```
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    request_id: RequestId,
    /// The ids set from outside, shared: most requests have none, and a clone stays small.
    ids: Option<Arc<Ids>>,
    cancellation: Option<CancellationToken>,
}

#[derive(Clone, Debug, Default)]
struct Ids {
    correlation_id: Option<String>,
    causation_id: Option<String>,
    traceparent: Option<String>,
}

impl RequestContext {
    /// A fresh context: a new request id, which also serves as the correlation id until one is
    /// set (the request starts the conversation); no cause; never cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A context for a request made while handling an integration event (in ferry, pass the
    /// handler's `MessageContext`): the cause's correlation id carries over (its own id when it
    /// has none), the cause is the causation id, and its cancellation token cancels the
    /// request.
    pub fn caused_by(cause: &impl Cause) -> Self {
        let ctx = Self::from_envelope(cause);
        match cause.cancellation() {
            Some(token) => ctx.with_cancellation(token.clone()),
            None => ctx,
        }
    }

    /// A context for a request caused by this event (in ferry, its `Envelope`): see
    /// [`caused_by`](Self::caused_by), without the cancellation.
    pub fn from_envelope(cause: &impl Cause) -> Self {
        let correlation = cause.correlation_id().unwrap_or(cause.cause_id());
        Self {
            request_id: RequestId::new(),
            ids: Some(Arc::new(Ids {
                correlation_id: Some(correlation.to_owned()),
                causation_id: Some(cause.cause_id().to_owned()),
                traceparent: cause.traceparent().map(str::to_owned),
            })),
            cancellation: None,
        }
    }

    /// A context for a request made by the handler of this one: a new request id, the same
    /// correlation id, trace context and cancellation, and this request as the cause.
    pub fn child(&self) -> Self {
        Self {
            request_id: RequestId::new(),
            ids: Some(Arc::new(Ids {
                correlation_id: Some(self.correlation_id().into_owned()),
                causation_id: Some(self.request_id.to_string()),
                traceparent: self.traceparent().map(str::to_owned),
            })),
            cancellation: self.cancellation.clone(),
        }
    }

    fn ids_mut(&mut self) -> &mut Ids {
        Arc::make_mut(self.ids.get_or_insert_with(Arc::default))
    }

    /// Sets the request id (e.g. an HTTP request id).
    pub fn with_request_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.request_id = RequestId::from_string(id);
        self
    }

    /// Sets the correlation id: the conversation this request belongs to.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.ids_mut().correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id: the id of the message or request that caused this one.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.ids_mut().causation_id = Some(id.into());
        self
    }

    /// Sets the W3C trace context carried into published events.
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.ids_mut().traceparent = Some(traceparent.into());
        self
    }

    /// Sets the token that cancels the request: once it is cancelled, `send` stops the handler
    /// and returns [`MediatorError::Cancelled`](super::MediatorError::Cancelled).
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancellation = Some(token);
        self
    }

    /// This request's id.
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The correlation id: the one set, or else this request's id.
    pub fn correlation_id(&self) -> Cow<'_, str> {
        match self
            .ids
            .as_deref()
            .and_then(|ids| ids.correlation_id.as_deref())
        {
            Some(id) => Cow::Borrowed(id),
            None => Cow::Owned(self.request_id.to_string()),
        }
    }

    /// The id of what caused this request, if known.
    pub fn causation_id(&self) -> Option<&str> {
        self.ids.as_deref()?.causation_id.as_deref()
    }

    /// The W3C trace context, if any.
    pub fn traceparent(&self) -> Option<&str> {
        self.ids.as_deref()?.traceparent.as_deref()
    }

    /// The cancellation token, if one was set.
    pub fn cancellation(&self) -> Option<&CancellationToken> {
        self.cancellation.as_ref()
    }

    /// Whether the request has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancellation
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// Completes when the request is cancelled; never, when it has no cancellation token.
    pub async fn cancelled(&self) {
        match &self.cancellation {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// Options for an integration event the handler publishes or adds to the outbox (in ferry,
    /// `PublishOptions`, made from a [`Propagation`]): the request's correlation id, the request
    /// as the cause, and the trace context.
    pub fn publish_options<O: From<Propagation>>(&self) -> O {
        O::from(Propagation {
            correlation_id: self.correlation_id().into_owned(),
            causation_id: self.request_id.to_string(),
            traceparent: self.traceparent().map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_unique_uuids_of_version_8() {
        let a = RequestId::new().to_string();
        let b = RequestId::new().to_string();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn ids_made_on_other_threads_differ() {
        let here = RequestId::new();
        let there = std::thread::spawn(RequestId::new).join().unwrap();
        assert_ne!(here, there);
    }

    #[test]
    fn a_request_without_correlation_starts_the_conversation() {
        let ctx = RequestContext::new();
        assert_eq!(ctx.correlation_id(), ctx.request_id().to_string());
        assert_eq!(ctx.causation_id(), None);
    }

    #[test]
    fn a_child_keeps_the_correlation_and_names_its_parent() {
        let parent = RequestContext::new().with_correlation_id("c-1");
        let child = parent.child();
        assert_eq!(child.correlation_id(), "c-1");
        assert_eq!(
            child.causation_id(),
            Some(parent.request_id().to_string().as_str())
        );
        assert_ne!(child.request_id(), parent.request_id());
    }

    struct Event {
        id: &'static str,
        correlation_id: Option<&'static str>,
    }

    impl Cause for Event {
        fn cause_id(&self) -> &str {
            self.id
        }

        fn correlation_id(&self) -> Option<&str> {
            self.correlation_id
        }
    }

    #[test]
    fn from_an_envelope_the_event_is_the_cause() {
        let event = Event {
            id: "e-1",
            correlation_id: Some("c-7"),
        };
        let ctx = RequestContext::from_envelope(&event);
        assert_eq!(ctx.correlation_id(), "c-7");
        assert_eq!(ctx.causation_id(), Some("e-1"));

        let root = Event {
            id: "e-2",
            correlation_id: None,
        };
        let ctx = RequestContext::from_envelope(&root);
        assert_eq!(ctx.correlation_id(), "e-2");
    }

    #[test]
    fn given_request_ids_are_kept() {
        let ctx = RequestContext::new().with_request_id("req-1");
        assert_eq!(ctx.request_id().to_string(), "req-1");
        assert_eq!(ctx.publish_options::<Propagation>().causation_id, "req-1");
    }

    #[test]
    fn setting_ids_on_a_clone_leaves_the_original_alone() {
        let original = RequestContext::new().with_correlation_id("c-1");
        let changed = original
            .clone()
            .with_correlation_id("c-2")
            .with_causation_id("x");
        assert_eq!(original.correlation_id(), "c-1");
        assert_eq!(original.causation_id(), None);
        assert_eq!(changed.correlation_id(), "c-2");
        assert_eq!(changed.causation_id(), Some("x"));
    }

    #[test]
    fn a_context_is_small() {
        assert!(std::mem::size_of::<RequestContext>() <= 40);
    }

    #[test]
    fn cancellation_is_visible() {
        let token = CancellationToken::new();
        let ctx = RequestContext::new().with_cancellation(token.clone());
        assert!(!ctx.is_cancelled());
        token.cancel();
        assert!(ctx.is_cancelled());
        assert!(!RequestContext::new().is_cancelled());
    }
}
