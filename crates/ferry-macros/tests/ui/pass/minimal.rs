use ferry_core::IntegrationEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "orders.order.created")]
struct OrderCreated {
    order_id: String,
}

fn main() {
    assert_eq!(OrderCreated::NAME, "orders.order.created");
    assert_eq!(OrderCreated::VERSION, 1);
}
