//! One op's answer, from the writer thread to the task awaiting it: a one-shot slot.
//!
//! # Invariants
//! 1. A slot carries at most one value, from [`ReplyTx::send`]. The receiver sees that value,
//!    or `None` once the sender is gone without sending (the writer stopped): never both, and
//!    it is never left waiting after the sender is gone.
//! 2. A receiver dropped before the answer does not stop the op: the value is simply dropped
//!    with the slot (the op still committed).
//!
//! # Implementation
//! One small `Arc` per op holding a mutex over the value and the receiver's waker. It replaces
//! a `bounded(1)` async channel per op: that is a ~700-byte allocation (cache-padded queue ends,
//! four event lists) and a listener per wait, on every message of the hot path. The mutex is
//! held for a few instructions on each side and is contended at most once per op.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

struct State<T> {
    /// The answer, once sent and until received.
    value: Option<T>,
    /// The receiver's waker, while it waits.
    waker: Option<Waker>,
    /// The sender is gone: no value will come after `value`.
    closed: bool,
}

struct Slot<T> {
    state: Mutex<State<T>>,
}

impl<T> Slot<T> {
    /// The lock; a panic elsewhere while it was held left the state consistent (every critical
    /// section only moves whole fields), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer's half: answers once.
pub(crate) struct ReplyTx<T> {
    /// Taken by `send`, so that `Drop` closes only a slot left unanswered.
    slot: Option<Arc<Slot<T>>>,
}

/// The caller's half: a future of the answer, `None` if the writer dropped the op unanswered.
pub(crate) struct ReplyRx<T> {
    slot: Arc<Slot<T>>,
}

/// A new empty slot.
pub(crate) fn reply_slot<T>() -> (ReplyTx<T>, ReplyRx<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            value: None,
            waker: None,
            closed: false,
        }),
    });
    (
        ReplyTx {
            slot: Some(slot.clone()),
        },
        ReplyRx { slot },
    )
}

impl<T> ReplyTx<T> {
    /// Stores the answer, closes the slot and wakes the receiver: one lock per answer.
    pub(crate) fn send(mut self, value: T) {
        if let Some(slot) = self.slot.take() {
            close(&slot, Some(value));
        }
    }
}

impl<T> Drop for ReplyTx<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            close(&slot, None);
        }
    }
}

/// The sender is done with `slot`, with or without an answer: no value comes after this one.
fn close<T>(slot: &Slot<T>, value: Option<T>) {
    let waker = {
        let mut state = slot.lock();
        // Nothing was sent before: `send` and `drop` each take the slot, once.
        state.value = value;
        state.closed = true;
        state.waker.take()
    };
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl<T> Future for ReplyRx<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.slot.lock();
        if let Some(value) = state.value.take() {
            return Poll::Ready(Some(value));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            other => *other = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> std::fmt::Debug for ReplyRx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyRx").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_sent_from_another_thread_wakes_and_arrives() {
        let (tx, rx) = reply_slot::<u32>();
        let sender = std::thread::spawn(move || tx.send(7));
        assert_eq!(smol::block_on(rx), Some(7));
        assert!(sender.join().is_ok());
    }

    #[test]
    fn reply_sender_dropped_unanswered_ends_the_wait_with_none() {
        let (tx, rx) = reply_slot::<u32>();
        let sender = std::thread::spawn(move || drop(tx));
        assert_eq!(smol::block_on(rx), None);
        assert!(sender.join().is_ok());
    }

    #[test]
    fn reply_sent_before_the_first_poll_is_ready_at_once() {
        let (tx, mut rx) = reply_slot::<&str>();
        tx.send("done");
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(Pin::new(&mut rx).poll(&mut cx), Poll::Ready(Some("done")));
    }

    #[test]
    fn reply_receiver_dropped_first_frees_the_answer_with_the_slot() {
        let answer = Arc::new(());
        let (tx, rx) = reply_slot::<Arc<()>>();
        drop(rx);
        tx.send(answer.clone());
        assert_eq!(
            Arc::strong_count(&answer),
            1,
            "the unread answer was leaked"
        );
    }
}
