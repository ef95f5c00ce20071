//! Sends and their answers: a `send` queued to the store, the FIFO of sends in flight answered
//! in order (`ack` or `error`), and the wait when the store's queue is full.
//!
//! # Invariants
//! 1. Answers leave in the order the sends were read (the session's invariant 5).
//! 2. The common send (open consultation, room in the store's queue) is queued without a
//!    future of its own; only a send that must wait is boxed.
//!
//! # Implementation
//! `Consults::try_begin_send` first; on `None`, `Consults::begin_send` under `wait_queued`,
//! which keeps answering, writing the outbox and pinging while it waits (no frame is read
//! meanwhile, and `heartbeat` is suspended: `Session::hold_reads`).

use super::{End, Session};
use crate::consult::frame_json::ack_json;
use crate::consult::{Caller, ConsultError, Outgoing, SendTicket};
use crate::observe::TraceParent;
use crate::ws::close;
use crate::ws::frames::ServerFrame;
use crate::ws::pipeline::{Outcome, MAX_IN_FLIGHT};
use bytes::Bytes;
use smol::future::FutureExt;
use std::future::Future;

impl Session {
    pub(super) async fn send(
        &mut self,
        consultation: &str,
        client_id: &str,
        body: &str,
        traceparent: Option<&str>,
    ) -> Result<(), End> {
        let now = self.scope.now();
        if !self.bucket.take(now) {
            if self.rate_limited.record(now) {
                return Err(End::Close(close::POLICY, "send flood"));
            }
            self.pipeline.push_known(client_id, Outcome::RateLimited);
            return Ok(());
        }
        let Some((user, role, admin)) = self.caller() else {
            return Ok(());
        };
        // W3C trace context: a child span of the client's parent if it sent a valid one, else
        // of the session's trace. A malformed value is ignored, never echoed.
        let span = traceparent
            .and_then(TraceParent::parse)
            .unwrap_or(self.trace)
            .child();
        let caller = Caller {
            user: &user,
            role,
            admin,
        };
        let ctx = self.ctx.clone();
        let outgoing = Outgoing {
            consultation,
            client_id,
            body,
            traceparent: span,
            ts_ms: ctx.server.timers().unix_ms(),
            session_id: self.id,
        };
        let begun = match ctx.consults.try_begin_send(&caller, &outgoing) {
            Some(begun) => begun,
            // The store's queue is full, or the consultation must be looked up. Boxed: rare,
            // and its state would widen the future of every frame's handling.
            None => {
                let begin = ctx.consults.begin_send(&caller, outgoing);
                Box::pin(self.wait_queued(begin)).await?
            }
        };
        match begun {
            Ok(ticket) => self.pipeline.push_waiting(client_id, ticket),
            Err(error) => self.pipeline.push_known(client_id, Outcome::Failed(error)),
        }
        Ok(())
    }

    /// Waits for a send to be queued while the store's queue is full (or its consultation is
    /// looked up in the store), and meanwhile answers
    /// the sends that commit and writes the outbox: a session held back by the store must still
    /// relay what it has committed (the other member's messages wait in the room for those
    /// seqs) and deliver what others relayed to it, and keep pinging. No frame is read
    /// meanwhile (backpressure), so `heartbeat` is suspended until reading resumes.
    async fn wait_queued(
        &mut self,
        begin: impl Future<Output = Result<SendTicket, ConsultError>>,
    ) -> Result<Result<SendTicket, ConsultError>, End> {
        let mut begin = std::pin::pin!(begin);
        enum Wait {
            Queued(Result<SendTicket, ConsultError>),
            Answered(String, Outcome),
            Outgoing(Option<Bytes>),
            Ping,
        }
        // No frame is read until the send is queued: not the client's silence.
        self.hold_reads(true);
        // Ends when the store takes the op, or the scope is cancelled; each pass answers or
        // writes one frame.
        loop {
            let waited = {
                let Session {
                    scope,
                    pipeline,
                    outbox_rx,
                    ping,
                    ..
                } = &mut *self;
                let queued = async { Wait::Queued(begin.as_mut().await) };
                let answered = async {
                    let (client_id, outcome) = pipeline.next().await;
                    Wait::Answered(client_id, outcome)
                };
                let outgoing = async { Wait::Outgoing(outbox_rx.recv().await) };
                let ping = async {
                    ping.fired().await;
                    Wait::Ping
                };
                scope.run(queued.or(answered).or(outgoing).or(ping)).await
            };
            match waited {
                Ok(Wait::Queued(begun)) => return Ok(begun),
                Ok(Wait::Answered(client_id, outcome)) => self.answer(&client_id, outcome).await?,
                Ok(Wait::Outgoing(Some(frame))) => self.write_frame(frame).await?,
                Ok(Wait::Outgoing(None)) => {
                    return Err(End::Close(close::SLOW_CONSUMER, "slow consumer"))
                }
                Ok(Wait::Ping) => self.ping().await?,
                Err(reason) => return Err(self.end_for(&reason)),
            }
            self.flush().await?;
        }
    }

    /// Writes the frame that answers one send.
    pub(super) async fn answer(&mut self, client_id: &str, outcome: Outcome) -> Result<(), End> {
        match outcome {
            Outcome::Acked { consultation, seq } => {
                self.write_text(ack_json(client_id, &consultation, seq))
                    .await
            }
            // Boxed: rare, and inline they would widen every ack's future.
            Outcome::Failed(error) => Box::pin(self.consult_error(error, client_id)).await,
            Outcome::RateLimited => {
                Box::pin(self.error("rate_limited", "too many sends", Some(client_id))).await
            }
        }
    }

    /// Answers the sends at the head of the FIFO whose outcome is known now, without waiting
    /// for a commit (bounded: the FIFO holds at most [`MAX_IN_FLIGHT`]).
    pub(super) async fn answer_ready(&mut self) -> Result<(), End> {
        for _ in 0..MAX_IN_FLIGHT {
            if self.pipeline.is_empty() {
                break;
            }
            match smol::future::poll_once(self.pipeline.next()).await {
                Some((client_id, outcome)) => self.answer(&client_id, outcome).await?,
                None => break,
            }
        }
        Ok(())
    }

    /// Waits for every send in flight and answers it, oldest first (invariant 5).
    pub(super) async fn settle(&mut self) -> Result<(), End> {
        if self.pipeline.is_empty() {
            return Ok(());
        }
        // Boxed: this rare wait would otherwise widen every socket's task, idle ones included.
        Box::pin(self.settle_all()).await
    }

    async fn settle_all(&mut self) -> Result<(), End> {
        for _ in 0..MAX_IN_FLIGHT {
            if self.pipeline.is_empty() {
                break;
            }
            match self.scope.run(self.pipeline.next()).await {
                Ok((client_id, outcome)) => self.answer(&client_id, outcome).await?,
                Err(reason) => return Err(self.end_for(&reason)),
            }
        }
        Ok(())
    }

    pub(super) async fn consult_error(
        &mut self,
        error: ConsultError,
        reference: &str,
    ) -> Result<(), End> {
        let (code, message) = match &error {
            ConsultError::NotFound => ("not_found", "no such consultation"),
            ConsultError::Forbidden => ("forbidden", "not allowed"),
            ConsultError::Closed => ("closed", "the consultation is closed"),
            ConsultError::Internal(detail) => {
                log::error!(
                    "event=consult_failed session={} error={} scope={}",
                    self.id,
                    crate::observe::LogValue(detail),
                    self.scope.path()
                );
                ("internal", "internal error, try again")
            }
        };
        self.error(code, message, Some(reference)).await
    }

    pub(super) async fn error(
        &mut self,
        code: &str,
        message: &str,
        reference: Option<&str>,
    ) -> Result<(), End> {
        self.write_text(
            ServerFrame::Error {
                code,
                message,
                reference,
            }
            .to_json(),
        )
        .await
    }
}
