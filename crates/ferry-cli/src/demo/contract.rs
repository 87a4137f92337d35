//! The demo's event contracts: its AsyncAPI document (`ferry demo --print-asyncapi`), built
//! from the same consumer configuration as the run.

use std::time::Duration;

use ferry::{
    HandlerError, MessageContext, RetryPolicy,
    contracts::{AsyncApi, ContractError, Document},
    memory::MemoryBus,
};

use super::{
    events::{OrderCreated, StockReserved},
    scenario::{inventory_consumer, orders_consumer},
};

/// The demo's AsyncAPI document: the orders context publishes `orders.order.created`, the
/// inventory context consumes it and publishes `inventory.stock.reserved`, which the orders
/// context consumes; both consumers retry 3 times and dead-letter to `myapp.dlx`.
pub fn document(exchange: &str, retry_delay: Duration) -> Result<Document, ContractError> {
    // The specs are only read, never started, so an in-memory host builds them; the handlers
    // stand for the demo's (a transactional one for the inventory) to register the event types.
    let bus = MemoryBus::new(exchange);
    let retry = RetryPolicy::exponential(3, retry_delay);
    let inventory = inventory_consumer(&bus, retry).handle_fn::<OrderCreated, _>(unused_handler);
    let orders = orders_consumer(&bus, retry).handle_fn::<StockReserved, _>(unused_handler);
    AsyncApi::new("ferry demo", env!("CARGO_PKG_VERSION"))
        .description(
            "The seed's scenario: orders → outbox → relay → inventory → orders, with retries \
             and dead letters (docs/command.md).",
        )
        .exchange(exchange)
        .publishes::<OrderCreated>()
        .publishes::<StockReserved>()
        .consumer(inventory.spec())
        .consumer(orders.spec())
        .build()
}

async fn unused_handler<E>(_: E, _: MessageContext) -> Result<(), HandlerError> {
    Ok(())
}
