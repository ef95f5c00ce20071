//! The application state every handler and session shares, and the HTTP `Service` over it.
//!
//! # Invariants
//! 1. One `App` per running gateway, on the executor thread; everything in it is single-threaded
//!    (`Rc`, `RefCell`), except the store's writer, which is its own thread.
//! 2. Settings are read per connection/session at its start; a reload swaps them for new ones.

use super::routes::{self, HandlerFn};
use super::wiring;
use crate::auth::{Keys, LiveSessions, Revocations, Revoker};
use crate::config::Settings;
use crate::consult::Consults;
use crate::http::server::{AcceptPolicy, ConnCounter};
use crate::http::{
    AccessRecord, ApiError, ConnLimits, HeadLimits, HttpError, Reply, Request, Response,
};
use crate::http::{Routed, Router, Service};
use crate::observe::Metrics;
use crate::scope::{Runtime, Scope, Signal};
use crate::store::Store;
use crate::ws::SessionCtx;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

/// The status of an accepted upgrade (RFC 9110 §15.2.2): its access line goes to `debug`.
const STATUS_SWITCHING_PROTOCOLS: u16 = 101;

pub struct App {
    pub settings: RefCell<Settings>,
    pub rt: Rc<Runtime>,
    /// The server scope: connections, sessions and consultations live under it.
    pub server: Rc<Scope>,
    /// Fired when shutdown starts: accepting stops, idle keep-alive connections close,
    /// in-flight requests finish and then close.
    pub drain: Signal,
    pub metrics: Rc<Metrics>,
    pub connections: ConnCounter,
    pub keys: Rc<Keys>,
    pub revocations: Rc<Revocations>,
    pub live: Rc<LiveSessions>,
    pub store: Store,
    pub consults: Rc<Consults>,
    pub sessions: Rc<SessionCtx>,
    pub revoker: Revoker,
    router: Router<HandlerFn>,
}

impl App {
    pub fn new(
        settings: Settings,
        rt: Rc<Runtime>,
        server: Rc<Scope>,
        keys: Keys,
        store: Store,
        revocations: Revocations,
    ) -> App {
        let metrics = Rc::new(Metrics::new());
        let keys = Rc::new(keys);
        let revocations = Rc::new(revocations);
        let live = Rc::new(LiveSessions::default());
        let consults = Consults::new(
            store.clone(),
            server.clone(),
            metrics.clone(),
            wiring::consult_times(&settings),
        );
        let sessions = Rc::new(SessionCtx::new(
            keys.clone(),
            revocations.clone(),
            live.clone(),
            consults.clone(),
            metrics.clone(),
            server.clone(),
            wiring::session_settings(&settings),
            settings.allowed_origins.clone(),
        ));
        let revoker = Revoker {
            store: store.clone(),
            revocations: revocations.clone(),
            live: live.clone(),
        };
        App {
            settings: RefCell::new(settings),
            rt,
            server,
            drain: Signal::default(),
            metrics,
            connections: ConnCounter::default(),
            keys,
            revocations,
            live,
            store,
            consults,
            sessions,
            revoker,
            router: routes::router(),
        }
    }

    pub fn settings(&self) -> std::cell::Ref<'_, Settings> {
        self.settings.borrow()
    }

    /// Applies reloaded settings to everything that starts from now on.
    pub fn apply(&self, settings: Settings) {
        *self.sessions.settings.borrow_mut() = Rc::new(wiring::session_settings(&settings));
        *self.sessions.allowed_origins.borrow_mut() = settings.allowed_origins.clone();
        self.consults.set_times(wiring::consult_times(&settings));
        *self.settings.borrow_mut() = settings;
    }
}

impl Service for App {
    fn handle<'a>(
        &'a self,
        request: Request,
        scope: &'a Scope,
    ) -> Pin<Box<dyn Future<Output = Reply> + 'a>> {
        let method = request.head.method.clone();
        let path = request.head.path.clone();
        match self.router.find(&method, &path) {
            Routed::Found(handler, params) => handler(
                self,
                routes::Call {
                    request,
                    params,
                    scope,
                },
            ),
            Routed::MethodNotAllowed(allow) => {
                let response = HttpError::MethodNotAllowed { allow }.to_response();
                Box::pin(async move { Reply::Response(response) })
            }
            Routed::NotFound => {
                let response = HttpError::from(ApiError::not_found("no such route")).to_response();
                Box::pin(async move { Reply::Response(response) })
            }
        }
    }

    /// The access line, at `info`; an upgrade's (101) at `debug`: its record at `info` is the
    /// session's `event=ws_open` (peer, mode, user, scope, trace_id: the same trace), one line
    /// per event (SPEC §7). The 101 line cost every socket ~14k instructions (docs/perf.md).
    fn record(&self, r: &AccessRecord<'_>) {
        self.metrics.observe_http(r.status, r.micros as f64 / 1e6);
        let level = if r.status == STATUS_SWITCHING_PROTOCOLS {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        log::log!(
            level,
            "event=http_request method={} path={} status={} bytes={} duration_us={} scope={} trace_id={}",
            r.method,
            crate::observe::LogValue(r.path),
            r.status,
            r.bytes,
            r.micros,
            r.scope.path(),
            r.scope.trace_id_hex()
        );
    }
}

impl AcceptPolicy for App {
    fn limits(&self) -> ConnLimits {
        let s = self.settings();
        ConnLimits {
            head_timeout_ms: s.head_timeout_ms,
            body_timeout_ms: s.body_timeout_ms,
            keepalive_idle_ms: s.keepalive_idle_ms,
            head: HeadLimits {
                max_head_bytes: s.max_head_bytes,
                max_body_bytes: s.max_body_bytes as u64,
            },
        }
    }

    fn max_connections(&self) -> usize {
        self.settings().max_connections
    }

    fn opened(&self) {
        self.metrics.connection_opened();
    }

    fn closed(&self) {
        self.metrics.connection_closed();
    }

    fn rejected(&self) {
        self.metrics.connection_rejected();
    }

    fn drain(&self) -> Signal {
        self.drain.clone()
    }
}

/// A JSON error response for a handler's refusal.
pub fn error_reply(error: ApiError) -> Reply {
    Reply::Response(HttpError::from(error).to_response())
}

/// A JSON response.
pub fn json_reply(status: u16, value: &impl serde::Serialize) -> Reply {
    Reply::Response(Response::json(status, value))
}
