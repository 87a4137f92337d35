//! The Mediator behavior that records requests for the harness.

use std::sync::Arc;

use ferry_core::mediator::{
    AnyOutput, AnyRequest, Behavior, MediatorError, Next, NotificationObserver, RequestContext,
};

use crate::{ledger::Ledger, record::RequestRecord};

/// Records each request and whether it succeeded; outermost, so it also sees the requests a
/// validation behavior refuses.
pub(crate) struct RecordRequests(pub(crate) Arc<Ledger>);

impl Behavior for RecordRequests {
    async fn handle(
        &self,
        request: AnyRequest,
        ctx: RequestContext,
        next: Next,
    ) -> Result<AnyOutput, MediatorError> {
        let type_name = request.type_name();
        let correlation_id = ctx.correlation_id().into_owned();
        let result = next.run(request, ctx).await;
        self.0.request(
            false,
            RequestRecord {
                type_name,
                correlation_id,
                error: result.as_ref().err().map(|e| e.to_string()),
            },
        );
        result
    }
}

/// Records each notification published, and whether its handlers succeeded.
pub(crate) struct RecordNotifications(pub(crate) Arc<Ledger>);

impl NotificationObserver for RecordNotifications {
    fn published(
        &self,
        notification: &'static str,
        ctx: &RequestContext,
        result: Result<(), &MediatorError>,
    ) {
        self.0.request(
            true,
            RequestRecord {
                type_name: notification,
                correlation_id: ctx.correlation_id().into_owned(),
                error: result.err().map(|e| e.to_string()),
            },
        );
    }
}
