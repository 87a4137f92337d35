//! The Mediator's error: registration mistakes, missing handlers, and failures of handlers and
//! behaviors.

use std::{fmt, time::Duration};

use super::ValidationErrors;

/// Any error a handler returns, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a request, a notification or the building of a Mediator failed.
///
/// A handler's own error is carried boxed in [`MediatorError::Handler`]; get it back typed with
/// [`handler_error`](MediatorError::handler_error) or
/// [`into_handler_error`](MediatorError::into_handler_error):
///
/// ```
/// use ferry_mediator::MediatorError;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("out of stock")]
/// struct OutOfStock;
///
/// let err = MediatorError::handler::<()>(OutOfStock);
/// assert!(err.handler_error::<OutOfStock>().is_some());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediatorError {
    /// No handler is registered for the request type.
    #[error(
        "no handler is registered for `{request}`: register one with Mediator::builder()'s \
         command, query or stream before build()"
    )]
    NoHandler {
        /// The request type.
        request: &'static str,
    },
    /// A second handler was registered for the same request type (from `build()`).
    #[error(
        "`{request}` has more than one handler: a command, query or stream request has exactly \
         one; remove the extra registration"
    )]
    DuplicateHandler {
        /// The request type.
        request: &'static str,
    },
    /// A behavior was registered for a request type that has no handler (from `build()`).
    #[error(
        "a behavior is registered for `{request}`, which has no handler: register its handler \
         or remove the behavior"
    )]
    BehaviorWithoutHandler {
        /// The request type.
        request: &'static str,
    },
    /// The handler returned an error.
    #[error("the handler of `{request}` failed: {source}")]
    Handler {
        /// The request type.
        request: &'static str,
        /// The handler's error; see [`MediatorError::handler_error`].
        source: BoxError,
    },
    /// The request failed its validation; the handler did not run.
    #[error("`{request}` is invalid: {errors}")]
    Validation {
        /// The request type.
        request: &'static str,
        /// What is wrong with it.
        errors: ValidationErrors,
    },
    /// The request did not finish in time; its handler was stopped.
    #[error(
        "`{request}` did not finish within {timeout:?} and was stopped: make the handler faster \
         or raise the TimeoutBehavior's limit"
    )]
    Timeout {
        /// The request type.
        request: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// The request's cancellation token was cancelled; its handler was stopped.
    #[error("`{request}` was cancelled before it finished")]
    Cancelled {
        /// The request type.
        request: &'static str,
    },
    /// Handlers of a notification failed.
    #[error(
        "{} of the handlers of notification `{notification}` failed: {}",
        failures.len(),
        FailureList(failures)
    )]
    Notification {
        /// The notification type.
        notification: &'static str,
        /// Each failure, in the order the handlers were registered.
        failures: Vec<NotificationFailure>,
    },
    /// A behavior failed on its own account (not the handler).
    #[error("a behavior around `{request}` failed: {source}")]
    Behavior {
        /// The request type.
        request: &'static str,
        /// The behavior's error.
        source: BoxError,
    },
    /// A behavior returned a value of another type than the handler's output.
    #[error(
        "a behavior around `{request}` returned a `{found}` where a `{expected}` was expected: \
         a behavior must return the output of the next step, or one of the same type"
    )]
    TypeMismatch {
        /// The request type.
        request: &'static str,
        /// The type expected.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
}

impl MediatorError {
    /// A handler failure for request type `R`.
    pub fn handler<R: ?Sized>(error: impl Into<BoxError>) -> Self {
        MediatorError::Handler {
            request: std::any::type_name::<R>(),
            source: error.into(),
        }
    }

    /// A behavior's own failure around request type `R`.
    pub fn behavior<R: ?Sized>(error: impl Into<BoxError>) -> Self {
        MediatorError::Behavior {
            request: std::any::type_name::<R>(),
            source: error.into(),
        }
    }

    /// The handler's error as `E`, when this is a handler failure with an error of that type.
    pub fn handler_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            MediatorError::Handler { source, .. } => source.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// Takes the handler's error out as `E`; any other error comes back unchanged.
    pub fn into_handler_error<E: std::error::Error + 'static>(self) -> Result<E, Self> {
        match self {
            MediatorError::Handler { request, source } => match source.downcast::<E>() {
                Ok(error) => Ok(*error),
                Err(source) => Err(MediatorError::Handler { request, source }),
            },
            other => Err(other),
        }
    }

    /// The validation errors, when the request was invalid.
    pub fn validation_errors(&self) -> Option<&ValidationErrors> {
        match self {
            MediatorError::Validation { errors, .. } => Some(errors),
            _ => None,
        }
    }

    /// Whether the request timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, MediatorError::Timeout { .. })
    }

    /// Whether the request was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, MediatorError::Cancelled { .. })
    }
}

/// One failed handler of a notification.
#[derive(Debug)]
pub struct NotificationFailure {
    /// The handler's type (for a closure, the function it was written in).
    pub handler: &'static str,
    /// Its position among the notification's handlers, from 0, in registration order.
    pub position: usize,
    /// Its error.
    pub error: BoxError,
}

impl fmt::Display for NotificationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handler #{} ({}): {}",
            self.position, self.handler, self.error
        )
    }
}

struct FailureList<'a>(&'a [NotificationFailure]);

impl fmt::Display for FailureList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            fmt::Display::fmt(failure, f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("boom")]
    struct Boom;

    #[test]
    fn handler_errors_come_back_typed() {
        let err = MediatorError::handler::<u8>(Boom);
        assert!(err.handler_error::<Boom>().is_some());
        assert!(err.handler_error::<std::fmt::Error>().is_none());
        let err = err.into_handler_error::<std::fmt::Error>().unwrap_err();
        assert!(matches!(err.into_handler_error::<Boom>(), Ok(Boom)));
    }

    #[test]
    fn notification_errors_list_every_failure() {
        let err = MediatorError::Notification {
            notification: "OrderPlaced",
            failures: vec![
                NotificationFailure {
                    handler: "a",
                    position: 0,
                    error: "first".into(),
                },
                NotificationFailure {
                    handler: "c",
                    position: 2,
                    error: "second".into(),
                },
            ],
        };
        let text = err.to_string();
        assert!(text.starts_with("2 of the handlers of notification `OrderPlaced` failed"));
        assert!(text.contains("handler #0 (a): first"));
        assert!(text.contains("handler #2 (c): second"));
    }
}
