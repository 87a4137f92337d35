//! The transactional consumer on the real broker: ferry begins the transaction, inserts the
//! inbox row, runs the handler in it and commits; follow-up events go out through the outbox.
#![allow(clippy::explicit_auto_deref)]

use std::{
    marker::PhantomData,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use super::{common::*, *};
use crate::unique_name;
use ferry_core::{
    HandlerError, IntegrationEvent, PublishOptions, RetryPolicy,
    transactional::{StoreTransaction, TransactionalHandler, TxContext},
};
use ferry_rabbitmq::RabbitMq;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The event the handler emits for each one it applies.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ItemFollowed {
    n: u64,
}

impl IntegrationEvent for ItemFollowed {
    const NAME: &'static str = "tests.item.followed";
}

/// How the handler misbehaves, by attempt.
#[derive(Clone, Copy)]
enum Misbehave {
    Never,
    FailFirstAttempt,
    PanicFirstAttempt,
    FailForGood,
}

/// Writes a row, emits a follow-up, then maybe fails (after its writes, so a rollback is
/// what keeps them out).
struct Apply<B> {
    hold: Duration,
    misbehave: Misbehave,
    calls: Arc<AtomicUsize>,
    backend: PhantomData<fn() -> B>,
}

impl<B: Backend> Apply<B> {
    fn new(hold: Duration, misbehave: Misbehave, calls: Arc<AtomicUsize>) -> Self {
        Self {
            hold,
            misbehave,
            calls,
            backend: PhantomData,
        }
    }
}

impl<B: Backend, T> TransactionalHandler<ItemAdded, T> for Apply<B>
where
    T: StoreTransaction + std::ops::DerefMut<Target = Conn<B>>,
{
    async fn handle(&self, event: ItemAdded, cx: &mut TxContext<T>) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let message_id = cx.message().message_id().to_owned();
        let attempt = cx.message().attempt();
        B::exec(
            cx.db(),
            "INSERT INTO tx_applied (message_id, n) VALUES ($1, $2)",
            vec![message_id.into(), (event.n as i64).into()],
        )
        .await?;
        cx.publish(&ItemFollowed { n: event.n }).await?;
        tokio::time::sleep(self.hold).await;
        match self.misbehave {
            Misbehave::FailFirstAttempt if attempt == 1 => {
                Err(HandlerError::transient("the first attempt fails"))
            }
            Misbehave::PanicFirstAttempt if attempt == 1 => panic!("the first attempt panics"),
            Misbehave::FailForGood => Err(HandlerError::permanent("this one never works")),
            _ => Ok(()),
        }
    }

    async fn on_duplicate(&self, cx: &mut TxContext<T>) -> Result<(), HandlerError> {
        let message_id = cx.message().message_id().to_owned();
        B::exec(
            cx.db(),
            "INSERT INTO tx_duplicates (message_id) VALUES ($1)",
            vec![message_id.into()],
        )
        .await?;
        Ok(())
    }
}

struct Setup<B: Backend> {
    db: TestDb<B>,
    bus: RabbitMq,
    exchange: String,
    dlx: String,
    queue: String,
    dlq: String,
    outbox: Outbox<B>,
    relay: RunningRelay,
}

impl<B: Backend> Setup<B> {
    async fn new() -> Setup<B> {
        let db = TestDb::<B>::new().await;
        for statement in [
            "CREATE TABLE tx_applied (message_id TEXT NOT NULL, n BIGINT NOT NULL)",
            "CREATE TABLE tx_duplicates (message_id TEXT NOT NULL)",
        ] {
            B::exec_pool(&db.pool, statement, vec![]).await.unwrap();
        }
        let exchange = unique_name("ferry-test-tx");
        let bus = broker(&exchange).await;
        let outbox = Outbox::<B>::new(db.pool.clone());
        let relay = RunningRelay::spawn(outbox.clone(), bus.clone(), fast_relay());
        Setup {
            db,
            bus,
            dlx: format!("{exchange}.dlx"),
            queue: format!("{exchange}.consumer"),
            dlq: format!("{exchange}.dlq"),
            exchange,
            outbox,
            relay,
        }
    }

    /// A dead-letter consumer on the test's dead-letter exchange, passing each dead letter on.
    async fn dead_letters(
        &self,
    ) -> (
        ferry_core::ConsumerHandle,
        mpsc::UnboundedReceiver<ferry_core::DeadLetter>,
    ) {
        let (dead_tx, dead_rx) = mpsc::unbounded_channel();
        let handle = self
            .bus
            .dead_letter_consumer(self.dlq.as_str())
            .exchange(self.dlx.as_str())
            .on_dead_letter(move |d| {
                let dead_tx = dead_tx.clone();
                async move {
                    let _ = dead_tx.send(d);
                    Ok(())
                }
            })
            .start()
            .await
            .unwrap();
        (handle, dead_rx)
    }

    async fn applied(&self) -> (i64, i64) {
        let counts = B::ints(
            &self.db.pool,
            "SELECT count(*), count(DISTINCT message_id) FROM tx_applied",
            vec![],
        )
        .await
        .unwrap();
        (counts[0], counts[1])
    }

    async fn count(&self, statement: &str) -> i64 {
        count::<B>(&self.db.pool, statement, vec![]).await
    }

    async fn close(self) {
        self.relay.stop().await;
        let retry = RetryPolicy::fixed(3, Duration::from_millis(100));
        let deleted = self.bus.delete_consumer_queues(&self.queue, &retry).await;
        deleted.expect("delete the consumer's queue and its retry queue");
        assert!(
            self.bus
                .queue_counts(&format!("{}.retry.100", self.queue))
                .await
                .is_err(),
            "the retry queue is gone"
        );
        // A consumer started without `.retry(..)` declared the default policy's retry queues.
        self.bus
            .delete_consumer_queues(&self.queue, &RetryPolicy::default())
            .await
            .expect("delete the default policy's retry queues");
        let _ = self.bus.delete_queue(&self.dlq).await;
        self.bus.delete_exchange(&self.dlx).await.unwrap();
        self.bus.delete_exchange(&self.exchange).await.unwrap();
        self.bus.close().await;
        self.db.close().await;
    }
}

/// Waits until `done` holds, for at most a minute.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn two_copies_of_a_message_handled_at_once_apply_once_and_emit_one_follow_up<
    B: Backend,
>() {
    let s = Setup::<B>::new().await;
    let mut follow_ups = s.bus.subscribe(&[ItemFollowed::NAME]).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (dead_letters, mut dead_rx) = s.dead_letters().await;
    let consumer = s
        .bus
        .consumer(s.queue.as_str())
        .bind(ItemAdded::NAME)
        .prefetch(16)
        .concurrency(8)
        .retry(RetryPolicy::fixed(3, Duration::from_millis(100)))
        .dead_letter(s.dlx.as_str())
        .handle_transactional(
            s.outbox.clone(),
            Apply::<B>::new(
                Duration::from_millis(100),
                Misbehave::Never,
                Arc::clone(&calls),
            ),
        )
        .start()
        .await
        .unwrap();

    const EVENTS: u64 = 12;
    let mut ids = Vec::new();
    for n in 0..EVENTS {
        let id = ferry_core::envelope::new_id();
        // Two copies of one message back to back: both in flight together.
        for _ in 0..2 {
            let options = PublishOptions {
                id: Some(id.clone()),
                correlation_id: Some(format!("order-{n}")),
                ..PublishOptions::default()
            };
            s.bus
                .publish_with(&ItemAdded::new(n), options)
                .await
                .unwrap();
        }
        ids.push(id);
    }

    let got = receive(
        &mut follow_ups,
        EVENTS as usize + 1,
        Duration::from_secs(15),
    )
    .await;
    eventually("the inbox rows", || async {
        s.count("SELECT count(*) FROM ferry_inbox").await == EVENTS as i64
    })
    .await;
    // Let any straggling copy finish before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    consumer.shutdown().await;
    dead_letters.shutdown().await;

    assert_eq!(
        s.applied().await,
        (EVENTS as i64, EVENTS as i64),
        "each message applied once"
    );
    assert_eq!(got.len(), EVENTS as usize, "one follow-up per message");
    for message in &got {
        let causation = message.header_str("ce-causationid").unwrap();
        let n = serde_json::from_slice::<ItemFollowed>(&message.body)
            .unwrap()
            .n;
        assert_eq!(
            causation, ids[n as usize],
            "caused by the message it followed"
        );
        assert_eq!(
            message.header_str("ce-correlationid"),
            Some(format!("order-{n}").as_str()),
            "correlation carried over"
        );
    }
    assert!(dead_rx.try_recv().is_err(), "nothing dead-lettered");
    assert!(calls.load(Ordering::SeqCst) >= EVENTS as usize);
    follow_ups.close().await;
    s.close().await;
}

async fn fails_once_then_applies_once<B: Backend>(misbehave: Misbehave) {
    let s = Setup::<B>::new().await;
    let mut follow_ups = s.bus.subscribe(&[ItemFollowed::NAME]).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let consumer = s
        .bus
        .consumer(s.queue.as_str())
        .bind(ItemAdded::NAME)
        .retry(RetryPolicy::fixed(3, Duration::from_millis(100)))
        .dead_letter(s.dlx.as_str())
        .handle_transactional(
            s.outbox.clone(),
            Apply::<B>::new(Duration::ZERO, misbehave, Arc::clone(&calls)),
        )
        .start()
        .await
        .unwrap();
    // A queue on the dead-letter exchange, so a dead letter would be kept, not refused.
    let (dead_letters, _) = s.dead_letters().await;
    s.bus.publish(&ItemAdded::new(7)).await.unwrap();

    let got = receive(&mut follow_ups, 2, Duration::from_secs(5)).await;
    consumer.shutdown().await;
    dead_letters.shutdown().await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the failed attempt and the retry"
    );
    assert_eq!(
        s.applied().await,
        (1, 1),
        "the failed attempt's write rolled back"
    );
    assert_eq!(got.len(), 1, "the failed attempt's follow-up rolled back");
    assert_eq!(s.count("SELECT count(*) FROM ferry_outbox").await, 1);
    assert_eq!(s.count("SELECT count(*) FROM ferry_inbox").await, 1);
    follow_ups.close().await;
    s.close().await;
}

pub async fn a_failed_attempt_rolls_back_its_writes_and_follow_ups_and_the_retry_applies_once<
    B: Backend,
>() {
    fails_once_then_applies_once::<B>(Misbehave::FailFirstAttempt).await;
}

pub async fn a_panicking_attempt_rolls_back_its_writes_and_follow_ups_and_the_retry_applies_once<
    B: Backend,
>() {
    fails_once_then_applies_once::<B>(Misbehave::PanicFirstAttempt).await;
}

pub async fn a_permanent_failure_is_dead_lettered_and_leaves_no_write_no_event_and_no_inbox_row<
    B: Backend,
>() {
    let s = Setup::<B>::new().await;
    let (dead_letters, mut dead_rx) = s.dead_letters().await;
    let consumer = s
        .bus
        .consumer(s.queue.as_str())
        .bind(ItemAdded::NAME)
        .dead_letter(s.dlx.as_str())
        .handle_transactional(
            s.outbox.clone(),
            Apply::<B>::new(
                Duration::ZERO,
                Misbehave::FailForGood,
                Arc::new(AtomicUsize::new(0)),
            ),
        )
        .start()
        .await
        .unwrap();
    let id = s.bus.publish(&ItemAdded::new(3)).await.unwrap();
    let dead = tokio::time::timeout(Duration::from_secs(15), dead_rx.recv())
        .await
        .expect("a dead letter")
        .unwrap();
    consumer.shutdown().await;
    dead_letters.shutdown().await;
    assert_eq!(dead.message_id(), Some(id.as_str()));
    assert_eq!(dead.fault.kind.as_str(), "handler");
    assert_eq!(s.applied().await, (0, 0));
    assert_eq!(s.count("SELECT count(*) FROM ferry_outbox").await, 0);
    assert_eq!(s.count("SELECT count(*) FROM ferry_inbox").await, 0);
    s.close().await;
}
