//! What can go wrong building or reading a contract document.

/// An error building an AsyncAPI document or reading one.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// A type's schema needs definitions it cannot inline (a recursive type).
    #[error(
        "the schema of `{event}` version {version} refers to itself (a recursive type); \
         ferry's contracts need self-contained payload schemas"
    )]
    Recursive {
        /// The event's name.
        event: String,
        /// The version.
        version: u32,
    },
    /// A previous version declared at or past the event's current version.
    #[error(
        "`{event}`: version {version} cannot be a previous version of current version {current}"
    )]
    NotPrevious {
        /// The event's name.
        event: String,
        /// The declared version.
        version: u32,
        /// The event type's current version.
        current: u32,
    },
    /// An upcaster reads a version whose schema was not declared.
    #[error(
        "`{event}` has an upcaster from version {from}, whose schema is not declared: add \
         `.previous_version::<Event, V{from}>({from})` with the type that describes it"
    )]
    UndeclaredSource {
        /// The event's name.
        event: String,
        /// The version the upcaster reads.
        from: u32,
    },
    /// A consumer handles an event whose schema was not registered.
    #[error(
        "consumer `{queue}` handles `{event}`, whose schema is not registered: add \
         `.event::<T>()` for its type"
    )]
    UnknownEvent {
        /// The consumer's queue.
        queue: String,
        /// The event's name.
        event: String,
    },
    /// The text is not JSON.
    #[error("not a JSON document: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is not an AsyncAPI 3 document ferry can read.
    #[error("not an AsyncAPI 3 document of ferry events: {0}")]
    NotAsyncApi(String),
}
