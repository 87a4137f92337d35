//! `mediator`: `Mediator::send` with no behaviors against calling the handler directly.
//!
//! The handler finishes at once, so each future is polled to completion once with a no-op
//! waker: what is measured is dispatch, not a runtime's scheduling. Both sides build a fresh
//! `RequestContext` per call (`send` makes one). Each round runs in ten timed chunks and counts its median chunk,
//! so a chunk the scheduler interrupted does not count. `per_s` is calls a second; the
//! overhead is ns per `send` minus ns per direct call.

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Instant,
};

use ferry::mediator::{Mediator, Request, RequestContext};

use super::{
    About, Scenario,
    report::{Measured, ScenarioResult},
    stats::median,
};
use crate::error::BenchError;

/// Timed chunks per round.
const CHUNKS: u64 = 10;

/// Polls a future that is ready at once (or soon) to completion.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// The bench's command.
struct Reserve {
    order: u64,
    quantity: u64,
}

impl Request for Reserve {
    type Output = u64;
}

async fn reserve(command: Reserve, _ctx: RequestContext) -> Result<u64, Infallible> {
    Ok(command
        .order
        .wrapping_mul(31)
        .wrapping_add(command.quantity))
}

fn command(n: u64) -> Reserve {
    Reserve {
        order: black_box(n),
        quantity: black_box(3),
    }
}

/// The `mediator` scenario.
pub struct MediatorBench {
    mediator: Arc<Mediator>,
    iterations: u64,
}

impl MediatorBench {
    /// A Mediator with the one handler and no behaviors.
    pub fn prepare(iterations: u64) -> Result<Self, BenchError> {
        let mediator = Mediator::builder()
            .command(reserve)
            .build()
            .map_err(|e| BenchError::Runtime(format!("cannot build the Mediator: {e}")))?;
        Ok(Self {
            mediator: Arc::new(mediator),
            iterations: iterations.max(1),
        })
    }
}

/// Runs `call` `iterations` times in [`CHUNKS`] timed chunks; the ns per call of the median
/// chunk, so that a chunk the scheduler interrupted (other processes share the CPUs) does not
/// count against either side.
fn timed_chunks(
    iterations: u64,
    mut call: impl FnMut(u64) -> Result<(), BenchError>,
) -> Result<Measured, BenchError> {
    let per_chunk = (iterations / CHUNKS).max(1);
    let mut chunks = Vec::with_capacity(CHUNKS as usize);
    let mut n = 0;
    for _ in 0..CHUNKS {
        let started = Instant::now();
        for _ in 0..per_chunk {
            call(n)?;
            n += 1;
        }
        chunks.push(started.elapsed().as_nanos() as f64 / per_chunk as f64);
    }
    Ok(measured(median(&chunks)))
}

fn measured(ns: f64) -> Measured {
    Measured {
        per_s: if ns > 0.0 { 1e9 / ns } else { 0.0 },
        latency: None,
        ns_per_call: Some(ns),
        breakdown: None,
    }
}

async fn on_blocking_thread(
    f: impl FnOnce() -> Result<Measured, BenchError> + Send + 'static,
) -> Result<Measured, BenchError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BenchError::Runtime(format!("the mediator bench thread failed: {e}")))?
}

const ABOUT: About = About {
    name: "mediator",
    ferry: "Mediator::send, no behaviors (calls/s)",
    baseline: "direct call of the handler (calls/s)",
};

impl Scenario for MediatorBench {
    fn about(&self) -> &'static About {
        &ABOUT
    }

    async fn ferry(&mut self, _harness: &super::harness::Harness) -> Result<Measured, BenchError> {
        let (mediator, iterations) = (Arc::clone(&self.mediator), self.iterations);
        on_blocking_thread(move || {
            timed_chunks(iterations, |n| {
                let out = run(mediator.send(command(n)));
                if black_box(out).is_err() {
                    return Err(BenchError::Runtime("Mediator::send failed".into()));
                }
                Ok(())
            })
        })
        .await
    }

    async fn baseline(
        &mut self,
        _harness: &super::harness::Harness,
    ) -> Result<Measured, BenchError> {
        let iterations = self.iterations;
        on_blocking_thread(move || {
            timed_chunks(iterations, |n| {
                let out = run(reserve(command(n), RequestContext::new()));
                if black_box(out).is_err() {
                    return Err(BenchError::Runtime("the direct call failed".into()));
                }
                Ok(())
            })
        })
        .await
    }

    fn result(
        &self,
        ferry: &[Measured],
        baseline: &[Measured],
        _same_wire: &[Measured],
    ) -> ScenarioResult {
        ScenarioResult::new(self.about(), ferry, baseline).with_overhead(ferry, baseline)
    }
}
