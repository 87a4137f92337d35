//! Notifications: any number of handlers, and each publish strategy with its errors.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ferry_mediator::{
    CancellationToken, Mediator, MediatorError, Notification, NotificationHandler, PublishStrategy,
    RequestContext,
};
use tokio::sync::Barrier;

#[derive(Debug, Clone)]
struct OrderPlaced {
    order_id: u32,
}
impl Notification for OrderPlaced {}

#[derive(Debug, Clone)]
struct NobodyListens;
impl Notification for NobodyListens {}

type Log = Arc<Mutex<Vec<String>>>;

/// A handler that records its name and the order, failing when told to.
#[derive(Clone)]
struct Step {
    name: &'static str,
    fail: bool,
    log: Log,
}

impl NotificationHandler<OrderPlaced> for Step {
    type Error = std::io::Error;

    async fn handle(&self, event: OrderPlaced, _ctx: RequestContext) -> Result<(), std::io::Error> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}:{}", self.name, event.order_id));
        if self.fail {
            Err(std::io::Error::other(format!("{} failed", self.name)))
        } else {
            Ok(())
        }
    }
}

fn step(name: &'static str, fail: bool, log: &Log) -> Step {
    Step {
        name,
        fail,
        log: Arc::clone(log),
    }
}

fn mediator(steps: [(&'static str, bool); 3], strategy: PublishStrategy, log: &Log) -> Mediator {
    let [a, b, c] = steps;
    Mediator::builder()
        .notification(step(a.0, a.1, log))
        .notification(step(b.0, b.1, log))
        .notification(step(c.0, c.1, log))
        .publish_strategy(strategy)
        .build()
        .unwrap()
}

fn failures(err: &MediatorError) -> Vec<(usize, String)> {
    match err {
        MediatorError::Notification {
            notification,
            failures,
        } => {
            assert!(notification.ends_with("OrderPlaced"));
            failures
                .iter()
                .map(|f| (f.position, f.error.to_string()))
                .collect()
        }
        other => panic!("expected a notification error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_notification_without_handlers_is_fine() {
    let mediator = Mediator::builder().build().unwrap();
    mediator.publish(NobodyListens).await.unwrap();
}

#[tokio::test]
async fn every_handler_receives_the_notification_in_registration_order() {
    let log = Log::default();
    let closure_log = Arc::clone(&log);
    let mediator = Mediator::builder()
        .notification(step("a", false, &log))
        .notification(move |event: OrderPlaced, _ctx: RequestContext| {
            let log = Arc::clone(&closure_log);
            async move {
                log.lock()
                    .unwrap()
                    .push(format!("closure:{}", event.order_id));
                Ok::<_, std::convert::Infallible>(())
            }
        })
        .notification(step("c", false, &log))
        .build()
        .unwrap();
    mediator.publish(OrderPlaced { order_id: 5 }).await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["a:5", "closure:5", "c:5"]);
}

#[tokio::test]
async fn sequential_stops_at_the_first_error() {
    let log = Log::default();
    let mediator = mediator(
        [("a", false), ("b", true), ("c", false)],
        PublishStrategy::Sequential,
        &log,
    );
    let err = mediator
        .publish(OrderPlaced { order_id: 1 })
        .await
        .unwrap_err();
    assert_eq!(failures(&err), [(1, "b failed".to_owned())]);
    assert_eq!(*log.lock().unwrap(), ["a:1", "b:1"], "c must not run");
}

#[tokio::test]
async fn sequential_continue_on_error_runs_all_and_gathers_the_errors() {
    let log = Log::default();
    let mediator = mediator(
        [("a", true), ("b", false), ("c", true)],
        PublishStrategy::SequentialContinueOnError,
        &log,
    );
    let err = mediator
        .publish(OrderPlaced { order_id: 2 })
        .await
        .unwrap_err();
    assert_eq!(
        failures(&err),
        [(0, "a failed".to_owned()), (2, "c failed".to_owned())]
    );
    assert_eq!(*log.lock().unwrap(), ["a:2", "b:2", "c:2"]);
    let text = err.to_string();
    assert!(
        text.starts_with("2 of the handlers of notification"),
        "{text}"
    );
    assert!(
        text.contains("a failed") && text.contains("c failed"),
        "{text}"
    );
}

#[tokio::test]
async fn the_default_strategy_can_be_overridden_for_one_publish() {
    let log = Log::default();
    let mediator = mediator(
        [("a", true), ("b", false), ("c", false)],
        PublishStrategy::Sequential,
        &log,
    );
    let err = mediator
        .publish_using(
            OrderPlaced { order_id: 3 },
            RequestContext::new(),
            PublishStrategy::SequentialContinueOnError,
        )
        .await
        .unwrap_err();
    assert_eq!(failures(&err).len(), 1);
    assert_eq!(log.lock().unwrap().len(), 3);
}

/// Waits until all three handlers are running at once: only a parallel publish gets past it.
#[derive(Clone)]
struct Rendezvous {
    barrier: Arc<Barrier>,
    fail: bool,
}

impl NotificationHandler<OrderPlaced> for Rendezvous {
    type Error = std::io::Error;

    async fn handle(&self, event: OrderPlaced, _ctx: RequestContext) -> Result<(), std::io::Error> {
        self.barrier.wait().await;
        if self.fail {
            return Err(std::io::Error::other(format!(
                "order {} failed",
                event.order_id
            )));
        }
        Ok(())
    }
}

#[tokio::test]
async fn parallel_runs_the_handlers_at_once_and_gathers_the_errors() {
    let barrier = Arc::new(Barrier::new(3));
    let handler = |fail| Rendezvous {
        barrier: Arc::clone(&barrier),
        fail,
    };
    let mediator = Mediator::builder()
        .notification(handler(true))
        .notification(handler(false))
        .notification(handler(true))
        .publish_strategy(PublishStrategy::Parallel)
        .build()
        .unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        mediator.publish(OrderPlaced { order_id: 4 }),
    )
    .await
    .expect("the handlers did not run concurrently");
    let err = result.unwrap_err();
    assert_eq!(
        failures(&err),
        [
            (0, "order 4 failed".to_owned()),
            (2, "order 4 failed".to_owned())
        ]
    );

    // All succeed.
    let mediator = Mediator::builder()
        .notification(handler(false))
        .notification(handler(false))
        .notification(handler(false))
        .publish_strategy(PublishStrategy::Parallel)
        .build()
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        mediator.publish(OrderPlaced { order_id: 5 }),
    )
    .await
    .expect("the handlers did not run concurrently")
    .unwrap();
}

#[tokio::test]
async fn a_cancelled_context_publishes_nothing() {
    let log = Log::default();
    let mediator = mediator(
        [("a", false), ("b", false), ("c", false)],
        PublishStrategy::Sequential,
        &log,
    );
    let token = CancellationToken::new();
    token.cancel();
    let err = mediator
        .publish_with(
            OrderPlaced { order_id: 6 },
            RequestContext::new().with_cancellation(token),
        )
        .await
        .unwrap_err();
    assert!(err.is_cancelled());
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn handlers_receive_the_publishers_context() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let mediator = Mediator::builder()
        .notification(move |_: OrderPlaced, ctx: RequestContext| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(ctx.correlation_id().into_owned());
                Ok::<_, std::convert::Infallible>(())
            }
        })
        .build()
        .unwrap();
    mediator
        .publish_with(
            OrderPlaced { order_id: 7 },
            RequestContext::new().with_correlation_id("corr-n"),
        )
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), ["corr-n"]);
}
