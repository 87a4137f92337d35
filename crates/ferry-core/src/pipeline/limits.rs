//! Size and count limits: the first layer, so a message over one is dead-lettered as
//! `too-large` before anything else is read from it.

use super::{
    layer::{Incoming, Layer, Next},
    outcome::{Failure, Outcome},
};
use crate::FaultKind;

/// Size and count limits on incoming messages; a message over one is dead-lettered at once as
/// `too-large`, before anything else is read from it.
///
/// Set them per consumer with `.limits(..)` on the consumer builder (the RabbitMQ transport
/// also takes defaults for every consumer in its options). The work a consumer has in flight
/// is bounded too, by its prefetch (unacked deliveries) and concurrency (handlers at once).
///
/// ```
/// use ferry_core::Limits;
///
/// let limits = Limits::default().with_max_body_bytes(64 * 1024).with_max_headers(32);
/// assert_eq!(limits.max_body_bytes, 65_536);
/// assert_eq!(Limits::default().max_body_bytes, 4 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest body accepted, in bytes (default 4 MiB).
    pub max_body_bytes: usize,
    /// The most headers accepted (default 256).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_headers: 256,
        }
    }
}

impl Limits {
    /// Sets the largest body accepted, in bytes.
    pub const fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the most headers accepted.
    pub const fn with_max_headers(mut self, headers: usize) -> Self {
        self.max_headers = headers;
        self
    }

    /// Why `message` is over a limit, if it is.
    fn check(&self, message: &crate::WireMessage) -> Result<(), Failure> {
        if message.body.len() > self.max_body_bytes {
            return Err(Failure::permanent(
                FaultKind::TooLarge,
                format!(
                    "body of {} bytes is over the limit of {} bytes",
                    message.body.len(),
                    self.max_body_bytes
                ),
            ));
        }
        if message.headers.len() > self.max_headers {
            return Err(Failure::permanent(
                FaultKind::TooLarge,
                format!(
                    "{} headers is over the limit of {}",
                    message.headers.len(),
                    self.max_headers
                ),
            ));
        }
        Ok(())
    }
}

/// Dead-letters a message over the limits; lets the others through.
pub(crate) struct CheckLimits(pub(crate) Limits);

impl Layer for CheckLimits {
    async fn handle(&self, message: Incoming, next: Next) -> Outcome {
        self.0.check(&message.delivery().message)?;
        next.run(message).await
    }
}
