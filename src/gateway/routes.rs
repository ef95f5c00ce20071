//! The route table: method + path → handler, one line per endpoint of SPEC §4.

use super::app::App;
use super::ops;
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
    Router::<HandlerFn>::new()
        .route(Method::Get, "/healthz", ops::healthz)
        .route(Method::Get, "/metrics", ops::metrics as HandlerFn)
        .route(Method::Get, "/debug/scopes", ops::debug_scopes as HandlerFn)
        .route(Method::Get, "/debug/panic", ops::debug_panic as HandlerFn)
        .route(Method::Get, "/debug/sleep", ops::debug_sleep as HandlerFn)
        .route(Method::Get, "/", ops::kiosk_asset as HandlerFn)
        .route(Method::Get, "/index.html", ops::kiosk_asset as HandlerFn)
        .route(Method::Get, "/app.js", ops::kiosk_asset as HandlerFn)
        .route(Method::Get, "/app.css", ops::kiosk_asset as HandlerFn)
        .route(
            Method::Get,
            "/consult-client.js",
            ops::kiosk_asset as HandlerFn,
        )
}
