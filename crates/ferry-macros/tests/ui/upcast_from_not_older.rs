use serde::{Deserialize, Serialize};

fn up(v: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(v)
}

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "orders.order.created", version = 2, upcast(from = 1, with = up), upcast(from = 2, with = up))]
struct OrderCreated {
    order_id: String,
}

fn main() {}
