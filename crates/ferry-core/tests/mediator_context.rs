//! The request context flows into the envelopes of the integration events a handler publishes
//! or adds to the outbox: the event's correlation id is the command's.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use ferry_core::{
    Envelope, MessageContext, OutboxStore, OutgoingMessage, PublishBatch, PublishError,
    PublishOptions, PublishTransport, PublisherExt, codec,
    mediator::{Mediator, Request, RequestContext, RequestHandler},
    memory::MemoryOutbox,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 1)]
struct OrderCreated {
    order_id: String,
    total_amount: u64,
}

#[derive(Debug, Clone)]
struct CreateOrder {
    total_amount: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct OrderDto {
    id: String,
    /// The id of the request, as the handler saw it.
    request_id: String,
}

impl Request for CreateOrder {
    type Output = OrderDto;
}

/// The outbox variant: the order and its event are written together.
struct CreateOrderWithOutbox {
    outbox: MemoryOutbox,
}

impl RequestHandler<CreateOrder> for CreateOrderWithOutbox {
    type Error = ferry_core::OutboxError;

    async fn handle(&self, cmd: CreateOrder, ctx: RequestContext) -> Result<OrderDto, Self::Error> {
        let id = "order-1".to_owned();
        let mut tx = self.outbox.begin().await?;
        tx.add_with(
            &OrderCreated {
                order_id: id.clone(),
                total_amount: cmd.total_amount,
            },
            ctx.publish_options(),
        )
        .await?;
        tx.commit().await?;
        Ok(OrderDto {
            id,
            request_id: ctx.request_id().to_string(),
        })
    }
}

async fn outbox_envelopes(outbox: &MemoryOutbox) -> Vec<Envelope> {
    outbox
        .claim(10, Duration::from_secs(30))
        .await
        .unwrap()
        .into_iter()
        .map(|row| codec::decode(&row.message.message).unwrap().envelope)
        .collect()
}

#[tokio::test]
async fn an_event_added_to_the_outbox_carries_the_commands_correlation_id() {
    let outbox = MemoryOutbox::new();
    let mediator = Mediator::builder()
        .command(CreateOrderWithOutbox {
            outbox: outbox.clone(),
        })
        .build()
        .unwrap();

    let ctx = RequestContext::new()
        .with_correlation_id("corr-123")
        .with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    let dto = mediator
        .send_with(CreateOrder { total_amount: 42 }, ctx)
        .await
        .unwrap();

    let envelopes = outbox_envelopes(&outbox).await;
    assert_eq!(envelopes.len(), 1);
    let envelope = &envelopes[0];
    assert_eq!(envelope.event_type, "orders.order.created");
    assert_eq!(envelope.correlation_id.as_deref(), Some("corr-123"));
    assert_eq!(
        envelope.causation_id.as_deref(),
        Some(dto.request_id.as_str())
    );
    assert_eq!(
        envelope.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
}

#[tokio::test]
async fn without_a_correlation_id_the_command_starts_the_conversation() {
    let outbox = MemoryOutbox::new();
    let mediator = Mediator::builder()
        .command(CreateOrderWithOutbox {
            outbox: outbox.clone(),
        })
        .build()
        .unwrap();
    let first = mediator
        .send(CreateOrder { total_amount: 1 })
        .await
        .unwrap();
    let second = mediator
        .send(CreateOrder { total_amount: 2 })
        .await
        .unwrap();
    assert_ne!(first.request_id, second.request_id);

    let envelopes = outbox_envelopes(&outbox).await;
    assert_eq!(envelopes.len(), 2);
    for (envelope, dto) in envelopes.iter().zip([&first, &second]) {
        assert_eq!(
            envelope.correlation_id.as_deref(),
            Some(dto.request_id.as_str())
        );
        assert_eq!(
            envelope.causation_id.as_deref(),
            Some(dto.request_id.as_str())
        );
    }
}

/// A publisher that keeps what it is given.
#[derive(Default, Clone)]
struct RecordingPublisher {
    sent: Arc<Mutex<Vec<OutgoingMessage>>>,
}

#[async_trait]
impl PublishTransport for RecordingPublisher {
    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        let n = batch.len();
        match self.sent.lock() {
            Ok(mut sent) => {
                sent.extend(batch.into_messages());
                vec![Ok(()); n]
            }
            Err(_) => vec![Err(PublishError::Other("poisoned".into())); n],
        }
    }
}

#[tokio::test]
async fn an_event_published_directly_carries_the_commands_correlation_id() {
    let publisher = RecordingPublisher::default();
    let handler_publisher = publisher.clone();
    let mediator = Mediator::builder()
        .command(move |cmd: CreateOrder, ctx: RequestContext| {
            let publisher = handler_publisher.clone();
            async move {
                let event = OrderCreated {
                    order_id: "order-2".into(),
                    total_amount: cmd.total_amount,
                };
                publisher
                    .publish_with(&event, ctx.publish_options())
                    .await?;
                Ok::<_, PublishError>(OrderDto {
                    id: event.order_id,
                    request_id: ctx.request_id().to_string(),
                })
            }
        })
        .build()
        .unwrap();

    let dto = mediator
        .send_with(
            CreateOrder { total_amount: 7 },
            RequestContext::new().with_correlation_id("corr-direct"),
        )
        .await
        .unwrap();

    let sent = publisher.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].routing_key, "orders.order.created");
    let decoded = codec::decode(&sent[0].message).unwrap();
    assert_eq!(
        decoded.envelope.correlation_id.as_deref(),
        Some("corr-direct")
    );
    assert_eq!(
        decoded.envelope.causation_id.as_deref(),
        Some(dto.request_id.as_str())
    );
    let event: OrderCreated = codec::decode_event(&decoded).unwrap();
    assert_eq!(event.total_amount, 7);
}

#[tokio::test]
async fn a_command_sent_from_an_event_handler_continues_the_events_conversation() {
    let outbox = MemoryOutbox::new();
    let mediator = Mediator::builder()
        .command(CreateOrderWithOutbox {
            outbox: outbox.clone(),
        })
        .build()
        .unwrap();

    // The integration event being consumed.
    let incoming = Envelope::new("carts.cart.checked-out").with_correlation_id("corr-cart");
    let message = MessageContext::new(
        incoming.clone(),
        "orders.cart-checked-out",
        "carts.cart.checked-out",
        1,
    );

    let ctx = RequestContext::caused_by(&message);
    assert_eq!(ctx.causation_id(), Some(incoming.id.as_str()));
    let dto = mediator
        .send_with(CreateOrder { total_amount: 3 }, ctx)
        .await
        .unwrap();

    let envelope = &outbox_envelopes(&outbox).await[0];
    assert_eq!(envelope.correlation_id.as_deref(), Some("corr-cart"));
    assert_eq!(
        envelope.causation_id.as_deref(),
        Some(dto.request_id.as_str())
    );
}

#[test]
fn envelope_for_builds_the_events_envelope() {
    let ctx = RequestContext::new().with_correlation_id("corr-e");
    let envelope = ctx
        .publish_options::<PublishOptions>()
        .envelope_for::<OrderCreated>(None);
    assert_eq!(envelope.event_type, "orders.order.created");
    assert_eq!(envelope.event_version, 1);
    assert_eq!(envelope.correlation_id.as_deref(), Some("corr-e"));
    assert_eq!(envelope.causation_id, Some(ctx.request_id().to_string()));
}
