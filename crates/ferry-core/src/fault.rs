//! Faults: why a message was dead-lettered, and the headers that say so (`docs/wire-format.md`, dead letters).

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::wire::{HeaderValue, Headers, WireMessage};

/// The names of ferry's own headers.
pub mod headers {
    /// The number of the delivery attempt a retry copy will be (2 for the first retry).
    pub const ATTEMPT: &str = "ferry-attempt";
    /// The fault kind of a dead letter.
    pub const FAULT_KIND: &str = "ferry-fault-kind";
    /// The fault message of a dead letter (at most 4 KiB).
    pub const FAULT_MESSAGE: &str = "ferry-fault-message";
    /// When the message was dead-lettered (RFC 3339).
    pub const FAULT_AT: &str = "ferry-fault-at";
    /// How many delivery attempts were made.
    pub const FAULT_ATTEMPTS: &str = "ferry-fault-attempts";
    /// The exchange the message was first published to.
    pub const ORIGINAL_EXCHANGE: &str = "ferry-original-exchange";
    /// The routing key the message was first published with.
    pub const ORIGINAL_ROUTING_KEY: &str = "ferry-original-routing-key";
    /// The queue the message failed on.
    pub const ORIGINAL_QUEUE: &str = "ferry-original-queue";

    /// Every fault header: what a replay removes.
    pub const FAULT_HEADERS: [&str; 7] = [
        FAULT_KIND,
        FAULT_MESSAGE,
        FAULT_AT,
        FAULT_ATTEMPTS,
        ORIGINAL_EXCHANGE,
        ORIGINAL_ROUTING_KEY,
        ORIGINAL_QUEUE,
    ];
}

/// The header the broker adds to a message it dead-letters: an array of tables, the latest
/// first, each with `reason`, `queue`, `exchange`, `routing-keys`, `count` and `time`.
pub const X_DEATH: &str = "x-death";

/// The header a quorum queue puts on a redelivered message: how many deliveries failed before.
pub const X_DELIVERY_COUNT: &str = "x-delivery-count";

/// The most bytes of a fault message that travel in `ferry-fault-message`.
pub const MAX_FAULT_MESSAGE_BYTES: usize = 4096;

/// Why a message could not be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The handler returned an error (after the last retry, or a permanent one).
    Handler,
    /// The handler panicked.
    Panic,
    /// The message could not be decoded (headers, JSON, upcasting).
    Decode,
    /// No handler is registered for the message's type.
    UnknownType,
    /// The message's version is newer than the handler knows.
    UnsupportedVersion,
    /// The message has no id.
    MissingId,
    /// The message is over a size or count limit.
    TooLarge,
    /// The broker dead-lettered the message itself: it was delivered more often than the
    /// queue's delivery limit (`x-delivery-limit`) allows, its handler never settling it
    /// (a crashing process, or a requeue loop). It carries `x-death`, not ferry's fault headers.
    DeliveryLimit,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Handler,
        FaultKind::Panic,
        FaultKind::Decode,
        FaultKind::UnknownType,
        FaultKind::UnsupportedVersion,
        FaultKind::MissingId,
        FaultKind::TooLarge,
        FaultKind::DeliveryLimit,
    ];

    /// The kind as it travels in `ferry-fault-kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Handler => "handler",
            FaultKind::Panic => "panic",
            FaultKind::Decode => "decode",
            FaultKind::UnknownType => "unknown-type",
            FaultKind::UnsupportedVersion => "unsupported-version",
            FaultKind::MissingId => "missing-id",
            FaultKind::TooLarge => "too-large",
            FaultKind::DeliveryLimit => "delivery-limit",
        }
    }

    /// Parses a kind from its header form.
    pub fn parse(s: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a fault of this kind is retried (only handler errors and panics may be).
    pub fn is_retryable(self) -> bool {
        matches!(self, FaultKind::Handler | FaultKind::Panic)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fault: the kind, the message and where the message came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// The error text.
    pub message: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// When it was dead-lettered.
    pub at: DateTime<Utc>,
    /// The exchange the message was first published to.
    pub original_exchange: Option<String>,
    /// The routing key it was first published with.
    pub original_routing_key: Option<String>,
    /// The queue it failed on.
    pub original_queue: Option<String>,
}

impl Fault {
    /// A fault of `kind` with `message`, now, after one attempt.
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            attempts: 1,
            at: Utc::now(),
            original_exchange: None,
            original_routing_key: None,
            original_queue: None,
        }
    }

    /// Writes the fault headers onto a message (keeping everything else it carries). The
    /// original exchange and routing key already on the message are kept, so a message that is
    /// dead-lettered twice still names where it first came from.
    pub fn apply_to(&self, message: &mut WireMessage) {
        let h = &mut message.headers;
        h.insert(headers::FAULT_KIND.into(), self.kind.as_str().into());
        h.insert(
            headers::FAULT_MESSAGE.into(),
            truncate_utf8(&self.message, MAX_FAULT_MESSAGE_BYTES).into(),
        );
        h.insert(
            headers::FAULT_AT.into(),
            self.at.to_rfc3339_opts(SecondsFormat::Millis, true).into(),
        );
        h.insert(
            headers::FAULT_ATTEMPTS.into(),
            HeaderValue::Int(i64::from(self.attempts)),
        );
        for (name, value) in [
            (headers::ORIGINAL_EXCHANGE, &self.original_exchange),
            (headers::ORIGINAL_ROUTING_KEY, &self.original_routing_key),
            (headers::ORIGINAL_QUEUE, &self.original_queue),
        ] {
            if let Some(v) = value {
                h.insert(name.into(), v.as_str().into());
            }
        }
    }

    /// Reads a fault from a dead letter's headers; `None` when `ferry-fault-kind` is missing or
    /// unknown.
    pub fn from_headers(h: &Headers) -> Option<Fault> {
        let text = |name: &str| h.get(name).and_then(HeaderValue::as_str).map(str::to_owned);
        let kind = FaultKind::parse(h.get(headers::FAULT_KIND)?.as_str()?)?;
        Some(Fault {
            kind,
            message: text(headers::FAULT_MESSAGE).unwrap_or_default(),
            attempts: h
                .get(headers::FAULT_ATTEMPTS)
                .and_then(HeaderValue::as_i64)
                .and_then(|a| u32::try_from(a).ok())
                .unwrap_or(1),
            at: text(headers::FAULT_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(Utc::now),
            original_exchange: text(headers::ORIGINAL_EXCHANGE),
            original_routing_key: text(headers::ORIGINAL_ROUTING_KEY),
            original_queue: text(headers::ORIGINAL_QUEUE),
        })
    }

    /// Reads the fault of a message the broker dead-lettered past a quorum queue's delivery
    /// limit: its `x-death` entry of reason `delivery_limit` names the queue, the exchange and
    /// the routing key. `ferry-original-*` headers on the message (a replayed dead letter)
    /// still name its first origin. `None` when there is no such entry.
    pub fn from_x_death(h: &Headers) -> Option<Fault> {
        let HeaderValue::Array(deaths) = h.get(X_DEATH)? else {
            return None;
        };
        let death = deaths.iter().find_map(|d| match d {
            HeaderValue::Table(t)
                if t.get("reason").and_then(HeaderValue::as_str) == Some("delivery_limit") =>
            {
                Some(t)
            }
            _ => None,
        })?;
        let text = |table: &Headers, name: &str| {
            table
                .get(name)
                .and_then(HeaderValue::as_str)
                .map(str::to_owned)
        };
        let routing_key = match death.get("routing-keys") {
            Some(HeaderValue::Array(keys)) => keys
                .first()
                .and_then(HeaderValue::as_str)
                .map(str::to_owned),
            _ => None,
        };
        let queue = text(death, "queue");
        // Quorum queues count deliveries in `x-delivery-count` (the first one not counted).
        let attempts = h
            .get(X_DELIVERY_COUNT)
            .and_then(HeaderValue::as_i64)
            .and_then(|n| u32::try_from(n.saturating_add(1)).ok())
            .unwrap_or(1);
        Some(Fault {
            kind: FaultKind::DeliveryLimit,
            message: format!(
                "the broker dead-lettered the message after {attempts} deliveries: queue `{}` \
                 reached its delivery limit",
                queue.as_deref().unwrap_or("?")
            ),
            attempts,
            at: match death.get("time") {
                Some(HeaderValue::Timestamp(t)) => i64::try_from(*t)
                    .ok()
                    .and_then(|t| DateTime::from_timestamp(t, 0))
                    .unwrap_or_else(Utc::now),
                _ => Utc::now(),
            },
            original_exchange: text(h, headers::ORIGINAL_EXCHANGE)
                .or_else(|| text(death, "exchange")),
            original_routing_key: text(h, headers::ORIGINAL_ROUTING_KEY).or(routing_key),
            original_queue: text(h, headers::ORIGINAL_QUEUE).or(queue),
        })
    }

    /// Makes a dead letter ready to replay: removes the fault headers and `ferry-attempt`.
    pub fn strip_from(message: &mut WireMessage) {
        for name in headers::FAULT_HEADERS {
            message.headers.remove(name);
        }
        message.headers.remove(headers::ATTEMPT);
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// Cuts a string to at most `max` bytes on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A dead-lettered message as a dead-letter consumer sees it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message as it arrived on the dead-letter queue (fault headers included).
    pub message: WireMessage,
    /// Its envelope, where it could be decoded.
    pub envelope: Option<crate::Envelope>,
    /// Its fault; a message with no fault headers gets a `decode` fault saying so.
    pub fault: Fault,
    /// The routing key it arrived with.
    pub routing_key: String,
}

impl DeadLetter {
    /// Builds a dead letter from a message that arrived on a dead-letter queue.
    pub fn from_message(message: WireMessage, routing_key: impl Into<String>) -> Self {
        let routing_key = routing_key.into();
        let fault = Fault::from_headers(&message.headers)
            .or_else(|| Fault::from_x_death(&message.headers))
            .unwrap_or_else(|| Fault {
                original_routing_key: Some(routing_key.clone()),
                ..Fault::new(FaultKind::Decode, "dead letter without ferry fault headers")
            });
        let envelope = crate::codec::decode(&message).ok().map(|d| d.envelope);
        Self {
            message,
            envelope,
            fault,
            routing_key,
        }
    }

    /// The message id, where it has one.
    pub fn message_id(&self) -> Option<&str> {
        self.envelope
            .as_ref()
            .map(|e| e.id.as_str())
            .or(self.message.properties.message_id.as_deref())
            .filter(|s| !s.is_empty())
    }

    /// The event type, where it has one.
    pub fn event_type(&self) -> Option<&str> {
        self.envelope
            .as_ref()
            .map(|e| e.event_type.as_str())
            .or(self.message.properties.kind.as_deref())
            .filter(|s| !s.is_empty())
    }
}
