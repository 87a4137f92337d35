//! Integration events: serde types with a name and a version.

use serde::{Serialize, de::DeserializeOwned};

/// Turns the JSON of an event at one version into the JSON of the next version.
///
/// Register them on the event type with `#[event(upcast(from = 1, with = path::to_fn))]`, or by
/// overriding [`IntegrationEvent::UPCASTERS`]. They chain: a version 1 message for a version 3
/// event runs the upcaster from 1, then the one from 2.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    /// The version this upcaster reads; it produces version `from + 1`.
    pub from: u32,
    /// The conversion. An `Err` is a permanent `decode` fault with that message.
    pub apply: fn(serde_json::Value) -> Result<serde_json::Value, String>,
}

/// An event that crosses a bounded context's border.
///
/// The type holds the event's data only; the metadata (id, time, correlation, causation)
/// lives in the [`Envelope`](crate::Envelope). Derive it:
///
/// ```
/// use ferry_core::IntegrationEvent;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
/// #[serde(rename_all = "camelCase")]
/// #[event(name = "orders.order.created", version = 1)]
/// struct OrderCreated {
///     order_id: String,
///     total_amount: f64,
/// }
///
/// assert_eq!(OrderCreated::NAME, "orders.order.created");
/// assert_eq!(OrderCreated::VERSION, 1);
/// ```
pub trait IntegrationEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The event type, `{bounded-context}.{aggregate}.{event}`; also the default routing key.
    const NAME: &'static str;
    /// The schema version of this type (1 and up).
    const VERSION: u32 = 1;
    /// Upcasters from older versions, each from one version to the next.
    const UPCASTERS: &'static [Upcaster] = &[];
}

/// Why an event name breaks the `{bounded-context}.{aggregate}.{event}` convention.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventNameError {
    /// Not exactly three dot-separated segments.
    #[error(
        "event name `{0}` must have exactly three segments, `{{bounded-context}}.{{aggregate}}.{{event}}`"
    )]
    Segments(String),
    /// A segment is empty.
    #[error("event name `{0}` has an empty segment")]
    EmptySegment(String),
    /// A character outside `[a-z0-9-]`.
    #[error(
        "event name `{name}` has `{ch}`: segments may hold only lowercase letters, digits and `-`"
    )]
    Character {
        /// The name.
        name: String,
        /// The offending character.
        ch: char,
    },
}

/// Checks an event name against the `{bounded-context}.{aggregate}.{event}` convention:
/// three dot-separated, non-empty segments of `[a-z0-9-]`.
///
/// ```
/// assert!(ferry_core::event::validate_event_name("orders.order.created").is_ok());
/// assert!(ferry_core::event::validate_event_name("Orders.created").is_err());
/// ```
pub fn validate_event_name(name: &str) -> Result<(), EventNameError> {
    let segments: Vec<&str> = name.split('.').collect();
    if segments.len() != 3 {
        return Err(EventNameError::Segments(name.to_owned()));
    }
    if segments.iter().any(|s| s.is_empty()) {
        return Err(EventNameError::EmptySegment(name.to_owned()));
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(EventNameError::Character {
            name: name.to_owned(),
            ch,
        });
    }
    Ok(())
}
