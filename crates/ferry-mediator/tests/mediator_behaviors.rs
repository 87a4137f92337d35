//! Behaviors: order, short-circuit, result transformation, timeouts, validation and the
//! slow-request warning (retries: ferry-core's `tests/mediator_retry.rs`).

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use ferry_mediator::{
    AnyOutput, AnyRequest, Behavior, DEFAULT_SLOW_REQUEST_THRESHOLD, Mediator, MediatorError, Next,
    Request, RequestContext, RequestNext, SlowRequest, SlowRequestBehavior, TimeoutBehavior,
    Validate, ValidationErrors, behavior_fn,
};

type Log = Arc<Mutex<Vec<String>>>;

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[derive(Debug, Clone)]
struct CreateOrder {
    customer_email: String,
    total_amount: u64,
}

impl Request for CreateOrder {
    type Output = u64;
}

impl Validate for CreateOrder {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        errors.ensure(
            self.customer_email.contains('@'),
            "customer_email",
            "must be an e-mail address",
        );
        errors.ensure(self.total_amount > 0, "total_amount", "must be positive");
        errors.into_result()
    }
}

fn valid() -> CreateOrder {
    CreateOrder {
        customer_email: "ada@example.com".into(),
        total_amount: 10,
    }
}

struct Ping;
impl Request for Ping {
    type Output = &'static str;
}

/// Records entering and leaving.
struct Recording {
    name: &'static str,
    log: Log,
}

impl Behavior for Recording {
    async fn handle(
        &self,
        request: AnyRequest,
        ctx: RequestContext,
        next: Next,
    ) -> Result<AnyOutput, MediatorError> {
        self.log.lock().unwrap().push(format!("{}>", self.name));
        let result = next.run(request, ctx).await;
        self.log.lock().unwrap().push(format!("<{}", self.name));
        result
    }
}

fn recording_handler(
    log: &Log,
) -> impl Fn(CreateOrder, RequestContext) -> std::future::Ready<Result<u64, Infallible>>
+ Send
+ Sync
+ 'static {
    let log = Arc::clone(log);
    move |cmd: CreateOrder, _ctx: RequestContext| {
        log.lock().unwrap().push("handler".into());
        std::future::ready(Ok(cmd.total_amount))
    }
}

#[tokio::test]
async fn the_first_registered_behavior_is_outermost() {
    let log: Log = Log::default();
    let typed_log = Arc::clone(&log);
    let mediator = Mediator::builder()
        .behavior(Recording {
            name: "a",
            log: Arc::clone(&log),
        })
        .behavior_for::<CreateOrder, _>(
            move |cmd: CreateOrder, ctx: RequestContext, next: RequestNext<CreateOrder>| {
                let log = Arc::clone(&typed_log);
                async move {
                    log.lock().unwrap().push("typed>".into());
                    let result = next.run(cmd, ctx).await;
                    log.lock().unwrap().push("<typed".into());
                    result
                }
            },
        )
        .behavior(Recording {
            name: "c",
            log: Arc::clone(&log),
        })
        .command(recording_handler(&log))
        .query(|_: Ping, _: RequestContext| async { Ok::<_, Infallible>("pong") })
        .build()
        .unwrap();

    assert_eq!(mediator.send(valid()).await.unwrap(), 10);
    assert_eq!(
        entries(&log),
        ["a>", "typed>", "c>", "handler", "<c", "<typed", "<a"]
    );

    // The per-type behavior does not wrap other requests.
    log.lock().unwrap().clear();
    assert_eq!(mediator.send(Ping).await.unwrap(), "pong");
    assert_eq!(entries(&log), ["a>", "c>", "<c", "<a"]);
}

#[tokio::test]
async fn validation_short_circuits_before_the_handler() {
    let log: Log = Log::default();
    let mediator = Mediator::builder()
        .validate::<CreateOrder>()
        .command(recording_handler(&log))
        .build()
        .unwrap();

    let err = mediator
        .send(CreateOrder {
            customer_email: "nobody".into(),
            total_amount: 0,
        })
        .await
        .unwrap_err();
    let errors = err.validation_errors().expect("a validation error");
    assert_eq!(errors.len(), 2);
    assert!(errors.has("customer_email") && errors.has("total_amount"));
    assert!(
        err.to_string()
            .contains("customer_email: must be an e-mail address")
    );
    assert!(entries(&log).is_empty(), "the handler must not run");

    assert_eq!(mediator.send(valid()).await.unwrap(), 10);
    assert_eq!(entries(&log), ["handler"]);
}

#[tokio::test]
async fn a_generic_behavior_can_answer_without_the_handler() {
    let log: Log = Log::default();
    // A cache that knows the answer for orders of 99.
    let mediator = Mediator::builder()
        .behavior(behavior_fn(
            |request: AnyRequest, ctx, next: Next| async move {
                if request
                    .downcast_ref::<CreateOrder>()
                    .is_some_and(|cmd| cmd.total_amount == 99)
                {
                    return Ok(AnyOutput::new(1000u64));
                }
                next.run(request, ctx).await
            },
        ))
        .command(recording_handler(&log))
        .build()
        .unwrap();

    let order = CreateOrder {
        total_amount: 99,
        ..valid()
    };
    assert_eq!(mediator.send(order).await.unwrap(), 1000);
    assert!(entries(&log).is_empty());
    assert_eq!(mediator.send(valid()).await.unwrap(), 10);
}

#[tokio::test]
async fn behaviors_can_change_the_request_and_the_result() {
    let log: Log = Log::default();
    let mediator = Mediator::builder()
        // Generic: doubles any u64 output.
        .behavior(behavior_fn(|request, ctx, next: Next| async move {
            let mut output = next.run(request, ctx).await?;
            if let Some(total) = output.downcast_mut::<u64>() {
                *total *= 2;
            }
            Ok(output)
        }))
        // Typed: adds 1 to the request's total before the handler sees it.
        .behavior_for::<CreateOrder, _>(
            |mut cmd: CreateOrder, ctx: RequestContext, next: RequestNext<CreateOrder>| async move {
                cmd.total_amount += 1;
                next.run(cmd, ctx).await
            },
        )
        .command(recording_handler(&log))
        .build()
        .unwrap();

    assert_eq!(mediator.send(valid()).await.unwrap(), 22);
}

#[tokio::test]
async fn a_behavior_returning_the_wrong_type_is_an_error_not_a_panic() {
    let log: Log = Log::default();
    let mediator = Mediator::builder()
        .behavior(behavior_fn(|_request, _ctx, _next| async {
            Ok(AnyOutput::new("not a number"))
        }))
        .command(recording_handler(&log))
        .build()
        .unwrap();
    let err = mediator.send(valid()).await.unwrap_err();
    match err {
        MediatorError::TypeMismatch {
            expected, found, ..
        } => {
            assert_eq!(expected, "u64");
            assert_eq!(found, "&str");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_behavior_can_fail_on_its_own_account() {
    #[derive(Debug, thiserror::Error)]
    #[error("not allowed")]
    struct Forbidden;

    let mediator = Mediator::builder()
        .behavior(behavior_fn(|request: AnyRequest, _ctx, _next| async move {
            Err(MediatorError::Behavior {
                request: request.type_name(),
                source: Box::new(Forbidden),
            })
        }))
        .query(|_: Ping, _: RequestContext| async { Ok::<_, Infallible>("pong") })
        .build()
        .unwrap();
    let err = mediator.send(Ping).await.unwrap_err();
    assert!(matches!(err, MediatorError::Behavior { .. }));
    assert!(err.to_string().contains("not allowed"));
}

#[tokio::test(start_paused = true)]
async fn the_timeout_behavior_stops_a_slow_handler_and_cancels_its_context() {
    let handler_saw_cancel = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&handler_saw_cancel);
    let mediator = Mediator::builder()
        .behavior(TimeoutBehavior::new(Duration::from_millis(50)))
        .command(move |_: CreateOrder, ctx: RequestContext| {
            let seen = Arc::clone(&seen);
            async move {
                // Work started with the request's token, outliving the handler's future.
                let token = ctx.cancellation().cloned().ok_or("no token")?;
                tokio::spawn(async move {
                    token.cancelled().await;
                    seen.fetch_add(1, Ordering::SeqCst);
                });
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<u64, Box<dyn std::error::Error + Send + Sync>>(1)
            }
        })
        .query(|_: Ping, _: RequestContext| async { Ok::<_, Infallible>("pong") })
        .build()
        .unwrap();

    let err = mediator.send(valid()).await.unwrap_err();
    match &err {
        MediatorError::Timeout { request, timeout } => {
            assert!(request.ends_with("CreateOrder"));
            assert_eq!(*timeout, Duration::from_millis(50));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(err.is_timeout());
    tokio::task::yield_now().await;
    assert_eq!(handler_saw_cancel.load(Ordering::SeqCst), 1);

    // A fast request is untouched.
    assert_eq!(mediator.send(Ping).await.unwrap(), "pong");
}

#[tokio::test(start_paused = true)]
async fn a_per_type_timeout_applies_to_that_type_only() {
    let mediator = Mediator::builder()
        .behavior_for::<CreateOrder, _>(TimeoutBehavior::new(Duration::from_millis(10)))
        .command(|_: CreateOrder, _: RequestContext| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<u64, Infallible>(1)
        })
        .query(|_: Ping, _: RequestContext| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, Infallible>("pong")
        })
        .build()
        .unwrap();
    assert!(mediator.send(valid()).await.unwrap_err().is_timeout());
    assert_eq!(mediator.send(Ping).await.unwrap(), "pong");
}

#[tokio::test(start_paused = true)]
async fn the_slow_request_behavior_reports_requests_at_or_over_the_threshold() {
    assert_eq!(DEFAULT_SLOW_REQUEST_THRESHOLD, Duration::from_millis(500));
    assert_eq!(
        SlowRequestBehavior::new().threshold(),
        DEFAULT_SLOW_REQUEST_THRESHOLD
    );

    let slow: Arc<Mutex<Vec<SlowRequest>>> = Arc::default();
    let sink = Arc::clone(&slow);
    let mediator = Mediator::builder()
        .behavior(SlowRequestBehavior::new().on_slow(move |s| sink.lock().unwrap().push(s.clone())))
        .command(|cmd: CreateOrder, _: RequestContext| async move {
            tokio::time::sleep(Duration::from_millis(cmd.total_amount)).await;
            Ok::<u64, Infallible>(cmd.total_amount)
        })
        .build()
        .unwrap();

    let fast = CreateOrder {
        total_amount: 499,
        ..valid()
    };
    mediator.send(fast).await.unwrap();
    assert!(slow.lock().unwrap().is_empty());

    let ctx = RequestContext::new().with_correlation_id("corr-slow");
    let late = CreateOrder {
        total_amount: 600,
        ..valid()
    };
    mediator.send_with(late, ctx).await.unwrap();
    let reported = slow.lock().unwrap().clone();
    assert_eq!(reported.len(), 1);
    assert!(reported[0].request.ends_with("CreateOrder"));
    assert!(reported[0].elapsed >= Duration::from_millis(600));
    assert_eq!(reported[0].threshold, Duration::from_millis(500));
    assert_eq!(reported[0].correlation_id, "corr-slow");
    assert!(reported[0].succeeded);
}

#[tokio::test(start_paused = true)]
async fn the_slow_request_threshold_can_be_set() {
    let count = Arc::new(AtomicUsize::new(0));
    let sink = Arc::clone(&count);
    let mediator = Mediator::builder()
        .behavior(
            SlowRequestBehavior::new()
                .with_threshold(Duration::from_millis(10))
                .on_slow(move |_| {
                    sink.fetch_add(1, Ordering::SeqCst);
                }),
        )
        .command(|cmd: CreateOrder, _: RequestContext| async move {
            tokio::time::sleep(Duration::from_millis(cmd.total_amount)).await;
            Ok::<u64, Infallible>(cmd.total_amount)
        })
        .build()
        .unwrap();
    let order = |ms| CreateOrder {
        total_amount: ms,
        ..valid()
    };
    mediator.send(order(5)).await.unwrap();
    mediator.send(order(15)).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);
}
