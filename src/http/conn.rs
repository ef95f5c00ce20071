//! One HTTP/1.1 connection: a scope that reads requests, runs each in its own child scope, and
//! writes responses in request order (keep-alive, pipelining, `Expect: 100-continue`).
//!
//! # Invariants
//! 1. At most one phase deadline is armed at a time: `keepalive_idle` while waiting for a
//!    request's first byte, `head` until its head is complete, `body` until its body is read.
//!    When one fires the connection scope is cancelled with its name, and the connection closes.
//! 2. Responses are written in the order requests arrived: one request is handled at a time;
//!    bytes of later (pipelined) requests wait in the buffer.
//! 3. While a handler runs, the socket is still read: end of stream cancels the request's scope
//!    with `PeerClosed`, so its work stops instead of running on for nobody.
//! 4. The read buffer never holds more than the head limit plus one read: a client cannot make
//!    us buffer more than it may send.
//!
//! # Implementation
//! The wire rules live in `head.rs`/`body.rs`; this file only moves bytes and arms deadlines.
//! After a `101 Switching Protocols`, the socket, the bytes already read and the connection's
//! accounting guard are handed to the upgrade's continuation and this loop ends — the session
//! lives on in a scope of its own under the server.

use super::body::BodyReader;
use super::error::HttpError;
use super::head::{parse_head, HeadLimits, Method, Parsed, RequestHead};
use super::response::{Response, CONTINUE};
use crate::observe::TraceParent;
use crate::scope::{CancelReason, Scope, ScopeKind, ScopeTimer, Signal};
use async_io::Async;
use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::rc::Rc;

/// Room made in the read buffer for each read call: a chat gateway's requests are small, and a
/// small buffer keeps an idle keep-alive connection cheap. The buffer grows by exactly this
/// much when it has less room, so its capacity stays within the head limit plus one chunk
/// (invariant 4).
pub const READ_CHUNK: usize = 4096;

/// After an error response that closes the connection, unread request bytes are drained for at
/// most this long / this many bytes before the socket is closed: closing with unread data makes
/// the kernel send RST, which can destroy the error response before the client reads it
/// (RFC 9112 §9.6, "lingering close").
pub const LINGER_MS: u64 = 1000;
pub const LINGER_BYTES: usize = 256 * 1024;

/// Time limits and size limits of one connection, fixed when it is accepted (a reload applies to
/// new connections).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub head_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub keepalive_idle_ms: u64,
    pub head: HeadLimits,
}

/// A parsed request with its body, as handlers see it.
pub struct Request {
    pub head: RequestHead,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
    /// The request's W3C trace: continued from a valid `traceparent`, else new. An upgraded
    /// session continues it.
    pub trace: TraceParent,
}

impl Request {
    /// The peer is on this host: loopback-only endpoints check this.
    pub fn is_loopback(&self) -> bool {
        self.peer.ip().is_loopback()
    }
}

/// A socket leaving the HTTP loop for another protocol.
pub struct Upgraded {
    pub stream: Async<TcpStream>,
    /// Bytes the client sent after the upgrade request, already read.
    pub leftover: Vec<u8>,
    pub peer: SocketAddr,
    /// Accounting for the open connection; dropped when the socket is.
    pub guard: Box<dyn std::any::Any>,
}

/// What a handler answers.
pub enum Reply {
    Response(Response),
    /// Write `response` (a 101), then hand the socket to `then`.
    Upgrade {
        response: Response,
        then: Box<dyn FnOnce(Upgraded)>,
    },
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply::Response(response)
    }
}

/// The application behind the HTTP server.
pub trait Service {
    /// Handles one request inside its request `scope`.
    fn handle<'a>(
        &'a self,
        request: Request,
        scope: &'a Scope,
    ) -> Pin<Box<dyn Future<Output = Reply> + 'a>>;

    /// Called once per finished request, for the access log and metrics.
    fn record(&self, record: &AccessRecord<'_>);
}

/// One finished request, as the access log sees it.
pub struct AccessRecord<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub status: u16,
    pub bytes: usize,
    pub micros: u64,
    /// The request's scope (its path and trace id), or the connection's when the request
    /// failed before it had one.
    pub scope: &'a Scope,
}

enum Phase {
    /// Waiting for the first byte of a request.
    Idle,
    Head,
    Body,
    /// A handler runs: its own scope bounds it, the connection arms nothing.
    Handling,
}

struct Conn {
    stream: Async<TcpStream>,
    peer: SocketAddr,
    buf: Vec<u8>,
    limits: ConnLimits,
    /// Cancelled when the gateway drains for shutdown: no new request is read after it.
    drain: Signal,
    idle: ScopeTimer,
    head: ScopeTimer,
    body: ScopeTimer,
}

impl Conn {
    /// Arms the deadline of `phase` and disarms the others (invariant 1).
    fn enter(&self, phase: Phase) {
        let (idle, head, body) = match phase {
            Phase::Idle => (Some(self.limits.keepalive_idle_ms), None, None),
            Phase::Head => (None, Some(self.limits.head_timeout_ms), None),
            Phase::Body => (None, None, Some(self.limits.body_timeout_ms)),
            Phase::Handling => (None, None, None),
        };
        for (timer, ms) in [(&self.idle, idle), (&self.head, head), (&self.body, body)] {
            match ms {
                Some(ms) => timer.reset_after(ms),
                None => timer.cancel(),
            }
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` is end of stream.
    ///
    /// Cancel-safe: the bytes land in the buffer's spare room in the same call as the `recv`
    /// that read them, with no await in between, so a read dropped half-way (a handler
    /// finishing while we watch the peer) leaves the buffer exactly as it was.
    async fn fill(&mut self) -> std::io::Result<usize> {
        recv_into(&self.stream, &mut self.buf).await
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }
}

/// Serves one accepted connection inside `scope` (a `Connection` scope) until it closes.
pub async fn serve_connection(
    scope: Scope,
    stream: Async<TcpStream>,
    peer: SocketAddr,
    limits: ConnLimits,
    service: Rc<dyn Service>,
    drain: Signal,
    guard: Box<dyn std::any::Any>,
) {
    let now = scope.now();
    let mut conn = Conn {
        stream,
        peer,
        buf: Vec::new(),
        limits,
        drain,
        idle: scope.deadline("keepalive_idle", now + limits.keepalive_idle_ms),
        head: scope.deadline("head", u64::MAX),
        body: scope.deadline("body", u64::MAX),
    };
    conn.head.cancel();
    conn.body.cancel();
    loop {
        if conn.drain.is_fired() && conn.buf.is_empty() {
            break;
        }
        match scope.run(next_request(&mut conn)).await {
            Ok(Ok(Some(head))) => {
                match handle_one(&scope, &mut conn, head, &*service).await {
                    Ok(Some((then, request_scope))) => {
                        // Upgraded: the socket leaves this scope. The continuation re-parents
                        // the session while its request scope still exists; only then does
                        // the request end.
                        let Conn {
                            stream, buf, peer, ..
                        } = conn;
                        then(Upgraded {
                            stream,
                            leftover: buf,
                            peer,
                            guard,
                        });
                        drop(request_scope);
                        return;
                    }
                    Ok(None) => {}
                    Err(()) => break,
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(error)) => {
                log::debug!(
                    "event=http_error peer={} status={} code={} scope={}",
                    conn.peer,
                    error.status(),
                    error.code(),
                    scope.path()
                );
                let mut out = Vec::new();
                error.to_response().write(&mut out, false, false);
                if conn.write(&out).await.is_ok() {
                    linger_close(&scope, &mut conn).await;
                }
                break;
            }
            Err(CancelReason::Deadline("head")) => {
                // Slowloris: tell a real (slow) client why, then drop it.
                let mut out = Vec::new();
                HttpError::HeadTimeout
                    .to_response()
                    .write(&mut out, false, false);
                let _ = conn.stream.write_all(&out).await;
                break;
            }
            Err(_) => break,
        }
    }
    drop(guard);
}

/// Waits for and parses the next request head. `Ok(None)`: the client closed between requests.
async fn next_request(conn: &mut Conn) -> Result<Option<RequestHead>, HttpError> {
    conn.enter(if conn.buf.is_empty() {
        Phase::Idle
    } else {
        Phase::Head
    });
    loop {
        if !conn.buf.is_empty() {
            match parse_head(&conn.buf, &conn.limits.head)? {
                Parsed::Complete(head, consumed) => {
                    conn.buf.drain(..consumed);
                    return Ok(Some(head));
                }
                Parsed::Partial => {}
            }
        }
        let was_empty = conn.buf.is_empty();
        let read = if was_empty {
            // Between requests: a drain (shutdown) ends the connection.
            let drained = conn.drain.wait();
            smol::future::or(async { Some(conn.fill().await) }, async {
                drained.await;
                None
            })
            .await
        } else {
            Some(conn.fill().await)
        };
        let Some(read) = read else {
            return Ok(None);
        };
        match read {
            Ok(0) if was_empty => return Ok(None),
            Ok(0) => {
                return Err(HttpError::Malformed(
                    "connection closed inside a request head",
                ))
            }
            Ok(_) => {
                if was_empty {
                    conn.enter(Phase::Head);
                }
            }
            Err(_) => return Ok(None),
        }
    }
}

/// What follows a successful upgrade: the continuation and the request scope it came from.
type Upgrade = (Box<dyn FnOnce(Upgraded)>, Scope);

/// Reads the body, runs the handler in a request scope, writes the response.
/// `Ok(Some(..))`: upgraded. `Err(())`: the connection must close.
async fn handle_one(
    conn_scope: &Scope,
    conn: &mut Conn,
    head: RequestHead,
    service: &dyn Service,
) -> Result<Option<Upgrade>, ()> {
    let started = std::time::Instant::now();
    let keep_alive = head.keep_alive;
    let is_head = head.method == Method::Head;
    let method = head.method.clone();
    let path = head.path.clone();

    let body = match conn_scope.run(read_body(conn, &head)).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => {
            let mut out = Vec::new();
            error.to_response().write(&mut out, false, is_head);
            let written = conn.write(&out).await;
            service.record(&AccessRecord {
                method: &method,
                path: &path,
                status: error.status(),
                bytes: out.len(),
                micros: started.elapsed().as_micros() as u64,
                scope: conn_scope,
            });
            if written.is_ok() {
                linger_close(conn_scope, conn).await;
            }
            return Err(());
        }
        Err(_) => return Err(()),
    };
    conn.enter(Phase::Handling);

    let request_scope = conn_scope.child(ScopeKind::Request, &path);
    // W3C Trace Context: a valid `traceparent` continues the caller's trace, else a new one
    // starts; a malformed value is ignored, never echoed.
    let trace = head
        .headers
        .get("traceparent")
        .and_then(TraceParent::parse)
        .unwrap_or_else(TraceParent::generate);
    request_scope.set_trace_id_bytes(trace.trace_id);
    let request = Request {
        head,
        body,
        peer: conn.peer,
        trace,
    };
    let reply = {
        let handler = request_scope.run(service.handle(request, &request_scope));
        let peer_gone = watch_peer(conn, &request_scope);
        handler
            .or(async {
                peer_gone.await;
                Err(CancelReason::PeerClosed)
            })
            .await
    };
    let (response, upgrade) = match reply {
        Ok(Reply::Response(response)) => (response, None),
        Ok(Reply::Upgrade { response, then }) => (response, Some(then)),
        Err(CancelReason::Panicked) => (
            HttpError::from(crate::http::ApiError::internal("handler panicked")).to_response(),
            None,
        ),
        Err(reason) => {
            log::info!(
                "event=request_cancelled reason={reason} scope={}",
                request_scope.path()
            );
            return Err(());
        }
    };
    let keep = (keep_alive && !conn.drain.is_fired()) || upgrade.is_some();
    let mut out = Vec::with_capacity(256 + response.body.len());
    response.write(&mut out, keep, is_head);
    let written = conn.write(&out).await;
    service.record(&AccessRecord {
        method: &method,
        path: &path,
        status: response.status,
        bytes: out.len(),
        micros: started.elapsed().as_micros() as u64,
        scope: &request_scope,
    });
    if written.is_err() {
        return Err(());
    }
    match upgrade {
        Some(then) => Ok(Some((then, request_scope))),
        None if keep => Ok(None),
        None => Err(()),
    }
}

/// Reads the body the head announces, answering `100 Continue` first when asked to.
async fn read_body(conn: &mut Conn, head: &RequestHead) -> Result<Vec<u8>, HttpError> {
    let mut reader = BodyReader::new(head.body, conn.limits.head.max_body_bytes);
    let mut body = Vec::new();
    if reader.is_done() {
        return Ok(body);
    }
    conn.enter(Phase::Body);
    if head.expect_continue && conn.buf.is_empty() {
        conn.write(CONTINUE)
            .await
            .map_err(|_| HttpError::Malformed("connection closed"))?;
    }
    loop {
        let progress = reader.read(&conn.buf, &mut body)?;
        conn.buf.drain(..progress.consumed);
        if progress.done {
            return Ok(body);
        }
        match conn.fill().await {
            Ok(0) | Err(_) => return Err(HttpError::Malformed("connection closed inside a body")),
            Ok(_) => {}
        }
    }
}

/// Half-closes and drains what the client still sends, bounded by [`LINGER_MS`] and
/// [`LINGER_BYTES`], so the error response reaches it before the socket closes.
async fn linger_close(scope: &Scope, conn: &mut Conn) {
    if conn
        .stream
        .get_ref()
        .shutdown(std::net::Shutdown::Write)
        .is_err()
    {
        return;
    }
    let timers = scope.timers().clone();
    let drain = async {
        let mut sink = Vec::with_capacity(READ_CHUNK);
        let mut drained = 0;
        while drained < LINGER_BYTES {
            sink.clear();
            match recv_into(&conn.stream, &mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    };
    drain.or(timers.sleep(LINGER_MS)).await;
}

/// Reads once from `stream` into `buf`'s spare room, first making [`READ_CHUNK`] of room when
/// there is less; `Ok(0)` is end of stream. The bytes are appended by the `recv` itself
/// (rustix writes into the `Vec`'s spare capacity and sets its length), so nothing is zeroed
/// or copied per read: a 4 KiB zeroed chunk on the stack cost ~4,100 instructions per read and
/// made every connection's future 4 KiB larger for each place that reads (docs/perf.md,
/// "Upgrades").
async fn recv_into(stream: &Async<TcpStream>, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK {
        buf.reserve_exact(READ_CHUNK);
    }
    stream
        .read_with(|socket| {
            rustix::net::recv(
                socket,
                rustix::buffer::spare_capacity(buf),
                rustix::net::RecvFlags::empty(),
            )
            .map(|(read, _)| read)
            .map_err(std::io::Error::from)
        })
        .await
}

/// Resolves when the peer closes while a handler runs (invariant 3); bytes of pipelined
/// requests are kept, up to the head limit (invariant 4).
async fn watch_peer(conn: &mut Conn, request_scope: &Scope) {
    loop {
        if conn.buf.len() >= conn.limits.head.max_head_bytes {
            // Enough buffered; stop reading until the handler is done.
            std::future::pending::<()>().await;
        }
        match conn.fill().await {
            Ok(0) | Err(_) => {
                request_scope.cancel(CancelReason::PeerClosed);
                return;
            }
            Ok(_) => {}
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header: `None` without the header,
/// `Some(None)` when it is there but not a bearer token.
pub fn bearer_token(headers: &crate::http::Headers) -> Option<Option<&str>> {
    let value = headers.get("authorization")?;
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Some(None);
    }
    let token = token.trim();
    Some((!token.is_empty()).then_some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// A connected pair on loopback: our end wrapped for async reads, the peer's plain.
    fn pair() -> (Async<TcpStream>, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let peer = TcpStream::connect(listener.local_addr().expect("local addr")).expect("connect");
        let (ours, _) = listener.accept().expect("accept");
        (Async::new(ours).expect("non-blocking"), peer)
    }

    #[test]
    fn conn_recv_appends_after_buffered_bytes_and_grows_by_one_chunk() {
        let (ours, mut peer) = pair();
        let sent: Vec<u8> = (0..3 * READ_CHUNK).map(|i| (i % 251) as u8).collect();
        peer.write_all(&sent).expect("write");
        drop(peer);
        let mut buf = b"kept".to_vec();
        let mut got = Vec::new();
        smol::block_on(async {
            loop {
                let before = buf.len();
                let read = recv_into(&ours, &mut buf).await.expect("recv");
                assert!(
                    buf.capacity() <= before + READ_CHUNK,
                    "capacity={} before={before}",
                    buf.capacity()
                );
                assert_eq!(buf.len(), before + read);
                if read == 0 {
                    break;
                }
                // What was read comes out, as a parsed head does: the room is reused.
                got.extend(buf.drain(4..));
            }
        });
        assert_eq!(buf, b"kept", "bytes already buffered stay first");
        assert_eq!(got, sent);
    }
}
