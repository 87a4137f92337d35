//! The seed's flow, wired once and run by the tests on memory and on RabbitMQ + PostgreSQL:
//! a command through the Mediator adds `OrderCreated` to the outbox, the relay publishes it,
//! the inventory consumer (transactional, retries 1 s / 2 s / 4 s, a dead-letter exchange)
//! reserves stock and emits `StockReserved` through the outbox, and a notifications consumer
//! handles that.

use std::time::Duration;

use ferry_core::{
    ConsumerBuilder, ConsumerHost, HandlerError, Inbox, MessageContext, OutboxRelay, OutboxStore,
    PublishOptions, PublishTransport, RetryPolicy,
    host::Host,
    mediator::{
        Mediator, MediatorBuilder, Request, RequestContext, RequestHandler, Validate,
        ValidationErrors,
    },
    outbox::encode_event,
    transactional::{StoreTransaction, TransactionalHandler, TransactionalStore, TxContext},
};
use serde::{Deserialize, Serialize};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemDto {
    pub product_id: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 1)]
pub struct OrderCreatedIntegrationEvent {
    pub order_id: String,
    pub customer_email: String,
    pub items: Vec<OrderItemDto>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "inventory.stock.reserved")]
pub struct StockReserved {
    pub order_id: String,
    pub quantity: u32,
}

pub struct CreateOrderCommand {
    pub customer_email: String,
    pub items: Vec<OrderItemDto>,
}

impl Request for CreateOrderCommand {
    type Output = String;
}

impl Validate for CreateOrderCommand {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        errors.ensure(
            self.customer_email.contains('@'),
            "customer_email",
            "must be an e-mail address",
        );
        errors.ensure(
            !self.items.is_empty(),
            "items",
            "an order needs at least one item",
        );
        errors.into_result()
    }
}

/// Adds the order's event to the outbox in one transaction of the store.
pub struct CreateOrderCommandHandler<S> {
    pub store: S,
}

impl<S: TransactionalStore> RequestHandler<CreateOrderCommand> for CreateOrderCommandHandler<S> {
    type Error = BoxError;

    async fn handle(
        &self,
        command: CreateOrderCommand,
        ctx: RequestContext,
    ) -> Result<String, BoxError> {
        let order = OrderCreatedIntegrationEvent {
            order_id: ferry_core::envelope::new_id(),
            customer_email: command.customer_email,
            items: command.items,
        };
        let mut tx = self.store.begin().await?;
        let options: PublishOptions = ctx.publish_options();
        let (message, event_type, key) = encode_event(&order, options, tx.default_source())?;
        tx.add_encoded(message, event_type, key).await?;
        tx.commit().await?;
        Ok(order.order_id)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot reserve {0} of a product")]
pub struct InvalidQuantity(u32);

/// The inventory handler: reserves the order's items (a quantity of 0 is a permanent failure)
/// and emits `StockReserved` in the same transaction.
pub struct InventoryHandler;

impl<T: StoreTransaction> TransactionalHandler<OrderCreatedIntegrationEvent, T>
    for InventoryHandler
{
    async fn handle(
        &self,
        event: OrderCreatedIntegrationEvent,
        cx: &mut TxContext<T>,
    ) -> Result<(), HandlerError> {
        let mut quantity = 0;
        for item in &event.items {
            if item.quantity == 0 {
                return Err(HandlerError::permanent(InvalidQuantity(item.quantity)));
            }
            quantity += item.quantity;
        }
        cx.publish(&StockReserved {
            order_id: event.order_id,
            quantity,
        })
        .await?;
        Ok(())
    }
}

async fn notify(event: StockReserved, _: MessageContext) -> Result<(), HandlerError> {
    tracing::info!(order_id = %event.order_id, "stock reserved");
    Ok(())
}

/// The application's parts, as production runs them.
pub struct App {
    pub host: Host,
    pub mediator: Mediator,
}

/// The application's wiring: production calls it with its `RabbitMq` and `PgOutbox`, the tests
/// with the harness's transport and store.
pub async fn wire<T, S>(transport: &T, store: S, mediator: MediatorBuilder) -> Result<App, BoxError>
where
    T: ConsumerHost + PublishTransport + Clone + 'static,
    S: TransactionalStore + OutboxStore + Inbox + 'static,
{
    let inventory = ConsumerBuilder::new(transport, "inventory.order-created")
        .bind("orders.order.created")
        .retry(RetryPolicy::exponential(3, Duration::from_secs(1)))
        .dead_letter("myapp.dlx")
        .handle_transactional(store.clone(), InventoryHandler)
        .start()
        .await?;
    let notifications = ConsumerBuilder::new(transport, "notifications.stock-reserved")
        .bind("inventory.stock.reserved")
        .dead_letter("myapp.dlx")
        .handle::<StockReserved>(notify)
        .start()
        .await?;
    let dead_letters = ferry_core::DeadLetterConsumerBuilder::new(transport, "myapp.dlq")
        .exchange("myapp.dlx")
        .on_dead_letter(|dead_letter| async move {
            tracing::error!(fault = %dead_letter.fault, "message moved to DLQ");
            Ok(())
        })
        .start()
        .await?;
    let mediator = mediator
        .validate::<CreateOrderCommand>()
        .command(CreateOrderCommandHandler {
            store: store.clone(),
        })
        .build()?;
    let host = Host::new()
        .drain_deadline(Duration::from_secs(10))
        .consumer("inventory", inventory)
        .consumer("notifications", notifications)
        .consumer("dead letters", dead_letters)
        .relay("outbox", OutboxRelay::new(store, transport.clone()));
    Ok(App { host, mediator })
}

pub fn items(quantity: u32) -> Vec<OrderItemDto> {
    vec![OrderItemDto {
        product_id: "book-42".into(),
        quantity,
    }]
}

/// The seed's flow, the same on every backend: an order through the outbox, its stock
/// reserved, the follow-up event handled; an order the inventory refuses dead-lettered; an
/// invalid command refused by the Mediator.
pub async fn seed_flow(harness: &ferry_testing::TestHarness) -> Result<(), BoxError> {
    let app = wire(
        harness.transport(),
        harness.store().clone(),
        harness.mediator_builder(),
    )
    .await?;
    harness.run(app.host);

    let ctx = RequestContext::new().with_correlation_id("checkout-1");
    let command = CreateOrderCommand {
        customer_email: "ada@example.com".into(),
        items: items(2),
    };
    let order_id = app.mediator.send_with(command, ctx).await?;
    let refused = CreateOrderCommand {
        customer_email: "bob@example.com".into(),
        items: items(0),
    };
    let refused_id = app.mediator.send(refused).await?;
    let invalid = CreateOrderCommand {
        customer_email: "nobody".into(),
        items: vec![],
    };
    assert!(app.mediator.send(invalid).await.is_err());

    harness.wait_idle().await?;

    let created = harness.published::<OrderCreatedIntegrationEvent>();
    assert_eq!(created.count(), 2);
    let first = created
        .matching(|p| p.event.order_id == order_id)
        .single()?;
    assert_eq!(
        first.record.envelope.correlation_id.as_deref(),
        Some("checkout-1")
    );

    let consumed = harness.consumed::<OrderCreatedIntegrationEvent>();
    assert_eq!(consumed.single()?.event.order_id, order_id);
    let reserved = harness.published::<StockReserved>().single()?;
    assert_eq!(
        reserved.event,
        StockReserved {
            order_id: order_id.clone(),
            quantity: 2
        }
    );
    // Caused by the order's event, in the same conversation.
    assert_eq!(
        reserved.record.envelope.causation_id.as_deref(),
        Some(first.record.envelope.id.as_str())
    );
    assert_eq!(harness.consumed::<StockReserved>().count(), 1);

    let dead = harness.dead_lettered();
    let dead = dead.single()?;
    assert_eq!(
        dead.event::<OrderCreatedIntegrationEvent>()?.order_id,
        refused_id
    );
    let fault = dead.fault().ok_or("no fault")?;
    assert_eq!(fault.kind, ferry_core::FaultKind::Handler);
    assert!(
        fault.message.contains("cannot reserve 0"),
        "{}",
        fault.message
    );
    assert_eq!(fault.attempts, 1);
    assert!(harness.retried::<OrderCreatedIntegrationEvent>().is_empty());

    let requests = harness.requests::<CreateOrderCommand>();
    assert_eq!(requests.count(), 3);
    assert_eq!(requests.matching(|r| !r.succeeded()).count(), 1);
    Ok(())
}
