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

/// What `POST /debug/store-faults` may set: either switch or both, nothing else.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFaults {
    /// `Some(on)`: make every store commit fail (`true`) or heal it (`false`).
    fail: Option<bool>,
    /// `Some(on)`: hold the store writer so its queue fills (`true`), or release it (`false`).
    hold: Option<bool>,
}

/// The 400 message of a body [`StoreFaults`] does not take.
const STORE_FAULTS_USAGE: &str =
    "body must be a JSON object with \"fail\": bool and/or \"hold\": bool, and nothing else";

/// `--dev` only, loopback only: the store's test hooks, for the store-fault and backpressure
/// tests.
///
/// - `POST` `{"fail": bool}` makes every store commit fail (`true`) or heals it (`false`);
///   `{"hold": bool}` holds the writer (`true`: it keeps the op it took and takes no other, so
///   the queue fills to `QUEUE_CAPACITY` and sends meet a full queue) or releases it (`false`:
///   everything queued commits, in order). Either key or both; any other body is 400. Answers
///   the switches it set and `queued_ops`, e.g. `{"hold":true,"queued_ops":0}`.
/// - `GET` ([`debug_store_queue`]) answers the queue depth.
pub fn debug_store_faults<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        if !(app.settings().dev && call.request.is_loopback()) {
            return error_reply(ApiError::not_found("no such route"));
        }
        let faults = match serde_json::from_slice::<StoreFaults>(&call.request.body) {
            Ok(faults) if faults.fail.is_some() || faults.hold.is_some() => faults,
            _ => return error_reply(ApiError::bad_request(STORE_FAULTS_USAGE)),
        };
        let mut answer = serde_json::Map::new();
        if let Some(fail) = faults.fail {
            app.store.set_fail_commits(fail);
            log::warn!("event=store_fault_injection fail={fail}");
            answer.insert("fail".into(), fail.into());
        }
        if let Some(hold) = faults.hold {
            app.store.hold_writer(hold);
            log::warn!(
                "event=store_writer_hold hold={hold} queued_ops={}",
                app.store.queued_ops()
            );
            answer.insert("hold".into(), hold.into());
        }
        answer.insert("queued_ops".into(), app.store.queued_ops().into());
        json_reply(200, &answer)
    })
}

/// `--dev` only, loopback only: `GET /debug/store-faults` answers `{"queued_ops": N}`, the ops
/// waiting in the store writer's queue (not yet taken into a batch). A test polls it to wait for
/// the held writer's queue to fill, an event, instead of sleeping. The switches' state is not
/// here: the store has no getter for it; the `POST` answer and its `warn` log say what was set.
pub fn debug_store_queue<'a>(app: &'a App, call: Call<'a>) -> Fut<'a> {
    Box::pin(async move {
        if !(app.settings().dev && call.request.is_loopback()) {
            return error_reply(ApiError::not_found("no such route"));
        }
        json_reply(200, &json!({ "queued_ops": app.store.queued_ops() }))
    })
}

/// Loopback peers, or an admin token from anywhere.
fn operator_allowed(app: &App, call: &Call<'_>) -> bool {
    call.request.is_loopback()
        || super::api::authenticate(app, call)
            .is_ok_and(|claims| claims.role == crate::auth::Role::Admin)
}
