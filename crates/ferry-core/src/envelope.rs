//! The envelope: an event's metadata, kept apart from its data.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::IntegrationEvent;

/// The source ferry writes when none is configured.
pub const DEFAULT_SOURCE: &str = "ferry";

/// An event's metadata: the CloudEvents attributes and ferry's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The event id (`ce-id`, `message_id`). ferry makes UUID v7; any non-empty string is read.
    pub id: String,
    /// The event type (`ce-type`), e.g. `orders.order.created`.
    pub event_type: String,
    /// The source (`ce-source`, `app_id`).
    pub source: String,
    /// When the event happened (`ce-time`), UTC.
    pub time: DateTime<Utc>,
    /// The schema version of the data (`ce-eventversion`).
    pub event_version: u32,
    /// The correlation id (`ce-correlationid`, `correlation_id`).
    pub correlation_id: Option<String>,
    /// The id of the message that caused this one (`ce-causationid`).
    pub causation_id: Option<String>,
    /// The subject (`ce-subject`).
    pub subject: Option<String>,
    /// The W3C trace context (`ce-traceparent`).
    pub traceparent: Option<String>,
    /// CloudEvents extensions and other headers to carry (see the Extensions section of the
    /// [`codec`](crate::codec) module for how names travel).
    pub extensions: BTreeMap<String, String>,
}

impl Envelope {
    /// A new envelope: a fresh UUID v7 id, the current time (microsecond precision), version 1
    /// and the default source.
    pub fn new(event_type: impl Into<String>) -> Self {
        Self {
            id: new_id(),
            event_type: event_type.into(),
            source: DEFAULT_SOURCE.to_owned(),
            time: Utc::now().trunc_subsecs(6),
            event_version: 1,
            correlation_id: None,
            causation_id: None,
            subject: None,
            traceparent: None,
            extensions: BTreeMap::new(),
        }
    }

    /// A new envelope for an event type: its name and version.
    pub fn for_event<E: IntegrationEvent>() -> Self {
        let mut envelope = Self::new(E::NAME);
        envelope.event_version = E::VERSION;
        envelope
    }

    /// Marks this envelope as caused by `parent`: the correlation id carries over (the parent's
    /// own id when it had none) and the causation id becomes the parent's id. The traceparent,
    /// when this envelope has none, is the parent's; with the `opentelemetry` feature, inside a
    /// span of the parent's trace (a handler), it is this event's own creation context instead
    /// (see [`crate::telemetry`]).
    ///
    /// ```
    /// use ferry_core::Envelope;
    /// let parent = Envelope::new("orders.order.created").with_correlation_id("c-1");
    /// let child = Envelope::new("inventory.stock.reserved").caused_by(&parent);
    /// assert_eq!(child.correlation_id.as_deref(), Some("c-1"));
    /// assert_eq!(child.causation_id.as_deref(), Some(parent.id.as_str()));
    /// ```
    pub fn caused_by(mut self, parent: &Envelope) -> Self {
        self.correlation_id = Some(
            parent
                .correlation_id
                .clone()
                .unwrap_or_else(|| parent.id.clone()),
        );
        self.causation_id = Some(parent.id.clone());
        let inherited = self
            .traceparent
            .take()
            .or_else(|| parent.traceparent.clone());
        self.traceparent = crate::telemetry::creation_traceparent(
            &self.event_type,
            &self.id,
            self.correlation_id.as_deref(),
            inherited.as_deref(),
        );
        self
    }

    /// Sets the W3C traceparent (`00-{trace id}-{span id}-{flags}`).
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the source.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the event version.
    pub fn with_event_version(mut self, version: u32) -> Self {
        self.event_version = version;
        self
    }
}

/// A new message id: a UUID v7, as a hyphenated string.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
