//! The AsyncAPI document built from what an application registers.

use std::time::Duration;

use ferry_contracts::{AsyncApi, ContractError, JsonSchema, payload_schema};
use ferry_core::{ConsumerSpec, RetryPolicy, consumer::QueueType};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    product_id: String,
    quantity: i32,
}

#[derive(Serialize, Deserialize, JsonSchema, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 2, upcast(from = 1, with = up))]
pub struct OrderCreated {
    order_id: String,
    items: Vec<Item>,
    coupon: Option<String>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct OrderCreatedV1 {
    order_id: String,
}

fn up(v: Value) -> Result<Value, String> {
    Ok(v)
}

#[derive(Serialize, Deserialize, JsonSchema, ferry_macros::IntegrationEvent)]
#[event(name = "inventory.stock.reserved")]
pub struct StockReserved {
    order_id: String,
}

fn inventory_spec() -> ConsumerSpec {
    let mut spec = ConsumerSpec::new("inventory.order-created");
    spec.bindings.push("orders.#".to_owned());
    spec.dead_letter_exchange = Some("app.dlx".to_owned());
    spec.queue_type = Some(QueueType::Quorum);
    spec.pipeline
        .set_retry(RetryPolicy::exponential(3, Duration::from_millis(500)));
    assert!(spec.pipeline.add_handler::<OrderCreated>(
        |_: OrderCreated, _: ferry_core::MessageContext| async {
            Ok::<_, ferry_core::HandlerError>(())
        },
    ));
    spec
}

fn document() -> Value {
    AsyncApi::new("shop", "2.0.0")
        .exchange("app.events")
        .event::<OrderCreated>()
        .previous_version::<OrderCreated, OrderCreatedV1>(1)
        .publishes::<StockReserved>()
        .consumer(&inventory_spec())
        .build()
        .unwrap()
        .into_value()
}

#[test]
fn payload_schemas_are_self_contained_and_follow_serde() {
    let schema = payload_schema::<OrderCreated>("orders.order.created", 2).unwrap();
    let text = schema.to_string();
    assert!(!text.contains("$ref"), "{text}");
    assert_eq!(schema["required"], json!(["orderId", "items"]));
    assert_eq!(
        schema["properties"]["items"]["items"]["properties"]["quantity"]["type"],
        "integer"
    );
}

#[test]
fn every_version_is_a_message_with_cloud_events_headers() {
    let doc = document();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let v1 = &doc["components"]["messages"]["orders.order.created.v1"];
    let v2 = &doc["components"]["messages"]["orders.order.created.v2"];
    assert_eq!(
        v1["x-ferry-event"],
        json!({"name": "orders.order.created", "version": 1, "current": false, "upcastFrom": []})
    );
    assert_eq!(v2["x-ferry-event"]["upcastFrom"], json!([1]));
    assert_eq!(
        v2["headers"]["properties"]["ce-type"]["const"],
        "orders.order.created"
    );
    assert_eq!(v2["headers"]["properties"]["ce-eventversion"]["const"], "2");
    assert_eq!(
        v2["headers"]["required"],
        json!(["ce-specversion", "ce-id", "ce-type", "ce-source", "ce-time"])
    );
    assert_eq!(
        v2["bindings"]["amqp"]["messageType"],
        "orders.order.created"
    );
    assert_eq!(v1["payload"]["required"], json!(["order_id"]));
}

#[test]
fn channels_are_routing_keys_on_the_exchange_and_queues() {
    let doc = document();
    let routing = &doc["channels"]["orders.order.created"];
    assert_eq!(routing["address"], "orders.order.created");
    assert_eq!(routing["bindings"]["amqp"]["is"], "routingKey");
    assert_eq!(
        routing["bindings"]["amqp"]["exchange"]["name"],
        "app.events"
    );
    assert_eq!(routing["bindings"]["amqp"]["exchange"]["type"], "topic");
    let queue = &doc["channels"]["queue.inventory.order-created"];
    assert_eq!(
        queue["bindings"]["amqp"]["queue"]["name"],
        "inventory.order-created"
    );
    assert_eq!(queue["x-ferry-queue"]["bindings"], json!(["orders.#"]));
    assert_eq!(queue["x-ferry-queue"]["queueType"], "quorum");
    let messages: Vec<&String> = queue["messages"].as_object().unwrap().keys().collect();
    assert_eq!(
        messages,
        ["orders.order.created.v1", "orders.order.created.v2"]
    );
}

#[test]
fn operations_send_what_is_published_and_receive_what_consumers_handle() {
    let doc = document();
    let ops = doc["operations"].as_object().unwrap();
    let mut ids: Vec<&String> = ops.keys().collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "receive.inventory.order-created",
            "send.inventory.stock.reserved"
        ]
    );
    let send = &ops["send.inventory.stock.reserved"];
    assert_eq!(send["action"], "send");
    assert_eq!(send["bindings"]["amqp"]["mandatory"], true);
    assert_eq!(send["bindings"]["amqp"]["deliveryMode"], 2);
    let receive = &ops["receive.inventory.order-created"];
    assert_eq!(receive["action"], "receive");
    assert_eq!(
        receive["channel"]["$ref"],
        "#/channels/queue.inventory.order-created"
    );
    assert_eq!(receive["bindings"]["amqp"]["ack"], true);
    let consumer = &receive["x-ferry-consumer"];
    assert_eq!(consumer["deadLetterExchange"], "app.dlx");
    assert_eq!(consumer["retry"]["maxRetryAttempts"], 3);
    assert_eq!(consumer["retry"]["delayMs"], 500);
    assert_eq!(
        consumer["retry"]["retryQueues"],
        json!([
            "inventory.order-created.retry.500",
            "inventory.order-created.retry.1000",
            "inventory.order-created.retry.2000"
        ])
    );
}

#[test]
fn a_consumer_of_an_unregistered_event_is_an_error() {
    let error = AsyncApi::new("shop", "1")
        .consumer(&inventory_spec())
        .build()
        .unwrap_err();
    assert!(
        matches!(error, ContractError::UnknownEvent { ref event, .. } if event == "orders.order.created"),
        "{error}"
    );
}

#[test]
fn a_previous_version_at_or_past_the_current_is_an_error() {
    let error = AsyncApi::new("shop", "1")
        .event::<OrderCreated>()
        .previous_version::<OrderCreated, OrderCreatedV1>(2)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            error,
            ContractError::NotPrevious {
                version: 2,
                current: 2,
                ..
            }
        ),
        "{error}"
    );
}

#[derive(Serialize, Deserialize, JsonSchema, ferry_macros::IntegrationEvent)]
#[event(name = "catalog.tree.changed")]
pub struct TreeChanged {
    children: Vec<TreeChanged>,
}

#[test]
fn a_recursive_payload_is_refused_rather_than_left_with_dangling_refs() {
    let error = AsyncApi::new("shop", "1")
        .publishes::<TreeChanged>()
        .build()
        .unwrap_err();
    assert!(matches!(error, ContractError::Recursive { .. }), "{error}");
}
