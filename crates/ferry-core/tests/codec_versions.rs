//! Schema versions: newer versions refused, older ones upcast (v1 → v2 → v3), unknown fields
//! ignored, and every failure a fault of the right kind.

use bytes::Bytes;
use ferry_core::{
    Envelope, FaultKind, IntegrationEvent, Upcaster,
    codec::{self, DecodeError, Decoded},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Version 3 of a customer event. v1 had `name`; v2 split it into `firstName`/`lastName`;
/// v3 added `tier` (default "standard").
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomerRegistered {
    first_name: String,
    last_name: String,
    tier: String,
}

fn v1_to_v2(mut value: Value) -> Result<Value, String> {
    let object = value
        .as_object_mut()
        .ok_or("version 1 data must be an object")?;
    let name = object
        .remove("name")
        .and_then(|n| n.as_str().map(str::to_owned))
        .ok_or("version 1 data has no `name` string")?;
    let (first, last) = name.split_once(' ').unwrap_or((name.as_str(), ""));
    object.insert("firstName".into(), json!(first));
    object.insert("lastName".into(), json!(last));
    Ok(value)
}

fn v2_to_v3(mut value: Value) -> Result<Value, String> {
    let object = value
        .as_object_mut()
        .ok_or("version 2 data must be an object")?;
    object.entry("tier").or_insert_with(|| json!("standard"));
    Ok(value)
}

impl IntegrationEvent for CustomerRegistered {
    const NAME: &'static str = "crm.customer.registered";
    const VERSION: u32 = 3;
    // Deliberately out of order: the chain is found by `from`, not by position.
    const UPCASTERS: &'static [Upcaster] = &[
        Upcaster {
            from: 2,
            apply: v2_to_v3,
        },
        Upcaster {
            from: 1,
            apply: v1_to_v2,
        },
    ];
}

/// The same event with a gap: only the v2 → v3 step is registered.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomerRegisteredWithGap {
    first_name: String,
    last_name: String,
    tier: String,
}

impl IntegrationEvent for CustomerRegisteredWithGap {
    const NAME: &'static str = "crm.customer.registered";
    const VERSION: u32 = 3;
    const UPCASTERS: &'static [Upcaster] = &[Upcaster {
        from: 2,
        apply: v2_to_v3,
    }];
}

/// A simple event through the derive macro: version 1, no upcasters.
#[derive(Debug, PartialEq, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 1)]
struct OrderCreated {
    order_id: String,
}

fn decoded(event_type: &str, version: u32, data: Value) -> Decoded {
    let envelope = Envelope::new(event_type).with_event_version(version);
    // Through the wire and back, as a consumer would see it.
    let message = codec::encode_data(&envelope, Bytes::from(data.to_string()));
    codec::decode(&message).unwrap()
}

fn customer(version: u32, data: Value) -> Result<CustomerRegistered, DecodeError> {
    codec::decode_event::<CustomerRegistered>(&decoded(CustomerRegistered::NAME, version, data))
}

fn expected(tier: &str) -> CustomerRegistered {
    CustomerRegistered {
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        tier: tier.into(),
    }
}

#[test]
fn the_current_version_is_read_directly() {
    let event = customer(
        3,
        json!({"firstName": "Ada", "lastName": "Lovelace", "tier": "gold"}),
    )
    .unwrap();
    assert_eq!(event, expected("gold"));
}

#[test]
fn version_1_is_upcast_through_2_to_3() {
    let event = customer(1, json!({"name": "Ada Lovelace"})).unwrap();
    assert_eq!(event, expected("standard"));
}

#[test]
fn version_2_runs_only_the_last_step() {
    // v1_to_v2 would fail on this data (no `name`): it must not run.
    let event = customer(
        2,
        json!({"firstName": "Ada", "lastName": "Lovelace", "tier": "gold"}),
    )
    .unwrap();
    assert_eq!(event, expected("gold"));
}

#[test]
fn a_newer_version_is_unsupported_and_the_message_names_both_versions() {
    let e = customer(4, json!({"firstName": "Ada", "lastName": "L", "tier": "t"})).unwrap_err();
    assert_eq!(e.kind, FaultKind::UnsupportedVersion);
    assert!(e.message.contains("version 4"), "{e}");
    assert!(e.message.contains("version 3"), "{e}");
    assert!(e.message.contains("crm.customer.registered"), "{e}");
}

#[test]
fn a_missing_upcaster_is_unsupported_and_names_the_missing_step() {
    let e = codec::decode_event::<CustomerRegisteredWithGap>(&decoded(
        CustomerRegisteredWithGap::NAME,
        1,
        json!({"name": "Ada Lovelace"}),
    ))
    .unwrap_err();
    assert_eq!(e.kind, FaultKind::UnsupportedVersion);
    assert!(e.message.contains("from version 1 to 2"), "{e}");

    // A type with no upcasters at all refuses anything older.
    let e = codec::decode_event::<OrderCreated>(&Decoded {
        envelope: Envelope::new(OrderCreated::NAME).with_event_version(0),
        data: Bytes::from_static(b"{\"orderId\":\"o\"}"),
    })
    .unwrap_err();
    assert_eq!(e.kind, FaultKind::UnsupportedVersion);
}

#[test]
fn an_upcaster_error_is_a_decode_fault_with_its_message() {
    let e = customer(1, json!({"nom": "Ada"})).unwrap_err();
    assert_eq!(e.kind, FaultKind::Decode);
    assert!(
        e.message.contains("version 1 data has no `name` string"),
        "{e}"
    );
    assert!(e.message.contains("from version 1 to 2"), "{e}");
}

#[test]
fn upcast_data_that_serde_refuses_is_a_decode_fault() {
    let e = customer(2, json!({"firstName": "Ada"})).unwrap_err();
    assert_eq!(e.kind, FaultKind::Decode);
    assert!(e.message.contains("lastName"), "{e}");
    assert!(e.message.contains("upcast from version 2"), "{e}");
}

#[test]
fn serde_errors_are_decode_faults_with_serdes_message() {
    let e = customer(3, json!({"firstName": 1, "lastName": "L", "tier": "t"})).unwrap_err();
    assert_eq!(e.kind, FaultKind::Decode);
    assert!(e.message.contains("invalid type"), "{e}");
    assert!(e.message.contains("CustomerRegistered"), "{e}");
}

#[test]
fn unknown_fields_are_ignored() {
    let event = customer(
        3,
        json!({"firstName": "Ada", "lastName": "Lovelace", "tier": "gold", "addedInV4": [1, 2]}),
    )
    .unwrap();
    assert_eq!(event, expected("gold"));
}

#[test]
fn a_derived_event_decodes_from_its_own_encoding() {
    let event = OrderCreated {
        order_id: "o-1".into(),
    };
    let message = codec::encode(&event, &Envelope::for_event::<OrderCreated>()).unwrap();
    let decoded = codec::decode(&message).unwrap();
    assert_eq!(decoded.envelope.event_version, 1);
    assert_eq!(
        codec::decode_event::<OrderCreated>(&decoded).unwrap(),
        event
    );
}
