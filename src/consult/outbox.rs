//! A session's bounded outbound queue, as the rest of the gateway sees it.
//!
//! # Invariants
//! 1. The queue never holds more than `max_messages` frames or `max_bytes` bytes; a push that
//!    would pass either limit cancels the session with `SlowConsumer` (close 4029) instead of
//!    growing memory or slowing the sender. The client loses nothing: it resumes with `after`.
//! 2. Frames are immutable shared buffers: one serialisation serves every recipient.
//! 3. Once closed (overflow, or the session gone), pushes are refused and the receiver gets what
//!    is left, then `None`.
//!
//! # Implementation
//! A single-threaded bounded channel over a `VecDeque` that allocates on first use and gives its
//! memory back when drained. `async_channel::bounded(256)` allocates its whole ring up front:
//! measured at 10 KiB of RSS per idle socket (`BENCHMARKS.md`, "Memory per socket"), more than
//! everything else a session holds but its task.

use crate::observe::Metrics;
use crate::scope::{CancelReason, ScopeRef};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// A drained queue keeps at most this many slots of capacity: a burst's memory is given back,
/// a steady trickle does not reallocate.
const KEEP_CAPACITY: usize = 8;

struct Queue {
    frames: RefCell<VecDeque<Bytes>>,
    /// Bytes of the frames queued now.
    bytes: Cell<usize>,
    closed: Cell<bool>,
    /// The session task waiting in `recv`.
    waker: RefCell<Option<Waker>>,
}

impl Queue {
    fn wake(&self) {
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// The sending side, held by consultations (fan-out) for each joined socket.
#[derive(Clone)]
pub struct Outbox {
    queue: Rc<Queue>,
    max_messages: usize,
    max_bytes: usize,
    /// The session to cancel when the queue overflows.
    session: ScopeRef,
    /// This socket's session id (fan-out skips the sender's own socket).
    pub session_id: u64,
    /// Counts queued frames (the outbound queue depth gauge).
    metrics: Rc<Metrics>,
}

/// The receiving side, owned by the session task.
pub struct OutboxRx {
    queue: Rc<Queue>,
    metrics: Rc<Metrics>,
}

/// A new queue for session `session_id`.
pub fn outbox(
    session_id: u64,
    session: ScopeRef,
    max_messages: usize,
    max_bytes: usize,
    metrics: Rc<Metrics>,
) -> (Outbox, OutboxRx) {
    let queue = Rc::new(Queue {
        frames: RefCell::new(VecDeque::new()),
        bytes: Cell::new(0),
        closed: Cell::new(false),
        waker: RefCell::new(None),
    });
    (
        Outbox {
            queue: queue.clone(),
            max_messages: max_messages.max(1),
            max_bytes,
            session,
            session_id,
            metrics: metrics.clone(),
        },
        OutboxRx { queue, metrics },
    )
}

impl Outbox {
    /// Queues `frame`; false (and the session cancelled as a slow consumer) when full.
    pub fn push(&self, frame: Bytes) -> bool {
        let q = &self.queue;
        if q.closed.get() {
            return false;
        }
        let bytes = q.bytes.get() + frame.len();
        if q.frames.borrow().len() >= self.max_messages || bytes > self.max_bytes {
            self.overflow();
            return false;
        }
        q.frames.borrow_mut().push_back(frame);
        q.bytes.set(bytes);
        self.metrics.outbound_queued(1);
        q.wake();
        true
    }

    /// The consumer cannot keep up: cancel its session with `SlowConsumer` (once).
    pub fn overflow(&self) {
        let q = &self.queue;
        if q.closed.replace(true) {
            return;
        }
        log::info!(
            "event=slow_consumer session={} queued={} queued_bytes={}",
            self.session_id,
            q.frames.borrow().len(),
            q.bytes.get()
        );
        self.session.cancel(CancelReason::SlowConsumer);
        q.wake();
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.queue.frames.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl OutboxRx {
    /// The next frame; `None` once the queue is closed and empty.
    pub async fn recv(&self) -> Option<Bytes> {
        poll_fn(|cx| {
            if let Some(frame) = self.try_recv() {
                return Poll::Ready(Some(frame));
            }
            if self.queue.closed.get() {
                return Poll::Ready(None);
            }
            let mut waker = self.queue.waker.borrow_mut();
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// A frame if one is ready now.
    pub fn try_recv(&self) -> Option<Bytes> {
        let q = &self.queue;
        let mut frames = q.frames.borrow_mut();
        let frame = frames.pop_front()?;
        if frames.is_empty() && frames.capacity() > KEEP_CAPACITY {
            frames.shrink_to(KEEP_CAPACITY);
        }
        q.bytes.set(q.bytes.get().saturating_sub(frame.len()));
        self.metrics.outbound_drained(1);
        Some(frame)
    }

    pub fn len(&self) -> usize {
        self.queue.frames.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for OutboxRx {
    fn drop(&mut self) {
        // The session is gone: refuse further frames, and give the depth gauge back what was
        // never written.
        self.queue.closed.set(true);
        let left = std::mem::take(&mut *self.queue.frames.borrow_mut());
        self.metrics.outbound_drained(left.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::{Runtime, ScopeKind};
    use crate::wheel::{Clock, Timers};

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn outbox_overflow_by_count_or_bytes_cancels_session_once() {
        let rt = Runtime::new(Timers::new(Clock::manual(0)));
        let server = rt.root(ScopeKind::Server, "s");
        let session = server.child(ScopeKind::Session, "u");
        let metrics = Rc::new(Metrics::new());
        let (tx, rx) = outbox(1, session.downgrade(), 2, 100, metrics);
        assert!(tx.push(frame(10)));
        assert!(tx.push(frame(10)));
        assert!(!tx.push(frame(10)), "third frame over the count limit");
        assert_eq!(session.reason(), Some(CancelReason::SlowConsumer));
        assert!(!tx.push(frame(1)), "closed after overflow");
        assert_eq!(rx.try_recv().map(|f| f.len()), Some(10));
        assert_eq!(rx.try_recv().map(|f| f.len()), Some(10));
        assert_eq!(smol::block_on(rx.recv()), None, "drained and closed");

        let session2 = server.child(ScopeKind::Session, "v");
        let (tx2, _rx2) = outbox(2, session2.downgrade(), 100, 25, Rc::new(Metrics::new()));
        assert!(tx2.push(frame(20)));
        assert!(!tx2.push(frame(6)), "26 bytes over the 25-byte limit");
        assert!(session2.is_cancelled());
    }

    #[test]
    fn outbox_gives_memory_back_when_drained() {
        let rt = Runtime::new(Timers::new(Clock::manual(0)));
        let server = rt.root(ScopeKind::Server, "s");
        let session = server.child(ScopeKind::Session, "u");
        let (tx, rx) = outbox(
            1,
            session.downgrade(),
            256,
            1 << 20,
            Rc::new(Metrics::new()),
        );
        assert_eq!(
            tx.queue.frames.borrow().capacity(),
            0,
            "nothing allocated while idle"
        );
        for _ in 0..200 {
            assert!(tx.push(frame(1)));
        }
        while rx.try_recv().is_some() {}
        assert!(tx.queue.frames.borrow().capacity() <= KEEP_CAPACITY);
        drop(rx);
        assert!(!tx.push(frame(1)), "the receiver is gone");
        assert!(
            !session.is_cancelled(),
            "a gone receiver is not a slow consumer"
        );
    }
}
