//! One WebSocket session: authentication, the frame loop, commands, deadlines, and the close.
//!
//! # Invariants
//! 1. The task owns the socket; it is the only writer. Other parts reach it through its outbox.
//! 2. Each deadline of SPEC §5 is a named deadline of the session scope: `auth` (first-frame auth
//!    only), `heartbeat` (read deadline, re-armed by every frame; suspended while the store
//!    holds reading back, see [`Session::hold_reads`]), `idle` (re-armed by join, send,
//!    leave), `token` (re-armed by renew), `session_limit` share one wheel entry armed for the
//!    earliest ([`crate::scope::deadlines`]); `write_stall` (armed while a write or flush waits
//!    for the socket) has its own. Alarms `ping` and `token_expiring` only wake the loop.
//! 3. When the scope is cancelled, the socket is closed with the code for the reason
//!    ([`super::close::for_reason`]), and that code is logged and counted.
//! 4. A panic while handling a frame closes only this socket, with 1011.
//! 5. Every frame is answered in the order it was read: up to [`MAX_IN_FLIGHT`] sends wait for
//!    their commits in a FIFO ([`super::pipeline`]) while later frames are read; any other
//!    command first waits for the sends before it to be answered.
//! 6. Frames written in one turn of the loop go out with one flush, and every turn ends flushed.
//!
//! # Implementation
//! One loop selects, in priority order, on: cancellation, the oldest send's outcome, an incoming
//! frame (not while the FIFO is full: backpressure), an outbound frame, the ping alarm, the
//! token-expiry warning. Writes are fed to tungstenite's write buffer and flushed once at the end
//! of the turn. Child modules: `send` (sends, their answers in order, the full-store wait) and
//! `write` (writing and flushing, under `write_stall` only when the socket makes them wait).
//!
//! Memory: an idle socket waits in that select for most of its life, so the task's future is
//! kept to the `Session` and the select. The handlers' futures are boxed for the time they run,
//! one allocation per event (984 B for an incoming frame, under glibc's 1 KiB tcache limit:
//! the rare commands are boxed again inside it, and the common `send` needs no future of its
//! own); so are the one-off futures of `run` (setup, authentication, the close). Measured at
//! 10,000 sockets: 9.78 → 8.37 KiB per socket from this boxing alone.

use super::close;
use super::frames::{decode_client_frame, ClientFrame, FrameError, ServerFrame};
use super::limits::{BadFrames, SendBucket};
use super::pipeline::{Outcome, Pipeline, MAX_IN_FLIGHT};
use super::{SessionCtx, SessionSettings};
use crate::auth::{AuthError, Claims, LiveGuard, TokenType};
use crate::consult::outbox::{outbox, Outbox, OutboxRx};
use crate::consult::{Caller, REPLAY_PAGE};
use crate::http::Upgraded;
use crate::observe::TraceParent;
use crate::scope::{CancelReason, Scope, ScopeDeadlines, ScopeTimer};
use crate::ws::tcp_socket::TcpSocket;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use smol::future::FutureExt;
use smol::stream::StreamExt;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

mod send;
mod write;

/// tungstenite reads in chunks of this size and keeps that much buffer per socket: its 128 KiB
/// default costs 128 KiB of RSS per idle socket once the first read fills it. Chat frames are
/// a few hundred bytes and fit one read; a larger one takes more reads (a 16 KiB one, 32).
/// 1 KiB cost 0.5 KiB more per idle socket (measured at 10,000).
pub const READ_BUFFER_BYTES: usize = 512;
/// Frames fed in one turn collect in tungstenite's write buffer up to this size and go out with
/// the turn's one flush (invariant 6); past it tungstenite writes early, so the buffer of a socket
/// that took a burst stays near this size. Ten or so chat frames: enough for a batch of acks or a
/// drained outbox to leave in one `sendto`.
pub const WRITE_BUFFER_BYTES: usize = 4096;
/// How long a close handshake may take before the socket is simply dropped.
pub const CLOSE_GRACE_MS: u64 = 1000;
/// Outbound frames written per turn before incoming frames are looked at again.
const OUTBOX_BATCH: usize = 32;
/// Incoming frames handled per turn when they are already readable: a FIFO's worth, so a
/// pipelining client's burst costs one turn; bounded so the outbox and timers get their turn.
const INCOMING_BATCH: usize = MAX_IN_FLIGHT;
/// Rate-limited sends beyond this many per bad-frame window count as abuse (close 1008).
const RATE_LIMITED_ABUSE_FACTOR: u32 = 5;

/// The session's deadlines (invariant 2), by index into [`DEADLINE_NAMES`]; listed in the
/// order that wins a tie.
const AUTH: usize = 0;
const HEARTBEAT: usize = 1;
const IDLE: usize = 2;
const TOKEN: usize = 3;
const SESSION_LIMIT: usize = 4;
/// The names the deadlines fire, log and count under (close codes: [`super::close`]).
const DEADLINE_NAMES: &[&str] = &["auth", "heartbeat", "idle", "token", "session_limit"];

/// What the session does with frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The consultation protocol.
    Chat,
    /// `/debug/echo`: same machinery, frames echoed (conformance testing).
    Echo,
}

type Ws = WebSocketStream<TcpSocket>;

/// How the loop ended.
enum End {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// The peer is gone or closed; nothing more to send.
    Gone,
}

struct Session {
    ctx: Rc<SessionCtx>,
    scope: Scope,
    ws: Ws,
    id: u64,
    mode: Mode,
    /// The settings this session started with (shared, see [`SessionCtx::settings`]).
    settings: Rc<SessionSettings>,
    trace: TraceParent,
    /// What the session keeps of the verified claims, copied in (nothing of the request lives
    /// on); `None` until authenticated.
    claims: Option<SessionClaims>,
    live: Option<LiveGuard>,
    outbox: Outbox,
    outbox_rx: OutboxRx,
    /// The consultations this socket is subscribed to (live), left when it ends.
    joined: Joined,
    /// `auth`, `heartbeat`, `idle`, `token`, `session_limit` (by the consts above), on one
    /// wheel entry (invariant 2).
    deadlines: ScopeDeadlines,
    ping: ScopeTimer,
    write_stall: ScopeTimer,
    /// `Some` once authenticated.
    expiring: Option<ScopeTimer>,
    bucket: SendBucket,
    bad_frames: BadFrames,
    rate_limited: BadFrames,
    /// Sends read but not yet answered, oldest first (invariant 5).
    pipeline: Pipeline,
    /// True when frames were fed since the last flush (invariant 6).
    unflushed: bool,
}

/// The part of the verified claims a session uses after `ready`: who (`sub`, `role`) and until
/// when (`exp`, moved by `renew`). The `sid` lives in the session's [`LiveGuard`], the `jti` and
/// `iat` matter to token rotation only. 32 B in every socket's task where the whole `Claims`
/// took 96 B and a heap copy of the sid.
struct SessionClaims {
    /// Shared, not copied, with each send and join that needs it ([`Session::caller`]).
    sub: Rc<str>,
    role: crate::auth::Role,
    /// The access token's `exp` (unix s), as last renewed.
    exp: u64,
}

/// The WebSocket configuration for small devices.
pub fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(max_message_bytes * 4)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// What a session starts from. Boxed by [`run`]: an `async fn` keeps its arguments in its
/// future for its whole life, ~250 B of a socket that only needs them to set up.
pub struct Start {
    pub scope: Scope,
    pub ctx: Rc<SessionCtx>,
    pub upgraded: Upgraded,
    /// The upgrade's verified claims; `None` when the client authenticates with an `auth` frame.
    pub claims: Option<Claims>,
    pub trace: TraceParent,
    pub mode: Mode,
}

/// Runs a session on an upgraded socket inside `start.scope` until it closes.
pub fn run(start: Start) -> impl Future<Output = ()> {
    let start = Box::new(start);
    async move {
        // Boxed: awaited inline, `open`'s future (~500 B) would stay in the task's state.
        let (mut session, claims, guard) = Box::pin(open(start)).await;
        let end = match claims {
            Some(claims) => match Box::pin(session.authenticated(claims)).await {
                Ok(()) => session.run_loop().await,
                Err(end) => end,
            },
            None => session.run_loop().await,
        };
        Box::pin(session.finish(end)).await;
        drop(guard);
    }
}

/// Sets the session up: the WebSocket over the upgraded socket, its outbox and deadlines.
/// Returns it with the upgrade's claims (if any) and the connection's accounting guard.
async fn open(start: Box<Start>) -> (Session, Option<Claims>, Box<dyn Any>) {
    let Start {
        scope,
        ctx,
        upgraded,
        claims,
        trace,
        mode,
    } = *start;
    let settings = ctx.settings.borrow().clone();
    let Upgraded {
        stream,
        mut leftover,
        guard,
        peer,
    } = upgraded;
    // tungstenite takes this `Vec`'s allocation as its read buffer: without the shrink every
    // socket would keep the HTTP head buffer (~1 KiB with a bearer token) instead of
    // `READ_BUFFER_BYTES`.
    leftover.shrink_to_fit();
    let ws = WebSocketStream::from_partially_read(
        TcpSocket::new(stream),
        leftover,
        Role::Server,
        Some(ws_config(settings.max_message_bytes)),
    )
    .await;
    ctx.metrics.inc_upgrade();
    let id = ctx.next_session_id();
    let now = scope.now();
    let (outbox, outbox_rx) = outbox(
        id,
        scope.downgrade(),
        settings.outbound_queue_messages,
        settings.outbound_queue_bytes,
        ctx.metrics.clone(),
    );
    let deadlines = scope.deadlines(DEADLINE_NAMES);
    if claims.is_none() && mode == Mode::Chat {
        deadlines.set(AUTH, now + settings.auth_timeout_ms);
    }
    deadlines.set(HEARTBEAT, now + settings.read_timeout_ms);
    deadlines.set(SESSION_LIMIT, now + settings.session_limit_ms);
    let session = Session {
        deadlines,
        ping: scope.alarm(
            "ping",
            now + super::heartbeat::first_ping_after_ms(id, settings.heartbeat_ms),
        ),
        write_stall: scope.deadline("write_stall", u64::MAX),
        expiring: None,
        bucket: SendBucket::new(settings.send_rate_per_s, settings.send_burst, now),
        bad_frames: BadFrames::new(settings.bad_frames_max, settings.bad_frames_window_ms, now),
        rate_limited: BadFrames::new(
            settings.bad_frames_max * RATE_LIMITED_ABUSE_FACTOR,
            settings.bad_frames_window_ms,
            now,
        ),
        ctx,
        scope,
        ws,
        id,
        mode,
        settings,
        trace,
        claims: None,
        live: None,
        outbox,
        outbox_rx,
        joined: Joined::default(),
        pipeline: Pipeline::new(),
        unflushed: false,
    };
    session.write_stall.cancel();
    // One line for the upgrade and, when the token came on it, its authentication: a second
    // line in the same turn cost every socket ~6k instructions (docs/perf.md, "Upgrades").
    // First-frame `auth` logs `ws_authenticated` when it succeeds.
    match &claims {
        Some(claims) => log::info!(
            "event=ws_open session={id} peer={} mode={mode:?} authenticated=true user={} role={} scope={} trace_id={}",
            crate::observe::log::PeerAddr(&peer),
            crate::observe::LogValue(&claims.sub),
            claims.role,
            session.scope.path(),
            session.trace.trace_id_field()
        ),
        None => log::info!(
            "event=ws_open session={id} peer={} mode={mode:?} authenticated=false scope={} trace_id={}",
            crate::observe::log::PeerAddr(&peer),
            session.scope.path(),
            session.trace.trace_id_field()
        ),
    }
    (session, claims, guard)
}

/// The consultations a socket is subscribed to: a handful at most, so a small `Vec` (24 B, one
/// small allocation on the first join) rather than a hash set (48 B and a 128 B table).
#[derive(Default)]
struct Joined(Vec<String>);

impl Joined {
    fn insert(&mut self, consultation: String) {
        if !self.0.contains(&consultation) {
            // Usually the only one: room for one, not the four a first push reserves.
            self.0.reserve_exact(1);
            self.0.push(consultation);
        }
    }

    fn remove(&mut self, consultation: &str) {
        self.0.retain(|c| c != consultation);
    }
}

impl IntoIterator for Joined {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

enum Event {
    Cancelled(CancelReason),
    Answered(String, Outcome),
    Incoming(Option<Result<Message, WsError>>),
    Outgoing(Option<Bytes>),
    Ping,
    Expiring,
}

impl Session {
    async fn run_loop(&mut self) -> End {
        // `ready`, when the upgrade carried the token, was fed before the loop (invariant 6).
        if let Err(end) = Box::pin(self.flush()).await {
            return end;
        }
        loop {
            self.hold_reads(self.pipeline.is_full());
            let event = {
                let Session {
                    scope,
                    ws,
                    outbox_rx,
                    ping,
                    expiring,
                    pipeline,
                    ..
                } = &mut *self;
                // Backpressure (invariant 5): no frame is read while the FIFO is full.
                let full = pipeline.is_full();
                let cancelled = async { Event::Cancelled(scope.cancelled().await) };
                let answered = async {
                    let (client_id, outcome) = pipeline.next().await;
                    Event::Answered(client_id, outcome)
                };
                let incoming = async {
                    if full {
                        std::future::pending::<()>().await;
                    }
                    Event::Incoming(ws.next().await)
                };
                let outgoing = async { Event::Outgoing(outbox_rx.recv().await) };
                let ping = async {
                    ping.fired().await;
                    Event::Ping
                };
                let expiring = async {
                    match expiring {
                        Some(timer) => timer.fired().await,
                        None => std::future::pending().await,
                    }
                    Event::Expiring
                };
                cancelled
                    .or(answered)
                    .or(incoming)
                    .or(outgoing)
                    .or(ping)
                    .or(expiring)
                    .await
            };
            // Each handler's future is boxed for the time it runs: an idle socket then keeps
            // only the select above, not the largest handler's state (module doc).
            // A commit woke this turn: the other member's session was likely woken with it.
            let committed = matches!(event, Event::Answered(..));
            let step = match event {
                Event::Cancelled(reason) => Err(self.end_for(&reason)),
                Event::Answered(client_id, outcome) => {
                    Box::pin(self.answer(&client_id, outcome)).await
                }
                Event::Incoming(None) => Err(End::Gone),
                Event::Incoming(Some(frame)) => match Box::pin(self.on_incoming_batch(frame)).await
                {
                    // A client whose frames are always ready must not starve its own outbox.
                    // Boxed only when there is a frame to write: a sender's turn usually has
                    // none, and an empty outbox would only cost the box.
                    Ok(()) if !self.outbox_rx.is_empty() => {
                        Box::pin(self.flush_ready_outbox()).await
                    }
                    other => other,
                },
                Event::Outgoing(Some(frame)) => Box::pin(self.flush_outbox(frame)).await,
                Event::Outgoing(None) => Err(End::Close(close::SLOW_CONSUMER, "slow consumer")),
                Event::Ping => Box::pin(self.ping()).await,
                Event::Expiring => Box::pin(self.warn_expiring()).await,
            };
            // Answers that are ready now leave with this turn's flush (invariant 6). These steps
            // are boxed, and only when there is work: inline, their futures (an answer's write, the
            // flush under `Scope::run`) would stay in every idle socket's task.
            // Before flushing the ack of a commit, let the other sessions woken by the same
            // commit run once: what they relay here (the other member's message) then leaves
            // in this flush with the ack, one `sendto` where there were two. At 20,000 msgs/s
            // this cut the executor's CPU ~10% and the p99 in each of three paired runs
            // (docs/perf.md); at 1,000 msgs/s the latency did not move. Only after a commit:
            // yielding in every turn that wrote (joins, presence) cost 0.06 KiB per idle socket
            // at 10,000 (heap holes from the boxes held across the yield).
            let step = match step {
                Ok(()) if committed && self.unflushed => Box::pin(self.gather_before_flush()).await,
                other => other,
            };
            let step = match step {
                Ok(()) if !self.pipeline.is_empty() => Box::pin(self.answer_ready()).await,
                other => other,
            };
            let step = match step {
                Ok(()) if self.unflushed => Box::pin(self.flush()).await,
                other => other,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Writes the heartbeat's Ping and re-arms its alarm.
    async fn ping(&mut self) -> Result<(), End> {
        self.ping.reset_after(self.settings.heartbeat_ms);
        self.write(Message::Ping(Bytes::new())).await
    }

    /// Suspends `heartbeat` while the session reads no frames because the store holds it
    /// back (a full FIFO, or a send waiting for room in the store's queue), and re-arms it
    /// for a whole read timeout when reading resumes. The client's frames then wait in our
    /// socket buffer: its silence is ours, and a store stall longer than the read timeout must
    /// not close every waiting socket with 4004 ("reconnect"), whose clients would resend into
    /// the same stalled store. Pings go on meanwhile.
    fn hold_reads(&self, held: bool) {
        match (held, self.deadlines.at(HEARTBEAT)) {
            (true, Some(_)) => self.deadlines.clear(HEARTBEAT),
            (false, None) => self
                .deadlines
                .set_after(HEARTBEAT, self.settings.read_timeout_ms),
            _ => {}
        }
    }

    fn end_for(&self, reason: &CancelReason) -> End {
        match close::for_reason(reason) {
            Some((code, text)) => End::Close(code, text),
            None => End::Gone,
        }
    }

    // ---------------------------------------------------------------- incoming

    /// Handles `first`, then the frames that are already readable, at most [`INCOMING_BATCH`]
    /// and never past a full FIFO (backpressure): one turn of the loop, and one flush, for the
    /// frames a pipelining client sent together.
    async fn on_incoming_batch(&mut self, first: Result<Message, WsError>) -> Result<(), End> {
        self.on_incoming(first).await?;
        for _ in 1..INCOMING_BATCH {
            if self.pipeline.is_full() {
                break;
            }
            match smol::future::poll_once(self.ws.next()).await {
                Some(Some(frame)) => self.on_incoming(frame).await?,
                Some(None) => return Err(End::Gone),
                None => break,
            }
        }
        Ok(())
    }

    async fn on_incoming(&mut self, frame: Result<Message, WsError>) -> Result<(), End> {
        let message = match frame {
            Ok(message) => message,
            Err(WsError::Capacity(_)) => return Err(End::Close(close::TOO_BIG, "message too big")),
            Err(WsError::Utf8(_)) => {
                return Err(End::Close(close::INVALID_PAYLOAD, "invalid UTF-8"))
            }
            Err(WsError::Protocol(_)) => {
                return Err(End::Close(close::PROTOCOL_ERROR, "protocol error"))
            }
            Err(_) => return Err(End::Gone),
        };
        // Any frame from the client proves it is there (invariant 2).
        self.deadlines
            .set_after(HEARTBEAT, self.settings.read_timeout_ms);
        match message {
            Message::Text(text) => {
                if self.mode == Mode::Echo {
                    return self.write(Message::Text(text)).await;
                }
                let handled = AssertUnwindSafe(self.on_text(text.as_str()))
                    .catch_unwind()
                    .await;
                match handled {
                    Ok(result) => result,
                    Err(payload) => {
                        log::error!(
                            "event=panic session={} scope={} panic={:?}",
                            self.id,
                            self.scope.path(),
                            crate::scope::task::panic_message(&*payload)
                        );
                        Err(End::Close(close::INTERNAL, "internal error"))
                    }
                }
            }
            Message::Binary(data) => {
                if self.mode == Mode::Echo {
                    return self.write(Message::Binary(data)).await;
                }
                Err(End::Close(
                    close::UNSUPPORTED_DATA,
                    "binary frames are not supported",
                ))
            }
            Message::Close(_) => {
                // tungstenite answers the close; keep polling so the answer is flushed.
                Box::pin(self.drain_close()).await;
                Err(End::Gone)
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        // Every command that answers settles the sends before it first (invariant 5): `send`
        // queues behind them, `leave` answers nothing.
        let frame = match decode_client_frame(text) {
            Ok(frame) => frame,
            Err(error) => return Box::pin(self.bad_frame(error)).await,
        };
        if self.claims.is_none() {
            // Before authentication only `auth` is accepted; anything else is a bad auth.
            return match frame {
                ClientFrame::Auth { token } => Box::pin(self.first_frame_auth(&token)).await,
                _ => Err(End::Close(close::POLICY, "authenticate first")),
            };
        }
        match frame {
            ClientFrame::Auth { .. } => {
                self.settle().await?;
                Box::pin(self.error("bad_request", "already authenticated", Some("auth"))).await
            }
            ClientFrame::Join {
                consultation,
                after,
            } => {
                self.touch_idle();
                Box::pin(self.join(&consultation, after)).await
            }
            ClientFrame::Leave { consultation } => {
                self.touch_idle();
                self.ctx.consults.leave(&consultation, self.id);
                self.joined.remove(&consultation);
                Ok(())
            }
            ClientFrame::Send {
                consultation,
                client_id,
                body,
                traceparent,
            } => {
                self.touch_idle();
                self.send(&consultation, &client_id, &body, traceparent.as_deref())
                    .await
            }
            ClientFrame::Renew { token } => Box::pin(self.renew(&token)).await,
            ClientFrame::DebugPanic if self.settings.dev => {
                panic!("debug_panic: deliberate session panic")
            }
            ClientFrame::DebugPanic => {
                Box::pin(self.bad_frame(FrameError::UnknownType(Some("debug_panic".into())))).await
            }
        }
    }

    async fn bad_frame(&mut self, error: FrameError) -> Result<(), End> {
        if self.claims.is_none() && self.mode == Mode::Chat {
            return Err(End::Close(close::POLICY, "bad auth frame"));
        }
        self.settle().await?;
        if error.is_bad_frame() && self.bad_frames.record(self.scope.now()) {
            return Err(End::Close(close::POLICY, "too many bad frames"));
        }
        let reference = match &error {
            FrameError::UnknownType(r) => r.clone(),
            _ => None,
        };
        let message = error.to_string();
        self.error(error.code(), &message, reference.as_deref())
            .await
    }

    // ---------------------------------------------------------------- auth

    async fn first_frame_auth(&mut self, token: &str) -> Result<(), End> {
        let now = self.ctx.server.timers().unix_s();
        match self
            .ctx
            .keys
            .verify(token, TokenType::Access, now, &self.ctx.revocations)
        {
            Ok(claims) => {
                self.deadlines.clear(AUTH);
                // Named for its user from now on; an upgrade's bearer token named it at birth.
                self.scope.set_label(&claims.sub);
                log::info!(
                    "event=ws_authenticated session={} user={} role={} scope={} trace_id={}",
                    self.id,
                    crate::observe::LogValue(&claims.sub),
                    claims.role,
                    self.scope.path(),
                    self.trace.trace_id_field()
                );
                self.authenticated(claims).await
            }
            Err(error) => {
                self.auth_failed(error);
                Err(End::Close(close::POLICY, "bad token"))
            }
        }
    }

    fn auth_failed(&self, error: AuthError) {
        self.ctx.metrics.inc_auth_failure(error.reason());
        log::info!(
            "event=auth_failed via=ws reason={} session={} scope={}",
            error.reason(),
            self.id,
            self.scope.path()
        );
    }

    /// Takes the verified claims: arms the token, idle and limit deadlines, registers the sid,
    /// sends `ready`.
    async fn authenticated(&mut self, claims: Claims) -> Result<(), End> {
        let now_s = self.ctx.server.timers().unix_s();
        // A logout may have landed while the 101 was being written.
        if self.ctx.revocations.is_revoked(&claims.sid, now_s) {
            return Err(End::Close(close::REVOKED, "token revoked"));
        }
        self.live = Some(
            self.ctx
                .live
                .register(&claims.sid, self.id, self.scope.downgrade()),
        );
        let now = self.scope.now();
        self.deadlines
            .set(IDLE, now + self.settings.idle_timeout_ms);
        let (token_at, expiring_at) = self.token_ticks(claims.exp);
        self.deadlines.set(TOKEN, token_at);
        self.expiring = Some(self.scope.alarm("token_expiring", expiring_at));
        self.ctx.metrics.session_started();
        let ready = crate::consult::frame_json::ready_json(
            self.id,
            &claims.sub,
            claims.role.as_str(),
            claims.exp,
            self.settings.heartbeat_ms / 1000,
            self.settings.idle_timeout_ms / 1000,
        );
        self.claims = Some(SessionClaims {
            sub: Rc::from(claims.sub),
            role: claims.role,
            exp: claims.exp,
        });
        self.write_text(ready).await
    }

    /// The `token` deadline and `token_expiring` alarm ticks for an `exp` (unix s).
    fn token_ticks(&self, exp: u64) -> (u64, u64) {
        let clock = self.ctx.server.timers().clock();
        let exp_ms = exp.saturating_mul(1000);
        (
            clock.tick_at_unix_ms(exp_ms),
            clock.tick_at_unix_ms(exp_ms.saturating_sub(self.settings.renew_window_ms)),
        )
    }

    async fn warn_expiring(&mut self) -> Result<(), End> {
        let Some(exp) = self.claims.as_ref().map(|c| c.exp) else {
            return Ok(());
        };
        if let Some(timer) = &self.expiring {
            timer.cancel();
        }
        self.write_text(ServerFrame::TokenExpiring { exp }.to_json())
            .await
    }

    async fn renew(&mut self, token: &str) -> Result<(), End> {
        self.settle().await?;
        let now = self.ctx.server.timers().unix_s();
        let verified = self
            .ctx
            .keys
            .verify(token, TokenType::Access, now, &self.ctx.revocations);
        let (sub, sid, exp) = match (&self.claims, &self.live) {
            (Some(c), Some(live)) => (c.sub.clone(), live.sid().to_owned(), c.exp),
            _ => return Ok(()),
        };
        let fresh = match verified {
            Ok(fresh) => fresh,
            Err(error) => {
                self.auth_failed(error);
                let code = if error == AuthError::Revoked {
                    "forbidden"
                } else {
                    "bad_request"
                };
                return self.error(code, "token refused", Some("renew")).await;
            }
        };
        if *fresh.sub != *sub || fresh.sid != sid {
            return self
                .error("forbidden", "token of another user or login", Some("renew"))
                .await;
        }
        if fresh.exp <= exp {
            return self
                .error(
                    "bad_request",
                    "token does not extend the session",
                    Some("renew"),
                )
                .await;
        }
        let (token_at, expiring_at) = self.token_ticks(fresh.exp);
        self.deadlines.set(TOKEN, token_at);
        if let Some(t) = &self.expiring {
            t.reset(expiring_at);
        }
        let new_exp = fresh.exp;
        if let Some(claims) = self.claims.as_mut() {
            claims.exp = new_exp;
        }
        log::info!(
            "event=token_renewed session={} exp={new_exp} scope={}",
            self.id,
            self.scope.path()
        );
        self.write_text(ServerFrame::Renewed { exp: new_exp }.to_json())
            .await
    }

    // ---------------------------------------------------------------- commands

    fn touch_idle(&self) {
        // Armed at authentication; every command that touches it comes after.
        if self.deadlines.at(IDLE).is_some() {
            self.deadlines
                .set_after(IDLE, self.settings.idle_timeout_ms);
        }
    }

    /// Who is acting: the user (a count bump, not a copy: every send needs it), the role's
    /// name, and whether that role is admin. `None` before authentication.
    fn caller(&self) -> Option<(Rc<str>, &'static str, bool)> {
        self.claims.as_ref().map(|c| {
            (
                c.sub.clone(),
                c.role.as_str(),
                c.role == crate::auth::Role::Admin,
            )
        })
    }

    async fn join(&mut self, consultation: &str, after: u64) -> Result<(), End> {
        self.settle().await?;
        let Some((user, role, admin)) = self.caller() else {
            return Ok(());
        };
        let caller = Caller {
            user: &user,
            role,
            admin,
        };
        let ctx = self.ctx.clone();
        let record_last_seq = match ctx.consults.join(consultation, &caller, &self.outbox).await {
            Ok(last_seq) => last_seq,
            Err(error) => return self.consult_error(error, "join").await,
        };
        // Replay straight to the socket (not through the bounded outbox), page by page. A joiner
        // already at the delivered seq (a new consultation, an up-to-date resume) has nothing
        // to replay: anything committed later reaches it live, buffered since `join`.
        let mut replayed = after;
        let mut more = ctx
            .consults
            .delivered_seq(consultation)
            .is_none_or(|delivered| after < delivered);
        while more {
            let page = match ctx
                .consults
                .history(consultation, &caller, replayed, REPLAY_PAGE)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    ctx.consults.leave(consultation, self.id);
                    return self.consult_error(error, "join").await;
                }
            };
            more = page.len() == REPLAY_PAGE;
            for message in &page {
                replayed = replayed.max(message.seq);
                self.write_frame(crate::consult::message_frame(message))
                    .await?;
            }
        }
        let (presence, live_last) = ctx.consults.go_live(consultation, self.id, replayed);
        let last_seq = live_last.unwrap_or(record_last_seq).max(replayed);
        let state = if live_last.is_some() {
            "open"
        } else {
            "closed"
        };
        if live_last.is_some() {
            self.joined.insert(consultation.to_owned());
        }
        self.write_text(crate::consult::frame_json::joined_json(
            consultation,
            last_seq,
            state,
        ))
        .await?;
        for frame in presence {
            self.write_frame(frame).await?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- closing

    /// Polls after the peer's close frame so tungstenite flushes its answer; bounded.
    async fn drain_close(&mut self) {
        let timers = self.ctx.server.timers().clone();
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        drain.or(timers.sleep(CLOSE_GRACE_MS)).await;
    }

    async fn finish(&mut self, end: End) {
        for consultation in std::mem::take(&mut self.joined) {
            self.ctx.consults.leave(&consultation, self.id);
        }
        self.live = None;
        if self.claims.is_some() {
            self.ctx.metrics.session_ended();
        }
        let reason = self.scope.reason();
        let code = match end {
            End::Close(code, text) => {
                // Counted when we decide to close, not when the peer answers our close frame.
                self.ctx.metrics.inc_close(code);
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: Utf8Bytes::from_static(text),
                };
                let timers = self.ctx.server.timers().clone();
                let closing = async {
                    if self.ws.close(Some(frame)).await.is_ok() {
                        // Wait for the peer's close (or its end) so it gets ours.
                        while let Some(Ok(_)) = self.ws.next().await {}
                    }
                };
                // A slow consumer's close frame queues behind what it has not read yet: give it as
                // long to take the close as any write may take.
                let grace = if code == close::SLOW_CONSUMER {
                    self.settings.write_stall_ms.max(CLOSE_GRACE_MS)
                } else {
                    CLOSE_GRACE_MS
                };
                closing.or(timers.sleep(grace)).await;
                Some(code)
            }
            End::Gone => None,
        };
        log::info!(
            "event=ws_closed session={} code={} reason={} scope={} trace_id={}",
            self.id,
            code.map_or_else(|| "-".to_owned(), |c| c.to_string()),
            reason.map_or_else(|| "peer".to_owned(), |r| r.to_string()),
            self.scope.path(),
            self.trace.trace_id_field()
        );
    }
}
