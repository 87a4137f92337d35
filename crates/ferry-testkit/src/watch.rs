//! What a test's code recorded through `tracing` and `metrics`: every span with its fields and
//! its parent's name, and the counters, for the test's thread only (run the test on a
//! current-thread runtime so the tasks it spawns record there too).
//!
//! ```
//! use ferry_testkit::watch::Watch;
//!
//! let watch = Watch::new();
//! tracing::info_span!("ferry.publish", messaging.destination.name = "orders").in_scope(|| {
//!     metrics::counter!("ferry_published_total").increment(2);
//! });
//! let span = watch.one_span("ferry.publish");
//! assert_eq!(span.field("messaging.destination.name"), Some("orders"));
//! assert_eq!(watch.counter("ferry_published_total"), 2);
//! assert_eq!(watch.counter("ferry_published_total"), 0, "a read resets the counters");
//! ```

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{Layer, layer::Context, layer::SubscriberExt, registry::LookupSpan};

/// A span as it was recorded.
#[derive(Debug, Clone, Default)]
pub struct CapturedSpan {
    /// Its name.
    pub name: String,
    /// Its parent's name.
    pub parent: Option<String>,
    /// Its fields, as text.
    pub fields: BTreeMap<String, String>,
}

impl CapturedSpan {
    /// A field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

type Spans = Arc<Mutex<Vec<(u64, CapturedSpan)>>>;

/// A `tracing` layer that records every span with its fields and its parent's name, in
/// creation order.
#[derive(Clone, Default)]
pub struct Capture(Spans);

impl Capture {
    /// The spans named `name` recorded so far (kept).
    pub fn named(&self, name: &str) -> Vec<CapturedSpan> {
        self.lock()
            .iter()
            .filter(|(_, span)| span.name == name)
            .map(|(_, span)| span.clone())
            .collect()
    }

    /// Takes the spans named `name` recorded so far, forgetting every span.
    pub fn take(&self, name: &str) -> Vec<CapturedSpan> {
        std::mem::take(&mut *self.lock())
            .into_iter()
            .map(|(_, span)| span)
            .filter(|span| span.name == name)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, CapturedSpan)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut span = CapturedSpan {
            name: attrs.metadata().name().to_owned(),
            parent: ctx
                .span(id)
                .and_then(|s| s.parent())
                .map(|p| p.name().to_owned()),
            ..CapturedSpan::default()
        };
        attrs.record(&mut Fields(&mut span.fields));
        self.lock().push((id.into_u64(), span));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut spans = self.lock();
        if let Some((_, span)) = spans.iter_mut().rev().find(|(i, _)| *i == id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
}

/// The spans and counters recorded on this thread while it lives.
pub struct Watch {
    capture: Capture,
    snapshotter: Snapshotter,
    _tracing: tracing::subscriber::DefaultGuard,
    _metrics: metrics::LocalRecorderGuard<'static>,
}

impl Default for Watch {
    fn default() -> Self {
        Self::new()
    }
}

impl Watch {
    /// Starts recording on this thread.
    pub fn new() -> Self {
        let capture = Capture::default();
        let tracing =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
        // A local recorder must outlive its guard; one small leak a test.
        let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
        let snapshotter = recorder.snapshotter();
        let metrics = metrics::set_default_local_recorder(recorder);
        Self {
            capture,
            snapshotter,
            _tracing: tracing,
            _metrics: metrics,
        }
    }

    /// The spans recorded.
    pub fn spans(&self) -> &Capture {
        &self.capture
    }

    /// Takes the spans named `name` opened since the last take, forgetting every span.
    pub fn take_spans(&self, name: &str) -> Vec<CapturedSpan> {
        self.capture.take(name)
    }

    /// The one span named `name` opened since the last take; panics unless there is exactly one.
    pub fn one_span(&self, name: &str) -> CapturedSpan {
        let mut spans = self.take_spans(name);
        assert_eq!(spans.len(), 1, "one {name} span: {spans:?}");
        spans.remove(0)
    }

    /// How much the counter `name` rose since the last read (a read resets every counter).
    pub fn counter(&self, name: &str) -> u64 {
        self.snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == name)
            .map(|(_, _, _, value)| match value {
                DebugValue::Counter(n) => n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }
}
