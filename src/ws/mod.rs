//! WebSocket sessions: the upgrade, the session loop, its deadlines and close codes.
//!
//! # Invariants
//! 1. A session's scope is created under its upgrade request and re-parented to the server
//!    before the request ends; the verified claims are copied into the session's own state.
//! 2. Every deadline of a socket is a named timer of the session scope (SPEC §5 table); when one
//!    fires, the close code, the log line and the metric all name it.
//! 3. The session task owns its socket; others reach it only through its bounded outbox.
//!
//! # Implementation
//! - [`handshake`]: RFC 6455 opening handshake and the origin check.
//! - [`upgrade`]: `GET /v1/ws` and `GET /debug/echo`: checks, then hands the socket to a session.
//! - [`session`]: the session loop (auth, frames, commands, deadlines, close).
//! - [`close`]: close codes, mapped from cancellation reasons in one place.
//! - [`limits`]: send rate and bad-frame limits.
//! - [`pipeline`]: a session's sends in flight, answered in send order.
//! - [`tcp_socket`]: the TCP socket under a WebSocket, without reads known to block.
//! - [`frames`]: the protocol's JSON frames (defined with the consultations).

pub mod close;
pub mod handshake;
pub mod heartbeat;
pub mod limits;
pub mod pipeline;
pub mod session;
pub mod tcp_socket;
pub mod upgrade;

/// The protocol's frames, shared with the consultations that fan them out.
pub mod frames {
    pub use crate::consult::frames::*;
}

use crate::auth::{Keys, LiveSessions, Revocations};
use crate::consult::Consults;
use crate::observe::Metrics;
use crate::scope::Scope;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Socket timing and limits, copied into each session when it starts (a reload applies to new
/// sessions).
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    pub auth_timeout_ms: u64,
    pub heartbeat_ms: u64,
    pub read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub session_limit_ms: u64,
    pub renew_window_ms: u64,
    pub write_stall_ms: u64,
    pub outbound_queue_messages: usize,
    pub outbound_queue_bytes: usize,
    pub max_message_bytes: usize,
    pub send_rate_per_s: u64,
    pub send_burst: u64,
    pub bad_frames_max: u32,
    pub bad_frames_window_ms: u64,
    /// `--dev`: the `debug_panic` frame is honoured.
    pub dev: bool,
}

/// What every session shares.
pub struct SessionCtx {
    pub keys: Rc<Keys>,
    pub revocations: Rc<Revocations>,
    pub live: Rc<LiveSessions>,
    pub consults: Rc<Consults>,
    pub metrics: Rc<Metrics>,
    /// Sessions live under the server scope.
    pub server: Rc<Scope>,
    /// The settings new sessions start with; each session keeps the `Rc` it started with (one
    /// shared copy instead of 112 B in every session).
    pub settings: RefCell<Rc<SessionSettings>>,
    pub allowed_origins: RefCell<Vec<String>>,
    next_session: Cell<u64>,
}

impl SessionCtx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        keys: Rc<Keys>,
        revocations: Rc<Revocations>,
        live: Rc<LiveSessions>,
        consults: Rc<Consults>,
        metrics: Rc<Metrics>,
        server: Rc<Scope>,
        settings: SessionSettings,
        allowed_origins: Vec<String>,
    ) -> SessionCtx {
        SessionCtx {
            keys,
            revocations,
            live,
            consults,
            metrics,
            server,
            settings: RefCell::new(Rc::new(settings)),
            allowed_origins: RefCell::new(allowed_origins),
            next_session: Cell::new(1),
        }
    }

    /// Verifies the `Authorization: Bearer` access token of a request with the one `verify`;
    /// `None` when there is no such header. A refused token is counted by reason and logged,
    /// with `via` naming the entry point (`http`, `upgrade`).
    pub fn verify_bearer(
        &self,
        headers: &crate::http::Headers,
        scope: &Scope,
        via: &'static str,
    ) -> Option<Result<crate::auth::Claims, crate::auth::AuthError>> {
        let token = crate::http::bearer_token(headers)?;
        let now = self.server.timers().unix_s();
        let verified = token
            .ok_or(crate::auth::AuthError::Malformed)
            .and_then(|t| {
                self.keys
                    .verify(t, crate::auth::TokenType::Access, now, &self.revocations)
            });
        if let Err(error) = &verified {
            self.metrics.inc_auth_failure(error.reason());
            log::info!(
                "event=auth_failed via={via} reason={} scope={}",
                error.reason(),
                scope.path()
            );
        }
        Some(verified)
    }

    fn next_session_id(&self) -> u64 {
        let id = self.next_session.get();
        self.next_session.set(id + 1);
        id
    }
}
