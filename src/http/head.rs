//! Request heads: parsing with httparse, then the framing rules of RFC 9112 and SPEC §4.
//!
//! # Invariants
//!
//! 1. [`parse_head`] never looks past the first `max_head_bytes` of its input, so a client
//!    cannot make us buffer more than the limit: once that many bytes are buffered without a
//!    complete head, the answer is 431, not `Partial`. Hence `Partial` implies
//!    `buf.len() < max_head_bytes`.
//! 2. The result depends only on the bytes, not on how they arrived: parsing a prefix gives
//!    `Partial` or the same result as parsing the whole input.
//! 3. A `Complete` head has exactly one framing: no body, one `Content-Length` within the body
//!    limit, or `Transfer-Encoding: chunked` alone (RFC 9112 §6.3). Anything ambiguous is an
//!    error that closes the connection.
//!
//! # Implementation
//!
//! httparse does the syntax (method token, target characters, version, field names and
//! values) on a fixed array of [`MAX_HEADERS`] slots; this file copies the result into an
//! owned [`RequestHead`] (header names lower-cased) and applies the semantic rules. The
//! caller keeps the buffer and calls again with more bytes after `Partial`; re-parsing from
//! the start is cheap at 16 KiB and keeps this function stateless.

use super::error::HttpError;

/// Most header fields in one request head: 64 is far above any browser or kiosk client
/// (they send about 20) and bounds the slot array httparse fills.
pub const MAX_HEADERS: usize = 64;

/// Largest request head in bytes, request line and final CRLF included (SPEC §4: 16 KiB,
/// else 431). Bounds what one connection can make us buffer before we know its framing.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Largest request body in bytes, decoded (SPEC §4: 64 KiB, else 413). Every body this API
/// accepts is a small JSON document.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// The limits a head is checked against; `Default` is the spec's, the config may change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Bytes a head may take, up to and including its blank line.
    pub max_head_bytes: usize,
    /// Bytes a body may have once decoded; a larger `Content-Length` is refused from the head.
    pub max_body_bytes: u64,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_head_bytes: MAX_HEAD_BYTES,
            max_body_bytes: MAX_BODY_BYTES,
        }
    }
}

/// The outcome of an incremental parse, in httparse's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Parsed `T` from the first `usize` bytes of the input; the rest belongs to what follows.
    Complete(T, usize),
    /// No error so far, but the input ends before the value does: read more and call again.
    Partial,
}

/// A request method (RFC 9110 §9); methods are case-sensitive, so `get` is `Other("get")`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// Any other token, as sent.
    Other(String),
}

impl Method {
    /// The method named by `token` (case-sensitive).
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method's token as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other(token) => token,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header fields in arrival order; names lower-cased, values as raw bytes.
///
/// Two allocations for any number of fields: the names and values back to back in `text`,
/// and where each ends in `ends`. A `String` per name and a `Vec` per value cost an upgrade
/// request (eight or so fields) ~16 allocations and as many frees (docs/perf.md, "Upgrades").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Each field's lower-cased name, then its value, field after field, nothing between.
    text: Vec<u8>,
    /// Per field in arrival order: `(name end, value end)` as offsets into `text`; the name
    /// starts where the previous field's value ended (0 for the first).
    ends: Vec<(usize, usize)>,
}

impl Headers {
    /// Headers of `fields` (`(name, value)`; names are lower-cased here).
    fn from_fields(fields: &[httparse::Header<'_>]) -> Headers {
        let bytes = fields.iter().map(|h| h.name.len() + h.value.len()).sum();
        let mut headers = Headers {
            text: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(fields.len()),
        };
        for field in fields {
            let name_start = headers.text.len();
            headers.text.extend_from_slice(field.name.as_bytes());
            if let Some(name) = headers.text.get_mut(name_start..) {
                name.make_ascii_lowercase();
            }
            let name_end = headers.text.len();
            headers.text.extend_from_slice(field.value);
            headers.ends.push((name_end, headers.text.len()));
        }
        headers
    }

    /// The first value of `name` (any case), if it is valid UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every value of `name` (any case), in arrival order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// True when any value of `name` is a comma-separated list holding `token` (any case).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| trim_ows(t).eq_ignore_ascii_case(token.as_bytes()))
    }

    /// All fields, `(lower-cased name, value)`, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        // Names are httparse tokens (ASCII), lower-cased: valid UTF-8.
        self.fields()
            .map(|(n, v)| (std::str::from_utf8(n).unwrap_or_default(), v))
    }

    /// `(name bytes, value bytes)` of each field, in arrival order.
    fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, value_end)| {
            let name = self.text.get(start..name_end).unwrap_or_default();
            let value = self.text.get(name_end..value_end).unwrap_or_default();
            start = value_end;
            (name, value)
        })
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// How the body that follows a head is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: neither `Content-Length` nor `Transfer-Encoding`.
    None,
    /// Exactly this many bytes (already checked against the body limit).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed and checked request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The request method.
    pub method: Method,
    /// The request target as sent.
    pub target: String,
    /// The path of the target, still percent-encoded (the router decodes per segment);
    /// `*` for `OPTIONS *`, always starting with `/` otherwise.
    pub path: String,
    /// What follows the first `?` in the target, percent-encoded; `None` without `?`.
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// The header fields.
    pub headers: Headers,
    /// Whether the client allows another request on this connection after this one.
    pub keep_alive: bool,
    /// How the body is framed.
    pub body: BodyKind,
    /// The client sent `Expect: 100-continue` and waits for [`super::response::CONTINUE`].
    pub expect_continue: bool,
    /// The client asks to switch to WebSocket (`Connection: upgrade` and
    /// `Upgrade: websocket`); the ws module checks the rest of RFC 6455 §4.2.1.
    pub upgrade_websocket: bool,
}

/// Parses the request head at the start of `buf` (see the module invariants).
pub fn parse_head(buf: &[u8], limits: &HeadLimits) -> Result<Parsed<RequestHead>, HttpError> {
    // Invariant 1: look at no more than the limit.
    let window = buf.get(..limits.max_head_bytes).unwrap_or(buf);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_head_bytes => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(HttpError::UnsupportedVersion),
        Err(httparse::Error::HeaderName) => {
            return Err(HttpError::Malformed("invalid header name"))
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(HttpError::Malformed("invalid header value"))
        }
        Err(httparse::Error::Token) => {
            return Err(HttpError::Malformed("invalid method or target"))
        }
        Err(_) => return Err(HttpError::Malformed("invalid request line")),
    };
    let (Some(method), Some(target), Some(version_minor)) = (req.method, req.path, req.version)
    else {
        return Err(HttpError::Malformed("incomplete request line"));
    };
    let method = Method::from_token(method);
    let (path, query) = split_target(&method, target)?;
    let headers = Headers::from_fields(req.headers);
    check_host(&headers, version_minor)?;
    let body = body_kind(&headers, version_minor, limits)?;
    let keep_alive = if version_minor >= 1 {
        !headers.has_token("connection", "close")
    } else {
        headers.has_token("connection", "keep-alive") && !headers.has_token("connection", "close")
    };
    let expect_continue = version_minor >= 1 && headers.has_token("expect", "100-continue");
    let upgrade_websocket =
        headers.has_token("connection", "upgrade") && headers.has_token("upgrade", "websocket");
    let head = RequestHead {
        method,
        target: target.to_owned(),
        path,
        query,
        version_minor,
        headers,
        keep_alive,
        body,
        expect_continue,
        upgrade_websocket,
    };
    Ok(Parsed::Complete(head, consumed))
}

/// Splits a target into `(path, query)`: origin-form `/p?q`, absolute-form
/// `http://host/p?q` (RFC 9112 §3.2.2: a server must accept it), or `*` for `OPTIONS`.
fn split_target(method: &Method, target: &str) -> Result<(String, Option<String>), HttpError> {
    if target == "*" {
        return match method {
            Method::Options => Ok(("*".to_owned(), None)),
            _ => Err(HttpError::Malformed("asterisk target is only for OPTIONS")),
        };
    }
    let absolute;
    let origin = if target.starts_with('/') {
        target
    } else {
        let rest = strip_prefix_ignore_case(target, "http://")
            .or_else(|| strip_prefix_ignore_case(target, "https://"))
            .ok_or(HttpError::Malformed(
                "request target must be origin- or absolute-form",
            ))?;
        let after_authority = rest
            .find(['/', '?'])
            .and_then(|i| rest.get(i..))
            .unwrap_or("");
        if after_authority.starts_with('/') {
            after_authority
        } else {
            absolute = format!("/{after_authority}");
            absolute.as_str()
        }
    };
    Ok(match origin.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (origin.to_owned(), None),
    })
}

/// `s` without `prefix`, compared ASCII-case-insensitively.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// RFC 9112 §3.2: HTTP/1.1 needs exactly one `Host`; HTTP/1.0 may omit it but not repeat it.
fn check_host(headers: &Headers, version_minor: u8) -> Result<(), HttpError> {
    match headers.get_all("host").count() {
        0 if version_minor == 0 => Ok(()),
        1 => Ok(()),
        _ => Err(HttpError::BadHost),
    }
}

/// Decides the body's framing from `Content-Length` / `Transfer-Encoding` (invariant 3).
fn body_kind(
    headers: &Headers,
    version_minor: u8,
    limits: &HeadLimits,
) -> Result<BodyKind, HttpError> {
    let has_te = headers.get_all("transfer-encoding").next().is_some();
    let has_cl = headers.get_all("content-length").next().is_some();
    if has_te && has_cl {
        return Err(HttpError::ConflictingFraming);
    }
    if has_te {
        if version_minor == 0 {
            return Err(HttpError::TransferEncodingOnHttp10);
        }
        let mut codings = headers
            .get_all("transfer-encoding")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim_ows);
        return match (codings.next(), codings.next()) {
            (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(BodyKind::Chunked),
            _ => Err(HttpError::UnsupportedTransferCoding),
        };
    }
    if !has_cl {
        return Ok(BodyKind::None);
    }
    // RFC 9112 §6.3 item 5: a list of identical values (in one field or several) is one value.
    let mut length: Option<u64> = None;
    for value in headers
        .get_all("content-length")
        .flat_map(|v| v.split(|&b| b == b','))
    {
        let n = parse_decimal(trim_ows(value)).ok_or(HttpError::InvalidContentLength)?;
        match length {
            Some(prev) if prev != n => return Err(HttpError::UnequalContentLengths),
            _ => length = Some(n),
        }
    }
    let n = length.ok_or(HttpError::InvalidContentLength)?;
    if n > limits.max_body_bytes {
        return Err(HttpError::BodyTooLarge {
            limit: limits.max_body_bytes,
        });
    }
    Ok(BodyKind::Length(n))
}

/// `1*DIGIT` as u64; `None` when empty, signed, non-digit or over u64::MAX.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = char::from(b).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Strips optional white space (SP / HTAB, RFC 9110 §5.6.3) from both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Parsed<RequestHead>, HttpError> {
        parse_head(s.as_bytes(), &HeadLimits::default())
    }

    fn head(s: &str) -> RequestHead {
        match parse(s) {
            Ok(Parsed::Complete(h, n)) => {
                assert_eq!(n, s.len());
                h
            }
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    #[test]
    fn head_targets_split_into_path_and_query() {
        let h = head("GET /v1/x?after=3&limit=2 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            (h.path.as_str(), h.query.as_deref()),
            ("/v1/x", Some("after=3&limit=2"))
        );
        let h = head("GET http://a.example/v1/x?q HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((h.path.as_str(), h.query.as_deref()), ("/v1/x", Some("q")));
        let h = head("GET HTTPS://a.example HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.path, "/");
        let h = head("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.path, "*");
        assert!(parse("GET * HTTP/1.1\r\nHost: a\r\n\r\n").is_err());
        assert!(parse("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n").is_err());
    }

    #[test]
    fn head_headers_keep_order_repeats_and_raw_values() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Dup: One\r\nCONNECTION: Upgrade, keep-alive\r\n\
            x-dup: two\r\nX-Bin: caf\xc3\r\nEmpty:\r\n\r\n";
        let Ok(Parsed::Complete(h, _)) = parse_head(raw, &HeadLimits::default()) else {
            panic!("expected a complete head");
        };
        let fields: Vec<(&str, &[u8])> = h.headers.iter().collect();
        assert_eq!(
            fields,
            vec![
                ("host", &b"a"[..]),
                ("x-dup", b"One"),
                ("connection", b"Upgrade, keep-alive"),
                ("x-dup", b"two"),
                ("x-bin", b"caf\xc3"),
                ("empty", b""),
            ]
        );
        assert_eq!(h.headers.len(), 6);
        assert_eq!(h.headers.get("X-DUP"), Some("One"), "the first, any case");
        assert_eq!(h.headers.get_all("x-dup").count(), 2);
        assert_eq!(h.headers.get("x-bin"), None, "not UTF-8");
        assert_eq!(h.headers.get("empty"), Some(""));
        assert_eq!(h.headers.get("missing"), None);
        assert!(h.headers.has_token("connection", "upgrade"));
        assert!(!h.headers.has_token("x-dup", "three"));
    }

    #[test]
    fn head_keep_alive_defaults_by_version() {
        assert!(head("GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn head_decimal_rejects_signs_and_overflow() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b"-1"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"1 2"), None);
    }

    #[test]
    fn head_trim_ows_strips_only_space_and_tab() {
        assert_eq!(trim_ows(b" \tchunked\t "), b"chunked");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b"\r5"), b"\r5");
    }
}
