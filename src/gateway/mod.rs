//! The composition root: wires every module into a running gateway (`consult-edge serve`).
//!
//! # Invariants
//! 1. Start-up order: settings → fd limit → data dir → listener → runtime → "listening" line.
//!    The line is printed only once the socket accepts.
//! 2. Shutdown order (SIGTERM/SIGINT): stop accepting and close idle connections (drain) →
//!    sessions close with 1001 → wait for in-flight work up to `shutdown_grace_ms` → cancel the
//!    server scope with `Shutdown` → flush the store → exit 0. The whole takes under 5 s.
//!
//! # Implementation
//! Everything runs on one `LocalExecutor` through [`Runtime::block_on`], which also drives the
//! deadline wheel.

pub mod app;
pub mod listen;
pub mod ops;
pub mod routes;

use crate::config::Settings;
use crate::http::server::accept_loop;
use crate::scope::{CancelReason, Runtime, ScopeKind};
use crate::wheel::{Clock, Timers};
use app::App;
use async_io::Async;
use smol::stream::StreamExt;
use std::io::Write;
use std::rc::Rc;

/// Why `serve` could not start.
#[derive(Debug)]
pub enum ServeError {
    /// The address is taken or not ours.
    Bind(std::io::Error),
    /// The data dir cannot be created.
    DataDir(std::io::Error),
    /// Signal handlers could not be installed.
    Signals(std::io::Error),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Bind(e) => write!(f, "cannot listen: {e}"),
            ServeError::DataDir(e) => write!(f, "cannot create the data dir: {e}"),
            ServeError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

/// Runs the gateway until SIGTERM/SIGINT. Returns once shut down.
pub fn serve(settings: Settings) -> Result<(), ServeError> {
    let fd_limit = listen::raise_fd_limit();
    std::fs::create_dir_all(&settings.data_dir).map_err(ServeError::DataDir)?;
    let listener = listen::bind_listener(settings.listen).map_err(ServeError::Bind)?;
    let listener = Async::new(listener).map_err(ServeError::Bind)?;
    let addr = listener.get_ref().local_addr().map_err(ServeError::Bind)?;
    let mut signals = async_signal::Signals::new([
        async_signal::Signal::Term,
        async_signal::Signal::Int,
        async_signal::Signal::Hup,
    ])
    .map_err(ServeError::Signals)?;

    let rt = Runtime::new(Timers::new(Clock::monotonic()));
    let rt2 = rt.clone();
    rt.block_on(async move {
        let server = Rc::new(rt2.root(ScopeKind::Server, "consult-edge"));
        let app = Rc::new(App::new(settings, rt2.clone(), server.clone()));
        {
            let app = app.clone();
            let server_for_loop = server.clone();
            server.spawn(async move {
                accept_loop(
                    &server_for_loop,
                    listener,
                    app.clone(),
                    app.clone(),
                    app.connections.clone(),
                )
                .await;
            });
        }
        log::info!("event=listening addr={addr} fd_limit={fd_limit}");
        println!("consult-edge listening on http://{addr}");
        let _ = std::io::stdout().flush();

        while let Some(Ok(signal)) = signals.next().await {
            match signal {
                async_signal::Signal::Hup => reload(&app),
                _ => {
                    log::info!("event=shutdown_started signal={signal:?}");
                    break;
                }
            }
        }
        shutdown(&app).await;
    });
    log::info!("event=shutdown_complete");
    Ok(())
}

fn reload(app: &App) {
    let reloaded = app.settings().reload_file();
    match reloaded {
        Ok(settings) => {
            *app.settings.borrow_mut() = settings;
            log::info!("event=config_reloaded");
        }
        Err(error) => log::warn!("event=config_reload_failed error={error} kept=running"),
    }
}

async fn shutdown(app: &Rc<App>) {
    app.drain.fire();
    let grace = app.settings().shutdown_grace_ms;
    let deadline = app.rt.timers.now() + grace;
    // Bounded: ends when the last connection is gone or the grace period is over.
    while app.connections.open() > 0 && app.rt.timers.now() < deadline {
        app.rt.timers.sleep(10).await;
    }
    if app.connections.open() > 0 {
        log::warn!(
            "event=shutdown_grace_expired connections={}",
            app.connections.open()
        );
    }
    app.server.cancel(CancelReason::Shutdown);
}
