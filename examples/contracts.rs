//! Evolving an event: `orders.order.created` goes from version 1 to version 2 with an upcaster,
//! the application's AsyncAPI document describes both versions, and a test compares the
//! document with the baseline committed next to the code (`examples/contracts-baseline.json`,
//! the document as it was when version 1 shipped), so a breaking change fails the build.
//!
//! `cargo run -p ferry --features contracts --example contracts` prints the current document
//! (what you commit as the new baseline once a change is released);
//! `cargo test -p ferry --features contracts --example contracts` runs the gate.

use std::time::Duration;

use ferry::contracts::{AsyncApi, ContractError, Document, JsonSchema};
use ferry::plumbing::ConsumerBuilder;
use ferry::prelude::*;
use serde::{Deserialize, Serialize};

// ## Event versions
/// Version 2 adds the currency; messages of version 1 are upcast on the way in.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, IntegrationEvent)]
#[schemars(crate = "ferry::contracts::schemars")]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 2, upcast(from = 1, with = order_created_v1_to_v2))]
pub struct OrderCreated {
    pub order_id: String,
    pub total_amount: f64,
    pub currency: String,
    /// Optional fields may be added to a version without breaking anyone.
    pub coupon: Option<String>,
}

/// Version 1 as older publishers still send it: the upcaster's input, declared for the
/// document and the gate.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "ferry::contracts::schemars")]
#[serde(rename_all = "camelCase")]
pub struct OrderCreatedV1 {
    pub order_id: String,
    pub total_amount: f64,
}

fn order_created_v1_to_v2(mut v1: serde_json::Value) -> Result<serde_json::Value, String> {
    v1["currency"] = "EUR".into();
    Ok(v1)
}

// ## The document
/// The application's contracts: what it publishes, every version it reads, and its consumers
/// as configured for the broker.
pub fn contracts() -> Result<Document, ContractError> {
    let bus = ferry::memory::MemoryBus::new("myapp.events");
    let inventory = ConsumerBuilder::new(&bus, "inventory.order-created")
        .bind("orders.order.created")
        .retry(RetryPolicy::exponential(3, Duration::from_secs(1)))
        .dead_letter("myapp.dlx")
        .handle_fn::<OrderCreated, _>(|_event, _ctx| async { Ok::<_, HandlerError>(()) });
    AsyncApi::new("orders", "2.0.0")
        .exchange("myapp.events")
        .publishes::<OrderCreated>()
        .previous_version::<OrderCreated, OrderCreatedV1>(1)
        .consumer(inventory.spec())
        .build()
}

// ## The gate in a test
#[cfg(test)]
mod tests {
    use ferry::contracts::{Document, check};

    #[test]
    fn events_stay_compatible_with_the_released_baseline() {
        let baseline = Document::parse(include_str!("contracts-baseline.json")).unwrap();
        let current = super::contracts().unwrap();
        // Err lists each break: "orders.order.created v1 field totalAmount: type changed …"
        check(&baseline, &current).unwrap();
    }
}
// ## End

// A breaking change the gate catches: version 2's `totalAmount` becomes a string.
#[cfg(test)]
mod breaking {
    use ferry::contracts::{AsyncApi, Document, JsonSchema, breaks};
    use ferry::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, JsonSchema, IntegrationEvent)]
    #[schemars(crate = "ferry::contracts::schemars")]
    #[serde(rename_all = "camelCase")]
    #[event(name = "orders.order.created", version = 1)]
    struct OrderCreated {
        order_id: String,
        total_amount: String,
    }

    #[test]
    fn the_gate_names_the_event_version_and_field_of_a_break() {
        let baseline = Document::parse(include_str!("contracts-baseline.json")).unwrap();
        let current = AsyncApi::new("orders", "1.0.1")
            .publishes::<OrderCreated>()
            .build()
            .unwrap();
        let found: Vec<String> = breaks(&baseline, &current)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            ["orders.order.created v1 field totalAmount: type changed from number to string"]
        );
    }
}

fn main() -> Result<(), ContractError> {
    println!("{}", contracts()?.to_json_pretty());
    Ok(())
}
