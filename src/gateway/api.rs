//! The HTTP API of SPEC §4: tokens (refresh, logout), consultations, and the WebSocket upgrade.
//!
//! # Invariants
//! 1. Every endpoint that needs a caller authenticates through [`authenticate`] (one `verify`
//!    for all entry points); a failure is 401 and is counted by reason.
//! 2. Membership is decided in `consult` (non-members see 404, admins read but never write).
//! 3. Logout and refresh-token reuse revoke durably first (see `auth::revoke`).

use super::app::{error_reply, json_reply, App};
use super::routes::Call;
use crate::auth::{Claims, MintRequest, Role, TokenType, MAX_TTL_S};
use crate::consult::frames::MessageFields;
use crate::consult::{Caller, ConsultError, CreateError};
use crate::http::{parse_u64_param, ApiError, Reply, Response};
use crate::observe::time::rfc3339_ms;
use crate::store::{Consultation, RefreshUse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;

type Fut<'a> = Pin<Box<dyn Future<Output = Reply> + 'a>>;

/// SPEC §4: history pages default to 100 messages and hold at most 1000.
pub const HISTORY_DEFAULT_LIMIT: u64 = 100;
pub const HISTORY_MAX_LIMIT: u64 = 1000;
/// Consultations listed per call (newest first).
pub const LIST_MAX: u64 = 1000;
/// A doctor id longer than this is not an id.
pub const MAX_USER_ID_BYTES: usize = 128;

/// The caller's verified access claims, or the 401 to answer (invariant 1).
pub fn authenticate(app: &App, call: &Call<'_>) -> Result<Claims, Reply> {
    match app
        .sessions
        .verify_bearer(&call.request.head.headers, call.scope, "http")
    {
        Some(Ok(claims)) => Ok(claims),
        Some(Err(_)) => Err(error_reply(ApiError::unauthorized("invalid access token"))),
        None => {
            app.metrics.inc_auth_failure("missing");
            log::info!(
                "event=auth_failed via=http reason=missing scope={}",
                call.scope.path()
            );
            Err(error_reply(ApiError::unauthorized("bearer token required")))
        }
    }
}

/// Parses a JSON body (415 for another declared type, 400 for bad JSON).
fn json_body<T: for<'de> Deserialize<'de>>(call: &Call<'_>) -> Result<T, Reply> {
    if let Some(kind) = call.request.head.headers.get("content-type") {
        // The media type before any parameter (`; charset=utf-8`), compared exactly.
        let media = kind.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/json") {
            return Err(error_reply(ApiError::unsupported_media_type(
                "send application/json",
            )));
        }
    }
    serde_json::from_slice(&call.request.body).map_err(|_| {
        error_reply(ApiError::bad_request(
            "body must be a JSON object of the documented shape",
        ))
    })
}

// ------------------------------------------------------------------ tokens

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

#[derive(Serialize)]
struct TokenPair {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
}

pub fn refresh<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        let body: RefreshBody = match json_body(&call) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let now = app.rt.timers.unix_s();
        let claims = match app.keys.verify(
            &body.refresh_token,
            TokenType::Refresh,
            now,
            &app.revocations,
        ) {
            Ok(claims) => claims,
            Err(error) => {
                app.metrics.inc_auth_failure(error.reason());
                return error_reply(ApiError::unauthorized("invalid refresh token"));
            }
        };
        if !app.keys.can_mint() {
            return error_reply(ApiError::bad_request(
                "this gateway only verifies tokens: refresh at the identity provider",
            ));
        }
        match app
            .store
            .use_refresh(&claims.jti, &claims.sid, claims.exp)
            .await
        {
            Ok(RefreshUse::Fresh) => {}
            Ok(RefreshUse::Reused) => {
                // Reuse detection: a stolen refresh token ends the whole login session.
                let until = revocation_until(now, &claims);
                return match app
                    .revoker
                    .revoke(&claims.sid, until, "refresh_reuse")
                    .await
                {
                    Ok(_) => error_reply(ApiError::unauthorized(
                        "refresh token already used: the login session is revoked",
                    )),
                    Err(error) => internal(error),
                };
            }
            Err(error) => return internal(error),
        }
        let (access_ttl, refresh_ttl) = {
            let s = app.settings();
            (s.access_ttl_s, s.refresh_ttl_s)
        };
        let mint = |typ, ttl_s| {
            app.keys.mint(MintRequest {
                sub: claims.sub.clone(),
                role: claims.role,
                sid: Some(claims.sid.clone()),
                typ,
                ttl_s,
                now_unix: now,
            })
        };
        match (
            mint(TokenType::Access, access_ttl),
            mint(TokenType::Refresh, refresh_ttl),
        ) {
            (Ok(access_token), Ok(refresh_token)) => json_reply(
                200,
                &TokenPair {
                    access_token,
                    refresh_token,
                    token_type: "Bearer",
                    expires_in: access_ttl,
                },
            ),
            (Err(error), _) | (_, Err(error)) => internal(error),
        }
    })
}

pub fn logout<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        let claims = match authenticate(app, &call) {
            Ok(claims) => claims,
            Err(reply) => return reply,
        };
        let until = revocation_until(app.rt.timers.unix_s(), &claims);
        match app.revoker.revoke(&claims.sid, until, "logout").await {
            Ok(_) => Reply::Response(Response::no_content()),
            Err(error) => internal(error),
        }
    })
}

/// How long a revocation must be kept: until no token of the sid can still be valid. Tokens
/// we mint live at most `MAX_TTL_S`; one presented may say it lives longer (an identity
/// provider's): keep it until then.
fn revocation_until(now: u64, claims: &Claims) -> u64 {
    now.saturating_add(MAX_TTL_S).max(claims.exp)
}

fn internal(error: impl std::fmt::Display) -> Reply {
    log::error!(
        "event=internal_error error={}",
        crate::observe::LogValue(&error.to_string())
    );
    error_reply(ApiError::internal(error.to_string()))
}

// ------------------------------------------------------------------ consultations

#[derive(Serialize)]
struct ConsultationView<'a> {
    id: &'a str,
    patient: &'a str,
    doctor: &'a str,
    state: &'a str,
    created_at: String,
    last_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    closed_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    closed_at: Option<String>,
}

fn view(c: &Consultation) -> ConsultationView<'_> {
    ConsultationView {
        id: &c.id,
        patient: &c.patient,
        doctor: &c.doctor,
        state: match c.state {
            crate::store::ConsultState::Open => "open",
            crate::store::ConsultState::Closed => "closed",
        },
        created_at: rfc3339_ms(c.created_at_ms),
        last_seq: c.last_seq,
        closed_reason: c.closed_reason.as_deref(),
        closed_at: c.closed_at_ms.map(rfc3339_ms),
    }
}

fn caller(claims: &Claims) -> Caller<'_> {
    Caller {
        user: &claims.sub,
        role: claims.role.as_str(),
        admin: claims.role == Role::Admin,
    }
}

fn consult_error(error: ConsultError) -> Reply {
    match error {
        ConsultError::NotFound => error_reply(ApiError::not_found("no such consultation")),
        ConsultError::Forbidden => error_reply(ApiError::forbidden("not allowed")),
        ConsultError::Closed => error_reply(ApiError::conflict("the consultation is closed")),
        ConsultError::Internal(detail) => internal(detail),
    }
}

#[derive(Deserialize)]
struct CreateBody {
    doctor: String,
}

pub fn create_consultation<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        let claims = match authenticate(app, &call) {
            Ok(claims) => claims,
            Err(reply) => return reply,
        };
        if claims.role != Role::Patient {
            return error_reply(ApiError::forbidden("only patients open consultations"));
        }
        let body: CreateBody = match json_body(&call) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let doctor = body.doctor.trim();
        if doctor.is_empty() || doctor.len() > MAX_USER_ID_BYTES || doctor == claims.sub {
            return error_reply(ApiError::bad_request(
                "\"doctor\" must be another user's id",
            ));
        }
        let max_open = app.settings().max_open_consultations_per_patient;
        match app.consults.create(&claims.sub, doctor, max_open).await {
            Ok(record) => json_reply(201, &view(&record)),
            Err(CreateError::TooManyOpen) => {
                error_reply(ApiError::too_many_requests("too many open consultations"))
            }
            Err(CreateError::Consult(error)) => consult_error(error),
        }
    })
}

pub fn list_consultations<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        let claims = match authenticate(app, &call) {
            Ok(claims) => claims,
            Err(reply) => return reply,
        };
        if claims.role == Role::Admin {
            return error_reply(ApiError::forbidden("lists are for patients and doctors"));
        }
        let limit =
            match parse_u64_param(call.request.head.query.as_deref(), "limit", 100, LIST_MAX) {
                Ok(limit) => limit as usize,
                Err(error) => return error_reply(error),
            };
        match app.consults.list(&claims.sub, limit).await {
            Ok(list) => {
                let views: Vec<_> = list.iter().map(view).collect();
                json_reply(200, &json!({ "consultations": views }))
            }
            Err(error) => consult_error(error),
        }
    })
}

pub fn get_consultation<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        let claims = match authenticate(app, &call) {
            Ok(claims) => claims,
            Err(reply) => return reply,
        };
        let id = call.params.get("id").unwrap_or("");
        match app.consults.get(id, &caller(&claims)).await {
            Ok(record) => json_reply(200, &view(&record)),
            Err(error) => consult_error(error),
        }
    })
}

pub fn consultation_messages<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        let claims = match authenticate(app, &call) {
            Ok(claims) => claims,
            Err(reply) => return reply,
        };
        let query = call.request.head.query.as_deref();
        let after = match parse_u64_param(query, "after", 0, u64::MAX) {
            Ok(after) => after,
            Err(error) => return error_reply(error),
        };
        let limit = match parse_u64_param(query, "limit", HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)
        {
            Ok(limit) => limit as usize,
            Err(error) => return error_reply(error),
        };
        let id = call.params.get("id").unwrap_or("");
        match app
            .consults
            .history(id, &caller(&claims), after, limit)
            .await
        {
            Ok(messages) => {
                let views: Vec<MessageFields<'_>> =
                    messages.iter().map(MessageFields::from).collect();
                json_reply(200, &json!({ "messages": views }))
            }
            Err(error) => consult_error(error),
        }
    })
}

pub fn close_consultation<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        let claims = match authenticate(app, &call) {
            Ok(claims) => claims,
            Err(reply) => return reply,
        };
        let id = call.params.get("id").unwrap_or("");
        match app.consults.close(id, &caller(&claims)).await {
            Ok(record) => json_reply(200, &view(&record)),
            Err(error) => consult_error(error),
        }
    })
}

// ------------------------------------------------------------------ WebSocket

pub fn ws_upgrade<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move { crate::ws::upgrade::chat(&app.sessions, &call.request, call.scope) })
}

pub fn debug_echo<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        let enabled = app.settings().enable_echo;
        crate::ws::upgrade::echo(&app.sessions, &call.request, call.scope, enabled)
    })
}
