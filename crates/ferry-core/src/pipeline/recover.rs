//! Panic recovery: a panic in the handler, or in a layer added with
//! [`ConsumerBuilder::layer`](crate::ConsumerBuilder::layer), is a transient failure of kind
//! [`FaultKind::Panic`](crate::FaultKind::Panic) — retried like an error, then dead-lettered —
//! never the end of the consumer. Watermill's `Recoverer` middleware does the same.

use std::{any::Any, panic::AssertUnwindSafe};

use futures::FutureExt;

use super::{
    layer::{Incoming, Layer, Next},
    outcome::{Failure, Outcome},
};

/// Catches the panics of everything inside it.
pub(crate) struct Recover;

impl Layer for Recover {
    async fn handle(&self, message: Incoming, next: Next) -> Outcome {
        // A panicking handler leaves nothing the next attempt reads: each attempt gets its own
        // message and context, and a transactional handler rolls back (see `handler.rs`).
        match AssertUnwindSafe(next.run(message)).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(panic) => Err(Failure::panic(&panic_message(&panic))),
        }
    }
}

/// A panic's message, when it has one.
pub(crate) fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
