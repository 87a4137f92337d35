//! The orders context: a `CreateOrder` command through the Mediator, validated, whose handler
//! writes the order, its items and `orders.order.created` in one transaction.

use ferry::mediator::{
    Mediator, MediatorError, Request, RequestContext, RequestHandler, TracingBehavior, Validate,
    ValidationErrors,
};

use super::{
    db::DemoDb,
    events::{OrderCreated, OrderItemDto},
};

/// The seed's `CreateOrderCommand`.
#[derive(Debug, Clone)]
pub struct CreateOrder {
    /// The order's number in this run.
    pub order_number: u64,
    /// Who orders.
    pub customer_email: String,
    /// What.
    pub items: Vec<OrderItemDto>,
}

impl Request for CreateOrder {
    /// The new order's id.
    type Output = String;
}

impl Validate for CreateOrder {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        errors.ensure(
            self.customer_email.contains('@'),
            "customer_email",
            "must be an e-mail address",
        );
        errors.ensure(
            !self.items.is_empty(),
            "items",
            "an order needs at least one item",
        );
        errors.ensure(
            self.items.iter().all(|i| i.quantity > 0),
            "items",
            "every quantity must be positive",
        );
        errors.into_result()
    }
}

/// The seed's `CreateOrderCommandHandler`, outbox variant.
pub struct CreateOrderHandler<D> {
    db: D,
}

impl<D: DemoDb> RequestHandler<CreateOrder> for CreateOrderHandler<D> {
    type Error = anyhow::Error;

    async fn handle(&self, command: CreateOrder, ctx: RequestContext) -> anyhow::Result<String> {
        let total: f64 = command
            .items
            .iter()
            .map(|i| f64::from(i.quantity) * 9.95)
            .sum();
        let event = OrderCreated {
            order_id: uuid::Uuid::now_v7().to_string(),
            order_number: command.order_number,
            customer_email: command.customer_email,
            total_amount: (total * 100.0).round() / 100.0,
            items: command.items,
        };
        // The order, its items and the event: one transaction. The event's correlation id is
        // the command's.
        self.db.create_order(&event, ctx.publish_options()).await?;
        Ok(event.order_id)
    }
}

/// The orders context's Mediator: tracing, validation, the handler.
pub fn mediator<D: DemoDb>(db: D) -> Result<Mediator, MediatorError> {
    Mediator::builder()
        .behavior(TracingBehavior)
        .validate::<CreateOrder>()
        .command(CreateOrderHandler { db })
        .build()
}

/// The command for order number `n` of this run.
pub fn command(n: u64) -> CreateOrder {
    let lines = 1 + (n % 3);
    CreateOrder {
        order_number: n,
        customer_email: format!("customer{n}@example.com"),
        items: (0..lines)
            .map(|i| OrderItemDto {
                product_id: format!("sku-{}", (n * 7 + i * 13) % 50 + 1),
                quantity: 1 + ((n + i) % 4) as i32,
            })
            .collect(),
    }
}

/// Sends order number `n` through the Mediator, in its own conversation.
pub async fn create(mediator: &Mediator, n: u64) -> anyhow::Result<String> {
    let ctx = RequestContext::new().with_correlation_id(format!("checkout-{n}"));
    mediator
        .send_with(command(n), ctx)
        .await
        .map_err(|e| anyhow::anyhow!("CreateOrder #{n}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_valid_and_invalid_ones_are_caught() {
        for n in 1..50 {
            assert!(command(n).validate().is_ok());
        }
        let mut bad = command(1);
        bad.customer_email = "nobody".into();
        bad.items.clear();
        let errors = bad.validate().unwrap_err().to_string();
        assert!(
            errors.contains("customer_email") && errors.contains("items"),
            "{errors}"
        );
    }
}
