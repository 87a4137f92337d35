use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "orders.order.created", version = 2, upcast(from = 1))]
struct OrderCreated {
    order_id: String,
}

fn main() {}
