//! The tracing behavior's span and the slow-request warning, seen by a capturing subscriber.

use std::{
    convert::Infallible,
    fmt::Debug,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ferry_mediator::{Mediator, Request, RequestContext, SlowRequestBehavior, TracingBehavior};
use tracing::{
    Event, Id, Level, Metadata, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Record},
};

#[derive(Debug, Clone)]
struct Captured {
    name: String,
    level: Level,
    fields: Vec<(String, String)>,
    /// The span the event was emitted in.
    span: Option<String>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

#[derive(Default)]
struct State {
    spans: Vec<Captured>,
    events: Vec<Captured>,
    stack: Vec<u64>,
}

#[derive(Clone, Default)]
struct Capture {
    next_id: Arc<AtomicU64>,
    state: Arc<Mutex<State>>,
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let mut state = self.state.lock().unwrap();
        state.spans.push(Captured {
            name: attrs.metadata().name().to_owned(),
            level: *attrs.metadata().level(),
            fields: fields.0,
            span: None,
        });
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        assert_eq!(id as usize, state.spans.len() - 1);
        Id::from_u64(id + 1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut state = self.state.lock().unwrap();
        let span = state
            .stack
            .last()
            .map(|id| state.spans[(*id - 1) as usize].name.clone());
        let name = fields
            .0
            .iter()
            .find(|(n, _)| n == "message")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        state.events.push(Captured {
            name,
            level: *event.metadata().level(),
            fields: fields.0,
            span,
        });
    }

    fn enter(&self, id: &Id) {
        self.state.lock().unwrap().stack.push(id.into_u64());
    }

    fn exit(&self, _: &Id) {
        self.state.lock().unwrap().stack.pop();
    }
}

struct CreateOrder {
    fail: bool,
    millis: u64,
}

impl Request for CreateOrder {
    type Output = u32;
}

async fn create_order(cmd: CreateOrder, _: RequestContext) -> Result<u32, std::io::Error> {
    tokio::time::sleep(Duration::from_millis(cmd.millis)).await;
    if cmd.fail {
        return Err(std::io::Error::other("database down"));
    }
    tracing::info!("inside the handler");
    Ok(1)
}

#[tokio::test(start_paused = true)]
async fn each_request_gets_a_span_and_its_outcome_is_logged_in_it() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let mediator = Mediator::builder()
        .behavior(TracingBehavior)
        .command(create_order)
        .build()
        .unwrap();
    let ctx = RequestContext::new().with_correlation_id("corr-t");
    let request_id = ctx.request_id().to_string();
    mediator
        .send_with(
            CreateOrder {
                fail: false,
                millis: 0,
            },
            ctx,
        )
        .await
        .unwrap();
    mediator
        .send(CreateOrder {
            fail: true,
            millis: 0,
        })
        .await
        .unwrap_err();

    let state = capture.state.lock().unwrap();
    let spans: Vec<_> = state
        .spans
        .iter()
        .filter(|s| s.name == "mediator.request")
        .collect();
    assert_eq!(spans.len(), 2);
    let span = spans[0];
    assert_eq!(span.level, Level::INFO);
    assert_eq!(span.field("request"), Some("CreateOrder"));
    assert_eq!(span.field("kind"), Some("command"));
    assert_eq!(span.field("correlation_id"), Some("corr-t"));
    assert_eq!(span.field("request_id"), Some(request_id.as_str()));

    let in_span = |name: &str| {
        state
            .events
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no event {name:?}: {:?}", state.events))
            .clone()
    };
    assert_eq!(
        in_span("inside the handler").span.as_deref(),
        Some("mediator.request")
    );
    let handled = in_span("request handled");
    assert_eq!(handled.level, Level::DEBUG);
    assert_eq!(handled.span.as_deref(), Some("mediator.request"));
    let failed = in_span("request failed");
    assert_eq!(failed.level, Level::WARN);
    assert!(failed.field("error").unwrap().contains("database down"));
}

#[tokio::test(start_paused = true)]
async fn a_slow_request_is_a_warning() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let mediator = Mediator::builder()
        .behavior(SlowRequestBehavior::new())
        .command(create_order)
        .query(|_: Probe, _: RequestContext| async { Ok::<_, Infallible>(()) })
        .build()
        .unwrap();
    mediator
        .send(CreateOrder {
            fail: false,
            millis: 100,
        })
        .await
        .unwrap();
    mediator.send(Probe).await.unwrap();
    assert!(
        !capture
            .state
            .lock()
            .unwrap()
            .events
            .iter()
            .any(|e| e.name == "slow request")
    );

    mediator
        .send(CreateOrder {
            fail: false,
            millis: 700,
        })
        .await
        .unwrap();
    let state = capture.state.lock().unwrap();
    let slow: Vec<_> = state
        .events
        .iter()
        .filter(|e| e.name == "slow request")
        .collect();
    assert_eq!(slow.len(), 1);
    assert_eq!(slow[0].level, Level::WARN);
    assert!(slow[0].field("request").unwrap().ends_with("CreateOrder"));
    assert_eq!(slow[0].field("threshold_ms"), Some("500"));
    assert!(slow[0].field("elapsed_ms").unwrap().parse::<u64>().unwrap() >= 700);
}

struct Probe;
impl Request for Probe {
    type Output = ();
}
