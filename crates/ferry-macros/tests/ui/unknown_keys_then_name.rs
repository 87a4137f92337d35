use serde::{Deserialize, Serialize};

// Every unknown key is reported, and the keys after them are still read (no "missing name").
#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(
    topic = "orders",
    retry(max = 3),
    name = "orders.order.created",
    version = 1
)]
struct OrderCreated {
    order_id: String,
}

fn main() {}
