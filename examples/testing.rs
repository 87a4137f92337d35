//! Testing the seed's inventory handler with `ferry::testing`: the consumer is started by the
//! same function production calls, on the harness's in-memory transport and outbox; the tests
//! cover a success, a retry, a dead letter and a duplicate skipped by the inbox.
//!
//! ```sh
//! cargo test -p ferry-testing --example testing
//! ```
//!
//! The README's "Testing your handlers" quotes this file (scripts/sync-readme.py).

use std::time::Duration;

use ferry::{
    ConsumerHandle, HandlerError, IntegrationEvent, MessageContext, RetryPolicy,
    plumbing::{ConsumerBuilder, ConsumerHost},
    transactional::{StoreTransaction, TransactionalHandler, TransactionalStore, TxContext},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemDto {
    pub product_id: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 1)]
pub struct OrderCreatedIntegrationEvent {
    pub order_id: String,
    pub customer_email: String,
    pub items: Vec<OrderItemDto>,
}

// ## The handler under test

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "inventory.stock.reserved")]
pub struct StockReserved {
    pub order_id: String,
    pub product_id: String,
    pub quantity: u32,
}

/// The seed's inventory handler, written for any store's transaction: it reserves each item
/// (announced with `StockReserved`, through the outbox, in the message's transaction) and
/// refuses an item of quantity 0 for good.
pub struct OrderCreatedIntegrationEventHandler;

impl<T: StoreTransaction> TransactionalHandler<OrderCreatedIntegrationEvent, T>
    for OrderCreatedIntegrationEventHandler
{
    async fn handle(
        &self,
        event: OrderCreatedIntegrationEvent,
        cx: &mut TxContext<T>,
    ) -> Result<(), HandlerError> {
        for item in &event.items {
            if item.quantity == 0 {
                let error = format!("cannot reserve 0 of {}", item.product_id);
                return Err(HandlerError::permanent(error)); // no retry can fix it
            }
            let reserved = StockReserved {
                order_id: event.order_id.clone(),
                product_id: item.product_id.clone(),
                quantity: item.quantity,
            };
            cx.publish(&reserved).await?;
        }
        Ok(())
    }
}

// ## The wiring production calls

/// Starts the inventory consumer on any transport (`RabbitMq` in production, the harness's in
/// tests) with any transactional store.
pub async fn start_inventory_consumer<B, S, H>(
    bus: &B,
    outbox: S,
    handler: H,
) -> Result<ConsumerHandle, B::Error>
where
    B: ConsumerHost,
    S: TransactionalStore,
    H: TransactionalHandler<OrderCreatedIntegrationEvent, S::Transaction>,
{
    ConsumerBuilder::new(bus, "inventory.order-created")
        .bind("orders.order.created")
        .prefetch(10)
        .retry(RetryPolicy::exponential(3, Duration::from_secs(1))) // 1 s, 2 s, 4 s
        .dead_letter("myapp.dlx")
        .handle_transactional(outbox, handler)
        .start()
        .await
}

/// Confirms the order to the customer once its stock is reserved.
pub async fn start_confirmation_consumer<B: ConsumerHost>(
    bus: &B,
) -> Result<ConsumerHandle, B::Error> {
    ConsumerBuilder::new(bus, "notifications.stock-reserved")
        .bind("inventory.stock.reserved")
        .dead_letter("myapp.dlx")
        .handle::<StockReserved>(|event: StockReserved, _: MessageContext| async move {
            tracing::info!("Your order {} has been confirmed.", event.order_id);
            Ok::<_, HandlerError>(())
        })
        .start()
        .await
}

fn main() {
    println!("run its tests: cargo test -p ferry-testing --example testing");
}

// ## Testing your handlers

#[cfg(test)]
mod tests {
    use super::*;
    use ferry::{
        FaultKind, OutboxRelay, PublishOptions, PublisherExt,
        host::Host,
        testing::{TestHarness, fakes::FailTimes},
    };

    type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// The consumers and the relay on the harness's transport and outbox, as production runs
    /// them.
    async fn harness_with<H>(
        inventory_handler: H,
    ) -> Result<TestHarness, ferry::testing::TransportError>
    where
        H: TransactionalHandler<OrderCreatedIntegrationEvent, ferry::testing::TestTransaction>,
    {
        let harness = TestHarness::memory().with_timeout(Duration::from_secs(30));
        let (bus, outbox) = (harness.transport(), harness.store());
        let inventory = start_inventory_consumer(bus, outbox.clone(), inventory_handler).await?;
        let confirmations = start_confirmation_consumer(bus).await?;
        harness.run(
            Host::new()
                .consumer("inventory", inventory)
                .consumer("confirmations", confirmations)
                .relay("outbox", OutboxRelay::new(outbox.clone(), bus.clone())),
        );
        Ok(harness)
    }

    fn order(order_id: &str, quantity: u32) -> OrderCreatedIntegrationEvent {
        OrderCreatedIntegrationEvent {
            order_id: order_id.into(),
            customer_email: "ada@example.com".into(),
            items: vec![OrderItemDto {
                product_id: "book-42".into(),
                quantity,
            }],
        }
    }

    #[tokio::test]
    async fn reserves_the_stock_and_the_customer_is_told() -> TestResult {
        let harness = harness_with(OrderCreatedIntegrationEventHandler).await?;

        harness.transport().publish(&order("o-1", 2)).await?;
        harness.wait_idle().await?; // the follow-up event too: published, then consumed

        assert_eq!(
            harness
                .consumed::<OrderCreatedIntegrationEvent>()
                .single()?
                .event
                .order_id,
            "o-1"
        );
        let reserved = harness.published::<StockReserved>().single()?.event;
        assert_eq!((reserved.order_id.as_str(), reserved.quantity), ("o-1", 2));
        assert_eq!(harness.consumed::<StockReserved>().count(), 1);
        assert!(harness.dead_lettered().is_empty());
        harness.shutdown().await?;
        Ok(())
    }

    #[tokio::test(start_paused = true)] // retry delays pass at once on the paused clock
    async fn a_failure_is_retried_a_second_later() -> TestResult {
        let harness = harness_with(FailTimes::new(1, OrderCreatedIntegrationEventHandler)).await?;

        harness.transport().publish(&order("o-2", 1)).await?;
        harness.wait_idle().await?;

        let retry = harness.retried::<OrderCreatedIntegrationEvent>().single()?;
        assert_eq!(retry.record.retry_delay(), Some(Duration::from_secs(1)));
        let handled = harness
            .consumed::<OrderCreatedIntegrationEvent>()
            .single()?;
        assert_eq!(handled.record.attempt, 2);
        // The failed attempt rolled back: one reservation, from the second attempt.
        assert_eq!(harness.published::<StockReserved>().count(), 1);
        harness.shutdown().await?;
        Ok(())
    }

    #[tokio::test]
    async fn an_order_it_cannot_reserve_is_dead_lettered() -> TestResult {
        let harness = harness_with(OrderCreatedIntegrationEventHandler).await?;

        harness.transport().publish(&order("o-3", 0)).await?;
        harness.wait_idle().await?;

        let dead = harness.dead_lettered().single()?;
        assert_eq!(
            dead.event::<OrderCreatedIntegrationEvent>()?.order_id,
            "o-3"
        );
        let fault = dead.fault().ok_or("no fault")?;
        assert_eq!((fault.kind, fault.attempts), (FaultKind::Handler, 1)); // permanent: no retries
        assert!(fault.message.contains("cannot reserve 0 of book-42"));
        assert!(harness.published::<StockReserved>().is_empty());
        harness.shutdown().await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_duplicate_is_skipped_by_the_inbox() -> TestResult {
        let harness = harness_with(OrderCreatedIntegrationEventHandler).await?;
        let same_id = || PublishOptions {
            id: Some("evt-4".into()),
            ..PublishOptions::default()
        };

        harness
            .transport()
            .publish_with(&order("o-4", 1), same_id())
            .await?;
        harness
            .transport()
            .publish_with(&order("o-4", 1), same_id())
            .await?;
        harness.wait_idle().await?;

        assert_eq!(
            harness.consumed::<OrderCreatedIntegrationEvent>().count(),
            1
        );
        assert_eq!(
            harness.duplicates::<OrderCreatedIntegrationEvent>().count(),
            1
        );
        assert_eq!(harness.published::<StockReserved>().count(), 1);
        harness.shutdown().await?;
        Ok(())
    }
}
