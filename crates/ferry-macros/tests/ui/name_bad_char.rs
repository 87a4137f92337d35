use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "orders.order_line.created", version = 1)]
struct OrderLineCreated {
    order_id: String,
}

fn main() {}
