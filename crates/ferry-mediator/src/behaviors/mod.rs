//! The built-in behaviors.
//!
//! | behavior | wraps | does |
//! |---|---|---|
//! | [`TracingBehavior`] | every request | a `mediator.request` span per request; logs its outcome |
//! | [`TimeoutBehavior`] | every request, or one type | stops a request after a limit |
//! | [`SlowRequestBehavior`] | every request | warns when a request took 500 ms (or the threshold) or more |
//! | [`ValidationBehavior`] | one type that implements [`Validate`] | refuses an invalid request before its handler |
//!
//! ferry-core adds `RetryBehavior` (one type that is `Clone`: runs the rest of the pipeline again
//! after a failure, with a consumer's `RetryPolicy`), re-exported as `ferry::mediator::RetryBehavior`.

mod slow;
mod timeout;
mod trace;
mod validation;

pub use slow::{DEFAULT_SLOW_REQUEST_THRESHOLD, SlowRequest, SlowRequestBehavior};
pub use timeout::TimeoutBehavior;
pub use trace::TracingBehavior;
pub use validation::{FieldError, Validate, ValidationBehavior, ValidationErrors};
