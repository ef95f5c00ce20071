//! Operations endpoints: health, metrics, the scope dump, and the embedded kiosk page.
//!
//! `/metrics` and `/debug/scopes` answer loopback peers (an operator on the box, a scraper
//! beside it) and, elsewhere, nobody until an admin token is presented.

use super::app::{error_reply, json_reply, App};
use super::routes::Call;
use crate::http::{parse_u64_param, ApiError, Reply, Response};
use crate::kiosk;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;

type Fut<'a> = Pin<Box<dyn Future<Output = Reply> + 'a>>;

pub fn healthz<'a>(_app: &'a App, _call: Call<'a>) -> Fut<'a> {
    Box::pin(async { json_reply(200, &json!({"status": "ok"})) })
}

pub fn metrics<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        if !operator_allowed(app, &call) {
            return error_reply(ApiError::forbidden("metrics are for loopback or admin"));
        }
        app.metrics
            .set_deadlines_fired(&app.rt.timers.fired_by_name());
        let gauges = [
            (
                "pending_timers",
                "Timers armed in the deadline wheel.",
                app.rt.timers.pending() as f64,
            ),
            (
                "live_scopes",
                "Scopes alive in the scope tree.",
                app.rt.live_scopes() as f64,
            ),
            (
                "consultations_open",
                "Consultations open in memory.",
                app.consults.open_count() as f64,
            ),
            (
                "store_commits",
                "Store commits (one fsync each) since start.",
                app.store.commits() as f64,
            ),
        ];
        let text = app.metrics.render(&gauges);
        Reply::Response(
            Response::new(200)
                .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                .body(text.into_bytes()),
        )
    })
}

pub fn debug_scopes<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        if !operator_allowed(app, &call) {
            return error_reply(ApiError::forbidden(
                "the scope dump is for loopback or admin",
            ));
        }
        json_reply(200, &crate::scope::dump(&app.rt))
    })
}

pub fn kiosk_asset<'a>(_app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        let Some(asset) = kiosk::asset(&call.request.head.path) else {
            return error_reply(ApiError::not_found("no such page"));
        };
        Reply::Response(
            Response::new(200)
                .header("Content-Type", asset.content_type)
                .header("Cache-Control", asset.cache_control)
                .header("Content-Security-Policy", kiosk::CONTENT_SECURITY_POLICY)
                .header("X-Content-Type-Options", "nosniff")
                .header("Referrer-Policy", "no-referrer")
                .body(asset.body.to_vec()),
        )
    })
}

/// Upper bound of `/debug/sleep`, so a dev route cannot hold a connection for long.
const MAX_DEBUG_SLEEP_MS: u64 = 10_000;

/// `--dev` only, loopback only: a handler that panics, to show a panic stays in its request.
pub fn debug_panic<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        if !(app.settings().dev && call.request.is_loopback()) {
            return error_reply(ApiError::not_found("no such route"));
        }
        panic!("debug_panic: deliberate handler panic");
    })
}

/// `--dev` only, loopback only: answers after `ms` milliseconds (an in-flight request for
/// shutdown and cancellation tests). Stops early if the request's scope is cancelled.
pub fn debug_sleep<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        if !(app.settings().dev && call.request.is_loopback()) {
            return error_reply(ApiError::not_found("no such route"));
        }
        let query = call.request.head.query.as_deref();
        let ms = match parse_u64_param(query, "ms", 100, MAX_DEBUG_SLEEP_MS) {
            Ok(ms) => ms,
            Err(error) => return error_reply(error),
        };
        app.rt.timers.sleep(ms).await;
        json_reply(200, &json!({"slept_ms": ms}))
    })
}

/// Loopback peers, or an admin token from anywhere.
fn operator_allowed(app: &App, call: &Call<'_>) -> bool {
    call.request.is_loopback()
        || super::api::authenticate(app, call)
            .is_ok_and(|claims| claims.role == crate::auth::Role::Admin)
}
