// The facade case: the traits are reached through another crate's root re-export.
extern crate ferry_core as facade;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(crate = "::facade", name = "orders.order.created", version = 2)]
struct OrderCreated {
    order_id: String,
}

fn main() {
    assert_eq!(<OrderCreated as facade::IntegrationEvent>::VERSION, 2);
}
