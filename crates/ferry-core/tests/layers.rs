//! Consumer layers: the two documented ones (a validation error made permanent, a circuit
//! breaker) on the in-memory bus, and where layers of one's own sit among the built-in ones.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use ferry_core::{
    DeadLetter, Decision, Delivery, Envelope, FaultKind, HandlerError, Inbox, MessageContext,
    Pipeline, PublishOptions, PublisherExt, RetryPolicy, codec,
    memory::{MemoryBus, MemoryInbox},
    pipeline::{Failure, Handled, Incoming, Layer, Next, Outcome, layer_fn},
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

#[derive(Debug, Clone, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "orders.order.noted")]
struct OrderNoted {
    note: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid order {0}")]
struct ValidationError(u32);

#[derive(Debug, thiserror::Error)]
#[error("could not place order {order_id}")]
struct PlaceOrderError {
    order_id: u32,
    #[source]
    source: ValidationError,
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("timed out")
        .expect("channel closed")
}

/// A dead-letter consumer on `dlx` that sends each dead letter to the returned receiver.
async fn dead_letters(
    bus: &MemoryBus,
    queue: &str,
) -> (
    ferry_core::ConsumerHandle,
    mpsc::UnboundedReceiver<DeadLetter>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = bus
        .dead_letter_consumer(queue)
        .exchange("dlx")
        .on_dead_letter(move |d| {
            let tx = tx.clone();
            async move { tx.send(d).map_err(HandlerError::transient) }
        })
        .start()
        .await
        .unwrap();
    (handle, rx)
}

/// The documented layer: a handler error caused by a validation error is permanent.
async fn validation_is_permanent(message: Incoming, next: Next) -> Outcome {
    next.run(message).await.map_err(|failure| {
        if failure.find_source::<ValidationError>().is_some() {
            failure.into_permanent()
        } else {
            failure
        }
    })
}

#[tokio::test]
async fn a_layer_makes_a_validation_error_permanent_dead_lettered_without_retries() {
    let bus = MemoryBus::new("ev");
    let (dlq, mut dl_rx) = dead_letters(&bus, "dlq-validation").await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let consumer = bus
        .consumer("q-validation")
        .bind("orders.#")
        .retry(RetryPolicy::fixed(3, Duration::from_millis(10)).immediate(2))
        .dead_letter("dlx")
        .layer(layer_fn(validation_is_permanent))
        .handle::<OrderCreated>(move |e: OrderCreated, ctx: MessageContext| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push((e.order_id, ctx.attempt()));
                if e.order_id == 0 {
                    // The validation error is a source, one level down.
                    return Err(HandlerError::transient(PlaceOrderError {
                        order_id: 0,
                        source: ValidationError(0),
                    }));
                }
                Err(HandlerError::transient("database down"))
            }
        })
        .start()
        .await
        .unwrap();

    bus.publish(&OrderCreated { order_id: 0 }).await.unwrap();
    let dead = recv(&mut dl_rx).await;
    assert_eq!(dead.fault.kind, FaultKind::Handler);
    assert_eq!(dead.fault.attempts, 1);
    assert_eq!(
        dead.fault.message,
        "could not place order 0: invalid order 0"
    );
    assert_eq!(*calls.lock().unwrap(), [(0, 1)], "no retry of any kind");

    // Any other error is still retried: 3 tries an attempt (2 immediate), 4 attempts.
    calls.lock().unwrap().clear();
    bus.publish(&OrderCreated { order_id: 1 }).await.unwrap();
    let dead = recv(&mut dl_rx).await;
    assert_eq!(dead.fault.attempts, 4);
    assert_eq!(dead.fault.message, "database down");
    let calls = calls.lock().unwrap().clone();
    let attempts: Vec<u32> = calls.iter().map(|c| c.1).collect();
    assert_eq!(attempts, [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
    consumer.shutdown().await;
    dlq.shutdown().await;
}

/// The documented circuit breaker: after `threshold` failures in a row, fail fast (transient)
/// until `cool_down` has passed.
struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    state: Mutex<(u32, Option<Instant>)>,
}

impl CircuitBreaker {
    fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold,
            cool_down,
            state: Mutex::new((0, None)),
        }
    }
}

impl Layer for CircuitBreaker {
    async fn handle(&self, message: Incoming, next: Next) -> Outcome {
        let open_until = self.state.lock().unwrap_or_else(|e| e.into_inner()).1;
        if open_until.is_some_and(|until| Instant::now() < until) {
            return Err(Failure::transient(FaultKind::Handler, "circuit open"));
        }
        let outcome = next.run(message).await;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &outcome {
            Ok(_) => *state = (0, None),
            Err(_) => {
                state.0 += 1;
                if state.0 >= self.threshold {
                    *state = (0, Some(Instant::now() + self.cool_down));
                }
            }
        }
        outcome
    }
}

#[tokio::test]
async fn a_circuit_breaker_fails_fast_as_transient_once_open() {
    let bus = MemoryBus::new("ev");
    let (dlq, mut dl_rx) = dead_letters(&bus, "dlq-breaker").await;
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let consumer = bus
        .consumer("q-breaker")
        .bind("orders.#")
        // One delayed retry, so a fail-fast is seen to be transient (retried, not dead-lettered).
        .retry(RetryPolicy::fixed(1, Duration::from_millis(10)))
        .dead_letter("dlx")
        .layer(CircuitBreaker::new(2, Duration::from_secs(3600)))
        .handle::<OrderCreated>(move |_: OrderCreated, _| {
            let c = Arc::clone(&c);
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                Err(HandlerError::transient("payment service down"))
            }
        })
        .start()
        .await
        .unwrap();

    // The first message's two attempts fail in the handler and open the circuit.
    bus.publish(&OrderCreated { order_id: 1 }).await.unwrap();
    let first = recv(&mut dl_rx).await;
    assert_eq!(first.fault.message, "payment service down");
    assert_eq!(first.fault.attempts, 2);
    // The next ones fail fast, twice each (retried: transient), without reaching the handler.
    for order_id in [2, 3] {
        bus.publish(&OrderCreated { order_id }).await.unwrap();
        let dead = recv(&mut dl_rx).await;
        assert_eq!(dead.fault.kind, FaultKind::Handler);
        assert_eq!(dead.fault.message, "circuit open");
        assert_eq!(dead.fault.attempts, 2, "a fail-fast is retried");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    consumer.shutdown().await;
    dlq.shutdown().await;
}

#[tokio::test]
async fn a_circuit_breaker_closes_after_its_cool_down() {
    let bus = MemoryBus::new("ev");
    let (dlq, mut dl_rx) = dead_letters(&bus, "dlq-breaker-cool").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = bus
        .consumer("q-breaker-cool")
        .bind("orders.#")
        .retry(RetryPolicy::none())
        .dead_letter("dlx")
        // A cool-down of zero: open, then closed again by the next message.
        .layer(CircuitBreaker::new(1, Duration::ZERO))
        .handle::<OrderCreated>(move |e: OrderCreated, _| {
            let tx = tx.clone();
            async move {
                tx.send(e.order_id).map_err(HandlerError::transient)?;
                if e.order_id == 1 {
                    return Err(HandlerError::transient("down"));
                }
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    bus.publish(&OrderCreated { order_id: 1 }).await.unwrap();
    assert_eq!(recv(&mut dl_rx).await.fault.message, "down");
    bus.publish(&OrderCreated { order_id: 2 }).await.unwrap();
    assert_eq!(recv(&mut rx).await, 1);
    assert_eq!(recv(&mut rx).await, 2, "the handler runs again");
    consumer.shutdown().await;
    dlq.shutdown().await;
}

/// A layer that records what it sees in `log` under `name`.
fn recording(name: &'static str, log: Arc<Mutex<Vec<String>>>) -> impl Layer {
    layer_fn(move |message: Incoming, next: Next| {
        let log = Arc::clone(&log);
        async move {
            let event_type = message.event_type().unwrap_or("undecoded").to_owned();
            let decoded = message.context().is_some();
            log.lock()
                .unwrap()
                .push(format!("{name} in {event_type} decoded={decoded}"));
            let outcome = next.run(message).await;
            let out = match &outcome {
                Ok(h) => format!("{h:?}"),
                Err(f) => format!("{}", f.kind()),
            };
            log.lock().unwrap().push(format!("{name} out {out}"));
            outcome
        }
    })
}

#[tokio::test]
async fn layers_run_first_added_outermost_on_decoded_messages_around_the_handler() {
    let bus = MemoryBus::new("ev");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler_log = Arc::clone(&log);
    let consumer = bus
        .consumer("q-order")
        .bind("orders.#")
        .dead_letter("dlx")
        .layer(recording("a", Arc::clone(&log)))
        .layer(recording("b", Arc::clone(&log)))
        .handle::<OrderCreated>(move |_: OrderCreated, _| {
            let log = Arc::clone(&handler_log);
            let tx = tx.clone();
            async move {
                log.lock().unwrap().push("handler".to_owned());
                tx.send(()).map_err(HandlerError::transient)
            }
        })
        .start()
        .await
        .unwrap();
    bus.publish(&OrderCreated { order_id: 1 }).await.unwrap();
    recv(&mut rx).await;
    consumer.shutdown().await;
    assert_eq!(
        *log.lock().unwrap(),
        [
            "a in orders.order.created decoded=true",
            "b in orders.order.created decoded=true",
            "handler",
            "b out Done",
            "a out Done",
        ]
    );
}

#[tokio::test]
async fn layers_do_not_see_what_limits_decoding_or_the_inbox_settle() {
    let bus = MemoryBus::new("ev");
    let (dlq, mut dl_rx) = dead_letters(&bus, "dlq-unseen").await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let inbox = Arc::new(MemoryInbox::new());
    inbox
        .mark_processed("q-unseen", "seen-before")
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = bus
        .consumer("q-unseen")
        .bind("orders.#")
        .dead_letter("dlx")
        .limits(ferry_core::Limits::default().with_max_body_bytes(64))
        .skip_processed(inbox.clone())
        .layer(recording("mine", Arc::clone(&log)))
        .handle::<OrderCreated>(move |e: OrderCreated, _| {
            let tx = tx.clone();
            async move { tx.send(e.order_id).map_err(HandlerError::transient) }
        })
        .handle::<OrderNoted>(|_: OrderNoted, _| async { Ok(()) })
        .start()
        .await
        .unwrap();

    // No handler for its type: dead-lettered by the decode step.
    bus.publish(&OrderCancelled { order_id: 1 }).await.unwrap();
    assert_eq!(recv(&mut dl_rx).await.fault.kind, FaultKind::UnknownType);
    // Over the body limit: dead-lettered by the limits.
    bus.publish(&OrderNoted {
        note: "n".repeat(100),
    })
    .await
    .unwrap();
    assert_eq!(recv(&mut dl_rx).await.fault.kind, FaultKind::TooLarge);
    // Known to the inbox: skipped before the layers.
    bus.publish_with(
        &OrderCreated { order_id: 3 },
        PublishOptions {
            id: Some("seen-before".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Handled: the only one the layer sees.
    bus.publish(&OrderCreated { order_id: 4 }).await.unwrap();
    assert_eq!(recv(&mut rx).await, 4);
    consumer.shutdown().await;
    dlq.shutdown().await;
    assert_eq!(
        *log.lock().unwrap(),
        ["mine in orders.order.created decoded=true", "mine out Done"]
    );
}

fn order_delivery() -> Delivery {
    let message = codec::encode(
        &OrderCreated { order_id: 7 },
        &Envelope::for_event::<OrderCreated>(),
    )
    .unwrap();
    Delivery {
        message,
        exchange: "ev".into(),
        routing_key: "orders.order.created".into(),
        redelivered: false,
    }
}

fn failing_pipeline(calls: &Arc<AtomicU32>, error: fn() -> HandlerError) -> Pipeline {
    let mut p = Pipeline::new("q-pipeline");
    p.set_retry(RetryPolicy::fixed(3, Duration::from_secs(1)).immediate(2));
    let calls = Arc::clone(calls);
    p.add_handler::<OrderCreated>(move |_: OrderCreated, _| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Err(error()) }
    });
    p
}

#[tokio::test]
async fn a_layer_runs_inside_the_immediate_retries_once_a_try() {
    let calls = Arc::new(AtomicU32::new(0));
    let tries = Arc::new(AtomicU32::new(0));
    let mut p = failing_pipeline(&calls, || HandlerError::transient("down"));
    let t = Arc::clone(&tries);
    p.add_layer(layer_fn(move |message: Incoming, next: Next| {
        t.fetch_add(1, Ordering::SeqCst);
        next.run(message)
    }));
    let decision = p.process(&order_delivery()).await;
    assert!(
        matches!(&decision, Decision::Retry { next_attempt: 2, error, .. } if error == "down"),
        "{decision:?}"
    );
    assert_eq!(
        tries.load(Ordering::SeqCst),
        3,
        "the try and 2 immediate retries"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_panicking_layer_is_caught_and_retried_like_a_panicking_handler() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut p = failing_pipeline(&calls, || HandlerError::transient("down"));
    p.add_layer(layer_fn(|message: Incoming, next: Next| async move {
        if message.attempt() > 0 {
            panic!("layer bug");
        }
        next.run(message).await
    }));
    let decision = p.process(&order_delivery()).await;
    assert!(
        matches!(&decision, Decision::Retry { error, .. } if error == "handler panicked: layer bug"),
        "{decision:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // On the last attempt, it is dead-lettered as a panic.
    let mut last = order_delivery();
    last.message = last.retry_copy(4);
    let Decision::DeadLetter(fault) = p.process(&last).await else {
        panic!("not a dead letter");
    };
    assert_eq!(fault.kind, FaultKind::Panic);
    assert_eq!(fault.attempts, 4);
}

#[tokio::test]
async fn a_layer_decides_permanence_both_ways_and_may_answer_without_the_handler() {
    let calls = Arc::new(AtomicU32::new(0));

    // A permanent handler error made transient: retried.
    let mut p = failing_pipeline(&calls, || HandlerError::permanent("bad"));
    p.add_layer(layer_fn(|message: Incoming, next: Next| async move {
        next.run(message).await.map_err(Failure::into_transient)
    }));
    let decision = p.process(&order_delivery()).await;
    assert!(matches!(decision, Decision::Retry { .. }), "{decision:?}");
    assert_eq!(calls.swap(0, Ordering::SeqCst), 3);

    // A layer's own permanent failure: dead-lettered at once as its kind.
    let mut p = failing_pipeline(&calls, || HandlerError::transient("down"));
    p.add_layer(layer_fn(|_: Incoming, _: Next| async {
        Err::<Handled, _>(Failure::permanent(FaultKind::Decode, "refused by a layer"))
    }));
    let Decision::DeadLetter(fault) = p.process(&order_delivery()).await else {
        panic!("not a dead letter");
    };
    assert_eq!(fault.kind, FaultKind::Decode);
    assert_eq!(fault.message, "refused by a layer");
    assert_eq!(fault.attempts, 1);
    assert_eq!(fault.original_queue.as_deref(), Some("q-pipeline"));

    // A layer that answers itself: acked, the handler never runs.
    let mut p = failing_pipeline(&calls, || HandlerError::transient("down"));
    p.add_layer(layer_fn(|_: Incoming, _: Next| async {
        Ok::<_, Failure>(Handled::Done)
    }));
    assert_eq!(p.process(&order_delivery()).await, Decision::Ack);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
