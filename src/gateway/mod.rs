//! The composition root: wires every module into a running gateway (`consult-edge serve`) and
//! mints tokens (`consult-edge token`).
//!
//! # Invariants
//! 1. Start-up order: fd limit → data dir → keys → store (+ revocations, open consultations) →
//!    listener → "listening" line. The line is printed only once the socket accepts; a bad key
//!    or a corrupt store stops start-up with a clear error, never a panic.
//! 2. Shutdown order (SIGTERM/SIGINT): stop accepting and close idle connections (drain) →
//!    sessions close with 1001 → wait for in-flight work up to `shutdown_grace_ms` → cancel the
//!    server scope with `Shutdown` → flush the store → exit 0, all within 5 s.
//!
//! # Implementation
//! Everything runs on one `LocalExecutor` through [`Runtime::block_on`], which also drives the
//! deadline wheel.

pub mod api;
pub mod app;
pub mod listen;
pub mod ops;
pub mod routes;
pub mod wiring;

use crate::auth::{KeyError, Keys, MintRequest, Revocations, Role, TokenType};
use crate::config::{Settings, TokenArgs, TokenRole};
use crate::http::server::accept_loop;
use crate::scope::{CancelReason, Runtime, ScopeKind};
use crate::store::{Store, StoreError};
use crate::wheel::{Clock, Timers};
use app::App;
use async_io::Async;
use smol::stream::StreamExt;
use std::io::Write;
use std::rc::Rc;

/// How often expired revocations and used refresh-token ids are purged from the store.
pub const PURGE_INTERVAL_MS: u64 = 60 * 60 * 1000;

/// Why `serve` or `token` could not run.
#[derive(Debug)]
pub enum ServeError {
    /// The address is taken or not ours.
    Bind(std::io::Error),
    /// The data dir cannot be created.
    DataDir(std::io::Error),
    /// Signal handlers could not be installed.
    Signals(std::io::Error),
    /// A key file is missing, unreadable, too permissive or malformed.
    Keys(KeyError),
    /// The store at this path cannot be opened (corrupt, locked by another process,
    /// unreadable), or failed while restoring state.
    Store(std::path::PathBuf, StoreError),
    /// `token` could not mint (verify-only key, bad ttl).
    Mint(String),
    /// Settings built in code break a rule the command line enforces (a zero timeout, two
    /// keys at once); the message names the option.
    Settings(String),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Bind(e) => write!(f, "cannot listen: {e}"),
            ServeError::DataDir(e) => write!(f, "cannot create the data dir: {e}"),
            ServeError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            ServeError::Keys(e) => write!(f, "{e}"),
            ServeError::Store(path, e) => {
                write!(f, "cannot open the store {}: {e}", path.display())
            }
            ServeError::Mint(e) => write!(f, "cannot mint a token: {e}"),
            ServeError::Settings(e) => write!(f, "invalid settings: {e}"),
        }
    }
}

/// `consult-edge token`: mints one token with the configured key; returns it.
pub fn mint_token(args: &TokenArgs) -> Result<String, ServeError> {
    let keys = Keys::load(
        &wiring::key_settings(&args.settings),
        &args.settings.data_dir,
    )
    .map_err(ServeError::Keys)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    keys.mint(MintRequest {
        sub: args.sub.clone(),
        role: match args.role {
            TokenRole::Patient => Role::Patient,
            TokenRole::Doctor => Role::Doctor,
            TokenRole::Admin => Role::Admin,
        },
        sid: args.sid.clone(),
        typ: if args.refresh {
            TokenType::Refresh
        } else {
            TokenType::Access
        },
        ttl_s: args.ttl_s,
        now_unix: now,
    })
    .map_err(|e| ServeError::Mint(e.to_string()))
}

/// Runs the gateway until SIGTERM/SIGINT. Returns once shut down.
pub fn serve(settings: Settings) -> Result<(), ServeError> {
    // The command line validated them already; settings built in code have not been.
    settings.validate().map_err(ServeError::Settings)?;
    let fd_limit = listen::raise_fd_limit();
    std::fs::create_dir_all(&settings.data_dir).map_err(ServeError::DataDir)?;
    let keys = Keys::load(&wiring::key_settings(&settings), &settings.data_dir)
        .map_err(ServeError::Keys)?;
    let store_path = settings.data_dir.join(crate::store::FILE_NAME);
    let store_error = |e| ServeError::Store(store_path.clone(), e);
    let store = Store::open_with_cache(&settings.data_dir, settings.store_cache_bytes)
        .map_err(store_error)?;
    let revocations = Revocations::new();
    revocations.load(store.revocations().map_err(store_error)?);
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
    let restored = rt.block_on(async move {
        let server = Rc::new(rt2.root(ScopeKind::Server, "consult-edge"));
        let app = Rc::new(App::new(
            settings,
            rt2.clone(),
            server.clone(),
            keys,
            store,
            revocations,
        ));
        let restored = app.consults.restore().await;
        if let Ok(open) = &restored {
            log::info!("event=consultations_restored open={open}");
        }
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
        server.spawn(purge_loop(app.clone()));
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
        let store = app.store.clone();
        drop(app);
        store.shutdown().await;
        restored
    });
    restored.map_err(store_error)?;
    log::info!("event=shutdown_complete");
    Ok(())
}

fn reload(app: &App) {
    let reloaded = app.settings().reload_file();
    match reloaded {
        Ok(settings) => {
            app.apply(settings);
            log::info!("event=config_reloaded");
        }
        Err(error) => log::warn!("event=config_reload_failed error={error} kept=running"),
    }
}

async fn shutdown(app: &Rc<App>) {
    app.drain.fire();
    let closing = app.live.cancel_all(CancelReason::Shutdown);
    log::info!(
        "event=shutdown_draining sessions={closing} connections={}",
        app.connections.open()
    );
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

/// Purges revocations and used refresh ids whose tokens can no longer be valid (hourly).
async fn purge_loop(app: Rc<App>) {
    loop {
        app.rt.timers.sleep(PURGE_INTERVAL_MS).await;
        let now = app.rt.timers.unix_s();
        app.revocations.purge(now);
        match app.store.purge_expired(now).await {
            Ok(count) => log::info!(
                "event=purged revocations={} refresh_ids={}",
                count.revocations,
                count.refresh_jtis
            ),
            Err(error) => log::warn!("event=purge_failed error={error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_refuses_settings_built_in_code_that_break_a_rule() {
        // Refused before anything is bound or created: the data dir is never made.
        let dir = std::env::temp_dir().join(format!("consult-edge-serve-{}", std::process::id()));
        let settings = Settings {
            read_timeout_ms: 0,
            data_dir: dir.clone(),
            ..Settings::default()
        };
        match serve(settings) {
            Err(ServeError::Settings(why)) => {
                assert_eq!(why, "--read-timeout-ms: must be greater than zero")
            }
            other => panic!("expected a settings error, got {other:?}"),
        }
        assert!(!dir.exists());
    }
}
