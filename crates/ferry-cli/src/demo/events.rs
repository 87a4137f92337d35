//! The demo's integration events, as the seed defines them (camelCase JSON).

use ferry::IntegrationEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One line of an order: the seed's `OrderItemDto`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemDto {
    /// The product.
    pub product_id: String,
    /// How many.
    pub quantity: i32,
}

/// The seed's `OrderCreatedIntegrationEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 1)]
pub struct OrderCreated {
    /// The order.
    pub order_id: String,
    /// The order's number in this demo run (what `--seed` failure decisions hash).
    pub order_number: u64,
    /// Who ordered.
    pub customer_email: String,
    /// The total.
    pub total_amount: f64,
    /// What was ordered.
    pub items: Vec<OrderItemDto>,
}

/// The inventory context's answer: the stock for an order is reserved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "inventory.stock.reserved", version = 1)]
pub struct StockReserved {
    /// The order.
    pub order_id: String,
    /// What was reserved.
    pub items: Vec<OrderItemDto>,
}
