//! HTTP/1.1 responses: builders for handlers and the serialiser for the connection loop.
//!
//! # Invariants
//!
//! 1. The framing headers `Content-Length` and `Connection` are written by [`Response::write_head`]
//!    only, exactly once each; `Transfer-Encoding` is never written (we always know the length),
//!    so a response never carries both (RFC 9112 §6.3). Handler-set copies are dropped.
//! 2. 1xx, 204 and 304 responses carry no body and no `Content-Length` (RFC 9110 §8.6).
//! 3. No header written contains CR, LF or NUL (response splitting): such a header is dropped
//!    and logged.
//! 4. A response to `HEAD` has the same head as to `GET` and no body (RFC 9110 §9.3.2).
//!
//! # Implementation
//!
//! A [`Response`] is plain data (status, headers, body bytes). No `Date` header is written:
//! RFC 9110 §6.6.1 lets an origin without a reliable clock omit it, and kiosk gateways often
//! boot without one. The status line is always `HTTP/1.1` (RFC 9110 §6.2: we send our
//! highest version, also to HTTP/1.0 clients).

use crate::observe::time::push_padded;
use std::borrow::Cow;

use serde::Serialize;

/// The interim response that answers `Expect: 100-continue` (RFC 9110 §10.1.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Headers whose value the serialiser owns (invariant 1); handler-set copies are dropped.
const FRAMING_HEADERS: [&str; 3] = ["content-length", "connection", "transfer-encoding"];

/// A response ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code; its reason phrase comes from [`reason_phrase`].
    pub status: u16,
    /// Header fields other than the framing ones, in the order they are written.
    pub headers: Vec<(Cow<'static, str>, String)>,
    /// The body bytes; `Content-Length` is their length.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `value` serialised as JSON, `Content-Type: application/json`. If serialisation fails
    /// (a map with non-string keys: our bug), the response is a 500 in the spec's shape.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(status)
                .header("Content-Type", "application/json")
                .body(body),
            Err(e) => {
                log::error!("event=response_json_failed status={status} error={e}");
                Response::new(500)
                    .header("Content-Type", "application/json")
                    .body(
                        br#"{"error":{"code":"internal","message":"internal server error"}}"#
                            .to_vec(),
                    )
            }
        }
    }

    /// `text` as `text/plain; charset=utf-8`.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(text.into().into_bytes())
    }

    /// 204 No Content.
    pub fn no_content() -> Self {
        Response::new(204)
    }

    /// Adds a header field (builder style).
    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body (builder style).
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when this status never carries a body (invariant 2).
    pub fn status_forbids_body(&self) -> bool {
        (100..200).contains(&self.status) || self.status == 204 || self.status == 304
    }

    /// Appends the status line and headers, with `Content-Length` and `Connection`
    /// (`keep-alive` or `close`) for final responses. 1xx responses get neither: a 101 sets
    /// its own `Connection: Upgrade`, so for 1xx a handler's `Connection` header is kept.
    pub fn write_head(&self, out: &mut Vec<u8>, keep_alive: bool) {
        // Appended piece by piece, numbers by `push_padded`: `write!` through io::Write's
        // adapter cost ~3,700 instructions per upgrade (the 101) and per request.
        let interim = (100..200).contains(&self.status);
        out.extend_from_slice(b"HTTP/1.1 ");
        push_padded(out, u64::from(self.status), 1);
        out.push(b' ');
        out.extend_from_slice(reason_phrase(self.status).as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            let framing = FRAMING_HEADERS.iter().any(|f| name.eq_ignore_ascii_case(f));
            if framing && !(interim && name.eq_ignore_ascii_case("connection")) {
                continue;
            }
            if !header_is_safe(name, value) {
                log::warn!(
                    "event=response_header_dropped reason=unsafe_bytes name_len={}",
                    name.len()
                );
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !self.status_forbids_body() {
            out.extend_from_slice(b"Content-Length: ");
            push_padded(out, self.body.len() as u64, 1);
            out.extend_from_slice(b"\r\n");
        }
        if !interim {
            out.extend_from_slice(if keep_alive {
                b"Connection: keep-alive\r\n"
            } else {
                b"Connection: close\r\n"
            });
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Appends the whole response: the head, then the body unless the request was `HEAD`
    /// or the status forbids one (invariants 2, 4).
    pub fn write(&self, out: &mut Vec<u8>, keep_alive: bool, head_request: bool) {
        self.write_head(out, keep_alive);
        if !head_request && !self.status_forbids_body() {
            out.extend_from_slice(&self.body);
        }
    }
}

/// True when neither name nor value can break the head's framing (invariant 3).
fn header_is_safe(name: &str, value: &str) -> bool {
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let value_ok = !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
    name_ok && value_ok
}

/// The reason phrase of every status this gateway sends (RFC 9110 §15); `Unknown` otherwise.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(r: &Response, keep_alive: bool, head_request: bool) -> String {
        let mut out = Vec::new();
        r.write(&mut out, keep_alive, head_request);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn response_json_writes_length_type_and_connection() {
        let r = Response::json(200, &serde_json::json!({"status": "ok"}));
        assert_eq!(
            written(&r, true, false),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\
             Connection: keep-alive\r\n\r\n{\"status\":\"ok\"}"
        );
        assert!(written(&r, false, false).contains("Connection: close\r\n"));
    }

    #[test]
    fn response_head_request_same_head_no_body() {
        let r = Response::text(200, "hello");
        let get = written(&r, true, false);
        let head = written(&r, true, true);
        assert_eq!(get, format!("{head}hello"));
        assert!(head.contains("Content-Length: 5\r\n"));
    }

    #[test]
    fn response_no_content_has_no_length_and_no_body() {
        let r = Response::no_content().body(b"ignored".to_vec());
        assert_eq!(
            written(&r, true, false),
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn response_handler_framing_headers_are_replaced() {
        let r = Response::text(200, "ab")
            .header("Content-Length", "999")
            .header("Transfer-Encoding", "chunked")
            .header("connection", "upgrade");
        let s = written(&r, false, false);
        assert_eq!(s.matches("Content-Length").count(), 1);
        assert!(s.contains("Content-Length: 2\r\n"));
        assert!(!s.contains("Transfer-Encoding"));
        assert!(!s.contains("upgrade"));
    }

    #[test]
    fn response_switching_protocols_keeps_upgrade_headers_no_length() {
        let r = Response::new(101)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade");
        assert_eq!(
            written(&r, true, false),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        );
    }

    #[test]
    fn response_header_with_crlf_is_dropped() {
        let r = Response::new(200).header("X-Evil", "a\r\nSet-Cookie: x=1");
        let s = written(&r, true, false);
        assert!(!s.contains("Set-Cookie"));
        assert!(!s.contains("X-Evil"));
    }

    #[test]
    fn response_every_spec_status_has_a_reason() {
        for s in [
            200, 201, 204, 400, 401, 403, 404, 405, 408, 409, 413, 415, 429, 431, 500,
        ] {
            assert_ne!(reason_phrase(s), "Unknown", "status {s}");
        }
    }
}
