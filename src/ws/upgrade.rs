//! `GET /v1/ws` and `GET /debug/echo`: the checks before a socket becomes a session.
//!
//! # Invariants
//! 1. A bad `Authorization` on the upgrade gets HTTP 401 and no upgrade; no header means the
//!    session waits for a first-frame `auth`.
//! 2. The session scope is created under the request scope and adopted by the server scope
//!    (re-parented) before the request scope ends (see `http::conn`).

use super::handshake;
use super::session::{self, Mode};
use super::SessionCtx;
use crate::http::{ApiError, HttpError, Reply, Request};
use crate::scope::{Scope, ScopeKind};
use std::rc::Rc;

/// The chat upgrade.
pub fn chat(ctx: &Rc<SessionCtx>, request: &Request, request_scope: &Scope) -> Reply {
    let accepted = match handshake::accept(&request.head, &ctx.allowed_origins.borrow()) {
        Ok(response) => response,
        Err(error) => return Reply::Response(error.to_response()),
    };
    let claims = match ctx.verify_bearer(&request.head.headers, request_scope, "upgrade") {
        None => None,
        Some(Ok(claims)) => Some(claims),
        Some(Err(_)) => {
            return Reply::Response(
                HttpError::from(ApiError::unauthorized("invalid access token")).to_response(),
            )
        }
    };
    start(ctx, request, request_scope, accepted, claims, Mode::Chat)
}

/// `/debug/echo`: only with `--enable-echo`, only from loopback; the same session machinery.
pub fn echo(
    ctx: &Rc<SessionCtx>,
    request: &Request,
    request_scope: &Scope,
    enabled: bool,
) -> Reply {
    if !enabled || !request.is_loopback() {
        return Reply::Response(
            HttpError::from(ApiError::not_found("no such route")).to_response(),
        );
    }
    match handshake::accept(&request.head, &[]) {
        Ok(accepted) => start(ctx, request, request_scope, accepted, None, Mode::Echo),
        Err(error) => Reply::Response(error.to_response()),
    }
}

fn start(
    ctx: &Rc<SessionCtx>,
    request: &Request,
    request_scope: &Scope,
    accepted: crate::http::Response,
    claims: Option<crate::auth::Claims>,
    mode: Mode,
) -> Reply {
    // The session continues the upgrade request's trace (from its `traceparent`, or new).
    let trace = request.trace;
    let label = claims
        .as_ref()
        .map_or("unauthenticated", |c| c.sub.as_str());
    let session_scope = request_scope.child(ScopeKind::Session, label);
    session_scope.set_trace_id_bytes(trace.trace_id);
    let ctx = ctx.clone();
    Reply::Upgrade {
        response: accepted,
        then: Box::new(move |upgraded| {
            let server = ctx.server.clone();
            server.spawn_with(session_scope, move |scope| {
                session::run(session::Start {
                    scope,
                    ctx,
                    upgraded,
                    claims,
                    trace,
                    mode,
                })
            });
        }),
    }
}
