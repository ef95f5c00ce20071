//! The route table: method + path → handler, one line per endpoint of SPEC §4.

use super::app::App;
use super::{api, ops};
use crate::http::{Method, Params, Reply, Request, Router};
use crate::scope::Scope;
use std::future::Future;
use std::pin::Pin;

/// One call of a handler: the request, its path parameters and its scope.
pub struct Call<'a> {
    pub request: Request,
    pub params: Params,
    pub scope: &'a Scope,
}

pub type HandlerFn = for<'a> fn(&'a App, Call<'a>) -> Pin<Box<dyn Future<Output = Reply> + 'a>>;

pub fn router() -> Router<HandlerFn> {
    use Method::{Get, Post};
    Router::<HandlerFn>::new()
        .route(Get, "/healthz", ops::healthz)
        .route(Get, "/metrics", ops::metrics as HandlerFn)
        .route(Get, "/debug/scopes", ops::debug_scopes as HandlerFn)
        .route(Get, "/debug/panic", ops::debug_panic as HandlerFn)
        .route(Get, "/debug/sleep", ops::debug_sleep as HandlerFn)
        .route(
            Post,
            "/debug/store-faults",
            ops::debug_store_faults as HandlerFn,
        )
        .route(
            Get,
            "/debug/store-faults",
            ops::debug_store_queue as HandlerFn,
        )
        .route(Get, "/debug/echo", api::debug_echo as HandlerFn)
        .route(Post, "/v1/auth/refresh", api::refresh as HandlerFn)
        .route(Post, "/v1/auth/logout", api::logout as HandlerFn)
        .route(
            Post,
            "/v1/consultations",
            api::create_consultation as HandlerFn,
        )
        .route(
            Get,
            "/v1/consultations",
            api::list_consultations as HandlerFn,
        )
        .route(
            Get,
            "/v1/consultations/{id}",
            api::get_consultation as HandlerFn,
        )
        .route(
            Get,
            "/v1/consultations/{id}/messages",
            api::consultation_messages as HandlerFn,
        )
        .route(
            Post,
            "/v1/consultations/{id}/close",
            api::close_consultation as HandlerFn,
        )
        .route(Get, "/v1/ws", api::ws_upgrade as HandlerFn)
        .route(Get, "/", ops::kiosk_asset as HandlerFn)
        .route(Get, "/index.html", ops::kiosk_asset as HandlerFn)
        .route(Get, "/app.js", ops::kiosk_asset as HandlerFn)
        .route(Get, "/app.css", ops::kiosk_asset as HandlerFn)
        .route(Get, "/consult-client.js", ops::kiosk_asset as HandlerFn)
}
