//! Fakes for testing your error paths: a handler that fails its first N calls
//! ([`FailTimes`]), an outbox whose transactions fail to commit ([`FailingCommits`]), and a
//! publisher that refuses ([`RefusingPublisher`]). Each fails with an [`InjectedFailure`], so
//! a test can tell the failure it asked for from a real one.

use std::{
    ops::{Deref, DerefMut},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use ferry_core::{
    ClaimedOutboxRow, HandlerError, Inbox, InboxError, IntegrationEventHandler, MessageContext,
    OutboxError, OutboxFailure, OutboxStats, OutboxStore, OutgoingMessage, PublishBatch,
    PublishError, PublishTransport,
    publisher::Reason,
    transactional::{StoreTransaction, TransactionalHandler, TransactionalStore, TxContext},
};

/// The error a fake fails with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("injected failure: {what} (call {call})")]
pub struct InjectedFailure {
    /// What failed ("handler", "commit", "publish").
    pub what: &'static str,
    /// Which call, 1 for the first.
    pub call: u32,
}

/// Counts calls and says whether this one fails: the first `failures`.
#[derive(Debug, Clone)]
struct Countdown {
    failures: u32,
    calls: Arc<AtomicU32>,
}

impl Countdown {
    fn new(failures: u32) -> Self {
        Self {
            failures,
            calls: Arc::default(),
        }
    }

    /// This call's number, and whether it fails.
    fn next(&self) -> (u32, bool) {
        let call = self.calls.fetch_add(1, Ordering::SeqCst).saturating_add(1);
        (call, call <= self.failures)
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A handler that fails its first `failures` calls (transiently, unless
/// [`FailTimes::permanently`]), then runs the handler it wraps. It wraps plain handlers and
/// transactional ones. Clones share the count.
///
/// ```
/// use ferry_core::{HandlerError, MessageContext};
/// use ferry_testing::fakes::FailTimes;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
/// # #[event(name = "orders.order.created")]
/// # struct OrderCreated { order_id: String }
///
/// async fn reserve(_: OrderCreated, _: MessageContext) -> Result<(), HandlerError> {
///     Ok(())
/// }
///
/// // Fails twice, then reserves: with `.retry(..)`, handled on the third attempt.
/// let handler = FailTimes::new(2, reserve);
/// # fn takes<H: ferry_core::IntegrationEventHandler<OrderCreated>>(_: H) {}
/// # takes(handler.clone());
/// assert_eq!(handler.calls(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct FailTimes<H> {
    handler: H,
    countdown: Countdown,
    permanent: bool,
}

impl<H> FailTimes<H> {
    /// Fails the first `failures` calls, then calls `handler`.
    pub fn new(failures: u32, handler: H) -> Self {
        Self {
            handler,
            countdown: Countdown::new(failures),
            permanent: false,
        }
    }

    /// Fails permanently (the message is dead-lettered at once) instead of transiently.
    pub fn permanently(mut self) -> Self {
        self.permanent = true;
        self
    }

    /// How many times it was called.
    pub fn calls(&self) -> u32 {
        self.countdown.calls()
    }

    fn failure(&self) -> Option<HandlerError> {
        let (call, fails) = self.countdown.next();
        fails.then(|| {
            let error = InjectedFailure {
                what: "handler",
                call,
            };
            if self.permanent {
                HandlerError::permanent(error)
            } else {
                HandlerError::transient(error)
            }
        })
    }
}

impl<E, H> IntegrationEventHandler<E> for FailTimes<H>
where
    E: Send + 'static,
    H: IntegrationEventHandler<E>,
{
    async fn handle(&self, event: E, ctx: MessageContext) -> Result<(), HandlerError> {
        match self.failure() {
            Some(error) => Err(error),
            None => self.handler.handle(event, ctx).await,
        }
    }
}

impl<E, T, H> TransactionalHandler<E, T> for FailTimes<H>
where
    E: Send + 'static,
    T: Send + 'static,
    H: TransactionalHandler<E, T>,
{
    async fn handle(&self, event: E, cx: &mut TxContext<T>) -> Result<(), HandlerError> {
        match self.failure() {
            Some(error) => Err(error),
            None => self.handler.handle(event, cx).await,
        }
    }
}

/// An outbox (any [`TransactionalStore`]) whose first `failures` commits fail: the
/// transaction is rolled back and `commit` returns an [`OutboxError::Database`] whose source
/// is an [`InjectedFailure`]. Everything else goes to the store it wraps. Clones share the
/// count.
///
/// ```
/// use ferry_core::{memory::MemoryOutbox, transactional::{StoreTransaction, TransactionalStore}};
/// use ferry_testing::fakes::FailingCommits;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ferry_core::OutboxError> {
/// let outbox = FailingCommits::new(u32::MAX, MemoryOutbox::new()); // every commit fails
/// let tx = outbox.begin().await?;
/// assert!(tx.commit().await.is_err());
/// assert_eq!(outbox.store().pending_count(), 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FailingCommits<S> {
    store: S,
    countdown: Countdown,
}

impl<S> FailingCommits<S> {
    /// Fails the first `failures` commits of `store`'s transactions.
    pub fn new(failures: u32, store: S) -> Self {
        Self {
            store,
            countdown: Countdown::new(failures),
        }
    }

    /// The store it wraps.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// How many commits were tried.
    pub fn commits(&self) -> u32 {
        self.countdown.calls()
    }
}

/// A transaction of a [`FailingCommits`] store; it derefs to the store's own transaction.
#[derive(Debug)]
pub struct FailingCommit<T> {
    tx: T,
    countdown: Countdown,
}

impl<T> Deref for FailingCommit<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.tx
    }
}

impl<T> DerefMut for FailingCommit<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.tx
    }
}

#[async_trait]
impl<S: TransactionalStore> TransactionalStore for FailingCommits<S> {
    type Transaction = FailingCommit<S::Transaction>;

    async fn begin(&self) -> Result<Self::Transaction, OutboxError> {
        Ok(FailingCommit {
            tx: self.store.begin().await?,
            countdown: self.countdown.clone(),
        })
    }
}

#[async_trait]
impl<T: StoreTransaction> StoreTransaction for FailingCommit<T> {
    async fn insert_inbox(&mut self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        self.tx.insert_inbox(consumer, message_id).await
    }

    fn default_source(&self) -> Option<&str> {
        self.tx.default_source()
    }

    async fn add_encoded(
        &mut self,
        message: OutgoingMessage,
        event_type: String,
        partition_key: Option<String>,
    ) -> Result<String, OutboxError> {
        self.tx
            .add_encoded(message, event_type, partition_key)
            .await
    }

    async fn commit(self) -> Result<(), OutboxError> {
        let (call, fails) = self.countdown.next();
        if !fails {
            return self.tx.commit().await;
        }
        self.tx.rollback().await?;
        Err(OutboxError::Database(Box::new(InjectedFailure {
            what: "commit",
            call,
        })))
    }

    async fn rollback(self) -> Result<(), OutboxError> {
        self.tx.rollback().await
    }
}

#[async_trait]
impl<S: OutboxStore> OutboxStore for FailingCommits<S> {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedOutboxRow>, OutboxError> {
        self.store.claim(limit, lease).await
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), OutboxError> {
        self.store.mark_published(ids).await
    }

    async fn mark_failed(&self, failures: &[OutboxFailure]) -> Result<(), OutboxError> {
        self.store.mark_failed(failures).await
    }

    async fn release(&self, ids: &[String]) -> Result<(), OutboxError> {
        self.store.release(ids).await
    }

    async fn wait_for_rows(&self, timeout: Duration) {
        self.store.wait_for_rows(timeout).await
    }

    async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        self.store.stats().await
    }

    async fn remove_expired(&self) -> Result<u64, OutboxError> {
        self.store.remove_expired().await
    }

    async fn relay_stopped(&self) {
        self.store.relay_stopped().await
    }
}

#[async_trait]
impl<S: Inbox> Inbox for FailingCommits<S> {
    async fn is_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        self.store.is_processed(consumer, message_id).await
    }

    async fn mark_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        self.store.mark_processed(consumer, message_id).await
    }
}

/// A publisher that refuses its first `refusals` publishes (a direct publish is one; a relay
/// publishes a batch of rows at once) as [`PublishError::Unavailable`] — the broker
/// unreachable: the outbox relay keeps such rows pending and tries again — then publishes
/// through the transport it wraps. Clones share the count.
///
/// ```
/// use ferry_core::{PublishError, PublisherExt, memory::MemoryBus};
/// use ferry_testing::fakes::RefusingPublisher;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
/// # #[event(name = "orders.order.created")]
/// # struct OrderCreated { order_id: String }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let publisher = RefusingPublisher::new(u32::MAX, MemoryBus::new("app.events")); // refuses all
/// let refused = publisher.publish(&OrderCreated { order_id: "o-1".into() }).await;
/// assert!(matches!(refused, Err(PublishError::Unavailable(_))));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RefusingPublisher<P> {
    transport: P,
    countdown: Countdown,
}

impl<P> RefusingPublisher<P> {
    /// Refuses the first `refusals` publishes, then publishes on `transport`.
    pub fn new(refusals: u32, transport: P) -> Self {
        Self {
            transport,
            countdown: Countdown::new(refusals),
        }
    }

    /// How many publishes it was asked for.
    pub fn attempts(&self) -> u32 {
        self.countdown.calls()
    }
}

#[async_trait]
impl<P: PublishTransport> PublishTransport for RefusingPublisher<P> {
    fn source(&self) -> Option<&str> {
        self.transport.source()
    }

    fn exchange(&self) -> Option<&str> {
        self.transport.exchange()
    }

    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        let (call, refused) = self.countdown.next();
        if !refused {
            return self.transport.send(batch).await;
        }
        let reason = Reason::caused_by(
            "refused by the test's publisher",
            InjectedFailure {
                what: "publish",
                call,
            },
        );
        (0..batch.len())
            .map(|_| Err(PublishError::Unavailable(reason.clone())))
            .collect()
    }
}
