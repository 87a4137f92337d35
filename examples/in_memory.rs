//! The seed's scenario in one process, with no broker and no database:
//! an order is created and its `OrderCreated` event added to the outbox in one transaction →
//! the outbox relay publishes it → the inventory context's idempotent handler fails once, is
//! retried after a delay, then reserves the stock; a duplicate of the event is skipped.
//!
//! Run it with `cargo run --example in_memory`.

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use ferry::{
    CancellationToken, HandlerError, IntegrationEvent, IntegrationEventHandler, MessageContext,
    OutboxRelay, PublishOptions, RetryPolicy,
    memory::{MemoryBus, MemoryInbox, MemoryOutbox},
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// One line of an order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderItemDto {
    product_id: String,
    quantity: u32,
}

/// The seed's `OrderCreatedIntegrationEvent`.
#[derive(Debug, Clone, Serialize, Deserialize, IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 1)]
struct OrderCreated {
    order_id: String,
    customer_email: String,
    total_amount: f64,
    items: Vec<OrderItemDto>,
}

/// The inventory context's handler: fails on the first attempt (a flaky stock service), then
/// reserves the items.
struct ReserveStock {
    attempts: Arc<AtomicU32>,
    reserved: mpsc::UnboundedSender<(String, u32)>,
}

impl IntegrationEventHandler<OrderCreated> for ReserveStock {
    async fn handle(&self, event: OrderCreated, ctx: MessageContext) -> Result<(), HandlerError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        eprintln!(
            "inventory: handling {} for order {} (delivery attempt {})",
            OrderCreated::NAME,
            event.order_id,
            ctx.attempt()
        );
        if attempt == 1 {
            eprintln!("inventory: stock service unavailable, failing this attempt");
            return Err(HandlerError::transient("stock service unavailable"));
        }
        for item in &event.items {
            eprintln!(
                "inventory: reserved {} x {} for order {}",
                item.quantity, item.product_id, event.order_id
            );
        }
        let _ = self.reserved.send((event.order_id, ctx.attempt()));
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let bus = MemoryBus::new("myapp.events");
    let outbox = MemoryOutbox::new();
    let inbox = Arc::new(MemoryInbox::new());
    let shutdown = CancellationToken::new();

    // Dead letters would land here; the scenario expects none.
    let dead_letters = Arc::new(AtomicU32::new(0));
    let dlq_count = Arc::clone(&dead_letters);
    let dlq = bus
        .dead_letter_consumer("myapp.dlq")
        .exchange("myapp.dlx")
        .on_dead_letter(move |dead| {
            let dlq_count = Arc::clone(&dlq_count);
            async move {
                eprintln!("dead letter: {}", dead.fault);
                dlq_count.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .start()
        .await;

    let (reserved_tx, mut reserved_rx) = mpsc::unbounded_channel();
    let handler_calls = Arc::new(AtomicU32::new(0));
    let handler = ReserveStock {
        attempts: Arc::clone(&handler_calls),
        reserved: reserved_tx,
    };
    let inventory = bus
        .consumer("inventory.order-created")
        .bind("orders.order.created")
        .prefetch(10)
        .retry(RetryPolicy::exponential(3, Duration::from_millis(200)))
        .dead_letter("myapp.dlx")
        .skip_processed(inbox.clone())
        .handle::<OrderCreated>(handler)
        .start()
        .await;
    let (Ok(dlq), Ok(inventory)) = (dlq, inventory) else {
        eprintln!("could not start the consumers");
        return ExitCode::FAILURE;
    };

    let relay = tokio::spawn(OutboxRelay::new(outbox.clone(), bus.clone()).run(shutdown.clone()));

    // The orders context: the order and its event in one transaction.
    let order = OrderCreated {
        order_id: "order-1".into(),
        customer_email: "ada@example.com".into(),
        total_amount: 59.90,
        items: vec![
            OrderItemDto {
                product_id: "book-42".into(),
                quantity: 2,
            },
            OrderItemDto {
                product_id: "pen-7".into(),
                quantity: 1,
            },
        ],
    };
    let options = PublishOptions {
        correlation_id: Some("checkout-1".into()),
        ..PublishOptions::default()
    };
    let added = async {
        let mut tx = outbox.begin().await?;
        let event_id = tx.add_with(&order, options).await?;
        tx.commit().await?;
        Ok::<_, ferry::outbox::OutboxError>(event_id)
    };
    let event_id = match added.await {
        Ok(id) => id,
        Err(e) => {
            eprintln!("could not add the event to the outbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "orders: order {} created, event {event_id} in the outbox",
        order.order_id
    );

    let outcome = tokio::time::timeout(Duration::from_secs(10), reserved_rx.recv()).await;
    let ok = match outcome {
        Ok(Some((order_id, attempt))) => {
            eprintln!("inventory: order {order_id} reserved on delivery attempt {attempt}");
            attempt == 2
        }
        _ => {
            eprintln!("the order was not reserved within 10 s");
            false
        }
    };

    // The same event again (a redelivery, a second relay …): the inbox skips it.
    if ok {
        let duplicate = outbox.add_with(
            &order,
            PublishOptions {
                id: Some(event_id.clone()),
                ..PublishOptions::default()
            },
        );
        if duplicate.is_ok() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            eprintln!("inventory: duplicate of event {event_id} skipped by the inbox");
        }
    }

    shutdown.cancel();
    inventory.shutdown().await;
    dlq.shutdown().await;
    let _ = relay.await;

    let handled = handler_calls.load(Ordering::SeqCst);
    let dead = dead_letters.load(Ordering::SeqCst);
    println!(
        "{{\"reserved\":{ok},\"handler_calls\":{handled},\"dead_letters\":{dead},\"inbox_entries\":{}}}",
        inbox.len()
    );
    if ok && handled == 2 && dead == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
