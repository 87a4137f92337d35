//! The in-memory bus, outbox, inbox and the outbox relay on them.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use ferry_core::{
    CancellationToken, DeadLetter, FaultKind, HandlerError, MessageContext, OutboxRelay,
    OutboxStatus, OutboxStore, PublishBatch, PublishError, PublishOptions, PublishTransport,
    PublisherExt, RelayOptions, RetryPolicy,
    memory::{MemoryBus, MemoryInbox, MemoryOutbox},
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created")]
struct OrderCreated {
    order_id: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "orders.order.cancelled")]
struct OrderCancelled {
    order_id: u32,
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("timed out")
        .expect("channel closed")
}

#[tokio::test]
async fn routes_by_topic_pattern_and_refuses_unroutable() {
    let bus = MemoryBus::new("ev");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tx2 = tx.clone();
    let consumer = bus
        .consumer("q")
        .bind("orders.order.*")
        .dead_letter("dlx")
        .handle::<OrderCreated>(move |e: OrderCreated, _| {
            let tx = tx.clone();
            async move {
                tx.send(("created", e.order_id))
                    .map_err(HandlerError::transient)
            }
        })
        .handle::<OrderCancelled>(move |e: OrderCancelled, _| {
            let tx = tx2.clone();
            async move {
                tx.send(("cancelled", e.order_id))
                    .map_err(HandlerError::transient)
            }
        })
        .start()
        .await
        .unwrap();
    bus.publish(&OrderCreated { order_id: 1 }).await.unwrap();
    bus.publish(&OrderCancelled { order_id: 2 }).await.unwrap();
    let mut got = vec![recv(&mut rx).await, recv(&mut rx).await];
    got.sort();
    assert_eq!(got, [("cancelled", 2), ("created", 1)]);
    let err = bus
        .publish_with(
            &OrderCreated { order_id: 3 },
            PublishOptions {
                routing_key: Some("billing.x.y".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Unroutable { .. }), "{err}");
    consumer.shutdown().await;
}

#[tokio::test]
async fn duplicate_handler_is_a_start_error() {
    let bus = MemoryBus::new("ev");
    let err = bus
        .consumer("q-dup")
        .dead_letter("dlx")
        .handle::<OrderCreated>(|_: OrderCreated, _| async { Ok(()) })
        .handle::<OrderCreated>(|_: OrderCreated, _| async { Ok(()) })
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("orders.order.created"), "{err}");
}

#[tokio::test]
async fn auto_ack_with_a_retry_policy_is_a_start_error_in_either_order() {
    let bus = MemoryBus::new("ev");
    for retry_first in [true, false] {
        let mut builder = bus.consumer("q-auto-ack").dead_letter("dlx");
        builder = if retry_first {
            builder
                .retry(RetryPolicy::fixed(3, Duration::from_millis(10)))
                .auto_ack()
        } else {
            builder
                .auto_ack()
                .retry(RetryPolicy::fixed(3, Duration::from_millis(10)))
        };
        let err = builder
            .handle::<OrderCreated>(|_: OrderCreated, _| async { Ok(()) })
            .start()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("auto_ack") && text.contains("retry"),
            "{text}"
        );
    }
    // Either alone starts.
    let consumer = bus
        .consumer("q-auto-ack-alone")
        .auto_ack()
        .handle::<OrderCreated>(|_: OrderCreated, _| async { Ok(()) })
        .start()
        .await
        .unwrap();
    consumer.shutdown().await;
}

#[tokio::test]
async fn retries_after_delay_then_dead_letters_with_fault() {
    let bus = MemoryBus::new("ev");
    let (dl_tx, mut dl_rx) = mpsc::unbounded_channel::<DeadLetter>();
    let dlq = bus
        .dead_letter_consumer("dlq")
        .exchange("dlx")
        .on_dead_letter(move |d| {
            let dl_tx = dl_tx.clone();
            async move { dl_tx.send(d).map_err(HandlerError::transient) }
        })
        .start()
        .await
        .unwrap();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&attempts);
    let consumer = bus
        .consumer("q-retry")
        .bind("orders.#")
        .retry(RetryPolicy::exponential(2, Duration::from_millis(20)))
        .dead_letter("dlx")
        .handle::<OrderCreated>(move |_: OrderCreated, ctx: MessageContext| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock()
                    .unwrap()
                    .push((ctx.attempt(), std::time::Instant::now()));
                Err(HandlerError::transient("always"))
            }
        })
        .start()
        .await
        .unwrap();
    let id = bus.publish(&OrderCreated { order_id: 9 }).await.unwrap();
    let dead = tokio::time::timeout(Duration::from_secs(5), dl_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.fault.kind, FaultKind::Handler);
    assert_eq!(dead.fault.attempts, 3);
    assert_eq!(dead.fault.original_queue.as_deref(), Some("q-retry"));
    assert_eq!(dead.routing_key, "orders.order.created");
    assert_eq!(dead.message_id(), Some(id.as_str()));
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(attempts.iter().map(|a| a.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        attempts[2].1 - attempts[1].1 >= Duration::from_millis(40),
        "second delay doubles"
    );
    consumer.shutdown().await;
    dlq.shutdown().await;
}

#[tokio::test]
async fn relay_publishes_committed_events_once_and_rollback_nothing() {
    let bus = MemoryBus::new("ev");
    let outbox = MemoryOutbox::new();
    let inbox = Arc::new(MemoryInbox::new());
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let consumer = bus
        .consumer("q-relay")
        .bind("orders.order.created")
        .dead_letter("dlx")
        .skip_processed(inbox.clone())
        .handle::<OrderCreated>(move |_: OrderCreated, _| {
            let c = Arc::clone(&c);
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();

    let mut rolled_back = outbox.begin().await.unwrap();
    rolled_back
        .add(&OrderCreated { order_id: 1 })
        .await
        .unwrap();
    rolled_back.rollback().await.unwrap();
    let mut committed = outbox.begin().await.unwrap();
    let id = committed.add(&OrderCreated { order_id: 2 }).await.unwrap();
    committed.commit().await.unwrap();
    // The same event id once more (a second relay publishing it again): the inbox absorbs it.
    outbox
        .add_with(
            &OrderCreated { order_id: 2 },
            PublishOptions {
                id: Some(id.clone()),
                ..Default::default()
            },
        )
        .unwrap();

    let relay = OutboxRelay::new(outbox.clone(), bus.clone());
    assert_eq!(relay.drain().await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(outbox.count(OutboxStatus::Published), 2);
    assert_eq!(outbox.pending_count(), 0);
    consumer.shutdown().await;
}

#[tokio::test]
async fn relay_wakes_on_commit_and_stops_on_shutdown() {
    let bus = MemoryBus::new("ev");
    bus.bind("ev", "#", "sink").unwrap();
    let outbox = MemoryOutbox::new();
    let shutdown = CancellationToken::new();
    let options = RelayOptions {
        poll_interval: Duration::from_secs(60),
        ..Default::default()
    };
    let relay = tokio::spawn(
        OutboxRelay::new(outbox.clone(), bus.clone())
            .with_options(options)
            .run(shutdown.clone()),
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    outbox.add(&OrderCreated { order_id: 1 }).unwrap();
    for _ in 0..100 {
        if outbox.pending_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        outbox.pending_count(),
        0,
        "woken by the commit, not the 60 s poll"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), relay)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A publisher that fails as told.
struct Flaky {
    mode: Mutex<Option<PublishError>>,
    sent: Mutex<Vec<String>>,
}

#[async_trait]
impl PublishTransport for Flaky {
    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        let mode = self.mode.lock().unwrap().clone();
        let mut sent = self.sent.lock().unwrap();
        batch
            .messages()
            .iter()
            .map(|message| match &mode {
                Some(e) => Err(e.clone()),
                None => {
                    sent.push(message.id().to_owned());
                    Ok(())
                }
            })
            .collect()
    }
}

#[tokio::test]
async fn unavailable_broker_costs_no_attempts_and_failures_end_dead_then_retry() {
    let outbox = MemoryOutbox::new()
        .with_max_attempts(3)
        .with_backoff(Duration::ZERO, Duration::ZERO);
    let publisher = Arc::new(Flaky {
        mode: Mutex::new(Some(PublishError::Unavailable("down".into()))),
        sent: Mutex::default(),
    });
    let id = outbox.add(&OrderCreated { order_id: 1 }).unwrap();
    let relay = OutboxRelay::new(outbox.clone(), Arc::clone(&publisher));
    for _ in 0..5 {
        let batch = relay.run_once().await.unwrap();
        assert_eq!(batch.released, 1);
    }
    assert_eq!(outbox.pending_count(), 1);
    assert_eq!(outbox.last_error(&id), None, "no attempt counted");

    *publisher.mode.lock().unwrap() = Some(PublishError::Unroutable {
        exchange: "ev".into(),
        routing_key: "k".into(),
    });
    for _ in 0..3 {
        relay.run_once().await.unwrap();
    }
    assert_eq!(outbox.count(OutboxStatus::Dead), 1);
    assert!(outbox.last_error(&id).unwrap().contains("unroutable"));
    assert_eq!(
        relay.run_once().await.unwrap().claimed,
        0,
        "dead rows are not claimed"
    );

    *publisher.mode.lock().unwrap() = None;
    outbox.retry(&id).unwrap();
    assert_eq!(relay.drain().await.unwrap(), 1);
    assert_eq!(publisher.sent.lock().unwrap().as_slice(), [id]);
}

#[tokio::test]
async fn leases_expire_and_partitions_keep_order() {
    let outbox = MemoryOutbox::new();
    let mut ids = Vec::new();
    for n in 0..3 {
        let options = PublishOptions {
            partition_key: Some("order-1".into()),
            ..PublishOptions::default()
        };
        ids.push(
            outbox
                .add_with(&OrderCreated { order_id: n }, options)
                .unwrap(),
        );
    }
    outbox.add(&OrderCreated { order_id: 99 }).unwrap();
    // A relay claims one row of the partition with a short lease and dies.
    let first = outbox.claim(1, Duration::from_millis(50)).await.unwrap();
    assert_eq!(first[0].id, ids[0]);
    // Another relay may not take the partition's later rows meanwhile, only the unkeyed row.
    let second = outbox.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].partition_key, None);
    // Once the lease expires, the partition comes back whole and in order.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let third = outbox.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(third.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids);
}

/// A publisher whose first batch takes longer than the relay's lease; it records what it sends.
#[derive(Default)]
struct SlowFirstBatch {
    calls: AtomicU32,
    sent: Mutex<Vec<String>>,
}

#[async_trait]
impl PublishTransport for SlowFirstBatch {
    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        let messages = batch.messages();
        let first = self.calls.fetch_add(1, Ordering::SeqCst) == 0;
        // The broker takes a moment (the relay claims and sends its next batch meanwhile);
        // the first batch takes twice the lease.
        let took = if first { 600 } else { 20 };
        tokio::time::sleep(Duration::from_millis(took)).await;
        let mut sent = self.sent.lock().unwrap();
        messages
            .iter()
            .map(|m| {
                sent.push(m.id().to_owned());
                Ok(())
            })
            .collect()
    }
}

/// A batch that outlasts its lease (a broker blocking publishes, say) while other batches go
/// through beside it: the relay's own next claims must not take its rows a second time.
#[tokio::test]
async fn a_batch_that_outlasts_its_lease_is_not_claimed_again_by_its_own_relay() {
    let options = RelayOptions {
        batch_size: 10,
        lease: Duration::from_millis(300),
        poll_interval: Duration::from_millis(50),
        ..RelayOptions::default()
    };
    for use_drain in [false, true] {
        let outbox = MemoryOutbox::new();
        let mut ids: Vec<String> = (0..30)
            .map(|n| outbox.add(&OrderCreated { order_id: n }).unwrap())
            .collect();
        let publisher = Arc::new(SlowFirstBatch::default());
        let relay = OutboxRelay::new(outbox.clone(), Arc::clone(&publisher)).with_options(options);
        if use_drain {
            assert_eq!(relay.drain().await.unwrap(), 30);
        } else {
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(relay.run(shutdown.clone()));
            tokio::time::timeout(Duration::from_secs(10), async {
                while outbox.pending_count() > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .expect("the relay published every row");
            tokio::time::sleep(Duration::from_millis(200)).await;
            shutdown.cancel();
            task.await.unwrap().unwrap();
        }
        let mut sent = publisher.sent.lock().unwrap().clone();
        sent.sort();
        ids.sort();
        assert_eq!(sent, ids, "drain: {use_drain}: every row once");
    }
}

/// The memory outbox, whose first `failing` calls of `mark_published` fail (the database
/// restarting, or gone for longer than the lease); `calls` counts them all.
#[derive(Clone)]
struct MarkFails {
    inner: MemoryOutbox,
    calls: Arc<AtomicU32>,
    failing: u32,
}

impl MarkFails {
    fn new(inner: &MemoryOutbox, failing: u32) -> Self {
        Self {
            inner: inner.clone(),
            calls: Arc::default(),
            failing,
        }
    }
}

#[async_trait]
impl OutboxStore for MarkFails {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ferry_core::ClaimedOutboxRow>, ferry_core::OutboxError> {
        self.inner.claim(limit, lease).await
    }
    async fn mark_published(&self, ids: &[String]) -> Result<(), ferry_core::OutboxError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failing {
            return Err(ferry_core::OutboxError::Database(
                "the database is restarting".into(),
            ));
        }
        self.inner.mark_published(ids).await
    }
    async fn mark_failed(
        &self,
        failures: &[ferry_core::OutboxFailure],
    ) -> Result<(), ferry_core::OutboxError> {
        self.inner.mark_failed(failures).await
    }
    async fn release(&self, ids: &[String]) -> Result<(), ferry_core::OutboxError> {
        self.inner.release(ids).await
    }
    async fn stats(&self) -> Result<ferry_core::OutboxStats, ferry_core::OutboxError> {
        self.inner.stats().await
    }
}

/// The broker has a batch once it confirmed it: a failed mark is tried again while the lease
/// lasts, rather than leaving the rows to be published a second time when it expires.
#[tokio::test]
async fn a_failed_mark_is_tried_again_instead_of_publishing_the_batch_twice() {
    let outbox = MemoryOutbox::new();
    let mut ids: Vec<String> = (0..10)
        .map(|n| outbox.add(&OrderCreated { order_id: n }).unwrap())
        .collect();
    let store = MarkFails::new(&outbox, 1);
    let publisher = Arc::new(SlowFirstBatch::default());
    let options = RelayOptions {
        lease: Duration::from_secs(2),
        min_backoff: Duration::from_millis(20),
        ..RelayOptions::default()
    };
    let relay = OutboxRelay::new(store.clone(), Arc::clone(&publisher)).with_options(options);
    let batch = relay.run_once().await.unwrap();
    assert_eq!(batch.published, 10);
    assert_eq!(
        store.calls.load(Ordering::SeqCst),
        2,
        "marked on the second try"
    );
    assert_eq!(outbox.pending_count(), 0);
    // Even once the lease has passed, nothing is left to publish again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(relay.run_once().await.unwrap().claimed, 0);
    let mut sent = publisher.sent.lock().unwrap().clone();
    sent.sort();
    ids.sort();
    assert_eq!(sent, ids);
}

/// A publisher whose answer depends on the message's place in its batch: the first is
/// confirmed, the second finds the broker unavailable, the third is unroutable.
struct OneOfEach;

#[async_trait]
impl PublishTransport for OneOfEach {
    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        (0..batch.messages().len())
            .map(|i| match i % 3 {
                0 => Ok(()),
                1 => Err(PublishError::Unavailable("down".into())),
                _ => Err(PublishError::Unroutable {
                    exchange: "ev".into(),
                    routing_key: "k".into(),
                }),
            })
            .collect()
    }
}

/// A batch whose mark fails still settles its other rows: the failed publish is counted and
/// the row the broker could not take is given back at once. A store that holds a claim open
/// until each of its rows is settled (PostgreSQL's row locks) would otherwise keep the claim,
/// and its connection, until the lease ran out.
#[tokio::test]
async fn a_batch_whose_mark_fails_still_settles_its_other_rows() {
    let outbox = MemoryOutbox::new().with_backoff(Duration::ZERO, Duration::ZERO);
    let ids: Vec<String> = (0..3)
        .map(|n| outbox.add(&OrderCreated { order_id: n }).unwrap())
        .collect();
    let store = MarkFails::new(&outbox, u32::MAX);
    // The mark is tried again until half the lease has passed (1 s here); the rows' lease
    // has a second left when the relay gives up.
    let options = RelayOptions {
        lease: Duration::from_secs(2),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        ..RelayOptions::default()
    };
    let relay = OutboxRelay::new(store, Arc::new(OneOfEach)).with_options(options);
    assert!(relay.run_once().await.is_err(), "the mark failed");
    assert!(
        outbox
            .last_error(&ids[2])
            .is_some_and(|e| e.contains("unroutable")),
        "the failed publish was recorded"
    );
    // The unavailable row is claimable again at once, not after the lease (the confirmed
    // row still is leased: its mark failed).
    let again = outbox.claim(10, Duration::from_secs(30)).await.unwrap();
    let again: Vec<&str> = again.iter().map(|row| row.id.as_str()).collect();
    assert!(again.contains(&ids[1].as_str()), "given back: {again:?}");
}

/// A publisher that notes how many batches it has at once; each takes 30 ms.
#[derive(Default)]
struct CountsBatchesAtOnce {
    now: AtomicU32,
    most: AtomicU32,
    rows: AtomicU32,
}

#[async_trait]
impl PublishTransport for CountsBatchesAtOnce {
    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        let messages = batch.messages();
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.rows
            .fetch_add(u32::try_from(messages.len()).unwrap(), Ordering::SeqCst);
        messages.iter().map(|_| Ok(())).collect()
    }
}

/// While the broker confirms one batch the next is sent: `batches_in_flight` batches at once,
/// never more, whether draining or running.
#[tokio::test]
async fn the_relay_keeps_batches_in_flight_up_to_its_limit() {
    for (in_flight, use_drain) in [(1, true), (2, true), (3, true), (2, false), (3, false)] {
        let outbox = MemoryOutbox::new();
        for n in 0..200 {
            outbox.add(&OrderCreated { order_id: n }).unwrap();
        }
        let publisher = Arc::new(CountsBatchesAtOnce::default());
        let options = RelayOptions {
            batch_size: 10,
            batches_in_flight: in_flight,
            ..RelayOptions::default()
        };
        let relay = OutboxRelay::new(outbox.clone(), Arc::clone(&publisher)).with_options(options);
        if use_drain {
            assert_eq!(relay.drain().await.unwrap(), 200);
        } else {
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(relay.run(shutdown.clone()));
            tokio::time::timeout(Duration::from_secs(10), async {
                while outbox.pending_count() > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the relay published every row");
            shutdown.cancel();
            task.await.unwrap().unwrap();
        }
        assert_eq!(publisher.rows.load(Ordering::SeqCst), 200);
        assert_eq!(
            publisher.most.load(Ordering::SeqCst),
            u32::try_from(in_flight).unwrap(),
            "batches at once with batches_in_flight = {in_flight} (drain: {use_drain})"
        );
    }
}

/// The memory outbox behind a pool of one connection, as a database store is: every call
/// takes the connection, and a mark holds it across a pause, the way a real mark holds its
/// connection while the database answers. A claim that cannot get the connection within a
/// second fails, as a pool's acquire timeout does.
#[derive(Clone)]
struct OneConnection {
    inner: MemoryOutbox,
    connection: Arc<tokio::sync::Semaphore>,
}

impl OneConnection {
    async fn connection(
        &self,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, ferry_core::OutboxError> {
        tokio::time::timeout(Duration::from_secs(1), self.connection.acquire())
            .await
            .map_err(|_| ferry_core::OutboxError::Database("pool timed out".into()))?
            .map_err(|_| ferry_core::OutboxError::Database("pool closed".into()))
    }
}

#[async_trait]
impl OutboxStore for OneConnection {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ferry_core::ClaimedOutboxRow>, ferry_core::OutboxError> {
        let _connection = self.connection().await?;
        self.inner.claim(limit, lease).await
    }
    async fn mark_published(&self, ids: &[String]) -> Result<(), ferry_core::OutboxError> {
        let _connection = self.connection().await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.inner.mark_published(ids).await
    }
    async fn mark_failed(
        &self,
        failures: &[ferry_core::OutboxFailure],
    ) -> Result<(), ferry_core::OutboxError> {
        let _connection = self.connection().await?;
        self.inner.mark_failed(failures).await
    }
    async fn release(&self, ids: &[String]) -> Result<(), ferry_core::OutboxError> {
        let _connection = self.connection().await?;
        self.inner.release(ids).await
    }
    async fn stats(&self) -> Result<ferry_core::OutboxStats, ferry_core::OutboxError> {
        let _connection = self.connection().await?;
        self.inner.stats().await
    }
}

/// The relay's batches in flight, its claim and its housekeeping share one task: while one
/// waits (a claim for a connection), the others must still be polled, or a mark holding the
/// pool's last connection never finishes and the claim times out (the bench found this with
/// five batches in flight on a pool of four).
#[tokio::test]
async fn batches_in_flight_keep_going_while_the_relay_claims() {
    for use_drain in [true, false] {
        let outbox = MemoryOutbox::new();
        for n in 0..300 {
            outbox.add(&OrderCreated { order_id: n }).unwrap();
        }
        let store = OneConnection {
            inner: outbox.clone(),
            connection: Arc::new(tokio::sync::Semaphore::new(1)),
        };
        let publisher = Arc::new(CountsBatchesAtOnce::default());
        let options = RelayOptions {
            batch_size: 10,
            batches_in_flight: 4,
            ..RelayOptions::default()
        };
        let relay = OutboxRelay::new(store, Arc::clone(&publisher)).with_options(options);
        if use_drain {
            assert_eq!(relay.drain().await.expect("no claim timed out"), 300);
        } else {
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(relay.run(shutdown.clone()));
            let done = tokio::time::timeout(Duration::from_secs(10), async {
                while outbox.pending_count() > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            shutdown.cancel();
            task.await.unwrap().unwrap();
            assert!(done.is_ok(), "the relay published every row");
        }
        assert_eq!(publisher.rows.load(Ordering::SeqCst), 300);
        assert!(publisher.most.load(Ordering::SeqCst) > 1);
    }
}

/// The memory outbox, noting at each claim how many batches the publisher had at that moment.
#[derive(Clone)]
struct ClaimsWhilePublishing {
    inner: MemoryOutbox,
    publisher: Arc<CountsBatchesAtOnce>,
    claims_while_publishing: Arc<AtomicU32>,
}

#[async_trait]
impl OutboxStore for ClaimsWhilePublishing {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ferry_core::ClaimedOutboxRow>, ferry_core::OutboxError> {
        // A claim takes a moment, as a database's does; it counts if a batch was publishing
        // when it began or when it ended.
        let publishing_before = self.publisher.now.load(Ordering::SeqCst) > 0;
        tokio::time::sleep(Duration::from_millis(5)).await;
        if publishing_before || self.publisher.now.load(Ordering::SeqCst) > 0 {
            self.claims_while_publishing.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.claim(limit, lease).await
    }
    async fn mark_published(&self, ids: &[String]) -> Result<(), ferry_core::OutboxError> {
        self.inner.mark_published(ids).await
    }
    async fn mark_failed(
        &self,
        failures: &[ferry_core::OutboxFailure],
    ) -> Result<(), ferry_core::OutboxError> {
        self.inner.mark_failed(failures).await
    }
    async fn release(&self, ids: &[String]) -> Result<(), ferry_core::OutboxError> {
        self.inner.release(ids).await
    }
    async fn stats(&self) -> Result<ferry_core::OutboxStats, ferry_core::OutboxError> {
        self.inner.stats().await
    }
}

/// With one batch unconfirmed at a time, the next batch is still claimed while it publishes,
/// so that it goes out the moment the broker confirms.
#[tokio::test]
async fn the_next_batch_is_claimed_while_one_publishes() {
    let outbox = MemoryOutbox::new();
    for n in 0..100 {
        outbox.add(&OrderCreated { order_id: n }).unwrap();
    }
    let publisher = Arc::new(CountsBatchesAtOnce::default());
    let store = ClaimsWhilePublishing {
        inner: outbox.clone(),
        publisher: Arc::clone(&publisher),
        claims_while_publishing: Arc::default(),
    };
    let options = RelayOptions {
        batch_size: 10,
        batches_in_flight: 1,
        ..RelayOptions::default()
    };
    let relay = OutboxRelay::new(store.clone(), Arc::clone(&publisher)).with_options(options);
    assert_eq!(relay.drain().await.unwrap(), 100);
    assert_eq!(publisher.most.load(Ordering::SeqCst), 1);
    // Ten batches: with the claim ahead most claims overlap a publish; without it none can.
    let overlapping = store.claims_while_publishing.load(Ordering::SeqCst);
    assert!(
        overlapping >= 3,
        "{overlapping} claims overlapped a publish"
    );
}
