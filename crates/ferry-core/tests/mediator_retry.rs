//! The Mediator's retry behavior, which runs the rest of the pipeline again after the delays of
//! a consumer's [`RetryPolicy`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use ferry_core::{
    RetryPolicy,
    mediator::{Mediator, Request, RequestContext, RetryBehavior, Validate, ValidationErrors},
};

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

/// A handler that fails its first `failures` calls.
fn flaky(
    failures: u32,
    calls: &Arc<AtomicU32>,
) -> impl Fn(CreateOrder, RequestContext) -> std::future::Ready<Result<u64, std::io::Error>>
+ Send
+ Sync
+ 'static {
    let calls = Arc::clone(calls);
    move |cmd: CreateOrder, _ctx: RequestContext| {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        std::future::ready(if call <= failures {
            Err(std::io::Error::other(format!("failure {call}")))
        } else {
            Ok(cmd.total_amount)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_retry_behavior_runs_the_handler_again() {
    let calls = Arc::new(AtomicU32::new(0));
    let mediator = Mediator::builder()
        .behavior_for::<CreateOrder, _>(RetryBehavior::new(RetryPolicy::exponential(
            3,
            Duration::from_millis(10),
        )))
        .command(flaky(2, &calls))
        .build()
        .unwrap();
    assert_eq!(mediator.send(valid()).await.unwrap(), 10);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Out of retries: the last error comes back.
    let calls = Arc::new(AtomicU32::new(0));
    let mediator = Mediator::builder()
        .behavior_for::<CreateOrder, _>(RetryBehavior::new(RetryPolicy::fixed(1, Duration::ZERO)))
        .command(flaky(5, &calls))
        .build()
        .unwrap();
    let err = mediator.send(valid()).await.unwrap_err();
    assert!(err.to_string().contains("failure 2"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_retry_behavior_does_not_retry_invalid_requests() {
    let calls = Arc::new(AtomicU32::new(0));
    let mediator = Mediator::builder()
        .behavior_for::<CreateOrder, _>(RetryBehavior::new(RetryPolicy::fixed(3, Duration::ZERO)))
        .validate::<CreateOrder>()
        .command(flaky(0, &calls))
        .build()
        .unwrap();
    let invalid = CreateOrder {
        total_amount: 0,
        ..valid()
    };
    let err = mediator.send(invalid).await.unwrap_err();
    assert!(err.validation_errors().is_some());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
