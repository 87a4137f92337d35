//! What `#[derive(IntegrationEvent)]` generates, checked by value.

use ferry_core::IntegrationEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "orders.order.created")]
struct Defaults {
    order_id: String,
}

#[test]
fn version_defaults_to_one_and_there_are_no_upcasters() {
    assert_eq!(Defaults::NAME, "orders.order.created");
    assert_eq!(Defaults::VERSION, 1);
    assert!(Defaults::UPCASTERS.is_empty());
}

fn v1_to_v2(mut v: Value) -> Result<Value, String> {
    let total = v.get("total").cloned().ok_or("v1 has no `total`")?;
    v["totalAmount"] = total;
    Ok(v)
}

mod upcasting {
    use serde_json::Value;

    pub fn v2_to_v3(mut v: Value) -> Result<Value, String> {
        v["currency"] = "EUR".into();
        Ok(v)
    }
}

// Declared out of order and across two attributes: the constant is sorted by `from`.
#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "billing-v2.invoice.paid-in-full", version = 3)]
#[event(upcast(from = 2, with = upcasting::v2_to_v3), upcast(from = 1, with = v1_to_v2))]
struct InvoicePaid {
    total_amount: f64,
    currency: String,
}

#[test]
fn upcasters_are_listed_in_order_and_chain() {
    assert_eq!(InvoicePaid::NAME, "billing-v2.invoice.paid-in-full");
    assert_eq!(InvoicePaid::VERSION, 3);
    let froms: Vec<u32> = InvoicePaid::UPCASTERS.iter().map(|u| u.from).collect();
    assert_eq!(froms, [1, 2]);

    let mut value = json!({ "total": 12.5 });
    for upcaster in InvoicePaid::UPCASTERS {
        value = (upcaster.apply)(value).unwrap();
    }
    let event: InvoicePaid = serde_json::from_value(value).unwrap();
    assert_eq!(event.total_amount, 12.5);
    assert_eq!(event.currency, "EUR");

    let err = (InvoicePaid::UPCASTERS[0].apply)(json!({})).unwrap_err();
    assert_eq!(err, "v1 has no `total`");
}

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "shipping.parcel.moved", version = 2, upcast(from = 1, with = |v| Ok(v)))]
#[serde(bound = "T: Serialize + serde::de::DeserializeOwned")]
struct Generic<T: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static> {
    payload: T,
}

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "catalog.product.changed", version = 7)]
enum ProductChanged {
    Renamed { name: String },
    Repriced { price: u64 },
}

#[test]
fn generics_enums_and_closures_work() {
    assert_eq!(
        <Generic<u8> as IntegrationEvent>::NAME,
        "shipping.parcel.moved"
    );
    assert_eq!(<Generic<String> as IntegrationEvent>::VERSION, 2);
    assert_eq!(
        (Generic::<u8>::UPCASTERS[0].apply)(json!(1)).unwrap(),
        json!(1)
    );
    assert_eq!(ProductChanged::NAME, "catalog.product.changed");
    assert_eq!(ProductChanged::VERSION, 7);
}

/// A stand-in for the `ferry` facade: re-exports the core at its root.
mod facade {
    pub use ferry_core::*;
}

#[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(crate = "crate::facade", name = "orders.order.cancelled", version = 2, upcast(from = 1, with = v1_to_v2))]
struct ThroughTheFacade {
    order_id: String,
}

#[test]
fn the_crate_path_can_be_given() {
    assert_eq!(ThroughTheFacade::NAME, "orders.order.cancelled");
    assert_eq!(<ThroughTheFacade as facade::IntegrationEvent>::VERSION, 2);
}
