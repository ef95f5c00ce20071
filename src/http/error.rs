//! Errors of the HTTP layer and their one mapping to a wire response.
//!
//! # Invariants
//!
//! 1. Every way a request can fail is an [`HttpError`]; its status, stable code, whether the
//!    connection must close, and its JSON body are decided in this file only
//!    ([`HttpError::status`], [`HttpError::code`], [`HttpError::closes_connection`],
//!    [`HttpError::to_response`]).
//! 2. Every framing error closes the connection: after one, we can no longer tell where the
//!    next request starts (RFC 9112 §6.3, request smuggling).
//! 3. Error messages are static text or text written by our handlers; client bytes are never
//!    echoed, and an internal error's detail goes to the log, never to the wire.
//!
//! # Implementation
//!
//! [`HttpError`] groups its variants by whose fault it is: the peer broke HTTP framing, the
//! peer was too slow, the request named no route, or a handler refused it ([`ApiError`]).
//! Handlers build [`ApiError`]s with one constructor per spec code and convert with `?`.

use std::borrow::Cow;
use std::fmt;

use super::response::Response;

/// Why a handler refused or failed a well-framed request: the spec's error codes (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiErrorKind {
    /// 400: the request's content is wrong (bad JSON, missing field, bad parameter).
    BadRequest,
    /// 401: no valid credentials.
    Unauthorized,
    /// 403: valid credentials, not allowed.
    Forbidden,
    /// 404: no such resource (or its existence must not leak).
    NotFound,
    /// 409: the resource's state forbids this.
    Conflict,
    /// 413: the body parsed but a field in it is too large.
    TooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 429: the caller is over a rate limit.
    TooManyRequests,
    /// 500: our fault; the detail is logged, the client gets a generic message.
    Internal,
}

/// A handler's refusal or failure, with the message the client reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Which spec code and status this is.
    pub kind: ApiErrorKind,
    /// For every kind but `Internal`: the message sent to the client. For `Internal`: the
    /// detail for the log (the client gets [`INTERNAL_MESSAGE`]).
    pub message: Cow<'static, str>,
}

/// What the client reads for a 500, whatever went wrong inside (invariant 3).
pub const INTERNAL_MESSAGE: &str = "internal server error";

impl ApiError {
    fn new(kind: ApiErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ApiErrorKind::BadRequest, message)
    }
    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ApiErrorKind::Unauthorized, message)
    }
    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ApiErrorKind::Forbidden, message)
    }
    /// 404 `not_found`.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ApiErrorKind::NotFound, message)
    }
    /// 409 `conflict`.
    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ApiErrorKind::Conflict, message)
    }
    /// 413 `too_large`.
    pub fn too_large(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ApiErrorKind::TooLarge, message)
    }
    /// 415 `unsupported_media_type`.
    pub fn unsupported_media_type(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ApiErrorKind::UnsupportedMediaType, message)
    }
    /// 429 `rate_limited`.
    pub fn too_many_requests(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ApiErrorKind::TooManyRequests, message)
    }
    /// 500 `internal`; `detail` is for the log only.
    pub fn internal(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ApiErrorKind::Internal, detail)
    }
}

/// Every way an HTTP request can fail, grouped by whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    // ---- The peer broke HTTP framing: 400/413/431, and the connection closes. ----
    /// The head or a chunk is not valid HTTP/1.1 syntax; the text says which rule.
    Malformed(&'static str),
    /// Not HTTP/1.0 or HTTP/1.1 (HTTP/0.9, the HTTP/2 preface, anything else).
    UnsupportedVersion,
    /// The head did not end within the head limit.
    HeadTooLarge,
    /// More header fields than [`super::head::MAX_HEADERS`].
    TooManyHeaders,
    /// Chunked trailers longer than [`super::body::MAX_TRAILER_BYTES`].
    TrailersTooLarge,
    /// HTTP/1.1 without `Host`, or more than one `Host` (RFC 9112 §3.2).
    BadHost,
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3, request smuggling).
    ConflictingFraming,
    /// `Content-Length` not a plain decimal that fits in u64.
    InvalidContentLength,
    /// Several `Content-Length` values that differ (RFC 9112 §6.3).
    UnequalContentLengths,
    /// A transfer coding other than exactly `chunked`: we implement no other coding, and a
    /// list whose last coding is not `chunked` cannot be framed (RFC 9112 §6.3).
    UnsupportedTransferCoding,
    /// `Transfer-Encoding` on an HTTP/1.0 request: faulty framing (RFC 9112 §6.1).
    TransferEncodingOnHttp10,
    /// The body (declared or decoded so far) is over the body limit of `limit` bytes.
    BodyTooLarge {
        /// The limit it broke, in bytes.
        limit: u64,
    },
    // ---- The peer was too slow: 408, and the connection closes. ----
    /// The request head did not arrive before its deadline.
    HeadTimeout,
    /// The request body did not arrive before its deadline.
    BodyTimeout,
    // ---- The request named nothing we serve: the connection stays. ----
    /// No route matches the path.
    NotFound,
    /// The path exists, but not for this method; `allow` lists the methods that do.
    MethodNotAllowed {
        /// The value of the `Allow` header, e.g. `GET, HEAD`.
        allow: String,
    },
    // ---- A handler refused or failed it: the connection stays. ----
    /// See [`ApiError`].
    Api(ApiError),
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError::Api(e)
    }
}

impl HttpError {
    /// The HTTP status code of the response.
    pub fn status(&self) -> u16 {
        use HttpError::*;
        match self {
            Malformed(_)
            | UnsupportedVersion
            | BadHost
            | ConflictingFraming
            | InvalidContentLength
            | UnequalContentLengths
            | UnsupportedTransferCoding
            | TransferEncodingOnHttp10 => 400,
            HeadTooLarge | TooManyHeaders | TrailersTooLarge => 431,
            BodyTooLarge { .. } => 413,
            HeadTimeout | BodyTimeout => 408,
            NotFound => 404,
            MethodNotAllowed { .. } => 405,
            Api(e) => match e.kind {
                ApiErrorKind::BadRequest => 400,
                ApiErrorKind::Unauthorized => 401,
                ApiErrorKind::Forbidden => 403,
                ApiErrorKind::NotFound => 404,
                ApiErrorKind::Conflict => 409,
                ApiErrorKind::TooLarge => 413,
                ApiErrorKind::UnsupportedMediaType => 415,
                ApiErrorKind::TooManyRequests => 429,
                ApiErrorKind::Internal => 500,
            },
        }
    }

    /// The stable machine-readable code in the JSON body (SPEC §4).
    pub fn code(&self) -> &'static str {
        match self.status() {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            408 => "request_timeout",
            409 => "conflict",
            413 => "too_large",
            415 => "unsupported_media_type",
            429 => "rate_limited",
            431 => "headers_too_large",
            _ => "internal",
        }
    }

    /// The human-readable message in the JSON body (never client bytes, never internals).
    pub fn message(&self) -> Cow<'static, str> {
        use HttpError::*;
        match self {
            Malformed(why) => Cow::Borrowed(why),
            UnsupportedVersion => "only HTTP/1.0 and HTTP/1.1 are supported".into(),
            HeadTooLarge => "request head too large".into(),
            TooManyHeaders => "too many header fields".into(),
            TrailersTooLarge => "chunked trailer section too large".into(),
            BadHost => "exactly one Host header is required".into(),
            ConflictingFraming => "both Content-Length and Transfer-Encoding".into(),
            InvalidContentLength => "invalid Content-Length".into(),
            UnequalContentLengths => "conflicting Content-Length values".into(),
            UnsupportedTransferCoding => "only Transfer-Encoding: chunked is supported".into(),
            TransferEncodingOnHttp10 => "Transfer-Encoding is not allowed in HTTP/1.0".into(),
            BodyTooLarge { limit } => format!("request body over {limit} bytes").into(),
            HeadTimeout => "request head not received in time".into(),
            BodyTimeout => "request body not received in time".into(),
            NotFound => "no such route".into(),
            MethodNotAllowed { .. } => "method not allowed for this route".into(),
            Api(e) if e.kind == ApiErrorKind::Internal => INTERNAL_MESSAGE.into(),
            Api(e) => e.message.clone(),
        }
    }

    /// True when the connection must close after the response (invariant 2): every framing
    /// error, every timeout, and a body too large (its unread bytes are still in the socket).
    pub fn closes_connection(&self) -> bool {
        !matches!(
            self,
            HttpError::NotFound | HttpError::MethodNotAllowed { .. } | HttpError::Api(_)
        )
    }

    /// THE mapping to the wire: `{"error":{"code":..,"message":..}}` with the right status
    /// and headers (`Allow` on 405, `WWW-Authenticate` on 401, RFC 9110 §15.5.6 / RFC 6750).
    /// Whether to send `Connection: close` is the writer's call, from
    /// [`HttpError::closes_connection`].
    pub fn to_response(&self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.message() }
        });
        let mut response = Response::json(self.status(), &body);
        match self {
            HttpError::MethodNotAllowed { allow } => {
                response = response.header("Allow", allow.clone());
            }
            HttpError::Api(e) if e.kind == ApiErrorKind::Unauthorized => {
                response = response.header("WWW-Authenticate", "Bearer");
            }
            _ => {}
        }
        response
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The log gets the internal detail; the wire never does (invariant 3).
            HttpError::Api(e) => write!(f, "{} {}: {}", self.status(), self.code(), e.message),
            _ => write!(f, "{} {}: {}", self.status(), self.code(), self.message()),
        }
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(r: &Response) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null)
    }

    #[test]
    fn error_api_kinds_map_to_spec_codes() {
        let cases = [
            (ApiError::bad_request("x"), 400, "bad_request"),
            (ApiError::unauthorized("x"), 401, "unauthorized"),
            (ApiError::forbidden("x"), 403, "forbidden"),
            (ApiError::not_found("x"), 404, "not_found"),
            (ApiError::conflict("x"), 409, "conflict"),
            (ApiError::too_large("x"), 413, "too_large"),
            (
                ApiError::unsupported_media_type("x"),
                415,
                "unsupported_media_type",
            ),
            (ApiError::too_many_requests("x"), 429, "rate_limited"),
            (ApiError::internal("x"), 500, "internal"),
        ];
        for (e, status, code) in cases {
            let e = HttpError::from(e);
            assert_eq!((e.status(), e.code()), (status, code));
            assert!(!e.closes_connection(), "{e}");
            let r = e.to_response();
            assert_eq!(r.status, status);
            assert_eq!(body_json(&r)["error"]["code"], code);
        }
    }

    #[test]
    fn error_framing_closes_connection_routing_does_not() {
        assert!(HttpError::ConflictingFraming.closes_connection());
        assert!(HttpError::HeadTooLarge.closes_connection());
        assert!(HttpError::BodyTooLarge { limit: 1 }.closes_connection());
        assert!(HttpError::HeadTimeout.closes_connection());
        assert!(!HttpError::NotFound.closes_connection());
        assert_eq!(HttpError::HeadTooLarge.code(), "headers_too_large");
        assert_eq!(HttpError::HeadTimeout.status(), 408);
    }

    #[test]
    fn error_internal_detail_never_reaches_wire() {
        let e = HttpError::from(ApiError::internal("db path /secret broke"));
        let r = e.to_response();
        assert_eq!(body_json(&r)["error"]["message"], INTERNAL_MESSAGE);
        assert!(
            e.to_string().contains("/secret"),
            "the log keeps the detail"
        );
    }

    #[test]
    fn error_405_carries_allow_and_401_carries_www_authenticate() {
        let r = HttpError::MethodNotAllowed {
            allow: "GET, HEAD".into(),
        }
        .to_response();
        assert_eq!(r.header_value("allow"), Some("GET, HEAD"));
        assert_eq!(body_json(&r)["error"]["code"], "method_not_allowed");
        let r = HttpError::from(ApiError::unauthorized("no token")).to_response();
        assert_eq!(r.header_value("WWW-Authenticate"), Some("Bearer"));
        assert_eq!(body_json(&r)["error"]["message"], "no token");
    }
}
