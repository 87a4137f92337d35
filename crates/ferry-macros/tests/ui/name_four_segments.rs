use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "shop.orders.order.created")]
struct OrderCreated {
    order_id: String,
}

fn main() {}
