//! The end of the stack: a consumer's handlers, type-erased. A handler decodes its typed event
//! (a failure is permanent, as the decode error's kind), then runs; a transactional one runs in
//! a transaction of its store with the message's inbox row (see [`crate::transactional`]).

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures::{FutureExt, future::BoxFuture};

use super::{
    outcome::{Failure, Handled, Outcome},
    recover::panic_message,
};
use crate::{
    HandlerError, IntegrationEvent, IntegrationEventHandler, MessageContext,
    codec::{self, Decoded},
    transactional::{StoreTransaction, TransactionalHandler, TransactionalStore, TxContext},
};

/// A handler, for the stack to call with the decoded message and its context.
pub(crate) type ErasedHandler =
    Arc<dyn Fn(Arc<Decoded>, MessageContext) -> BoxFuture<'static, Outcome> + Send + Sync>;

/// A plain handler; its panics are caught by the recover layer around it.
pub(crate) fn erase<E: IntegrationEvent>(
    handler: impl IntegrationEventHandler<E>,
) -> ErasedHandler {
    let handler = Arc::new(handler);
    Arc::new(move |decoded: Arc<Decoded>, ctx: MessageContext| {
        let handler = Arc::clone(&handler);
        Box::pin(async move {
            let event = codec::decode_event::<E>(&decoded)?;
            handler.handle(event, ctx).await?;
            Ok(Handled::Done)
        })
    })
}

/// A transactional handler: begin, insert the inbox row (a duplicate runs `on_duplicate` and is
/// not handled), run the handler, commit. It catches its handler's panics itself, to roll back.
pub(crate) fn erase_transactional<E, S, H>(store: S, handler: H) -> ErasedHandler
where
    E: IntegrationEvent,
    S: TransactionalStore,
    H: TransactionalHandler<E, S::Transaction>,
{
    let handler = Arc::new(handler);
    Arc::new(move |decoded: Arc<Decoded>, ctx: MessageContext| {
        let handler = Arc::clone(&handler);
        let store = store.clone();
        Box::pin(async move {
            let event = codec::decode_event::<E>(&decoded)?;
            let transient = |e: &dyn std::fmt::Display| {
                Failure::handler(HandlerError::transient(e.to_string()))
            };
            let mut tx = store.begin().await.map_err(|e| transient(&e))?;
            match tx.insert_inbox(ctx.consumer(), ctx.message_id()).await {
                Ok(true) => {}
                Ok(false) => {
                    let mut cx = TxContext::new(tx, ctx);
                    let result = AssertUnwindSafe(handler.on_duplicate(&mut cx))
                        .catch_unwind()
                        .await;
                    let (tx, _) = cx.into_parts();
                    match result {
                        Ok(Ok(())) => {
                            if let Err(e) = tx.commit().await {
                                tracing::warn!(error = %e, "could not commit on_duplicate's writes");
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "on_duplicate failed; the duplicate is acked");
                            rollback(tx).await;
                        }
                        Err(_) => {
                            tracing::warn!("on_duplicate panicked; the duplicate is acked");
                            rollback(tx).await;
                        }
                    }
                    tracing::debug!("duplicate skipped: the inbox row is there");
                    return Ok(Handled::Duplicate);
                }
                Err(e) => {
                    rollback(tx).await;
                    return Err(transient(&e));
                }
            }
            let mut cx = TxContext::new(tx, ctx);
            let result = AssertUnwindSafe(handler.handle(event, &mut cx))
                .catch_unwind()
                .await;
            let (tx, _) = cx.into_parts();
            match result {
                Ok(Ok(())) => match tx.commit().await {
                    Ok(()) => Ok(Handled::Done),
                    Err(e) => Err(transient(&format_args!(
                        "could not commit the handler's transaction: {e}"
                    ))),
                },
                Ok(Err(e)) => {
                    rollback(tx).await;
                    Err(Failure::handler(e))
                }
                Err(panic) => {
                    rollback(tx).await;
                    Err(Failure::panic(&panic_message(&panic)))
                }
            }
        })
    })
}

/// Rolls a transaction back; a failure only means the database ends it for us.
async fn rollback<T: StoreTransaction>(tx: T) {
    if let Err(e) = tx.rollback().await {
        tracing::debug!(error = %e, "rollback failed; the database ends the transaction");
    }
}
