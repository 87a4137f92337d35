use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "orders.created", version = 1)]
struct OrderCreated {
    order_id: String,
}

fn main() {}
