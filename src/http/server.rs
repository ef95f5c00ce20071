//! The accept loop: one connection scope per accepted socket, a cap on open connections, and
//! no spinning when the process runs out of file descriptors.
//!
//! # Invariants
//! 1. At most `max_connections` sockets are served (HTTP or upgraded); one over the cap is
//!    accepted and closed at once, and counted.
//! 2. `EMFILE`/`ENFILE` on accept back off for [`ACCEPT_BACKOFF_MS`] and log at most once per
//!    second: the kernel keeps the connection queued, we neither spin nor die.
//! 3. The loop ends when the drain signal or the server scope is cancelled (shutdown stops
//!    accepting first).

use super::conn::{serve_connection, ConnLimits, Service};
use crate::scope::{Scope, ScopeKind};
use async_io::Async;
use std::cell::Cell;
use std::net::TcpListener;
use std::rc::Rc;

/// Pause after an fd-exhaustion accept error: long enough not to burn a core, short enough to
/// resume quickly once descriptors are freed.
pub const ACCEPT_BACKOFF_MS: u64 = 100;
/// errno values of "too many open files" (per process, per system).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Kernel send buffer of each accepted socket. Linux autotunes it up to `tcp_wmem` max (4 MiB
/// here), so a client that stops reading could pin megabytes of kernel memory before our own
/// bounded outbox even fills; capped, a stalled reader fills the outbox (or stalls a write)
/// quickly and is closed 4029. 64 KiB keeps dozens of chat frames in flight, plenty for a
/// kiosk's link (the kernel doubles the value for its bookkeeping).
pub const SEND_BUFFER_BYTES: usize = 64 * 1024;

/// At most one "out of file descriptors" log line per this many ms.
pub const EMFILE_LOG_INTERVAL_MS: u64 = 1000;

/// Counts open connections; a guard per connection keeps it exact however the socket ends.
#[derive(Clone, Default)]
pub struct ConnCounter {
    open: Rc<Cell<usize>>,
}

pub struct ConnGuard {
    open: Rc<Cell<usize>>,
    on_close: Option<Box<dyn FnOnce()>>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.open.set(self.open.get().saturating_sub(1));
        if let Some(on_close) = self.on_close.take() {
            on_close();
        }
    }
}

impl ConnCounter {
    pub fn open(&self) -> usize {
        self.open.get()
    }

    fn acquire(&self, on_close: Box<dyn FnOnce()>) -> ConnGuard {
        self.open.set(self.open.get() + 1);
        ConnGuard {
            open: self.open.clone(),
            on_close: Some(on_close),
        }
    }
}

/// Hooks the accept loop calls, for metrics and per-connection settings.
pub trait AcceptPolicy {
    /// Limits for a new connection (read at accept time, so a reload applies to new ones).
    fn limits(&self) -> ConnLimits;
    fn max_connections(&self) -> usize;
    fn opened(&self);
    fn closed(&self);
    fn rejected(&self);
    /// Cancelled when the gateway starts shutting down: stop accepting, close idle connections.
    fn drain(&self) -> crate::scope::Signal;
}

/// Accepts until `server` is cancelled.
pub async fn accept_loop(
    server: &Scope,
    listener: Async<TcpListener>,
    service: Rc<dyn Service>,
    policy: Rc<dyn AcceptPolicy>,
    counter: ConnCounter,
) {
    let mut last_emfile_log: Option<u64> = None;
    loop {
        let drained = policy.drain().wait();
        let accepted = server
            .run(async {
                smol::future::or(async { Some(listener.accept().await) }, async {
                    drained.await;
                    None
                })
                .await
            })
            .await;
        let accepted: std::io::Result<_> = match accepted {
            Ok(Some(result)) => result,
            Ok(None) | Err(_) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                let out_of_fds = matches!(error.raw_os_error(), Some(EMFILE) | Some(ENFILE));
                if out_of_fds {
                    let now = server.now();
                    if last_emfile_log.is_none_or(|t| now >= t + EMFILE_LOG_INTERVAL_MS) {
                        log::warn!(
                            "event=accept_backoff error={error} backoff_ms={ACCEPT_BACKOFF_MS}"
                        );
                        last_emfile_log = Some(now);
                    }
                    server.timers().sleep(ACCEPT_BACKOFF_MS).await;
                } else {
                    log::debug!("event=accept_error error={error}");
                }
                continue;
            }
        };
        if counter.open() >= policy.max_connections() {
            policy.rejected();
            log::debug!("event=connection_rejected peer={peer} reason=max_connections");
            drop(stream);
            continue;
        }
        let _ = stream.get_ref().set_nodelay(true);
        let _ =
            rustix::net::sockopt::set_socket_send_buffer_size(stream.get_ref(), SEND_BUFFER_BYTES);
        policy.opened();
        let closed_policy = policy.clone();
        let guard = counter.acquire(Box::new(move || closed_policy.closed()));
        let limits = policy.limits();
        let service = service.clone();
        let drain = policy.drain();
        // The scope's label is the peer (`PeerAddr`: `SocketAddr`'s text without `core::fmt`).
        let label = crate::observe::log::PeerAddr(&peer).to_string();
        server.spawn_child(ScopeKind::Connection, &label, move |scope| {
            serve_connection(scope, stream, peer, limits, service, drain, Box::new(guard))
        });
    }
}
