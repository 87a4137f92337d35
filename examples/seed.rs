//! The seed page ("Integration Events via RabbitMQ") walked through in Rust, section by section,
//! and run end to end against RabbitMQ and an embedded SQLite database:
//!
//! ```sh
//! cargo run --example seed
//! ```
//!
//! The README quotes this file; a test checks that every Rust block of the README appears here
//! word for word, so what the README shows is what CI compiles.

use std::time::Duration;

use ferry::{
    CancellationToken, ConsumerHandle, HandlerError, IntegrationEvent, OutboxRelay, PublishError,
    PublishOptions, RetryPolicy,
    host::{Host, shutdown_signal},
    mediator::{
        Mediator, Request, RequestContext, RequestHandler, TracingBehavior, Validate,
        ValidationErrors,
    },
    rabbitmq::{ExchangeKind, RabbitMq, RabbitMqError, RabbitMqOptions},
    sqlite::{
        OutboxTransaction, SqliteOutbox,
        sqlx::{self, SqlitePool},
    },
    transactional::{TransactionalHandler, TxContext},
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

// ## Event definition

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
    pub total_amount: f64,
    pub items: Vec<OrderItemDto>,
}

// ## Service registration

pub async fn connect_rabbitmq() -> Result<RabbitMq, RabbitMqError> {
    let options = RabbitMqOptions::new("amqp://guest:guest@localhost:5672/%2f")
        .with_exchange("myapp.events")
        .with_exchange_kind(ExchangeKind::Topic);
    RabbitMq::connect(options).await
}

pub async fn open_outbox(pool: &SqlitePool) -> Result<SqliteOutbox, ferry::sqlite::MigrateError> {
    // ferry's own tables (outbox, inbox) and migration history
    ferry::sqlite::migrate(pool).await?;
    Ok(SqliteOutbox::new(pool.clone()))
}

// ## Publishing integration events: the command

pub struct CreateOrderCommand {
    pub customer_email: String,
    pub items: Vec<OrderItemDto>,
}

impl Request for CreateOrderCommand {
    type Output = String; // the new order's id
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

fn new_order(command: CreateOrderCommand) -> OrderCreatedIntegrationEvent {
    let total_amount = command
        .items
        .iter()
        .map(|i| f64::from(i.quantity) * 9.95)
        .sum();
    OrderCreatedIntegrationEvent {
        order_id: ferry::envelope::new_id(),
        customer_email: command.customer_email,
        total_amount,
        items: command.items,
    }
}

// ### Direct publishing

pub struct DirectCreateOrderHandler {
    publisher: RabbitMq,
}

impl RequestHandler<CreateOrderCommand> for DirectCreateOrderHandler {
    type Error = PublishError;

    async fn handle(
        &self,
        command: CreateOrderCommand,
        ctx: RequestContext,
    ) -> Result<String, PublishError> {
        let order = new_order(command);
        // Returns once the broker has confirmed the event; the command's correlation id goes with it.
        self.publisher
            .publish_with(&order, ctx.publish_options())
            .await?;
        Ok(order.order_id)
    }
}

// ### Publishing via outbox (recommended)

pub struct CreateOrderCommandHandler {
    pool: SqlitePool,
    outbox: SqliteOutbox,
}

impl RequestHandler<CreateOrderCommand> for CreateOrderCommandHandler {
    type Error = Box<dyn std::error::Error + Send + Sync>;

    async fn handle(
        &self,
        command: CreateOrderCommand,
        ctx: RequestContext,
    ) -> Result<String, Self::Error> {
        let order = new_order(command);
        // The outbox's view of the transaction: once it commits, the relay is told at once.
        let mut tx = self.outbox.transaction(self.pool.begin().await?);
        sqlx::query(
            "INSERT INTO seed_orders (id, customer_email, total_amount) VALUES ($1, $2, $3)",
        )
        .bind(&order.order_id)
        .bind(&order.customer_email)
        .bind(order.total_amount)
        .execute(tx.db())
        .await?;
        // Add to outbox (same transaction)
        tx.add_with(&order, ctx.publish_options()).await?;
        // Save everything atomically
        tx.commit().await?;
        Ok(order.order_id)
    }
}

// ### Mediator registration

pub fn build_mediator(
    pool: SqlitePool,
    outbox: SqliteOutbox,
) -> Result<Mediator, ferry::MediatorError> {
    Mediator::builder()
        .behavior(TracingBehavior) // a span per request
        .validate::<CreateOrderCommand>() // an invalid command never reaches its handler
        .command(CreateOrderCommandHandler { pool, outbox }) // a second handler would fail `build`
        .build()
}

// ## Outbox processor

pub fn outbox_relay(
    outbox: SqliteOutbox,
    publisher: RabbitMq,
) -> OutboxRelay<SqliteOutbox, RabbitMq> {
    // Woken when rows are added; polls every second as a fallback; safe with many instances.
    // The host below runs it (and stops it) with the consumers.
    OutboxRelay::new(outbox, publisher)
}

// ## Consuming integration events: the consumer handler

pub struct OrderCreatedIntegrationEventHandler {
    handled: mpsc::UnboundedSender<String>,
}

/// Runs inside the transaction ferry began for the message: the inbox row is already in it, and
/// ferry commits when this returns `Ok`, or rolls everything back when it fails.
impl TransactionalHandler<OrderCreatedIntegrationEvent, OutboxTransaction>
    for OrderCreatedIntegrationEventHandler
{
    async fn handle(
        &self,
        event: OrderCreatedIntegrationEvent,
        cx: &mut TxContext<OutboxTransaction>,
    ) -> Result<(), HandlerError> {
        tracing::info!(order_id = %event.order_id, "processing OrderCreated");
        for item in &event.items {
            sqlx::query("INSERT INTO seed_reservations (order_id, product_id, quantity) VALUES ($1, $2, $3)")
                .bind(&event.order_id)
                .bind(&item.product_id)
                .bind(i64::from(item.quantity))
                .execute(cx.db())
                .await?;
        }
        // An event emitted here (`cx.publish(&event)`) would go to the outbox in the same
        // transaction, caused by this message.
        tracing::info!(email = %event.customer_email, "Your order {} has been confirmed.", event.order_id);
        let _ = self.handled.send(event.order_id);
        Ok(())
    }
}

// ## Consumer configuration, retry policy and dead-letter exchange

pub async fn start_inventory_consumer(
    bus: &RabbitMq,
    outbox: SqliteOutbox,
    handler: OrderCreatedIntegrationEventHandler,
) -> Result<ferry::ConsumerHandle, RabbitMqError> {
    bus.consumer("inventory.order-created")
        .bind("orders.order.created")
        .prefetch(10)
        .retry(RetryPolicy::exponential(3, Duration::from_secs(1))) // 1 s, 2 s, 4 s
        .dead_letter("myapp.dlx")
        // Exactly once in effect: the inbox row, the handler's writes and its follow-up events
        // commit together, or none do.
        .handle_transactional(outbox, handler)
        .start()
        .await
}

// ## Dead letter queue

pub async fn start_dead_letter_consumer(
    bus: &RabbitMq,
) -> Result<ferry::ConsumerHandle, RabbitMqError> {
    bus.dead_letter_consumer("myapp.dlq")
        .exchange("myapp.dlx")
        .on_dead_letter(|dead_letter| async move {
            tracing::error!(
                message_id = ?dead_letter.message_id(),
                fault = %dead_letter.fault,
                "message moved to DLQ"
            );
            Ok(())
        })
        .start()
        .await
}

// ## Routing keys

pub async fn publish_with_routing_key(
    bus: &RabbitMq,
    event: &OrderCreatedIntegrationEvent,
) -> Result<String, PublishError> {
    let options = PublishOptions {
        routing_key: Some("orders.order.created".into()),
        ..PublishOptions::default()
    };
    bus.publish_with(event, options).await
}

// ## Lifecycle

/// One lifecycle for the consumers and the relay: `host.run(shutdown_signal())` runs them until
/// Ctrl-C or SIGTERM, then stops them together: consumers first (their handlers finish), then
/// the relay, all within the drain deadline; work still in flight then goes back to the broker,
/// never lost.
pub fn host(
    bus: &RabbitMq,
    outbox: SqliteOutbox,
    inventory: ConsumerHandle,
    dlq: ConsumerHandle,
) -> Host {
    Host::new()
        .drain_deadline(Duration::from_secs(10))
        .consumer("inventory", inventory)
        .consumer("dead letters", dlq)
        .relay("outbox", outbox_relay(outbox, bus.clone()))
        .health_source(bus.clone()) // `host.health().report()`: each part, and the connection
}

// ## Running it

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("info,lapin=warn")
        .init();
    let bus = connect_rabbitmq().await?;
    let file = std::env::temp_dir().join(format!("ferry-seed-{}.sqlite", std::process::id()));
    let pool = SqlitePool::connect(&format!("sqlite://{}?mode=rwc", file.display())).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS seed_orders (id TEXT PRIMARY KEY, customer_email TEXT, total_amount REAL)").execute(&pool).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS seed_reservations (order_id TEXT, product_id TEXT, quantity INTEGER)").execute(&pool).await?;
    let outbox = open_outbox(&pool).await?;

    let (handled_tx, mut handled) = mpsc::unbounded_channel();
    let dlq = start_dead_letter_consumer(&bus).await?;
    let inventory = start_inventory_consumer(
        &bus,
        outbox.clone(),
        OrderCreatedIntegrationEventHandler {
            handled: handled_tx,
        },
    )
    .await?;
    let host = host(&bus, outbox.clone(), inventory, dlq);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(host.run(shutdown.clone().cancelled_owned()));

    // Through the outbox (the recommended way) …
    let mediator = build_mediator(pool.clone(), outbox)?;
    let items = vec![OrderItemDto {
        product_id: "book-42".into(),
        quantity: 2,
    }];
    let ctx = RequestContext::new().with_correlation_id("checkout-1");
    let first = mediator
        .send_with(
            CreateOrderCommand {
                customer_email: "ada@example.com".into(),
                items: items.clone(),
            },
            ctx,
        )
        .await?;
    // … and directly.
    let direct = Mediator::builder()
        .command(DirectCreateOrderHandler {
            publisher: bus.clone(),
        })
        .build()?;
    let second = direct
        .send(CreateOrderCommand {
            customer_email: "grace@example.com".into(),
            items,
        })
        .await?;
    // An invalid command never reaches its handler.
    let invalid = mediator
        .send(CreateOrderCommand {
            customer_email: "nobody".into(),
            items: vec![],
        })
        .await;
    assert!(invalid.is_err());

    // Wait for both orders (another app's orders on the same queue are handled too), or Ctrl-C.
    let mut pending = vec![first, second];
    let handled_orders = pending.join(" and ");
    let wait = async {
        while !pending.is_empty() {
            match tokio::time::timeout(Duration::from_secs(10), handled.recv()).await {
                Ok(Some(order_id)) => pending.retain(|id| *id != order_id),
                _ => return Err("the orders were not handled within 10 s"),
            }
        }
        Ok(())
    };
    let outcome = tokio::select! {
        done = wait => done.map(|()| true),
        () = shutdown_signal() => Ok(false),
    };
    shutdown.cancel();
    let stopped = running.await??;
    if outcome? {
        println!("handled orders {handled_orders}");
    }
    for part in stopped.abandoned() {
        tracing::warn!(part = %part.name, "abandoned at the drain deadline");
    }
    bus.close().await;
    pool.close().await;
    let _ = std::fs::remove_file(&file);
    Ok(())
}
