//! The compatibility gate: each kind of break is found and named (event, version, field), and
//! each allowed change passes. Every case builds two documents from two Rust types of one event,
//! as an application's baseline and its next release would.

use ferry_contracts::{AsyncApi, CheckError, Document, JsonSchema, breaks, check};
use serde::{Deserialize, Serialize};

/// Declares `mod $m { struct OrderCreated { .. } }`: one release's version of the event.
macro_rules! release {
    ($m:ident, version = $v:literal $(, upcast = $up:literal)? { $($body:tt)* } $($extra:item)*) => {
        mod $m {
            #[allow(unused_imports)]
            use super::*;
            #[derive(Serialize, Deserialize, JsonSchema, ferry_macros::IntegrationEvent)]
            #[serde(rename_all = "camelCase")]
            #[event(name = "orders.order.created", version = $v $(, upcast(from = $up, with = super::identity))?)]
            pub struct OrderCreated { $($body)* }
            $($extra)*
        }
    };
}

#[allow(dead_code)]
fn identity(v: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(v)
}

fn doc<E: ferry_core::IntegrationEvent + JsonSchema>() -> Document {
    AsyncApi::new("orders", "1")
        .publishes::<E>()
        .build()
        .unwrap()
}

fn lines(baseline: &Document, current: &Document) -> Vec<String> {
    breaks(baseline, current)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    product_id: String,
    quantity: i32,
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Pending,
    Confirmed,
    Cancelled,
}

release!(base, version = 1 {
    order_id: String,
    total_amount: f64,
    note: Option<String>,
    status: Status,
    items: Vec<Item>,
});

#[test]
fn the_same_types_are_compatible() {
    assert_eq!(
        lines(&doc::<base::OrderCreated>(), &doc::<base::OrderCreated>()),
        Vec::<String>::new()
    );
    check(&doc::<base::OrderCreated>(), &doc::<base::OrderCreated>()).unwrap();
}

release!(optional_added, version = 1 {
    order_id: String, total_amount: f64, note: Option<String>, status: Status, items: Vec<Item>,
    coupon: Option<String>,
});

#[test]
fn an_optional_field_added_passes() {
    assert_eq!(
        lines(
            &doc::<base::OrderCreated>(),
            &doc::<optional_added::OrderCreated>()
        ),
        Vec::<String>::new()
    );
}

release!(optional_removed, version = 1 {
    order_id: String, total_amount: f64, status: Status, items: Vec<Item>,
});

#[test]
fn an_optional_field_removed_passes() {
    assert_eq!(
        lines(
            &doc::<base::OrderCreated>(),
            &doc::<optional_removed::OrderCreated>()
        ),
        Vec::<String>::new()
    );
}

release!(required_removed, version = 1 {
    order_id: String, note: Option<String>, status: Status, items: Vec<Item>,
});

#[test]
fn a_required_field_removed_breaks() {
    assert_eq!(
        lines(
            &doc::<base::OrderCreated>(),
            &doc::<required_removed::OrderCreated>()
        ),
        ["orders.order.created v1 field totalAmount: required field removed or renamed"]
    );
}

release!(required_renamed, version = 1 {
    order_id: String, amount: f64, note: Option<String>, status: Status, items: Vec<Item>,
});

#[test]
fn a_required_field_renamed_breaks_on_the_old_name_and_the_new() {
    assert_eq!(
        lines(
            &doc::<base::OrderCreated>(),
            &doc::<required_renamed::OrderCreated>()
        ),
        [
            "orders.order.created v1 field totalAmount: required field removed or renamed",
            "orders.order.created v1 field amount: required field added (add it as optional)",
        ]
    );
}

release!(type_changed, version = 1 {
    order_id: String, total_amount: String, note: Option<String>, status: Status, items: Vec<Item>,
});

#[test]
fn a_type_changed_breaks() {
    assert_eq!(
        lines(
            &doc::<base::OrderCreated>(),
            &doc::<type_changed::OrderCreated>()
        ),
        ["orders.order.created v1 field totalAmount: type changed from number to string"]
    );
}

release!(nested_type_changed, version = 1 {
    order_id: String, total_amount: f64, note: Option<String>, status: Status, items: Vec<ItemV2>,
} #[derive(Serialize, Deserialize, JsonSchema)]
  #[serde(rename_all = "camelCase")]
  pub struct ItemV2 { product_id: String, quantity: String });

#[test]
fn a_type_changed_inside_a_list_breaks_naming_its_path() {
    assert_eq!(
        lines(
            &doc::<base::OrderCreated>(),
            &doc::<nested_type_changed::OrderCreated>()
        ),
        ["orders.order.created v1 field items[].quantity: type changed from integer to string"]
    );
}

release!(enum_narrowed, version = 1 {
    order_id: String, total_amount: f64, note: Option<String>, status: Narrow, items: Vec<Item>,
} #[derive(Serialize, Deserialize, JsonSchema)]
  #[serde(rename_all = "camelCase")]
  pub enum Narrow { Pending, Confirmed });

#[test]
fn an_enum_narrowed_breaks() {
    assert_eq!(
        lines(
            &doc::<base::OrderCreated>(),
            &doc::<enum_narrowed::OrderCreated>()
        ),
        ["orders.order.created v1 field status: enum narrowed: \"cancelled\" no longer allowed"]
    );
}

release!(enum_widened, version = 1 {
    order_id: String, total_amount: f64, note: Option<String>, status: Wide, items: Vec<Item>,
} #[derive(Serialize, Deserialize, JsonSchema)]
  #[serde(rename_all = "camelCase")]
  pub enum Wide { Pending, Confirmed, Cancelled, Refunded });

#[test]
fn an_enum_widened_passes() {
    assert_eq!(
        lines(
            &doc::<base::OrderCreated>(),
            &doc::<enum_widened::OrderCreated>()
        ),
        Vec::<String>::new()
    );
}

release!(made_required, version = 1 {
    order_id: String, total_amount: f64, note: String, status: Status, items: Vec<Item>,
});

#[test]
fn a_field_made_required_breaks() {
    assert_eq!(
        lines(
            &doc::<base::OrderCreated>(),
            &doc::<made_required::OrderCreated>()
        ),
        ["orders.order.created v1 field note: field made required"]
    );
}

release!(v2_with_upcaster, version = 2, upcast = 1 {
    order_id: String, total_amount: f64, currency: String,
});
release!(v2_without_upcaster, version = 2 {
    order_id: String, total_amount: f64, currency: String,
});

#[test]
fn a_new_version_passes_with_an_upcaster_and_its_previous_version_declared() {
    let current = AsyncApi::new("orders", "2")
        .publishes::<v2_with_upcaster::OrderCreated>()
        .previous_version::<v2_with_upcaster::OrderCreated, base::OrderCreated>(1)
        .build()
        .unwrap();
    assert_eq!(
        lines(&doc::<base::OrderCreated>(), &current),
        Vec::<String>::new()
    );
}

#[test]
fn a_new_version_without_an_upcaster_breaks() {
    let current = AsyncApi::new("orders", "2")
        .publishes::<v2_without_upcaster::OrderCreated>()
        .previous_version::<v2_without_upcaster::OrderCreated, base::OrderCreated>(1)
        .build()
        .unwrap();
    assert_eq!(
        lines(&doc::<base::OrderCreated>(), &current),
        ["orders.order.created v2 field -: new version without an upcaster from version 1"]
    );
}

#[test]
fn a_new_version_that_drops_the_previous_one_breaks() {
    // The builder refuses an upcaster without its source's schema; a document edited by
    // hand (or from another tool) can still lack it.
    let mut current = AsyncApi::new("orders", "2")
        .publishes::<v2_with_upcaster::OrderCreated>()
        .previous_version::<v2_with_upcaster::OrderCreated, base::OrderCreated>(1)
        .build()
        .unwrap()
        .into_value();
    let messages = current["components"]["messages"].as_object_mut().unwrap();
    messages.remove("orders.order.created.v1").unwrap();
    let current = Document::from_value(current).unwrap();
    assert_eq!(
        lines(&doc::<base::OrderCreated>(), &current),
        [
            "orders.order.created v1 field -: version no longer described (declare its schema with previous_version, and keep its upcaster)"
        ]
    );
}

#[test]
fn a_previous_version_changed_incompatibly_breaks_on_that_version() {
    let current = AsyncApi::new("orders", "2")
        .publishes::<v2_with_upcaster::OrderCreated>()
        .previous_version::<v2_with_upcaster::OrderCreated, type_changed::OrderCreated>(1)
        .build()
        .unwrap();
    assert_eq!(
        lines(&doc::<base::OrderCreated>(), &current),
        ["orders.order.created v1 field totalAmount: type changed from number to string"]
    );
}

mod other {
    use super::*;
    #[derive(Serialize, Deserialize, JsonSchema, ferry_macros::IntegrationEvent)]
    #[event(name = "orders.order.shipped")]
    pub struct OrderShipped {
        pub order_id: String,
    }
}

#[test]
fn a_new_event_passes() {
    let current = AsyncApi::new("orders", "2")
        .publishes::<base::OrderCreated>()
        .publishes::<other::OrderShipped>()
        .build()
        .unwrap();
    assert_eq!(
        lines(&doc::<base::OrderCreated>(), &current),
        Vec::<String>::new()
    );
}

#[test]
fn check_returns_every_break_and_round_trips_through_json() {
    let baseline = Document::parse(&doc::<base::OrderCreated>().to_json_pretty()).unwrap();
    let error = check(&baseline, &doc::<required_removed::OrderCreated>()).unwrap_err();
    let CheckError::Incompatible(incompatible) = error else {
        panic!("expected breaks, got {error}");
    };
    assert_eq!(incompatible.0.len(), 1);
    assert_eq!(incompatible.0[0].event, "orders.order.created");
    assert_eq!(incompatible.0[0].version, 1);
    assert_eq!(incompatible.0[0].field, "totalAmount");
}

#[test]
fn documents_that_are_not_ferry_asyncapi_are_refused() {
    for text in [
        "not json",
        "{}",
        r#"{"asyncapi":"2.6.0"}"#,
        r#"{"asyncapi":"3.0.0"}"#,
    ] {
        assert!(Document::parse(text).is_err(), "{text}");
    }
    let bad_event = r#"{"asyncapi":"3.0.0","components":{"messages":{"m":{"x-ferry-event":{"name":"a.b.c"}}}}}"#;
    let error = Document::parse(bad_event).unwrap_err().to_string();
    assert!(error.contains("version"), "{error}");
}

#[test]
fn an_upcaster_removed_breaks() {
    let with = AsyncApi::new("orders", "2")
        .publishes::<v2_with_upcaster::OrderCreated>()
        .previous_version::<v2_with_upcaster::OrderCreated, base::OrderCreated>(1)
        .build()
        .unwrap();
    let without = AsyncApi::new("orders", "3")
        .publishes::<v2_without_upcaster::OrderCreated>()
        .previous_version::<v2_without_upcaster::OrderCreated, base::OrderCreated>(1)
        .build()
        .unwrap();
    assert_eq!(
        lines(&with, &without),
        ["orders.order.created v1 field -: upcaster from version 1 removed"]
    );
    assert_eq!(lines(&with, &with), Vec::<String>::new());
}

release!(with_maps, version = 1 {
    order_id: String, total_amount: f64, note: Option<String>, status: Status, items: Vec<Item>,
    prices: std::collections::HashMap<String, i64>,
    shipping: Option<Item>,
});
release!(maps_changed, version = 1 {
    order_id: String, total_amount: f64, note: Option<String>, status: Status, items: Vec<Item>,
    prices: std::collections::HashMap<String, String>,
    shipping: Option<ItemV2>,
} #[derive(Serialize, Deserialize, JsonSchema)]
  #[serde(rename_all = "camelCase")]
  pub struct ItemV2 { product_id: String, quantity: bool });

#[test]
fn changes_inside_maps_and_optional_objects_are_named_by_path() {
    assert_eq!(
        lines(
            &doc::<with_maps::OrderCreated>(),
            &doc::<maps_changed::OrderCreated>()
        ),
        [
            "orders.order.created v1 field prices{}: type changed from integer to string",
            "orders.order.created v1 field shipping.quantity: type changed from integer to boolean",
        ]
    );
    assert_eq!(
        lines(
            &doc::<with_maps::OrderCreated>(),
            &doc::<with_maps::OrderCreated>()
        ),
        Vec::<String>::new()
    );
}

#[test]
fn an_upcaster_without_its_source_schema_is_refused_by_the_builder() {
    let error = AsyncApi::new("orders", "2")
        .publishes::<v2_with_upcaster::OrderCreated>()
        .build()
        .unwrap_err();
    assert!(
        matches!(
            error,
            ferry_contracts::ContractError::UndeclaredSource { from: 1, .. }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("previous_version"), "{error}");
}
