//! Stream requests: items, item errors, missing handlers and cancellation.

use std::convert::Infallible;

use ferry_mediator::{
    CancellationToken, Mediator, MediatorError, RequestContext, StreamHandler, StreamRequest,
};
use futures::{Stream, StreamExt, stream};

struct Countdown {
    from: u32,
}
impl StreamRequest for Countdown {
    type Item = u32;
}

fn countdown(
    request: Countdown,
    _ctx: RequestContext,
) -> impl Stream<Item = Result<u32, Infallible>> {
    stream::iter((0..=request.from).rev().map(Ok))
}

/// Yields the numbers up to `limit`, the odd ones as errors; a handler type with state.
struct EvensOnly {
    limit: u32,
}

struct Numbers;
impl StreamRequest for Numbers {
    type Item = u32;
}

impl StreamHandler<Numbers> for EvensOnly {
    type Error = std::io::Error;

    fn handle(
        &self,
        _request: Numbers,
        _ctx: RequestContext,
    ) -> impl Stream<Item = Result<u32, std::io::Error>> + Send + 'static {
        stream::iter((1..=self.limit).map(|n| {
            if n % 2 == 0 {
                Ok(n)
            } else {
                Err(std::io::Error::other(format!("{n} is odd")))
            }
        }))
    }
}

/// Never ends on its own.
struct Forever;
impl StreamRequest for Forever {
    type Item = u64;
}

#[tokio::test]
async fn a_stream_request_yields_the_handlers_items() {
    let mediator = Mediator::builder().stream(countdown).build().unwrap();
    let items: Vec<u32> = mediator
        .stream(Countdown { from: 3 })
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items, [3, 2, 1, 0]);
}

#[tokio::test]
async fn item_errors_are_handler_errors_and_the_stream_goes_on() {
    let mediator = Mediator::builder()
        .stream(EvensOnly { limit: 4 })
        .build()
        .unwrap();
    let items: Vec<Result<u32, MediatorError>> = mediator.stream(Numbers).unwrap().collect().await;
    assert_eq!(items.len(), 4);
    assert!(matches!(items[1], Ok(2)));
    assert!(matches!(items[3], Ok(4)));
    let err = items[0].as_ref().unwrap_err();
    assert!(matches!(err, MediatorError::Handler { request, .. } if request.ends_with("Numbers")));
    assert_eq!(
        err.handler_error::<std::io::Error>().unwrap().to_string(),
        "1 is odd"
    );
}

#[tokio::test]
async fn a_stream_request_without_handler_is_a_typed_error() {
    let mediator = Mediator::builder().stream(countdown).build().unwrap();
    let err = mediator.stream(Numbers).err().unwrap();
    assert!(matches!(err, MediatorError::NoHandler { request } if request.ends_with("Numbers")));
}

#[tokio::test]
async fn cancelling_the_context_ends_the_stream_with_cancelled() {
    let mediator = Mediator::builder()
        .stream(|_: Forever, _: RequestContext| stream::iter(0u64..).map(Ok::<_, Infallible>))
        .build()
        .unwrap();
    let token = CancellationToken::new();
    let mut items = mediator
        .stream_with(
            Forever,
            RequestContext::new().with_cancellation(token.clone()),
        )
        .unwrap();
    assert_eq!(items.next().await.unwrap().unwrap(), 0);
    assert_eq!(items.next().await.unwrap().unwrap(), 1);
    token.cancel();
    let last = items.next().await.unwrap();
    assert!(last.unwrap_err().is_cancelled());
    assert!(items.next().await.is_none());
}

#[tokio::test]
async fn the_handler_gets_the_context() {
    let mediator = Mediator::builder()
        .stream(|request: Countdown, ctx: RequestContext| {
            let correlation = ctx.correlation_id().into_owned();
            stream::iter(0..request.from)
                .map(move |_| Ok::<_, Infallible>(correlation.len() as u32))
        })
        .build()
        .unwrap();
    let items: Vec<_> = mediator
        .stream_with(
            Countdown { from: 2 },
            RequestContext::new().with_correlation_id("four"),
        )
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items, [4, 4]);
}
