//! Registration: the builder that checks handlers and orders behaviors.

use std::{
    any::{Any, TypeId, type_name},
    fmt,
    sync::Arc,
};

use super::{
    Behavior, Mediator, MediatorError, Notification, NotificationHandler, PublishStrategy,
    RequestBehavior, RequestHandler, RequestKind, StreamHandler, StreamRequest, Validate,
    ValidationBehavior,
    behavior::{BehaviorChain, DynBehavior, ForRequest, Generic, HandlerTerminal},
    dispatch::{Inner, RequestRoute, StreamRoute},
    notification::NotificationRoute,
    request::{DynRequestHandler, HandlerService, Request, RequestInfo},
    stream::StreamService,
    typemap::TypeMap,
};

/// Builds a [`Mediator`]: every handler and behavior is registered explicitly, and
/// [`build`](MediatorBuilder::build) checks the registrations.
///
/// - A command, query or stream request has exactly one handler: a second one makes `build`
///   fail with [`MediatorError::DuplicateHandler`] naming the type.
/// - A notification has any number of handlers, run in registration order.
/// - Behaviors wrap requests in registration order: the first registered is outermost.
///   [`behavior`](MediatorBuilder::behavior) wraps every request,
///   [`behavior_for`](MediatorBuilder::behavior_for) one request type (which must have a handler).
///   Behaviors do not wrap notifications or stream requests.
#[must_use = "a builder does nothing until build() is called"]
#[derive(Default)]
pub struct MediatorBuilder {
    requests: Vec<Box<dyn PendingRequest>>,
    streams: Vec<PendingStream>,
    notifications: TypeMap<PendingNotification>,
    behaviors: Vec<BehaviorEntry>,
    strategy: PublishStrategy,
    observers: Vec<Arc<dyn crate::NotificationObserver>>,
}

struct BehaviorEntry {
    /// `None` for a generic behavior; the request type for a per-type one.
    target: Option<(TypeId, &'static str)>,
    behavior: Arc<dyn DynBehavior>,
}

struct PendingStream {
    type_id: TypeId,
    name: &'static str,
    route: Box<dyn Any + Send + Sync>,
}

struct PendingNotification {
    name: &'static str,
    handlers: usize,
    route: Box<dyn Any + Send + Sync>,
}

trait PendingRequest: Send + Sync {
    fn request_type(&self) -> TypeId;
    fn info(&self) -> RequestInfo;
    fn finish(self: Box<Self>, chain: Vec<Arc<dyn DynBehavior>>) -> Box<dyn Any + Send + Sync>;
}

struct Pending<R: Request> {
    info: RequestInfo,
    handler: Arc<dyn DynRequestHandler<R>>,
}

impl<R: Request> PendingRequest for Pending<R> {
    fn request_type(&self) -> TypeId {
        TypeId::of::<R>()
    }

    fn info(&self) -> RequestInfo {
        self.info
    }

    fn finish(self: Box<Self>, chain: Vec<Arc<dyn DynBehavior>>) -> Box<dyn Any + Send + Sync> {
        let behaviors = if chain.is_empty() {
            None
        } else {
            let terminal = Arc::new(HandlerTerminal {
                handler: Arc::clone(&self.handler),
            });
            Some(BehaviorChain {
                chain: Arc::from(chain),
                terminal,
            })
        };
        Box::new(RequestRoute {
            info: self.info,
            handler: self.handler,
            behaviors,
        })
    }
}

impl MediatorBuilder {
    /// An empty builder; notifications run [`PublishStrategy::Sequential`] unless told otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the handler of a command (a request that changes state).
    pub fn command<R, H>(self, handler: H) -> Self
    where
        R: Request,
        H: RequestHandler<R>,
    {
        self.request(RequestKind::Command, handler)
    }

    /// Registers the handler of a query (a request that only reads).
    pub fn query<R, H>(self, handler: H) -> Self
    where
        R: Request,
        H: RequestHandler<R>,
    {
        self.request(RequestKind::Query, handler)
    }

    fn request<R, H>(mut self, kind: RequestKind, handler: H) -> Self
    where
        R: Request,
        H: RequestHandler<R>,
    {
        self.requests.push(Box::new(Pending::<R> {
            info: RequestInfo::of::<R>(kind),
            handler: Arc::new(HandlerService(handler)),
        }));
        self
    }

    /// Registers the handler of a stream request.
    pub fn stream<R, H>(mut self, handler: H) -> Self
    where
        R: StreamRequest,
        H: StreamHandler<R>,
    {
        self.streams.push(PendingStream {
            type_id: TypeId::of::<R>(),
            name: type_name::<R>(),
            route: Box::new(StreamRoute::<R> {
                handler: Box::new(StreamService(handler)),
            }),
        });
        self
    }

    /// Adds a handler of a notification; a notification may have any number.
    pub fn notification<N, H>(mut self, handler: H) -> Self
    where
        N: Notification,
        H: NotificationHandler<N>,
    {
        let entry = self
            .notifications
            .entry(TypeId::of::<N>())
            .or_insert_with(|| PendingNotification {
                name: type_name::<N>(),
                handlers: 0,
                route: Box::new(NotificationRoute::<N>::new()),
            });
        if let Some(route) = entry.route.downcast_mut::<NotificationRoute<N>>() {
            route.push(handler);
            entry.handlers = route.len();
        }
        self
    }

    /// Sets how notifications run their handlers (default: [`PublishStrategy::Sequential`]);
    /// [`Mediator::publish_using`] chooses for one publish.
    pub fn publish_strategy(mut self, strategy: PublishStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Adds an observer of every notification published (see [`NotificationObserver`](crate::NotificationObserver)).
    pub fn observe_notifications(mut self, observer: impl crate::NotificationObserver) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Adds a behavior around every request, inside those registered before it.
    pub fn behavior<B: Behavior>(mut self, behavior: B) -> Self {
        self.behaviors.push(BehaviorEntry {
            target: None,
            behavior: Arc::new(Generic(behavior)),
        });
        self
    }

    /// Adds a behavior around requests of type `R` only, inside those registered before it.
    pub fn behavior_for<R, B>(mut self, behavior: B) -> Self
    where
        R: Request,
        B: RequestBehavior<R>,
    {
        self.behaviors.push(BehaviorEntry {
            target: Some((TypeId::of::<R>(), type_name::<R>())),
            behavior: Arc::new(ForRequest::<R, B>::new(behavior)),
        });
        self
    }

    /// Validates requests of type `R` with their [`Validate`] impl at this point of the
    /// pipeline; an invalid request gets [`MediatorError::Validation`] and its handler does not
    /// run. The same as `.behavior_for::<R, _>(ValidationBehavior)`.
    pub fn validate<R: Request + Validate>(self) -> Self {
        self.behavior_for::<R, _>(ValidationBehavior)
    }

    /// Checks the registrations and builds the Mediator.
    ///
    /// # Errors
    ///
    /// [`MediatorError::DuplicateHandler`] when a command, query or stream request has two
    /// handlers; [`MediatorError::BehaviorWithoutHandler`] when a behavior was registered for a
    /// request type that has no handler.
    pub fn build(self) -> Result<Mediator, MediatorError> {
        let mut requests = TypeMap::default();
        let mut wrapped = 0;
        for pending in self.requests {
            let request_type = pending.request_type();
            let info = pending.info();
            if requests.contains_key(&request_type) {
                return Err(MediatorError::DuplicateHandler {
                    request: info.type_name,
                });
            }
            let chain: Vec<Arc<dyn DynBehavior>> = self
                .behaviors
                .iter()
                .filter(|entry| {
                    entry
                        .target
                        .is_none_or(|(target, _)| target == request_type)
                })
                .map(|entry| Arc::clone(&entry.behavior))
                .collect();
            if !chain.is_empty() {
                wrapped += 1;
            }
            requests.insert(request_type, pending.finish(chain));
        }
        if let Some((_, request)) = self
            .behaviors
            .iter()
            .filter_map(|entry| entry.target)
            .find(|(target, _)| !requests.contains_key(target))
        {
            return Err(MediatorError::BehaviorWithoutHandler { request });
        }

        let mut streams = TypeMap::default();
        for pending in self.streams {
            if streams.insert(pending.type_id, pending.route).is_some() {
                return Err(MediatorError::DuplicateHandler {
                    request: pending.name,
                });
            }
        }

        let notification_handlers = self.notifications.values().map(|n| n.handlers).sum();
        tracing::debug!(
            requests = requests.len(),
            wrapped_by_behaviors = wrapped,
            streams = streams.len(),
            notifications = self.notifications.len(),
            notification_handlers,
            behaviors = self.behaviors.len(),
            "mediator built"
        );
        Ok(Mediator {
            inner: Arc::new(Inner {
                requests,
                streams,
                notifications: self
                    .notifications
                    .into_iter()
                    .map(|(id, pending)| (id, pending.route))
                    .collect(),
                strategy: self.strategy,
                observers: self.observers,
                behaviors: self.behaviors.len(),
                notification_handlers,
            }),
        })
    }
}

impl fmt::Debug for MediatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediatorBuilder")
            .field(
                "requests",
                &self
                    .requests
                    .iter()
                    .map(|r| r.info().type_name)
                    .collect::<Vec<_>>(),
            )
            .field(
                "streams",
                &self.streams.iter().map(|s| s.name).collect::<Vec<_>>(),
            )
            .field(
                "notifications",
                &self
                    .notifications
                    .values()
                    .map(|n| (n.name, n.handlers))
                    .collect::<Vec<_>>(),
            )
            .field("behaviors", &self.behaviors.len())
            .field("strategy", &self.strategy)
            .finish()
    }
}
