use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(version = 2)]
struct OrderCreated {
    order_id: String,
}

fn main() {}
