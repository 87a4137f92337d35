//! `wait_idle` waits for the work a test started — follow-up events published by handlers,
//! retries waiting — and says what is still pending when it gives up.

mod common;

use std::time::Duration;

use common::events::{Flaky, InvoiceIssued, OrderPlaced, issue_invoice};
use ferry_core::{
    ConsumerHandle, HandlerError, MessageContext, PublisherExt, RetryPolicy, host::Host,
};
use ferry_testing::{HarnessError, OutboxPending, TestHarness};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn placed(id: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: id.into(),
    }
}

/// The billing consumer publishes `InvoiceIssued`; the mail consumer takes its time with it.
async fn billing_and_mail(
    harness: &TestHarness,
) -> Result<(ConsumerHandle, ConsumerHandle), BoxError> {
    let transport = harness.transport();
    let billing = transport
        .consumer("billing.order-placed")
        .bind("orders.order.placed")
        .dead_letter("app.dlx")
        .handle::<OrderPlaced>(issue_invoice(transport.clone()))
        .start()
        .await?;
    let mail = transport
        .consumer("mail.invoice-issued")
        .bind("billing.invoice.issued")
        .dead_letter("app.dlx")
        .handle::<InvoiceIssued>(|_: InvoiceIssued, _: MessageContext| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, HandlerError>(())
        })
        .start()
        .await?;
    Ok((billing, mail))
}

#[tokio::test]
async fn waits_for_the_follow_up_events_handlers_publish() -> Result<(), BoxError> {
    let harness = TestHarness::memory();
    let (billing, mail) = billing_and_mail(&harness).await?;
    harness.run(
        Host::new()
            .consumer("billing", billing)
            .consumer("mail", mail),
    );

    harness.transport().publish(&placed("o-1")).await?;
    harness.transport().publish(&placed("o-2")).await?;
    harness.wait_idle().await?;

    // The follow-ups were published by the billing handler and handled by the slow mail
    // consumer before `wait_idle` returned.
    assert_eq!(harness.published::<InvoiceIssued>().count(), 2);
    let mailed = harness.consumed::<InvoiceIssued>();
    assert_eq!(mailed.count(), 2);
    assert!(mailed.any(|m| m.event.order_id == "o-2"));
    assert!(harness.pending().await.is_idle());
    harness.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn waits_for_pending_retries() -> Result<(), BoxError> {
    let harness = TestHarness::memory();
    let flaky = Flaky::new(2);
    let consumer = harness
        .transport()
        .consumer("payments.order-placed")
        .bind("orders.order.placed")
        .retry(RetryPolicy::fixed(3, Duration::from_millis(100)))
        .dead_letter("app.dlx")
        .handle::<OrderPlaced>(flaky.clone())
        .start()
        .await?;
    harness.run(Host::new().consumer("payments", consumer));

    harness.transport().publish(&placed("o-1")).await?;
    harness.wait_idle().await?;

    // Failed twice, each failure a retry; the third attempt succeeded before `wait_idle` returned.
    assert_eq!(flaky.calls(), 3);
    let retried = harness.retried::<OrderPlaced>();
    assert_eq!(retried.count(), 2);
    assert_eq!(
        retried.iter().map(|r| r.record.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
    let consumed = harness.consumed::<OrderPlaced>().single()?;
    assert_eq!(consumed.record.attempt, 3);
    assert!(harness.dead_lettered().is_empty());
    harness.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn the_timeout_says_what_is_still_pending() -> Result<(), BoxError> {
    let harness = TestHarness::memory();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let stuck = std::sync::Arc::clone(&release);
    let consumer = harness
        .transport()
        .consumer("audit.order-placed")
        .bind("orders.order.placed")
        .dead_letter("app.dlx")
        .handle::<OrderPlaced>(move |_: OrderPlaced, _: MessageContext| {
            let stuck = std::sync::Arc::clone(&stuck);
            async move {
                stuck.notified().await;
                Ok::<_, HandlerError>(())
            }
        })
        .start()
        .await?;
    harness.run(Host::new().consumer("audit", consumer));
    // And a row in the outbox with no relay to publish it.
    let outbox = harness
        .store()
        .memory_outbox()
        .ok_or("a memory harness has a memory outbox")?;
    outbox.add(&placed("o-2"))?;

    let id = harness.transport().publish(&placed("o-1")).await?;
    let error = harness
        .wait_idle_for(Duration::from_millis(200))
        .await
        .err()
        .ok_or("the handler never returns: wait_idle must time out")?;
    let HarnessError::NotIdle { pending, .. } = &error else {
        return Err(format!("unexpected error: {error}").into());
    };
    assert_eq!(
        pending.in_flight,
        [format!(
            "`orders.order.placed` {id} in consumer `audit.order-placed` (1 delivery)"
        )]
    );
    assert_eq!(pending.outbox, OutboxPending::Rows(1));
    assert_eq!(
        error.to_string(),
        format!(
            "not idle after 200ms; still pending: in flight: `orders.order.placed` {id} in consumer \
             `audit.order-placed` (1 delivery); outbox: 1 row not yet published (is a relay running?)"
        )
    );

    release.notify_waiters();
    harness.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_message_no_consumer_has_taken_yet_is_pending() -> Result<(), BoxError> {
    let harness = TestHarness::memory();
    // Started, but not taking deliveries: its host is not run and it is stopped at once.
    let consumer = harness
        .transport()
        .consumer("late.order-placed")
        .bind("orders.order.placed")
        .dead_letter("app.dlx")
        .handle::<OrderPlaced>(|_: OrderPlaced, _: MessageContext| async {
            Ok::<_, HandlerError>(())
        })
        .start()
        .await?;
    consumer.shutdown().await;
    let id = harness.transport().publish(&placed("o-9")).await?;
    let error = harness
        .wait_idle_for(Duration::from_millis(50))
        .await
        .err()
        .ok_or("nothing consumed it")?;
    assert!(
        error.to_string().contains(&format!(
            "published, not yet consumed: `orders.order.placed` {id} not yet settled by `late.order-placed` (1)"
        )),
        "{error}"
    );
    harness.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_malformed_message_is_dead_lettered_and_settles() -> Result<(), BoxError> {
    use ferry_core::{OutgoingMessage, Publisher, WireMessage};

    let harness = TestHarness::memory();
    let consumer = harness
        .transport()
        .consumer("billing.order-placed")
        .bind("orders.order.placed")
        .dead_letter("app.dlx")
        .handle::<OrderPlaced>(|_: OrderPlaced, _: MessageContext| async {
            Ok::<_, HandlerError>(())
        })
        .start()
        .await?;
    harness.run(Host::new().consumer("billing", consumer));
    let mut message = WireMessage {
        body: "{not json".into(),
        ..WireMessage::default()
    };
    message.properties.message_id = Some("m-1".into());
    message.properties.kind = Some("orders.order.placed".into());
    harness
        .transport()
        .publish_message(OutgoingMessage::new("orders.order.placed", message))
        .await?;

    harness.wait_idle().await?;

    // Layers never see it (it does not decode); the harness's observer does.
    let dead = harness.dead_lettered().single()?;
    assert!(dead.envelope.is_none());
    assert!(dead.fault().is_some_and(|f| f.attempts == 1), "{dead:?}");
    assert!(harness.published_all().is_empty());
    harness.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn competing_consumers_of_one_queue_settle_each_message_once() -> Result<(), BoxError> {
    let harness = TestHarness::memory();
    let mut host = Host::new();
    for instance in ["billing-1", "billing-2"] {
        let consumer = harness
            .transport()
            .consumer("billing.order-placed")
            .bind("orders.order.placed")
            .dead_letter("app.dlx")
            .handle::<OrderPlaced>(|_: OrderPlaced, _: MessageContext| async {
                Ok::<_, HandlerError>(())
            })
            .start()
            .await?;
        host = host.consumer(instance, consumer);
    }
    harness.run(host);

    for id in ["o-1", "o-2", "o-3"] {
        harness.transport().publish(&placed(id)).await?;
    }
    harness.wait_idle().await?;

    assert_eq!(harness.consumed::<OrderPlaced>().count(), 3);
    harness.shutdown().await?;
    Ok(())
}
