//! Small events and handlers for the harness's own tests.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use ferry_core::{HandlerError, MessageContext, PublisherExt};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "orders.order.placed")]
pub struct OrderPlaced {
    pub order_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "billing.invoice.issued")]
pub struct InvoiceIssued {
    pub order_id: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the payment service is down")]
pub struct ServiceDown;

/// A handler that fails (transiently) its first `failures` calls, counting every call.
#[derive(Clone)]
pub struct Flaky {
    pub failures: u32,
    pub calls: Arc<AtomicU32>,
}

impl Flaky {
    pub fn new(failures: u32) -> Self {
        Self {
            failures,
            calls: Arc::default(),
        }
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl ferry_core::IntegrationEventHandler<OrderPlaced> for Flaky {
    async fn handle(&self, _: OrderPlaced, _: MessageContext) -> Result<(), HandlerError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call <= self.failures {
            return Err(HandlerError::transient(ServiceDown));
        }
        Ok(())
    }
}

/// Publishes `InvoiceIssued` for each order, directly on `publisher`.
pub fn issue_invoice<P: ferry_core::Publisher + Clone + 'static>(
    publisher: P,
) -> impl Fn(
    OrderPlaced,
    MessageContext,
) -> futures::future::BoxFuture<'static, Result<(), HandlerError>>
+ Send
+ Sync
+ 'static {
    move |event, _| {
        let publisher = publisher.clone();
        Box::pin(async move {
            publisher
                .publish(&InvoiceIssued {
                    order_id: event.order_id,
                })
                .await
                .map_err(HandlerError::transient)?;
            Ok(())
        })
    }
}
