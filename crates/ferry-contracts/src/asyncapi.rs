//! The AsyncAPI 3.0 document of an application, built from what it registers: the events it
//! publishes, every version of its events that it can read, and its consumers (queue,
//! bindings, retry policy, dead-letter exchange).

use std::collections::{BTreeMap, BTreeSet};

use ferry_core::{ConsumerSpec, IntegrationEvent, RetryPolicy, consumer::QueueType};
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use crate::{ContractError, Document, payload_schema, wire};

/// One version of one event, as registered.
#[derive(Debug, Clone)]
struct Version {
    schema: Value,
    /// Versions the event type has upcasters from (on its current version only).
    upcast_from: Vec<u32>,
    current: bool,
}

/// A consumer, as its spec describes it.
#[derive(Debug, Clone)]
struct Consumer {
    queue: String,
    bindings: Vec<String>,
    events: Vec<String>,
    retry: RetryPolicy,
    dead_letter_exchange: Option<String>,
    quorum: bool,
    auto_ack: bool,
    prefetch: u16,
}

/// Builds an application's AsyncAPI 3.0 document.
///
/// ```
/// use ferry_contracts::AsyncApi;
/// use ferry_core::ConsumerSpec;
///
/// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, ferry_macros::IntegrationEvent)]
/// #[event(name = "orders.order.created", version = 2, upcast(from = 1, with = v1_to_v2))]
/// struct OrderCreated { order_id: String, currency: String }
///
/// /// Version 1, as older publishers still send it.
/// #[derive(schemars::JsonSchema)]
/// #[allow(dead_code)]
/// struct OrderCreatedV1 { order_id: String }
///
/// fn v1_to_v2(mut v: serde_json::Value) -> Result<serde_json::Value, String> {
///     v["currency"] = "EUR".into();
///     Ok(v)
/// }
///
/// let mut inventory = ConsumerSpec::new("inventory.order-created");
/// inventory.bindings.push("orders.order.created".into());
/// # inventory.pipeline.add_handler::<OrderCreated>(|_: OrderCreated, _: ferry_core::MessageContext| async {
/// #     Ok::<_, ferry_core::HandlerError>(())
/// # });
/// let document = AsyncApi::new("orders", "1.0.0")
///     .exchange("myapp.events")
///     .publishes::<OrderCreated>()
///     .previous_version::<OrderCreated, OrderCreatedV1>(1)
///     .consumer(&inventory)
///     .build()?;
/// assert_eq!(document.as_value()["asyncapi"], "3.0.0");
/// assert_eq!(document.as_value()["operations"]["receive.inventory.order-created"]["action"], "receive");
/// # Ok::<(), ferry_contracts::ContractError>(())
/// ```
#[derive(Debug)]
pub struct AsyncApi {
    title: String,
    version: String,
    description: Option<String>,
    exchange: String,
    events: BTreeMap<String, BTreeMap<u32, Version>>,
    published: BTreeSet<String>,
    consumers: Vec<Consumer>,
    errors: Vec<ContractError>,
}

impl AsyncApi {
    /// A document titled `title` for the application's `version`, on exchange `myapp.events`.
    pub fn new(title: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            version: version.into(),
            description: None,
            exchange: "myapp.events".to_owned(),
            events: BTreeMap::new(),
            published: BTreeSet::new(),
            consumers: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The application's description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The events exchange (a durable topic exchange; default `myapp.events`).
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = exchange.into();
        self
    }

    /// Registers event `E` at its current version, with the versions its upcasters read.
    pub fn event<E: IntegrationEvent + JsonSchema>(mut self) -> Self {
        let schema = match payload_schema::<E>(E::NAME, E::VERSION) {
            Ok(schema) => schema,
            Err(error) => {
                self.errors.push(error);
                return self;
            }
        };
        let upcast_from = E::UPCASTERS.iter().map(|u| u.from).collect();
        self.events.entry(E::NAME.to_owned()).or_default().insert(
            E::VERSION,
            Version {
                schema,
                upcast_from,
                current: true,
            },
        );
        self
    }

    /// Registers event `E` and says the application publishes it.
    pub fn publishes<E: IntegrationEvent + JsonSchema>(mut self) -> Self {
        self.published.insert(E::NAME.to_owned());
        self.event::<E>()
    }

    /// Declares the schema of an earlier `version` of event `E` with the type `Old` that
    /// describes it (the JSON an upcaster of `E` reads). Consumers of `E` accept it.
    pub fn previous_version<E: IntegrationEvent, Old: JsonSchema>(mut self, version: u32) -> Self {
        if version == 0 || version >= E::VERSION {
            self.errors.push(ContractError::NotPrevious {
                event: E::NAME.to_owned(),
                version,
                current: E::VERSION,
            });
            return self;
        }
        let schema = match payload_schema::<Old>(E::NAME, version) {
            Ok(schema) => schema,
            Err(error) => {
                self.errors.push(error);
                return self;
            }
        };
        self.events.entry(E::NAME.to_owned()).or_default().insert(
            version,
            Version {
                schema,
                upcast_from: Vec::new(),
                current: false,
            },
        );
        self
    }

    /// Registers a consumer from its spec (`ConsumerBuilder::spec()`): its queue, bindings,
    /// the events it handles, its retry policy and dead-letter exchange. Register the events
    /// it handles with [`AsyncApi::event`].
    pub fn consumer(mut self, spec: &ConsumerSpec) -> Self {
        self.consumers.push(Consumer {
            queue: spec.queue.clone(),
            bindings: spec.bindings.clone(),
            events: spec
                .pipeline
                .event_types()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            retry: *spec.pipeline.retry_policy(),
            dead_letter_exchange: spec.dead_letter_exchange.clone(),
            quorum: spec.queue_type == Some(QueueType::Quorum),
            auto_ack: spec.auto_ack,
            prefetch: spec.prefetch,
        });
        self
    }

    /// The document, or the first thing that keeps it from being complete: an event a
    /// consumer handles without a registered schema, an upcaster's source version without a
    /// declared schema, a recursive payload type.
    pub fn build(mut self) -> Result<Document, ContractError> {
        if !self.errors.is_empty() {
            return Err(self.errors.swap_remove(0));
        }
        for (name, versions) in &self.events {
            let froms = versions
                .values()
                .flat_map(|v| v.upcast_from.iter().copied());
            if let Some(from) = froms.into_iter().find(|from| !versions.contains_key(from)) {
                return Err(ContractError::UndeclaredSource {
                    event: name.clone(),
                    from,
                });
            }
        }
        let mut messages = Map::new();
        for (name, versions) in &self.events {
            for (version, v) in versions {
                messages.insert(message_id(name, *version), message(name, *version, v));
            }
        }
        let mut channels = Map::new();
        let mut operations = Map::new();
        let mut events_used: BTreeSet<&str> = self.published.iter().map(String::as_str).collect();
        for consumer in &self.consumers {
            for event in &consumer.events {
                if !self.events.contains_key(event) {
                    return Err(ContractError::UnknownEvent {
                        queue: consumer.queue.clone(),
                        event: event.clone(),
                    });
                }
                events_used.insert(event);
            }
        }
        for name in events_used {
            channels.insert(name.to_owned(), self.event_channel(name));
        }
        for name in &self.published {
            operations.insert(format!("send.{name}"), self.send_operation(name));
        }
        for consumer in &self.consumers {
            let id = format!("queue.{}", consumer.queue);
            channels.insert(id.clone(), self.queue_channel(consumer));
            operations.insert(
                format!("receive.{}", consumer.queue),
                self.receive_operation(&id, consumer),
            );
        }
        let mut info = json!({ "title": self.title, "version": self.version });
        if let Some(description) = &self.description {
            info["description"] = description.clone().into();
        }
        Ok(Document::from_value_unchecked(json!({
            "asyncapi": "3.0.0",
            "info": info,
            "defaultContentType": "application/json",
            "channels": channels,
            "operations": operations,
            "components": { "messages": messages },
        })))
    }

    fn message_refs(&self, channel: &str, events: &[&str]) -> Vec<Value> {
        let mut refs = Vec::new();
        for name in events {
            for version in self.events.get(*name).into_iter().flat_map(|v| v.keys()) {
                refs.push(json!({ "$ref": format!("#/channels/{channel}/messages/{}", message_id(name, *version)) }));
            }
        }
        refs
    }

    fn channel_messages(&self, events: &[&str]) -> Map<String, Value> {
        let mut map = Map::new();
        for name in events {
            for version in self.events.get(*name).into_iter().flat_map(|v| v.keys()) {
                let id = message_id(name, *version);
                map.insert(
                    id.clone(),
                    json!({ "$ref": format!("#/components/messages/{id}") }),
                );
            }
        }
        map
    }

    fn event_channel(&self, name: &str) -> Value {
        json!({
            "address": name,
            "title": format!("routing key {name} on {}", self.exchange),
            "messages": self.channel_messages(&[name]),
            "bindings": wire::routing_key_binding(&self.exchange),
        })
    }

    fn send_operation(&self, name: &str) -> Value {
        let current = self
            .events
            .get(name)
            .and_then(|versions| versions.iter().find(|(_, v)| v.current))
            .map(|(version, _)| *version)
            .unwrap_or(1);
        json!({
            "action": "send",
            "channel": { "$ref": format!("#/channels/{name}") },
            "summary": format!("Publishes {name} version {current} (confirmed, mandatory)."),
            "messages": [{ "$ref": format!("#/channels/{name}/messages/{}", message_id(name, current)) }],
            "bindings": wire::send_binding(),
        })
    }

    fn queue_channel(&self, consumer: &Consumer) -> Value {
        let events: Vec<&str> = consumer.events.iter().map(String::as_str).collect();
        json!({
            "address": consumer.queue,
            "title": format!("queue {}", consumer.queue),
            "messages": self.channel_messages(&events),
            "bindings": wire::queue_binding(&consumer.queue),
            "x-ferry-queue": {
                "exchange": self.exchange,
                "bindings": consumer.bindings,
                "queueType": if consumer.quorum { "quorum" } else { "classic" },
            },
        })
    }

    fn receive_operation(&self, channel: &str, consumer: &Consumer) -> Value {
        let events: Vec<&str> = consumer.events.iter().map(String::as_str).collect();
        let retry = &consumer.retry;
        let retry_queues: Vec<String> = retry
            .distinct_delays()
            .iter()
            .map(|d| format!("{}.retry.{}", consumer.queue, d.as_millis()))
            .collect();
        json!({
            "action": "receive",
            "channel": { "$ref": format!("#/channels/{channel}") },
            "summary": format!("Consumes queue {}.", consumer.queue),
            "messages": self.message_refs(channel, &events),
            "bindings": wire::receive_binding(!consumer.auto_ack),
            "x-ferry-consumer": {
                "prefetch": consumer.prefetch,
                "retry": {
                    "maxRetryAttempts": retry.max_retry_attempts,
                    "delayMs": retry.delay.as_millis() as u64,
                    "exponential": retry.exponential,
                    "maxDelayMs": retry.max_delay.as_millis() as u64,
                    "retryQueues": retry_queues,
                },
                "deadLetterExchange": consumer.dead_letter_exchange,
            },
        })
    }
}

/// The id of event `name`'s message at `version` (`orders.order.created.v1`).
pub(crate) fn message_id(name: &str, version: u32) -> String {
    format!("{name}.v{version}")
}

fn message(name: &str, version: u32, v: &Version) -> Value {
    json!({
        "name": name,
        "title": format!("{name} v{version}"),
        "contentType": "application/json",
        "headers": wire::cloud_events_headers(name, version),
        "payload": v.schema,
        "bindings": wire::message_binding(name),
        "x-ferry-event": {
            "name": name,
            "version": version,
            "current": v.current,
            "upcastFrom": v.upcast_from,
        },
    })
}
