//! `send` with no behaviors allocates nothing but the handler's own (boxed) future, counted by
//! an allocator that counts the allocations of the current thread.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    convert::Infallible,
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use ferry_mediator::{Mediator, Notification, Request, RequestContext};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
// const-initialised thread-local without a destructor, so touching it never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Polls a future that is ready at once.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

struct GetTotal {
    amount: u64,
}

impl Request for GetTotal {
    type Output = u64;
}

async fn get_total(query: GetTotal, _ctx: RequestContext) -> Result<u64, Infallible> {
    Ok(query.amount * 2)
}

#[derive(Clone)]
struct Tick;
impl Notification for Tick {}

async fn on_tick(_: Tick, _: RequestContext) -> Result<(), Infallible> {
    Ok(())
}

#[test]
fn send_without_behaviors_allocates_only_the_handlers_future() {
    let mediator = Mediator::builder()
        .query(get_total)
        .notification(on_tick)
        .notification(on_tick)
        .notification(on_tick)
        .build()
        .unwrap();
    // Warm up: the process's id prefix and this thread's block of request ids.
    assert_eq!(run(mediator.send(GetTotal { amount: 1 })).unwrap(), 2);

    let before = allocations();
    for amount in 0..100 {
        assert_eq!(run(mediator.send(GetTotal { amount })).unwrap(), amount * 2);
    }
    assert_eq!(allocations() - before, 100, "one allocation per send");

    let before = allocations();
    for _ in 0..100 {
        run(mediator.publish(Tick)).unwrap();
    }
    assert_eq!(
        allocations() - before,
        300,
        "one allocation per notification handler"
    );
}
