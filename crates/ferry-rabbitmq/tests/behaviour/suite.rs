//! What every transport's consumers must do, as generic tests over a [`Fixture`]; each
//! transport's file runs them all with `behaviour_suite!(TheFixture)`.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::{
    ConsumerBuilder, ConsumerHandle, ConsumerHost, DeadLetter, DeadLetterConsumerBuilder, Envelope,
    FaultKind, HandlerError, HeaderValue, Limits, MessageContext, OutgoingMessage, Publisher,
    PublisherExt, RetryPolicy, codec, fault::headers,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A transport under test.
#[async_trait]
pub trait Fixture: Send + Sync + Sized + 'static {
    /// The transport.
    type Bus: ConsumerHost + Publisher + Clone + 'static;
    /// A fresh transport (an events exchange of its own).
    async fn new() -> Self;
    /// The transport.
    fn bus(&self) -> &Self::Bus;
    /// A fresh queue name; the queue and the retry queues of `retry` are deleted at the end.
    fn queue(&self, prefix: &str, retry: &RetryPolicy) -> String;
    /// A fresh exchange name, deleted at the end.
    fn exchange(&self, prefix: &str) -> String;
}

/// Runs every test of the suite on a fixture type.
macro_rules! behaviour_suite {
    ($fixture:ty) => {
        behaviour_suite!(@tests $fixture;
            retries_come_back_after_their_delays_then_dead_letter_with_fault_headers,
            every_fault_kind_is_dead_lettered_at_once_and_the_stream_goes_on,
            a_dead_letter_callback_that_panics_or_fails_leaves_the_dead_letter_on_its_queue,
            a_dead_letter_no_queue_receives_is_requeued_not_lost,
            handlers_at_once_never_exceed_the_concurrency_nor_the_prefetch,
            shutdown_lets_in_flight_work_finish_and_leaves_the_rest_on_the_queue,
            work_past_the_drain_deadline_is_abandoned_to_redelivery,
        );
    };
    (@tests $fixture:ty; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                $crate::suite::$test::<$fixture>().await;
            }
        )*
    };
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 1)]
pub struct OrderCreated {
    pub order_id: String,
}

fn order(id: impl Into<String>) -> OrderCreated {
    OrderCreated {
        order_id: id.into(),
    }
}

const WAIT: Duration = Duration::from_secs(30);

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out")
        .expect("channel closed")
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A dead-letter exchange and queue, with a consumer sending what it gets to the receiver.
async fn dead_letters<F: Fixture>(
    fx: &F,
) -> (String, ConsumerHandle, mpsc::UnboundedReceiver<DeadLetter>) {
    let dlx = fx.exchange("behaviour.dlx");
    let (tx, rx) = mpsc::unbounded_channel();
    let handle =
        DeadLetterConsumerBuilder::new(fx.bus(), fx.queue("behaviour.dlq", &RetryPolicy::none()))
            .exchange(dlx.clone())
            .on_dead_letter(move |d| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(d);
                    Ok(())
                }
            })
            .start()
            .await
            .unwrap_or_else(|e| panic!("start the dead-letter consumer: {e}"));
    (dlx, handle, rx)
}

fn start_error(e: impl std::fmt::Display) -> ConsumerHandle {
    panic!("start the consumer: {e}")
}

pub async fn retries_come_back_after_their_delays_then_dead_letter_with_fault_headers<
    F: Fixture,
>() {
    let fx = F::new().await;
    let (dlx, dlq, mut dead) = dead_letters(&fx).await;
    let policy = RetryPolicy::exponential(2, Duration::from_millis(150));
    let queue = fx.queue("behaviour.retry", &policy);
    let seen: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::default();
    let handler_seen = Arc::clone(&seen);
    let consumer = ConsumerBuilder::new(fx.bus(), queue.clone())
        .bind("orders.#")
        .retry(policy)
        .dead_letter(dlx)
        .handle::<OrderCreated>(move |_: OrderCreated, ctx: MessageContext| {
            handler_seen
                .lock()
                .unwrap()
                .push((ctx.attempt(), Instant::now()));
            async { Err(HandlerError::transient("the warehouse is closed")) }
        })
        .start()
        .await
        .unwrap_or_else(start_error);
    let id = PublisherExt::publish(fx.bus(), &order("o-1"))
        .await
        .unwrap();
    let dl = recv(&mut dead).await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
    for (i, min_ms) in [150u64, 300].into_iter().enumerate() {
        let gap = seen[i + 1].1 - seen[i].1;
        assert!(
            gap >= Duration::from_millis(min_ms),
            "retry {} came back after {gap:?}, before its {min_ms} ms delay",
            i + 1
        );
    }
    assert_eq!(dl.message_id(), Some(id.as_str()));
    assert_eq!(dl.routing_key, "orders.order.created");
    assert_eq!(dl.fault.kind, FaultKind::Handler);
    assert_eq!(dl.fault.attempts, 3);
    assert!(dl.fault.message.contains("the warehouse is closed"));
    assert_eq!(dl.fault.original_queue.as_deref(), Some(queue.as_str()));
    assert_eq!(
        dl.fault.original_routing_key.as_deref(),
        Some("orders.order.created")
    );
    let h = &dl.message.headers;
    assert_eq!(h[headers::FAULT_KIND], HeaderValue::from("handler"));
    assert_eq!(h[headers::FAULT_ATTEMPTS], HeaderValue::Int(3));
    assert_eq!(h[headers::ATTEMPT], HeaderValue::Int(3));
    assert_eq!(
        h[headers::ORIGINAL_QUEUE],
        HeaderValue::from(queue.as_str())
    );
    assert!(h.contains_key(headers::FAULT_AT));
    assert!(h.contains_key(headers::ORIGINAL_EXCHANGE));
    consumer.shutdown().await;
    dlq.shutdown().await;
}

/// A test message, named by a header so its dead letter can be told apart.
fn case(name: &str, mut message: ferry_core::WireMessage) -> OutgoingMessage {
    message.set_header("test-case", name);
    let routing_key = message
        .header_str("ce-type")
        .unwrap_or("orders.order.created")
        .to_owned();
    OutgoingMessage::new(routing_key, message)
}

pub async fn every_fault_kind_is_dead_lettered_at_once_and_the_stream_goes_on<F: Fixture>() {
    let fx = F::new().await;
    let (dlx, dlq, mut dead) = dead_letters(&fx).await;
    let policy = RetryPolicy::fixed(1, Duration::from_millis(50));
    let queue = fx.queue("behaviour.faults", &policy);
    let (tx, mut handled) = mpsc::unbounded_channel();
    let consumer = ConsumerBuilder::new(fx.bus(), queue.clone())
        .bind("orders.#")
        .prefetch(1)
        .retry(policy)
        .limits(Limits::default().with_max_body_bytes(1024))
        .dead_letter(dlx)
        .handle::<OrderCreated>(move |e: OrderCreated, ctx: MessageContext| {
            let tx = tx.clone();
            async move {
                match e.order_id.as_str() {
                    "permanent" => Err(HandlerError::permanent("the order is refused")),
                    "panic" => panic!("boom on attempt {}", ctx.attempt()),
                    _ => {
                        let _ = tx.send(e.order_id);
                        Ok(())
                    }
                }
            }
        })
        .start()
        .await
        .unwrap_or_else(start_error);

    let valid =
        |id: &str| codec::encode(&order(id), &Envelope::for_event::<OrderCreated>()).unwrap();
    let mut invalid_json = valid("decode");
    invalid_json.body = Bytes::from_static(b"{\"orderId\": oops");
    let mut too_large = valid("too-large");
    too_large.body = Bytes::from(vec![b' '; 2048]);
    let unknown = codec::encode_data(&Envelope::new("orders.order.unknown"), "{}".into());
    let cases = [
        (case("decode", invalid_json), FaultKind::Decode, 1),
        (case("unknown-type", unknown), FaultKind::UnknownType, 1),
        (case("permanent", valid("permanent")), FaultKind::Handler, 1),
        (case("panic", valid("panic")), FaultKind::Panic, 2),
        (case("too-large", too_large), FaultKind::TooLarge, 1),
    ];
    let expected: BTreeMap<String, (FaultKind, u32)> = cases
        .iter()
        .map(|(m, kind, attempts)| {
            let name = m.message.header_str("test-case").unwrap_or("").to_owned();
            (name, (*kind, *attempts))
        })
        .collect();
    for (i, (message, _, _)) in cases.into_iter().enumerate() {
        fx.bus().publish_message(message).await.unwrap();
        PublisherExt::publish(fx.bus(), &order(format!("o-{i}")))
            .await
            .unwrap();
    }

    let mut got = BTreeMap::new();
    for _ in 0..expected.len() {
        let dl = recv(&mut dead).await;
        let name = dl.message.header_str("test-case").unwrap_or("").to_owned();
        let h = &dl.message.headers;
        assert_eq!(
            h[headers::FAULT_KIND],
            HeaderValue::from(dl.fault.kind.as_str()),
            "{name}"
        );
        assert_eq!(
            h[headers::ORIGINAL_QUEUE],
            HeaderValue::from(queue.as_str()),
            "{name}"
        );
        assert!(!dl.fault.message.is_empty(), "{name}");
        if name == "panic" {
            assert!(
                dl.fault.message.contains("boom on attempt 2"),
                "{}",
                dl.fault.message
            );
        }
        got.insert(name, (dl.fault.kind, dl.fault.attempts));
    }
    assert_eq!(got, expected);
    let mut ok: Vec<String> = Vec::new();
    for _ in 0..5 {
        ok.push(recv(&mut handled).await);
    }
    ok.sort();
    assert_eq!(ok, ["o-0", "o-1", "o-2", "o-3", "o-4"]);
    assert!(!consumer.is_finished(), "the consumer goes on");
    consumer.shutdown().await;
    dlq.shutdown().await;
}

/// A dead-letter callback's call: the dead letter's id and when it came.
type CallbackCall = (Option<String>, Instant);

pub async fn a_dead_letter_callback_that_panics_or_fails_leaves_the_dead_letter_on_its_queue<
    F: Fixture,
>() {
    let fx = F::new().await;
    let dlx = fx.exchange("behaviour.dlx");
    let calls: Arc<Mutex<Vec<CallbackCall>>> = Arc::default();
    let callback_calls = Arc::clone(&calls);
    let dlq =
        DeadLetterConsumerBuilder::new(fx.bus(), fx.queue("behaviour.dlq", &RetryPolicy::none()))
            .exchange(dlx.clone())
            .on_dead_letter(move |d: DeadLetter| {
                let n = {
                    let mut calls = callback_calls.lock().unwrap();
                    calls.push((d.message_id().map(str::to_owned), Instant::now()));
                    calls.len()
                };
                async move {
                    match n {
                        1 => panic!("the dead-letter store is down"),
                        2 => Err(HandlerError::transient("the dead-letter store is busy")),
                        _ => Ok(()),
                    }
                }
            })
            .start()
            .await
            .unwrap_or_else(start_error);
    let policy = RetryPolicy::none();
    let consumer = ConsumerBuilder::new(fx.bus(), fx.queue("behaviour.dl-panic", &policy))
        .bind("orders.#")
        .retry(policy)
        .dead_letter(dlx)
        .handle::<OrderCreated>(|_: OrderCreated, _: MessageContext| async {
            Err(HandlerError::permanent("refused"))
        })
        .start()
        .await
        .unwrap_or_else(start_error);
    let id = PublisherExt::publish(fx.bus(), &order("o-1"))
        .await
        .unwrap();
    until("three callback calls", || calls.lock().unwrap().len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls.len(),
        3,
        "acked on the third call, and not seen again"
    );
    for (i, (message_id, _)) in calls.iter().enumerate() {
        assert_eq!(message_id.as_deref(), Some(id.as_str()), "call {}", i + 1);
    }
    for pair in calls.windows(2) {
        assert!(
            pair[1].1 - pair[0].1 >= Duration::from_millis(500),
            "requeued after a pause"
        );
    }
    assert!(
        !dlq.is_finished(),
        "a panicking callback does not end the consumer"
    );
    consumer.shutdown().await;
    dlq.shutdown().await;
}

pub async fn a_dead_letter_no_queue_receives_is_requeued_not_lost<F: Fixture>() {
    let fx = F::new().await;
    let dlx = fx.exchange("behaviour.dlx");
    let calls: Arc<Mutex<Vec<bool>>> = Arc::default();
    let handler_calls = Arc::clone(&calls);
    let policy = RetryPolicy::none();
    let consumer = ConsumerBuilder::new(fx.bus(), fx.queue("behaviour.unbound-dlx", &policy))
        .bind("orders.#")
        .retry(policy)
        .dead_letter(dlx.clone())
        .handle::<OrderCreated>(move |_: OrderCreated, ctx: MessageContext| {
            handler_calls.lock().unwrap().push(ctx.redelivered());
            async { Err(HandlerError::permanent("refused")) }
        })
        .start()
        .await
        .unwrap_or_else(start_error);
    let id = PublisherExt::publish(fx.bus(), &order("o-1"))
        .await
        .unwrap();
    until("the message to come back", || {
        calls.lock().unwrap().len() >= 2
    })
    .await;
    assert_eq!(calls.lock().unwrap()[..2], [false, true]);

    // Once a queue is bound to the dead-letter exchange, the dead letter reaches it.
    let (tx, mut dead) = mpsc::unbounded_channel();
    let dlq =
        DeadLetterConsumerBuilder::new(fx.bus(), fx.queue("behaviour.dlq", &RetryPolicy::none()))
            .exchange(dlx)
            .on_dead_letter(move |d: DeadLetter| {
                let _ = tx.send(d);
                async { Ok(()) }
            })
            .start()
            .await
            .unwrap_or_else(start_error);
    let dl = recv(&mut dead).await;
    assert_eq!(dl.message_id(), Some(id.as_str()));
    assert_eq!(dl.fault.kind, FaultKind::Handler);
    consumer.shutdown().await;
    dlq.shutdown().await;
}

pub async fn handlers_at_once_never_exceed_the_concurrency_nor_the_prefetch<F: Fixture>() {
    let fx = F::new().await;
    let (dlx, dlq, _dead) = dead_letters(&fx).await;
    for (prefetch, concurrency) in [(8u16, 3usize), (2, 8)] {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let (r, m, d) = (Arc::clone(&running), Arc::clone(&most), Arc::clone(&done));
        let consumer = ConsumerBuilder::new(
            fx.bus(),
            fx.queue("behaviour.limits", &RetryPolicy::default()),
        )
        .bind("orders.#")
        .prefetch(prefetch)
        .concurrency(concurrency)
        .dead_letter(dlx.clone())
        .handle::<OrderCreated>(move |_: OrderCreated, _: MessageContext| {
            let (r, m, d) = (Arc::clone(&r), Arc::clone(&m), Arc::clone(&d));
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                d.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .start()
        .await
        .unwrap_or_else(start_error);
        let total = 24;
        for i in 0..total {
            PublisherExt::publish(fx.bus(), &order(format!("o-{i}")))
                .await
                .unwrap();
        }
        until("every event handled", || {
            done.load(Ordering::SeqCst) == total
        })
        .await;
        assert_eq!(
            most.load(Ordering::SeqCst),
            concurrency.min(usize::from(prefetch)),
            "handlers at once with prefetch {prefetch}, concurrency {concurrency}"
        );
        consumer.shutdown().await;
    }
    dlq.shutdown().await;
}

/// A consumer whose handler takes `took`, noting what started and what finished.
async fn slow_consumer<F: Fixture>(
    fx: &F,
    queue: &str,
    dlx: &str,
    took: Duration,
    started: Arc<Mutex<Vec<(String, bool)>>>,
    finished: Arc<Mutex<Vec<String>>>,
) -> ConsumerHandle {
    ConsumerBuilder::new(fx.bus(), queue.to_owned())
        .bind("orders.#")
        .prefetch(8)
        .concurrency(4)
        .dead_letter(dlx.to_owned())
        .handle::<OrderCreated>(move |e: OrderCreated, ctx: MessageContext| {
            let (started, finished) = (Arc::clone(&started), Arc::clone(&finished));
            async move {
                started
                    .lock()
                    .unwrap()
                    .push((e.order_id.clone(), ctx.redelivered()));
                tokio::time::sleep(took).await;
                finished.lock().unwrap().push(e.order_id);
                Ok(())
            }
        })
        .start()
        .await
        .unwrap_or_else(start_error)
}

pub async fn shutdown_lets_in_flight_work_finish_and_leaves_the_rest_on_the_queue<F: Fixture>() {
    let fx = F::new().await;
    let (dlx, dlq, mut dead) = dead_letters(&fx).await;
    let queue = fx.queue("behaviour.shutdown", &RetryPolicy::default());
    let total = 60;
    let started: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let finished: Arc<Mutex<Vec<String>>> = Arc::default();
    let took = Duration::from_millis(100);
    let consumer = slow_consumer(
        &fx,
        &queue,
        &dlx,
        took,
        Arc::clone(&started),
        Arc::clone(&finished),
    )
    .await;
    for i in 0..total {
        PublisherExt::publish(fx.bus(), &order(format!("o-{i}")))
            .await
            .unwrap();
    }
    until("some work done", || finished.lock().unwrap().len() >= 8).await;
    consumer.shutdown().await;
    let first: Vec<String> = finished.lock().unwrap().clone();
    assert_eq!(
        started.lock().unwrap().len(),
        first.len(),
        "every handler that started finished before shutdown returned"
    );
    assert!(first.len() < total, "shutdown came after the stream ended");

    // A second consumer gets exactly the rest: nothing lost, nothing handled twice.
    let finished2: Arc<Mutex<Vec<String>>> = Arc::default();
    let consumer = slow_consumer(
        &fx,
        &queue,
        &dlx,
        Duration::ZERO,
        Arc::default(),
        Arc::clone(&finished2),
    )
    .await;
    until("the rest handled", || {
        finished2.lock().unwrap().len() >= total - first.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    consumer.shutdown().await;
    let a: HashSet<String> = first.into_iter().collect();
    let b: HashSet<String> = finished2.lock().unwrap().iter().cloned().collect();
    assert!(
        a.is_disjoint(&b),
        "a message handled before shutdown came back"
    );
    assert_eq!(a.len() + b.len(), total);
    assert!(dead.try_recv().is_err(), "nothing dead-lettered");
    dlq.shutdown().await;
}

pub async fn work_past_the_drain_deadline_is_abandoned_to_redelivery<F: Fixture>() {
    let fx = F::new().await;
    let (dlx, dlq, _dead) = dead_letters(&fx).await;
    let queue = fx.queue("behaviour.deadline", &RetryPolicy::default());
    let started: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let finished: Arc<Mutex<Vec<String>>> = Arc::default();
    // Handlers that would take far longer than the drain deadline, and ignore cancellation.
    let stuck = Duration::from_secs(300);
    let consumer = slow_consumer(
        &fx,
        &queue,
        &dlx,
        stuck,
        Arc::clone(&started),
        Arc::clone(&finished),
    )
    .await;
    for i in 0..2 {
        PublisherExt::publish(fx.bus(), &order(format!("o-{i}")))
            .await
            .unwrap();
    }
    until("both handlers running", || {
        started.lock().unwrap().len() == 2
    })
    .await;
    tokio::time::timeout(WAIT, consumer.shutdown_within(Duration::from_millis(200)))
        .await
        .expect("shutdown_within returns once its deadline has passed");
    assert!(finished.lock().unwrap().is_empty());

    // The abandoned deliveries were never acked: they come back, marked redelivered.
    let started2: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let finished2: Arc<Mutex<Vec<String>>> = Arc::default();
    let consumer = slow_consumer(
        &fx,
        &queue,
        &dlx,
        Duration::ZERO,
        Arc::clone(&started2),
        Arc::clone(&finished2),
    )
    .await;
    until("the abandoned work redelivered", || {
        finished2.lock().unwrap().len() >= 2
    })
    .await;
    consumer.shutdown().await;
    let mut again = started2.lock().unwrap().clone();
    again.sort();
    assert_eq!(again, [("o-0".to_owned(), true), ("o-1".to_owned(), true)]);
    dlq.shutdown().await;
}
