//! The Mediator's overhead: `send` with no behaviors and with three, and `publish` to three
//! handlers, each against calling the handler(s) directly.
//!
//! The handlers finish at once, so every future is polled to completion once, with a no-op
//! waker: what is measured is dispatch, not a runtime's scheduling. A tokio runtime is entered
//! (not driven) for `TimeoutBehavior`, which needs its timer.
//!
//! Run: `cargo bench -p ferry-mediator --bench mediator`.

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use criterion::{Criterion, criterion_group, criterion_main};
use ferry_mediator::{
    Mediator, Notification, PublishStrategy, Request, RequestContext, SlowRequestBehavior,
    TimeoutBehavior, TracingBehavior, behavior_fn,
};

/// Polls a future that is ready at once (or soon) to completion.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

struct CreateOrder {
    customer_id: u64,
    total_amount: u64,
}

impl Request for CreateOrder {
    type Output = u64;
}

async fn create_order(cmd: CreateOrder, _ctx: RequestContext) -> Result<u64, Infallible> {
    Ok(cmd
        .customer_id
        .wrapping_mul(31)
        .wrapping_add(cmd.total_amount))
}

fn command(n: u64) -> CreateOrder {
    CreateOrder {
        customer_id: black_box(n),
        total_amount: black_box(42),
    }
}

#[derive(Clone)]
struct OrderPlaced {
    order_id: u64,
}

impl Notification for OrderPlaced {}

async fn on_placed_a(event: OrderPlaced, _ctx: RequestContext) -> Result<(), Infallible> {
    black_box(event.order_id);
    Ok(())
}

async fn on_placed_b(event: OrderPlaced, _ctx: RequestContext) -> Result<(), Infallible> {
    black_box(event.order_id.wrapping_add(1));
    Ok(())
}

async fn on_placed_c(event: OrderPlaced, _ctx: RequestContext) -> Result<(), Infallible> {
    black_box(event.order_id.wrapping_add(2));
    Ok(())
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let _entered = runtime.enter();

    let bare = Mediator::builder()
        .command(create_order)
        .build()
        .expect("mediator");
    let pass_through = Mediator::builder()
        .behavior(behavior_fn(|request, ctx, next| next.run(request, ctx)))
        .behavior(behavior_fn(|request, ctx, next| next.run(request, ctx)))
        .behavior(behavior_fn(|request, ctx, next| next.run(request, ctx)))
        .command(create_order)
        .build()
        .expect("mediator");
    let built_ins = Mediator::builder()
        .behavior(TracingBehavior)
        .behavior(TimeoutBehavior::new(Duration::from_secs(30)))
        .behavior(SlowRequestBehavior::new())
        .command(create_order)
        .build()
        .expect("mediator");
    let notifications = |strategy| {
        Mediator::builder()
            .notification(on_placed_a)
            .notification(on_placed_b)
            .notification(on_placed_c)
            .publish_strategy(strategy)
            .build()
            .expect("mediator")
    };
    let sequential = notifications(PublishStrategy::Sequential);
    let parallel = notifications(PublishStrategy::Parallel);

    let mut group = c.benchmark_group("send");
    let mut n = 0u64;
    group.bench_function("direct handler call", |b| {
        b.iter(|| {
            n += 1;
            run(create_order(command(n), RequestContext::new()))
        })
    });
    group.bench_function("mediator, no behaviors", |b| {
        b.iter(|| {
            n += 1;
            run(bare.send(command(n)))
        })
    });
    group.bench_function("mediator, 3 pass-through behaviors", |b| {
        b.iter(|| {
            n += 1;
            run(pass_through.send(command(n)))
        })
    });
    group.bench_function("mediator, tracing + timeout + slow-request", |b| {
        b.iter(|| {
            n += 1;
            run(built_ins.send(command(n)))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("publish");
    group.bench_function("direct calls of 3 handlers", |b| {
        b.iter(|| {
            n += 1;
            let event = OrderPlaced {
                order_id: black_box(n),
            };
            let ctx = RequestContext::new();
            run(async {
                on_placed_a(event.clone(), ctx.clone()).await?;
                on_placed_b(event.clone(), ctx.clone()).await?;
                on_placed_c(event, ctx).await
            })
        })
    });
    group.bench_function("mediator, 3 handlers, sequential", |b| {
        b.iter(|| {
            n += 1;
            run(sequential.publish(OrderPlaced {
                order_id: black_box(n),
            }))
        })
    });
    group.bench_function("mediator, 3 handlers, parallel", |b| {
        b.iter(|| {
            n += 1;
            run(parallel.publish(OrderPlaced {
                order_id: black_box(n),
            }))
        })
    });
    group.finish();
}

criterion_group! {
    name = mediator;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(mediator);
