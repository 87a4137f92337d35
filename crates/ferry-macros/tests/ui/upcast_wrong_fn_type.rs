use serde::{Deserialize, Serialize};

fn up(v: String) -> String {
    v
}

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "orders.order.created", version = 2, upcast(from = 1, with = up))]
struct OrderCreated {
    order_id: String,
}

fn main() {}
