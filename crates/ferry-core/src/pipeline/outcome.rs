//! What a layer returns: an [`Outcome`], which the pipeline then classifies into a
//! [`Decision`](super::Decision) (see [`super::classify`]).

use std::{error::Error, fmt};

use crate::{FaultKind, HandlerError, codec::DecodeError};

/// How the handling of a message ended, as layers see it: [`Handled`] or a [`Failure`].
///
/// The pipeline turns it into a [`Decision`](super::Decision): `Ok(Handled::Done)` is an ack,
/// `Ok(Handled::Duplicate)` a duplicate, a permanent failure a dead letter at once, and a
/// transient one a delayed retry while the retry policy has attempts left, a dead letter after.
pub type Outcome = Result<Handled, Failure>;

/// How a message was handled when nothing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The handler ran and its work is done (committed, for a transactional handler).
    Done,
    /// The inbox knew the message: not handled again.
    Duplicate,
}

/// Why a message was not handled: the fault kind it is dead-lettered with, whether a retry may
/// fix it, and what went wrong.
///
/// A handler's [`HandlerError`] becomes one of kind [`FaultKind::Handler`], keeping the error
/// (see [`Failure::handler_error`], [`Failure::find_source`]); a layer may change whether it is
/// permanent ([`Failure::into_permanent`], [`Failure::into_transient`]) or fail on its own
/// ([`Failure::transient`], [`Failure::permanent`]).
///
/// ```
/// use ferry_core::{FaultKind, HandlerError, pipeline::Failure};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("quantity must be positive")]
/// struct Invalid;
///
/// let failure = Failure::from(HandlerError::transient(Invalid));
/// assert_eq!(failure.kind(), FaultKind::Handler);
/// assert!(!failure.is_permanent());
/// assert!(failure.find_source::<Invalid>().is_some());
/// assert!(failure.into_permanent().is_permanent());
/// ```
pub struct Failure {
    kind: FaultKind,
    permanent: bool,
    message: String,
    error: Option<HandlerError>,
}

impl Failure {
    /// A failure a retry may fix: retried (immediately, then with the retry policy's delays),
    /// dead-lettered as `kind` once the attempts are spent.
    pub fn transient(kind: FaultKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            permanent: false,
            message: message.into(),
            error: None,
        }
    }

    /// A failure no retry can fix: dead-lettered as `kind` at once.
    pub fn permanent(kind: FaultKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            permanent: true,
            message: message.into(),
            error: None,
        }
    }

    /// A handler's error: kind [`FaultKind::Handler`], permanent when the error is, its text
    /// (the error and its sources) the fault's message.
    pub fn handler(error: HandlerError) -> Self {
        Self {
            kind: FaultKind::Handler,
            permanent: error.is_permanent(),
            message: error.to_string(),
            error: Some(error),
        }
    }

    /// A handler's panic: kind [`FaultKind::Panic`], transient.
    pub fn panic(payload: &str) -> Self {
        Self::transient(FaultKind::Panic, format!("handler panicked: {payload}"))
    }

    /// The fault kind it is dead-lettered with.
    pub fn kind(&self) -> FaultKind {
        self.kind
    }

    /// Whether it is dead-lettered at once, without retries.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// What went wrong: the fault's message, and the error of a delayed retry.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The handler's error, when a handler failed.
    pub fn handler_error(&self) -> Option<&HandlerError> {
        self.error.as_ref()
    }

    /// The first error of type `E` in the handler error's chain (the error the handler
    /// returned, then its sources), if any.
    pub fn find_source<E: Error + 'static>(&self) -> Option<&E> {
        let mut next: Option<&(dyn Error + 'static)> = Some(self.error.as_ref()?.source());
        while let Some(error) = next {
            if let Some(found) = error.downcast_ref::<E>() {
                return Some(found);
            }
            next = error.source();
        }
        None
    }

    /// The same failure, dead-lettered at once.
    pub fn into_permanent(mut self) -> Self {
        self.permanent = true;
        self
    }

    /// The same failure, retried.
    pub fn into_transient(mut self) -> Self {
        self.permanent = false;
        self
    }
}

impl From<HandlerError> for Failure {
    fn from(error: HandlerError) -> Self {
        Self::handler(error)
    }
}

impl From<DecodeError> for Failure {
    /// A message that cannot be decoded is dead-lettered at once, as its decode error's kind.
    fn from(error: DecodeError) -> Self {
        Self::permanent(error.kind, error.message)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("kind", &self.kind)
            .field("permanent", &self.permanent)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}
