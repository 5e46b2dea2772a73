//! Runs a blocking closure on its own thread and awaits it from any async
//! runtime, so proxy resolution never blocks an executor thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Debug)]
struct Slot<R> {
    result: Option<R>,
    waker: Option<Waker>,
}

/// A future of the result of a closure running on another thread.
#[derive(Debug)]
pub(crate) struct BlockingTask<R> {
    slot: Arc<Mutex<Slot<R>>>,
}

/// Starts `f` on a new thread.
pub(crate) fn spawn_blocking<R, F>(f: F) -> std::io::Result<BlockingTask<R>>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        result: None,
        waker: None,
    }));
    let theirs = Arc::clone(&slot);
    std::thread::Builder::new()
        .name("proxystore-resolve".into())
        .spawn(move || {
            let result = f();
            let waker = {
                let mut s = theirs.lock().unwrap_or_else(|e| e.into_inner());
                s.result = Some(result);
                s.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        })?;
    Ok(BlockingTask { slot })
}

impl<R> Future for BlockingTask<R> {
    type Output = R;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
