//! Requests: typed outputs, handler kinds, typed errors, registration checks, cancellation and
//! sharing a Mediator across tasks.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use ferry_mediator::CancellationToken;
use ferry_mediator::{
    Mediator, MediatorError, Request, RequestContext, RequestHandler, StreamRequest,
    TimeoutBehavior,
};
use futures::stream;

#[derive(Debug, Clone)]
struct CreateOrder {
    customer_email: String,
    total_amount: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct OrderDto {
    id: u64,
    customer_email: String,
    total_amount: u64,
}

impl Request for CreateOrder {
    type Output = OrderDto;
}

#[derive(Debug, thiserror::Error, PartialEq)]
enum OrderError {
    #[error("an order needs a positive total")]
    EmptyOrder,
}

async fn create_order(cmd: CreateOrder, _ctx: RequestContext) -> Result<OrderDto, OrderError> {
    if cmd.total_amount == 0 {
        return Err(OrderError::EmptyOrder);
    }
    Ok(OrderDto {
        id: 7,
        customer_email: cmd.customer_email,
        total_amount: cmd.total_amount,
    })
}

fn order(total_amount: u64) -> CreateOrder {
    CreateOrder {
        customer_email: "ada@example.com".into(),
        total_amount,
    }
}

/// A command with no result.
struct CancelOrder {
    id: u64,
}
impl Request for CancelOrder {
    type Output = ();
}

/// A query, handled by a type with state.
struct CountOrders;
impl Request for CountOrders {
    type Output = usize;
}

struct CountOrdersHandler {
    count: Arc<AtomicUsize>,
}

impl RequestHandler<CountOrders> for CountOrdersHandler {
    type Error = Infallible;

    async fn handle(&self, _query: CountOrders, _ctx: RequestContext) -> Result<usize, Infallible> {
        Ok(self.count.load(Ordering::SeqCst))
    }
}

struct Unhandled;
impl Request for Unhandled {
    type Output = ();
}

#[tokio::test]
async fn send_returns_the_handlers_typed_output() {
    let mediator = Mediator::builder().command(create_order).build().unwrap();
    let dto: OrderDto = mediator.send(order(42)).await.unwrap();
    assert_eq!(
        dto,
        OrderDto {
            id: 7,
            customer_email: "ada@example.com".into(),
            total_amount: 42
        }
    );
}

#[tokio::test]
async fn commands_without_output_closures_and_typed_handlers_all_work() {
    let cancelled = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&cancelled);
    let count = Arc::new(AtomicUsize::new(3));
    let mediator = Mediator::builder()
        .command(move |cmd: CancelOrder, _ctx: RequestContext| {
            let seen = Arc::clone(&seen);
            async move {
                seen.store(cmd.id as usize, Ordering::SeqCst);
                Ok::<_, Infallible>(())
            }
        })
        .query(CountOrdersHandler {
            count: Arc::clone(&count),
        })
        .build()
        .unwrap();

    mediator.send(CancelOrder { id: 9 }).await.unwrap();
    assert_eq!(cancelled.load(Ordering::SeqCst), 9);
    assert_eq!(mediator.send(CountOrders).await.unwrap(), 3);
    count.store(5, Ordering::SeqCst);
    assert_eq!(mediator.send(CountOrders).await.unwrap(), 5);
}

#[tokio::test]
async fn handler_errors_come_back_typed() {
    let mediator = Mediator::builder().command(create_order).build().unwrap();
    let err = mediator.send(order(0)).await.unwrap_err();
    assert!(
        matches!(err, MediatorError::Handler { request, .. } if request.ends_with("CreateOrder"))
    );
    assert_eq!(
        err.handler_error::<OrderError>(),
        Some(&OrderError::EmptyOrder)
    );
    assert!(err.to_string().contains("an order needs a positive total"));
    assert_eq!(
        err.into_handler_error::<OrderError>().unwrap(),
        OrderError::EmptyOrder
    );
}

#[tokio::test]
async fn a_request_without_handler_is_a_typed_error() {
    let mediator = Mediator::builder().command(create_order).build().unwrap();
    let err = mediator.send(Unhandled).await.unwrap_err();
    match &err {
        MediatorError::NoHandler { request } => assert!(request.ends_with("Unhandled")),
        other => panic!("expected NoHandler, got {other:?}"),
    }
    assert!(err.to_string().contains("register one"));
    assert!(!mediator.handles::<Unhandled>());
    assert!(mediator.handles::<CreateOrder>());
}

#[test]
fn a_second_handler_for_a_request_is_rejected_naming_the_type() {
    let err = Mediator::builder()
        .command(create_order)
        .command(create_order)
        .build()
        .unwrap_err();
    match &err {
        MediatorError::DuplicateHandler { request } => {
            assert_eq!(*request, std::any::type_name::<CreateOrder>());
        }
        other => panic!("expected DuplicateHandler, got {other:?}"),
    }
    assert!(err.to_string().contains("CreateOrder"));

    // A command and a query handler for the same type are duplicates too.
    let err = Mediator::builder()
        .command(create_order)
        .query(|cmd: CreateOrder, ctx: RequestContext| create_order(cmd, ctx))
        .build()
        .unwrap_err();
    assert!(matches!(err, MediatorError::DuplicateHandler { .. }));
}

struct Numbers;
impl StreamRequest for Numbers {
    type Item = u32;
}

#[test]
fn a_second_stream_handler_is_rejected() {
    let numbers = |_: Numbers, _: RequestContext| stream::iter([Ok::<_, Infallible>(1)]);
    let err = Mediator::builder()
        .stream(numbers)
        .stream(numbers)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, MediatorError::DuplicateHandler { request } if request.ends_with("Numbers"))
    );
}

#[test]
fn a_behavior_for_a_request_without_handler_is_rejected() {
    let err = Mediator::builder()
        .command(create_order)
        .behavior_for::<Unhandled, _>(TimeoutBehavior::new(Duration::from_secs(1)))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, MediatorError::BehaviorWithoutHandler { request } if request.ends_with("Unhandled"))
    );
}

#[test]
fn the_mediator_is_send_sync_and_clone() {
    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
    assert_shareable::<Mediator>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_are_shared_across_tasks() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let mediator = Mediator::builder()
        .command(move |cmd: CreateOrder, ctx: RequestContext| {
            counted.fetch_add(1, Ordering::SeqCst);
            create_order(cmd, ctx)
        })
        .build()
        .unwrap();

    let tasks: Vec<_> = (1..=16u64)
        .map(|n| {
            let mediator = mediator.clone();
            tokio::spawn(async move { mediator.send(order(n)).await.map(|dto| dto.total_amount) })
        })
        .collect();
    let mut totals = Vec::new();
    for task in tasks {
        totals.push(task.await.unwrap().unwrap());
    }
    totals.sort_unstable();
    assert_eq!(totals, (1..=16).collect::<Vec<_>>());
    assert_eq!(calls.load(Ordering::SeqCst), 16);
}

#[tokio::test]
async fn handlers_read_the_context() {
    let mediator = Mediator::builder()
        .query(|_: CountOrders, ctx: RequestContext| async move {
            Ok::<_, Infallible>(ctx.correlation_id().len())
        })
        .build()
        .unwrap();
    let ctx = RequestContext::new().with_correlation_id("abc");
    assert_eq!(mediator.send_with(CountOrders, ctx).await.unwrap(), 3);
}

#[tokio::test]
async fn a_cancelled_context_stops_the_request() {
    let started = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&started);
    let mediator = Mediator::builder()
        .command(move |_: CancelOrder, _: RequestContext| {
            let seen = Arc::clone(&seen);
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
                Ok::<_, Infallible>(())
            }
        })
        .build()
        .unwrap();

    // Already cancelled: the handler never starts.
    let token = CancellationToken::new();
    token.cancel();
    let ctx = RequestContext::new().with_cancellation(token);
    let err = mediator
        .send_with(CancelOrder { id: 1 }, ctx)
        .await
        .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(started.load(Ordering::SeqCst), 0);

    // Cancelled while the handler runs.
    let token = CancellationToken::new();
    let ctx = RequestContext::new().with_cancellation(token.clone());
    let canceller = tokio::spawn(async move {
        tokio::task::yield_now().await;
        token.cancel();
    });
    let err = mediator
        .send_with(CancelOrder { id: 2 }, ctx)
        .await
        .unwrap_err();
    canceller.await.unwrap();
    assert!(
        matches!(err, MediatorError::Cancelled { request } if request.ends_with("CancelOrder"))
    );
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

/// A request sent from inside another request's handler, with a child context.
struct PlaceAndCount;
impl Request for PlaceAndCount {
    type Output = (String, String);
}

#[tokio::test]
async fn a_handler_can_send_a_follow_up_request_in_the_same_conversation() {
    let slot: Arc<std::sync::OnceLock<Mediator>> = Arc::default();
    let inner = Arc::clone(&slot);
    let mediator = Mediator::builder()
        .query(|_: CountOrders, ctx: RequestContext| async move {
            // Encode what the inner request saw as a number: 1 when its correlation is "conv".
            Ok::<_, Infallible>(usize::from(ctx.correlation_id() == "conv"))
        })
        .command(move |_: PlaceAndCount, ctx: RequestContext| {
            let inner = Arc::clone(&inner);
            async move {
                let mediator = inner.get().ok_or("mediator not set")?;
                let child = ctx.child();
                let cause = child.causation_id().unwrap_or_default().to_owned();
                let same_conversation = mediator.send_with(CountOrders, child).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((
                    format!("{same_conversation}"),
                    cause,
                ))
            }
        })
        .build()
        .unwrap();
    slot.set(mediator.clone()).unwrap();

    let ctx = RequestContext::new().with_correlation_id("conv");
    let request_id = ctx.request_id().to_string();
    let (same, cause) = mediator.send_with(PlaceAndCount, ctx).await.unwrap();
    assert_eq!(same, "1");
    assert_eq!(cause, request_id);
}
