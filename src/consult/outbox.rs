//! A session's bounded outbound queue, as the rest of the gateway sees it.
//!
//! # Invariants
//! 1. The queue never holds more than `max_messages` frames or `max_bytes` bytes; a push that
//!    would pass either limit cancels the session with `SlowConsumer` (close 4029) instead of
//!    growing memory or slowing the sender. The client loses nothing: it resumes with `after`.
//! 2. Frames are immutable shared buffers: one serialisation serves every recipient.
//!
//! # Implementation
//! An `async_channel` bounded by message count (the session task drains it), plus a byte
//! counter shared with the drain side.

use crate::scope::{CancelReason, ScopeRef};
use bytes::Bytes;
use std::cell::Cell;
use std::rc::Rc;

/// The sending side, held by consultations (fan-out) for each joined socket.
#[derive(Clone)]
pub struct Outbox {
    tx: async_channel::Sender<Bytes>,
    queued_bytes: Rc<Cell<usize>>,
    max_bytes: usize,
    /// The session to cancel when the queue overflows.
    session: ScopeRef,
    /// This socket's session id (fan-out skips the sender's own socket).
    pub session_id: u64,
}

/// The receiving side, owned by the session task.
pub struct OutboxRx {
    rx: async_channel::Receiver<Bytes>,
    queued_bytes: Rc<Cell<usize>>,
}

/// A new queue for session `session_id`.
pub fn outbox(
    session_id: u64,
    session: ScopeRef,
    max_messages: usize,
    max_bytes: usize,
) -> (Outbox, OutboxRx) {
    let (tx, rx) = async_channel::bounded(max_messages.max(1));
    let queued_bytes = Rc::new(Cell::new(0));
    (
        Outbox {
            tx,
            queued_bytes: queued_bytes.clone(),
            max_bytes,
            session,
            session_id,
        },
        OutboxRx { rx, queued_bytes },
    )
}

impl Outbox {
    /// Queues `frame`; false (and the session cancelled as a slow consumer) when full.
    pub fn push(&self, frame: Bytes) -> bool {
        let len = frame.len();
        let bytes = self.queued_bytes.get() + len;
        if bytes > self.max_bytes || self.tx.try_send(frame).is_err() {
            self.overflow();
            return false;
        }
        self.queued_bytes.set(bytes);
        true
    }

    /// The consumer cannot keep up: cancel its session with `SlowConsumer` (once).
    pub fn overflow(&self) {
        if !self.tx.is_closed() {
            log::info!(
                "event=slow_consumer session={} queued={} queued_bytes={}",
                self.session_id,
                self.tx.len(),
                self.queued_bytes.get()
            );
            self.session.cancel(CancelReason::SlowConsumer);
            self.tx.close();
        }
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

impl OutboxRx {
    /// The next frame; `None` once the queue is closed and empty.
    pub async fn recv(&self) -> Option<Bytes> {
        let frame = self.rx.recv().await.ok()?;
        self.queued_bytes
            .set(self.queued_bytes.get().saturating_sub(frame.len()));
        Some(frame)
    }

    /// A frame if one is ready now.
    pub fn try_recv(&self) -> Option<Bytes> {
        let frame = self.rx.try_recv().ok()?;
        self.queued_bytes
            .set(self.queued_bytes.get().saturating_sub(frame.len()));
        Some(frame)
    }

    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}
