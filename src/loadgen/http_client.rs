//! A tiny keep-alive HTTP/1.1 client: just enough to create one consultation per socket pair.
//!
//! # Invariants
//!
//! - One request in flight per connection; [`HTTP_CONCURRENCY`] connections work a shared
//!   queue of pairs, so at most that many requests are in flight at once.
//! - A response head is at most [`MAX_RESPONSE_HEAD`] bytes and a body at most
//!   [`MAX_RESPONSE_BODY`]; anything larger, chunked, or malformed is an error, never a panic.
//! - Every request has a deadline ([`HTTP_TIMEOUT`]); a failed connection is reopened once per
//!   request, then the pair is reported as failed.
//!
//! # Implementation
//!
//! `Async<TcpStream>` from async-io, requests written whole, response heads parsed with
//! httparse (Complete/Partial/Err), bodies delimited by `Content-Length`.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, LocalExecutor, Timer};

use super::mint::User;

/// Requests in flight at once while creating consultations: enough to hide one round trip's
/// latency, few enough not to look like a connection flood to the server's accept loop.
pub const HTTP_CONCURRENCY: usize = 4;

/// Deadline of one request (connect + write + response): a healthy local gateway answers in
/// milliseconds; a stuck one must fail the run, not hang it.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response head we read: the server's own request-head limit (SPEC §4, 16 KiB).
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Largest response body we read: the server's own body limit (SPEC §4, 64 KiB).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Most response headers parsed; a consultation reply has a handful.
const MAX_HEADERS: usize = 32;

/// Bytes read from the socket per `read` call.
const READ_CHUNK: usize = 4096;

/// Why a request failed; [`HttpError::key`] is its name in the report's `errors` map.
#[derive(Debug)]
pub enum HttpError {
    /// Connecting, writing or reading failed (the network or the server went away).
    Io(io::Error),
    /// The server did not answer within [`HTTP_TIMEOUT`].
    Timeout,
    /// The response was malformed, too large or chunked (the server's fault, for us).
    BadResponse(&'static str),
    /// The server answered with an unexpected status.
    Status(u16),
}

impl HttpError {
    /// The error's name in the report: `http_io`, `http_timeout`, `http_bad_response`,
    /// `http_<status>`.
    pub fn key(&self) -> String {
        match self {
            HttpError::Io(_) => "http_io".into(),
            HttpError::Timeout => "http_timeout".into(),
            HttpError::BadResponse(_) => "http_bad_response".into(),
            HttpError::Status(code) => format!("http_{code}"),
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Io(e) => write!(f, "i/o error: {e}"),
            HttpError::Timeout => write!(f, "no response within {HTTP_TIMEOUT:?}"),
            HttpError::BadResponse(what) => write!(f, "bad response: {what}"),
            HttpError::Status(code) => write!(f, "unexpected status {code}"),
        }
    }
}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        HttpError::Io(e)
    }
}

/// One response: status and body (the head is dropped once parsed).
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, exactly `Content-Length` bytes.
    pub body: Vec<u8>,
}

/// One keep-alive connection to the gateway.
pub struct HttpConn {
    /// The connection; `None` until the first request or after an error dropped it.
    stream: Option<Async<TcpStream>>,
    /// The gateway's address.
    addr: SocketAddr,
    /// The `Host` header value.
    host: String,
    /// Bytes read but not yet consumed (the next response's start, when pipelined).
    buf: Vec<u8>,
}

impl HttpConn {
    /// A connection to `addr`, opened lazily on the first request.
    pub fn new(addr: SocketAddr, host: &str) -> HttpConn {
        HttpConn {
            stream: None,
            addr,
            host: host.to_string(),
            buf: Vec::new(),
        }
    }

    /// `POST path` with a JSON body and a bearer token; retries once on a fresh connection when
    /// the kept-alive one was closed under us.
    pub async fn post_json(
        &mut self,
        path: &str,
        bearer: &str,
        body: &str,
    ) -> Result<Response, HttpError> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {bearer}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        let reused = self.stream.is_some();
        match self.exchange(request.as_bytes()).await {
            Err(HttpError::Io(_)) if reused => self.exchange(request.as_bytes()).await,
            other => other,
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Response, HttpError> {
        let deadline = async {
            Timer::after(HTTP_TIMEOUT).await;
            Err(HttpError::Timeout)
        };
        let result = smol::future::or(self.exchange_inner(request), deadline).await;
        if result.is_err() {
            self.stream = None;
            self.buf.clear();
        }
        result
    }

    async fn exchange_inner(&mut self, request: &[u8]) -> Result<Response, HttpError> {
        if self.stream.is_none() {
            let stream = Async::<TcpStream>::connect(self.addr).await?;
            stream.get_ref().set_nodelay(true)?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(HttpError::BadResponse("no connection"));
        };
        stream.write_all(request).await?;
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            if let Some((status, head_len, body_len)) = parse_head(&self.buf)? {
                let total = head_len + body_len;
                while self.buf.len() < total {
                    read_more(stream, &mut self.buf, &mut chunk).await?;
                }
                let rest = self.buf.split_off(total);
                let body = self.buf.split_off(head_len);
                self.buf = rest;
                return Ok(Response { status, body });
            }
            if self.buf.len() > MAX_RESPONSE_HEAD {
                return Err(HttpError::BadResponse("response head too large"));
            }
            read_more(stream, &mut self.buf, &mut chunk).await?;
        }
    }
}

async fn read_more(
    stream: &mut Async<TcpStream>,
    buf: &mut Vec<u8>,
    chunk: &mut [u8; READ_CHUNK],
) -> Result<(), HttpError> {
    let n = stream.read(chunk).await?;
    if n == 0 {
        return Err(HttpError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    Ok(())
}

/// Parses a response head: `Some((status, head_len, content_length))` when complete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HttpError::BadResponse("malformed response head")),
    };
    let status = response.code.ok_or(HttpError::BadResponse("no status"))?;
    let mut length = 0usize;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::BadResponse(
                "chunked responses are not supported",
            ));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(HttpError::BadResponse("bad content-length"))?;
        }
    }
    if length > MAX_RESPONSE_BODY {
        return Err(HttpError::BadResponse("response body too large"));
    }
    Ok(Some((status, head_len, length)))
}

/// One pair's outcome: the consultation id, or why it could not be created.
pub type Created = Result<String, HttpError>;

/// Creates one consultation per pair (`POST /v1/consultations {"doctor":"d<k>"}` with patient
/// `p<k>`'s token) over [`HTTP_CONCURRENCY`] keep-alive connections. Entry `k` is pair `k`'s
/// consultation id, or the error that kept it from being created.
pub async fn create_consultations(
    ex: &Rc<LocalExecutor<'static>>,
    addr: SocketAddr,
    host: &str,
    users: Rc<Vec<User>>,
) -> Vec<Created> {
    let pairs = users.len() / 2;
    let next = Rc::new(Cell::new(0usize));
    let results: Rc<RefCell<Vec<Option<Created>>>> =
        Rc::new(RefCell::new((0..pairs).map(|_| None).collect()));
    let workers: Vec<_> = (0..HTTP_CONCURRENCY.min(pairs))
        .map(|_| {
            let (next, results, users) = (next.clone(), results.clone(), users.clone());
            let mut conn = HttpConn::new(addr, host);
            ex.spawn(async move {
                loop {
                    let k = next.get();
                    if k >= pairs {
                        break;
                    }
                    next.set(k + 1);
                    let (Some(patient), Some(doctor)) = (users.get(2 * k), users.get(2 * k + 1))
                    else {
                        break;
                    };
                    let body = serde_json::json!({ "doctor": doctor.sub }).to_string();
                    let outcome = conn
                        .post_json("/v1/consultations", &patient.token, &body)
                        .await
                        .and_then(consultation_id);
                    if let Some(slot) = results.borrow_mut().get_mut(k) {
                        *slot = Some(outcome);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await;
    }
    let slots = results.take();
    slots
        .into_iter()
        .map(|slot| slot.unwrap_or(Err(HttpError::BadResponse("not attempted"))))
        .collect()
}

/// The `id` of a 201 consultation reply.
fn consultation_id(response: Response) -> Result<String, HttpError> {
    if response.status != 201 {
        return Err(HttpError::Status(response.status));
    }
    let value: serde_json::Value = serde_json::from_slice(&response.body)
        .map_err(|_| HttpError::BadResponse("consultation reply is not JSON"))?;
    value
        .get("id")
        .and_then(|id| id.as_str())
        .map(str::to_string)
        .ok_or(HttpError::BadResponse("consultation reply has no id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_partial_then_complete_with_length() {
        let full = b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{\"id\":1}x";
        assert!(parse_head(full.get(..20).unwrap()).unwrap().is_none());
        let (status, head, len) = parse_head(full).unwrap().unwrap();
        assert_eq!((status, len), (201, 9));
        assert_eq!(full.len(), head + len);
    }

    #[test]
    fn head_chunked_or_oversized_refused() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn consultation_reply_id_extracted_or_refused() {
        let ok = Response {
            status: 201,
            body: br#"{"id":"c-1","state":"open"}"#.to_vec(),
        };
        assert_eq!(consultation_id(ok).unwrap(), "c-1");
        let forbidden = Response {
            status: 403,
            body: Vec::new(),
        };
        assert_eq!(consultation_id(forbidden).unwrap_err().key(), "http_403");
    }
}
