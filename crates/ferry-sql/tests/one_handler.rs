//! One transactional handler, written once against `TxContext`, run unchanged on PostgreSQL,
//! SQLite and the in-memory store: each delivery is handled once (a duplicate is skipped by
//! the inbox row in the handler's transaction), and the event it publishes goes out through
//! that store's outbox, caused by the incoming message.

use std::time::Duration;

use ferry_core::{
    CancellationToken, HandlerError, IntegrationEvent, MessageContext, OutboxRelay, OutboxStore,
    PublishOptions, PublisherExt,
    memory::{MemoryBus, MemoryOutbox},
    transactional::{StoreTransaction, TransactionalHandler, TransactionalStore, TxContext},
};
use ferry_testkit::{pg::TempDatabase, unique_ident};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
}

impl IntegrationEvent for OrderPlaced {
    const NAME: &'static str = "tests.order.placed";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StockReserved {
    order_id: String,
}

impl IntegrationEvent for StockReserved {
    const NAME: &'static str = "tests.stock.reserved";
}

/// The handler under test: generic over the store's transaction, as application code is.
struct Reserve {
    calls: mpsc::UnboundedSender<String>,
}

impl<T: StoreTransaction> TransactionalHandler<OrderPlaced, T> for Reserve {
    async fn handle(&self, event: OrderPlaced, cx: &mut TxContext<T>) -> Result<(), HandlerError> {
        let _ = self.calls.send(event.order_id.clone());
        cx.publish(&StockReserved {
            order_id: event.order_id,
        })
        .await?;
        Ok(())
    }
}

/// Runs the scenario on `store`: the same message delivered twice is handled once, and its
/// follow-up is published once, correlated and caused by it.
async fn handled_once_with_its_follow_up<S>(store: S)
where
    S: TransactionalStore + OutboxStore + 'static,
{
    let bus = MemoryBus::new(unique_ident("ferry_test"));
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let reserve = bus
        .consumer("inventory.order-placed")
        .bind(OrderPlaced::NAME)
        .dead_letter("tests.dlx")
        .handle_transactional(store.clone(), Reserve { calls: calls_tx })
        .start()
        .await
        .unwrap();
    let (reserved_tx, mut reserved) = mpsc::unbounded_channel();
    let follow_ups = bus
        .consumer("shipping.stock-reserved")
        .bind(StockReserved::NAME)
        .dead_letter("tests.dlx")
        .handle::<StockReserved>(move |event: StockReserved, ctx: MessageContext| {
            let reserved_tx = reserved_tx.clone();
            async move {
                let _ = reserved_tx.send((event.order_id, ctx.correlation_id().map(str::to_owned)));
                Ok::<_, HandlerError>(())
            }
        })
        .start()
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(store, bus.clone()).run(shutdown.clone()));

    let options = || PublishOptions {
        id: Some("order-1-placed".into()),
        correlation_id: Some("checkout-1".into()),
        ..PublishOptions::default()
    };
    let order = OrderPlaced {
        order_id: "order-1".into(),
    };
    bus.publish_with(&order, options()).await.unwrap();
    bus.publish_with(&order, options()).await.unwrap();

    let got = tokio::time::timeout(Duration::from_secs(10), reserved.recv())
        .await
        .expect("the follow-up reached its consumer")
        .unwrap();
    assert_eq!(got, ("order-1".to_owned(), Some("checkout-1".to_owned())));
    assert_eq!(calls.recv().await.as_deref(), Some("order-1"));
    // The copy is acked without running the handler, and nothing more is published.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(calls.try_recv().is_err(), "the duplicate ran the handler");
    assert!(reserved.try_recv().is_err(), "a second follow-up went out");

    shutdown.cancel();
    relay.await.unwrap().unwrap();
    reserve.shutdown().await;
    follow_ups.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() {
    handled_once_with_its_follow_up(MemoryOutbox::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let db = TempDatabase::create().await.unwrap();
    let pool = ferry_sql::postgres::sqlx::PgPool::connect(db.url())
        .await
        .unwrap();
    ferry_sql::postgres::migrate(&pool).await.unwrap();
    handled_once_with_its_follow_up(ferry_sql::postgres::PgOutbox::new(pool.clone())).await;
    pool.close().await;
    db.drop_db().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite() {
    let path = std::env::temp_dir().join(format!("{}.sqlite", unique_ident("ferry_test")));
    let pool = ferry_sql::sqlite::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    ferry_sql::sqlite::migrate(&pool).await.unwrap();
    handled_once_with_its_follow_up(ferry_sql::sqlite::SqliteOutbox::new(pool.clone())).await;
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
