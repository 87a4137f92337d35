//! The harness's Mediator builder records requests and notifications.

use ferry_core::mediator::{Notification, Request, RequestContext};
use ferry_testing::TestHarness;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct ShipOrder {
    order_id: String,
}

impl Request for ShipOrder {
    type Output = String;
}

#[derive(Clone)]
struct OrderShipped;

impl Notification for OrderShipped {}

#[derive(Debug, thiserror::Error)]
#[error("the mailer is down")]
struct MailerDown;

#[tokio::test]
async fn requests_and_notifications_are_recorded_with_their_outcome() -> Result<(), BoxError> {
    let harness = TestHarness::memory();
    let mediator = harness
        .mediator_builder()
        .command(|command: ShipOrder, _: RequestContext| async move {
            if command.order_id.is_empty() {
                return Err(MailerDown);
            }
            Ok(format!("shipment of {}", command.order_id))
        })
        .notification(|_: OrderShipped, _: RequestContext| async {
            Ok::<_, std::convert::Infallible>(())
        })
        .notification(|_: OrderShipped, _: RequestContext| async { Err::<(), _>(MailerDown) })
        .build()?;

    let ctx = RequestContext::new().with_correlation_id("c-1");
    mediator
        .send_with(
            ShipOrder {
                order_id: "o-1".into(),
            },
            ctx,
        )
        .await?;
    assert!(
        mediator
            .send(ShipOrder {
                order_id: String::new()
            })
            .await
            .is_err()
    );
    assert!(mediator.publish(OrderShipped).await.is_err());

    let requests = harness.requests::<ShipOrder>();
    assert_eq!(requests.count(), 2);
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.succeeded())
            .map(|r| r.correlation_id.as_str())
            .collect::<Vec<_>>(),
        ["c-1"]
    );
    let shipped = harness.notifications::<OrderShipped>().single()?;
    assert!(
        shipped
            .error
            .as_deref()
            .is_some_and(|e| e.contains("OrderShipped")),
        "{shipped:?}"
    );
    assert_eq!(harness.notifications_all().count(), 1);
    assert!(harness.requests::<OrderShipped>().is_empty());
    harness.shutdown().await?;
    Ok(())
}
