use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "orders.order.created")]
#[event(name = "orders.order.placed")]
struct OrderCreated {
    order_id: String,
}

fn main() {}
