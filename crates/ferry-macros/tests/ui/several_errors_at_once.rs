use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "Orders.created", version = 0)]
struct OrderCreated {
    order_id: String,
}

fn main() {}
