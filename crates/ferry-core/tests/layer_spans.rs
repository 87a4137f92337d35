//! A user's layer runs inside the `ferry.handle` span, itself inside `ferry.consume`. In a test
//! binary of its own: tracing caches whether a span's callsite is of interest once per process,
//! and tests on other threads without a subscriber could leave it cached as uninteresting.

use std::sync::{Arc, Mutex};

use ferry_core::{
    Decision, Delivery, Envelope, Pipeline, codec,
    pipeline::{Incoming, Next, layer_fn},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created")]
struct OrderCreated {
    order_id: u32,
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

#[test]
fn a_layer_runs_inside_the_handle_span_inside_the_consume_span() {
    use tracing_subscriber::{Registry, registry::LookupSpan};

    let subscriber = Registry::default();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&spans);
    let mut p = Pipeline::new("q-spans");
    p.add_handler::<OrderCreated>(|_: OrderCreated, _| async { Ok(()) });
    p.add_layer(layer_fn(move |message: Incoming, next: Next| {
        let seen = Arc::clone(&seen);
        async move {
            let current = tracing::Span::current();
            tracing::dispatcher::get_default(|dispatch| {
                let registry = dispatch.downcast_ref::<Registry>().expect("a registry");
                let mut names = Vec::new();
                let mut span = current.id().and_then(|id| registry.span(&id));
                while let Some(s) = span {
                    names.push(s.name());
                    span = s.parent();
                }
                *seen.lock().unwrap() = names;
            });
            next.run(message).await
        }
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        // Other tests of this binary, on other threads without a subscriber, may register the
        // spans' callsites at the same moment and leave them cached as uninteresting.
        tracing::callsite::rebuild_interest_cache();
        assert_eq!(
            runtime.block_on(p.process(&order_delivery())),
            Decision::Ack
        );
    });
    assert_eq!(*spans.lock().unwrap(), ["ferry.handle", "ferry.consume"]);
}
