use ferry_core::IntegrationEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn v1_to_v2(v: Value) -> Result<Value, String> {
    Ok(v)
}

mod upcasts {
    pub fn v2_to_v3(v: serde_json::Value) -> Result<serde_json::Value, String> {
        Ok(v)
    }
}

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(
    name = "orders-2.order-line.created-3",
    version = 3,
    upcast(from = 1, with = v1_to_v2),
    upcast(from = 2, with = upcasts::v2_to_v3),
)]
struct OrderLineCreated {
    order_id: String,
}

fn main() {
    assert_eq!(OrderLineCreated::VERSION, 3);
    assert_eq!(OrderLineCreated::UPCASTERS.len(), 2);
}
