//! HTTP/1.1 wire layer: request heads, bodies, limits, routing and responses.
//!
//! # Invariants
//!
//! 1. Everything here is pure and I/O-free: parsers take the bytes read so far and answer
//!    `Complete`, `Partial` (read more) or `Err`; the connection loop is a thin driver.
//! 2. Client bytes never panic: no indexing or slicing that client input can push out of
//!    range, no `unwrap` on it.
//! 3. Every failure is an [`HttpError`], mapped to its wire response in one place
//!    ([`HttpError::to_response`]); framing errors close the connection.
//!
//! # Implementation
//!
//! - [`head`]: `parse_head` over httparse, plus RFC 9112 framing rules and the spec's limits.
//! - [`body`]: `Content-Length` and chunked readers as byte-fed state machines.
//! - [`response`]: the `Response` type, its builders and its serialiser.
//! - [`router`]: method + `{param}` path patterns to handlers; query parameter helpers.
//! - [`error`]: `HttpError`, `ApiError` and the one mapping to `{"error":{...}}`.
//!
//! A connection loop drives them like this (the real one adds deadlines and scopes):
//!
//! ```
//! use consult_edge::http::{parse_head, BodyReader, HeadLimits, Parsed};
//!
//! let limits = HeadLimits::default();
//! let mut buf = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET".to_vec();
//! let Ok(Parsed::Complete(head, n)) = parse_head(&buf, &limits) else { panic!() };
//! buf.drain(..n);
//! let mut reader = BodyReader::new(head.body, limits.max_body_bytes);
//! let mut body = Vec::new();
//! let progress = reader.read(&buf, &mut body).unwrap();
//! buf.drain(..progress.consumed);
//! assert!(progress.done);
//! assert_eq!((body.as_slice(), buf.as_slice()), (&b"hi"[..], &b"GET"[..]));
//! ```

pub mod body;
pub mod conn;
pub mod error;
pub mod head;
pub mod response;
pub mod router;
pub mod server;

pub use body::{BodyProgress, BodyReader, ChunkProgress, ChunkedDecoder, LengthReader};
pub use conn::{bearer_token, ConnLimits, Reply, Request, Service, Upgraded};
pub use error::{ApiError, ApiErrorKind, HttpError};
pub use head::{parse_head, BodyKind, HeadLimits, Headers, Method, Parsed, RequestHead};
pub use response::Response;
pub use router::{parse_u64_param, Params, Routed, Router};
