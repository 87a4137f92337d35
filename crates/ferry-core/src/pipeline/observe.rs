//! Observers: what a test harness (or an audit) needs to see of a consumer, and nothing a
//! handler may change — each delivery as its processing starts, and the [`Decision`] taken on
//! it. Unlike a [`Layer`](super::Layer), an observer also sees the deliveries the built-in
//! layers settle on their own (a message that cannot be decoded, a duplicate the inbox skips),
//! and the decision itself (a retry with its delay, a dead letter with its fault).

use super::{Decision, Delivery};

/// Sees each delivery a consumer processes: [`Observer::started`] when its processing begins,
/// [`Observer::decided`] once the pipeline has decided what becomes of it (before the
/// transport acts on the decision). Both are called on the consumer's task, so they must not
/// block; both do nothing by default.
///
/// Add one with [`Pipeline::add_observer`](super::Pipeline::add_observer) (a transport
/// wrapper does it to every [`ConsumerSpec`](crate::ConsumerSpec) it starts, as
/// `ferry::testing` does).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use ferry_core::{Decision, Delivery, pipeline::Observer};
///
/// /// Counts the messages dead-lettered.
/// #[derive(Default)]
/// struct DeadLetters(AtomicUsize);
///
/// impl Observer for DeadLetters {
///     fn decided(&self, _queue: &str, _delivery: &Delivery, decision: &Decision) {
///         if matches!(decision, Decision::DeadLetter(_)) {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let mut spec = ferry_core::ConsumerSpec::new("inventory.order-created");
/// spec.pipeline.add_observer(std::sync::Arc::new(DeadLetters::default()));
/// ```
pub trait Observer: Send + Sync + 'static {
    /// The processing of `delivery` by consumer `queue` begins.
    fn started(&self, queue: &str, delivery: &Delivery) {
        let _ = (queue, delivery);
    }

    /// The pipeline decided what becomes of `delivery`.
    fn decided(&self, queue: &str, delivery: &Delivery, decision: &Decision) {
        let _ = (queue, delivery, decision);
    }
}
