//! Writing to the socket: frames fed to tungstenite's buffer, one flush per turn, and the
//! `write_stall` deadline only for a write or flush that has to wait.
//!
//! # Invariants
//! 1. A write or flush the socket takes at once arms no timer and boxes nothing.
//! 2. One that waits runs under `write_stall` and the session scope's cancellation (the
//!    session's invariant 2), then disarms the timer.
//!
//! # Implementation
//! Each call polls the tungstenite future once; only when that is pending does it box the rest
//! ([`stalled`]), so the session task's future stays small.

use super::{End, Session, OUTBOX_BATCH};
use crate::scope::{CancelReason, Scope, ScopeTimer};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use bytes::Bytes;
use futures_util::SinkExt;
use std::future::Future;

impl Session {
    pub(super) async fn flush_outbox(&mut self, first: Bytes) -> Result<(), End> {
        self.write_frame(first).await?;
        self.flush_ready_outbox().await
    }

    /// Lets the tasks woken with this one run first, then writes what they queued here.
    /// Boxed by the caller: awaited inline, the yield's state would widen every idle task.
    pub(super) async fn gather_before_flush(&mut self) -> Result<(), End> {
        smol::future::yield_now().await;
        self.flush_ready_outbox().await
    }

    /// Writes what is queued now, at most [`OUTBOX_BATCH`] frames (bounded per turn).
    pub(super) async fn flush_ready_outbox(&mut self) -> Result<(), End> {
        for _ in 0..OUTBOX_BATCH {
            match self.outbox_rx.try_recv() {
                Some(frame) => self.write_frame(frame).await?,
                None => break,
            }
        }
        Ok(())
    }

    pub(super) async fn write_frame(&mut self, frame: Bytes) -> Result<(), End> {
        match Utf8Bytes::try_from(frame) {
            Ok(text) => self.write(Message::Text(text)).await,
            Err(_) => Ok(()),
        }
    }

    pub(super) async fn write_text(&mut self, text: String) -> Result<(), End> {
        self.write(Message::text(text)).await
    }

    /// Feeds one frame to the write buffer (invariant 6: it goes out with the turn's flush, or
    /// earlier once the buffer is full); a feed that has to wait for the socket runs under the
    /// `write_stall` deadline (invariant 2).
    pub(super) async fn write(&mut self, message: Message) -> Result<(), End> {
        self.unflushed = true;
        let stall_ms = self.settings.write_stall_ms;
        let fed = at_once_or_stalled(
            &self.scope,
            &self.write_stall,
            stall_ms,
            self.ws.feed(message),
        );
        let result = fed.await;
        self.written(result)
    }

    /// Sends what was fed since the last flush; a flush that has to wait for the socket runs
    /// under the `write_stall` deadline.
    pub(super) async fn flush(&mut self) -> Result<(), End> {
        if !self.unflushed {
            return Ok(());
        }
        self.unflushed = false;
        let stall_ms = self.settings.write_stall_ms;
        let flushed = at_once_or_stalled(
            &self.scope,
            &self.write_stall,
            stall_ms,
            SinkExt::flush(&mut self.ws),
        );
        let result = flushed.await;
        self.written(result)
    }

    pub(super) fn written(
        &self,
        result: Result<Result<(), WsError>, CancelReason>,
    ) -> Result<(), End> {
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(reason) => Err(self.end_for(&reason)),
        }
    }
}

/// Completes a write or flush at once if the socket takes it (the common case: no timer, no
/// scope wrapper, nothing allocated); else finishes it in [`stalled`], boxed.
async fn at_once_or_stalled(
    scope: &Scope,
    write_stall: &ScopeTimer,
    stall_ms: u64,
    mut io: impl Future<Output = Result<(), WsError>> + Unpin,
) -> Result<Result<(), WsError>, CancelReason> {
    match smol::future::poll_once(&mut io).await {
        Some(done) => Ok(done),
        None => Box::pin(stalled(scope, write_stall, stall_ms, io)).await,
    }
}

/// Finishes a write or flush that could not complete at once (the socket's send buffer is
/// full): under the `write_stall` deadline and the scope's cancellation. Only this slow case
/// arms the timer and pays for the scope's wrapper; callers box it.
async fn stalled(
    scope: &Scope,
    write_stall: &ScopeTimer,
    stall_ms: u64,
    io: impl Future<Output = Result<(), WsError>>,
) -> Result<Result<(), WsError>, CancelReason> {
    write_stall.reset_after(stall_ms);
    let result = scope.run(io).await;
    write_stall.cancel();
    result
}
