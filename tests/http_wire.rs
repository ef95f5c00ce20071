//! Black-box tests of the HTTP wire layer: every SPEC §4 rule at its boundary ±1, pipelining,
//! chunked bodies split at every byte, routing, and property tests over random input.

use consult_edge::http::body::{MAX_CHUNK_EXT_BYTES, MAX_TRAILER_BYTES};
use consult_edge::http::head::{MAX_BODY_BYTES, MAX_HEADERS, MAX_HEAD_BYTES};
use consult_edge::http::{
    parse_head, parse_u64_param, ApiError, BodyKind, BodyReader, ChunkedDecoder, HeadLimits,
    HttpError, LengthReader, Method, Parsed, RequestHead, Response, Routed, Router,
};
use proptest::prelude::*;

// ---------------------------------------------------------------- helpers

fn parse(s: &[u8]) -> Result<Parsed<RequestHead>, HttpError> {
    parse_head(s, &HeadLimits::default())
}

fn complete(s: &[u8]) -> (RequestHead, usize) {
    match parse(s) {
        Ok(Parsed::Complete(h, n)) => (h, n),
        other => panic!("expected Complete, got {other:?}"),
    }
}

fn err(s: &[u8]) -> HttpError {
    match parse(s) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A GET head of exactly `len` bytes, padded with one `X-Pad` header.
fn head_of_len(len: usize) -> Vec<u8> {
    let prefix = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    let suffix = b"\r\n\r\n";
    let pad = len - prefix.len() - suffix.len();
    [&prefix[..], &vec![b'p'; pad], &suffix[..]].concat()
}

fn post_with(headers: &str) -> Vec<u8> {
    format!("POST /x HTTP/1.1\r\nHost: a\r\n{headers}\r\n").into_bytes()
}

/// Encodes `body` as chunks of `size` bytes (the last may be shorter), then the last chunk.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(size.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The outcome of feeding `input` to a fresh decoder in pieces cut at `cuts`:
/// (result, decoded body, total consumed; 0 after an error).
fn drive_chunked(
    input: &[u8],
    cuts: &[usize],
    limit: u64,
) -> (Result<bool, HttpError>, Vec<u8>, usize) {
    let mut decoder = ChunkedDecoder::new(limit);
    let mut out = Vec::new();
    let mut consumed = 0;
    for piece in pieces(input, cuts) {
        match decoder.decode(piece, &mut out) {
            Ok(p) => {
                consumed += p.consumed;
                if p.done {
                    return (Ok(true), out, consumed);
                }
                assert_eq!(
                    p.consumed,
                    piece.len(),
                    "not done, so everything is consumed"
                );
            }
            // After an error, where it stopped is not part of the contract.
            Err(e) => return (Err(e), out, 0),
        }
    }
    (Ok(false), out, consumed)
}

/// Feeds a growing buffer to `parse_head`, as a connection loop does; `None` if still Partial.
fn drive_head(
    input: &[u8],
    cuts: &[usize],
    limits: &HeadLimits,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let mut buf = Vec::new();
    for piece in pieces(input, cuts) {
        buf.extend_from_slice(piece);
        match parse_head(&buf, limits)? {
            Parsed::Complete(h, n) => return Ok(Some((h, n))),
            Parsed::Partial => assert!(
                buf.len() < limits.max_head_bytes,
                "Partial with {} bytes buffered, limit {}",
                buf.len(),
                limits.max_head_bytes
            ),
        }
    }
    Ok(None)
}

/// `input` split at the sorted, de-duplicated positions in `cuts` (clamped to its length).
fn pieces<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain([input.len()]) {
        if let Some(p) = input.get(start..c) {
            out.push(p);
            start = c;
        }
    }
    out
}

// ---------------------------------------------------------------- head: size limits

#[test]
fn head_exactly_limit_completes() {
    let h = head_of_len(MAX_HEAD_BYTES);
    let (_, n) = complete(&h);
    assert_eq!(n, MAX_HEAD_BYTES);
}

#[test]
fn head_one_byte_over_limit_is_431() {
    let h = head_of_len(MAX_HEAD_BYTES + 1);
    let e = err(&h);
    assert_eq!((e.status(), e.code()), (431, "headers_too_large"));
    assert!(e.closes_connection());
}

#[test]
fn head_partial_at_limit_is_431_before_the_end_arrives() {
    let h = head_of_len(MAX_HEAD_BYTES + 100);
    assert_eq!(parse(&h[..MAX_HEAD_BYTES - 1]), Ok(Parsed::Partial));
    assert_eq!(parse(&h[..MAX_HEAD_BYTES]), Err(HttpError::HeadTooLarge));
}

#[test]
fn head_limit_is_configurable() {
    let limits = HeadLimits {
        max_head_bytes: 64,
        max_body_bytes: 10,
    };
    assert!(matches!(
        parse_head(&head_of_len(64), &limits),
        Ok(Parsed::Complete(_, 64))
    ));
    assert_eq!(
        parse_head(&head_of_len(65), &limits),
        Err(HttpError::HeadTooLarge)
    );
    let body = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
    assert_eq!(
        parse_head(body, &limits),
        Err(HttpError::BodyTooLarge { limit: 10 })
    );
}

#[test]
fn head_max_headers_ok_one_more_is_431() {
    let with = |n: usize| {
        let fields: String = (1..n).map(|i| format!("X-{i}: v\r\n")).collect();
        format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes()
    };
    let (h, _) = complete(&with(MAX_HEADERS));
    assert_eq!(h.headers.len(), MAX_HEADERS);
    assert_eq!(err(&with(MAX_HEADERS + 1)), HttpError::TooManyHeaders);
}

// ---------------------------------------------------------------- head: framing

#[test]
fn head_content_length_and_transfer_encoding_is_400_close() {
    let e = err(&post_with(
        "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
    ));
    assert_eq!(e, HttpError::ConflictingFraming);
    assert_eq!(e.status(), 400);
    assert!(e.closes_connection());
}

#[test]
fn head_duplicate_equal_content_length_is_one_value() {
    let (h, _) = complete(&post_with("Content-Length: 5\r\nContent-Length: 5\r\n"));
    assert_eq!(h.body, BodyKind::Length(5));
    let (h, _) = complete(&post_with("Content-Length: 5, 5\r\n"));
    assert_eq!(h.body, BodyKind::Length(5));
}

#[test]
fn head_duplicate_unequal_content_length_is_400_close() {
    let e = err(&post_with("Content-Length: 5\r\nContent-Length: 6\r\n"));
    assert_eq!(e, HttpError::UnequalContentLengths);
    assert!(e.closes_connection());
    assert_eq!(
        err(&post_with("Content-Length: 5, 6\r\n")),
        HttpError::UnequalContentLengths
    );
}

#[test]
fn head_bad_content_length_is_400_close() {
    for v in [
        "abc",
        "-1",
        "+1",
        "",
        "1 2",
        "0x10",
        "18446744073709551616",
        "5,",
    ] {
        let e = err(&post_with(&format!("Content-Length: {v}\r\n")));
        assert_eq!(e, HttpError::InvalidContentLength, "Content-Length: {v:?}");
        assert!(e.closes_connection());
    }
}

#[test]
fn head_content_length_at_body_limit_ok_one_over_is_413() {
    let (h, _) = complete(&post_with(&format!("Content-Length: {MAX_BODY_BYTES}\r\n")));
    assert_eq!(h.body, BodyKind::Length(MAX_BODY_BYTES));
    let e = err(&post_with(&format!(
        "Content-Length: {}\r\n",
        MAX_BODY_BYTES + 1
    )));
    assert_eq!((e.status(), e.code()), (413, "too_large"));
    assert!(
        e.closes_connection(),
        "the unread body is still in the socket"
    );
}

#[test]
fn head_transfer_encoding_only_exact_chunked() {
    for v in ["chunked", "Chunked", " CHUNKED "] {
        let (h, _) = complete(&post_with(&format!("Transfer-Encoding: {v}\r\n")));
        assert_eq!(h.body, BodyKind::Chunked, "{v:?}");
    }
    for v in [
        "gzip, chunked",
        "chunked, identity",
        "identity",
        "chunked, chunked",
        "",
    ] {
        let e = err(&post_with(&format!("Transfer-Encoding: {v}\r\n")));
        assert_eq!(e, HttpError::UnsupportedTransferCoding, "{v:?}");
        assert_eq!(e.status(), 400);
        assert!(e.closes_connection());
    }
    let two = post_with("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n");
    assert_eq!(err(&two), HttpError::UnsupportedTransferCoding);
}

#[test]
fn head_transfer_encoding_on_http10_is_400() {
    let e = err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(e, HttpError::TransferEncodingOnHttp10);
    assert!(e.closes_connection());
}

#[test]
fn head_host_required_once_on_http11() {
    assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), HttpError::BadHost);
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        HttpError::BadHost
    );
    let (h, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(h.version_minor, 0);
}

#[test]
fn head_http2_preface_and_http09_are_400() {
    let e = err(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert_eq!(
        (e, err(b"GET /\r\n\r\n").status()),
        (HttpError::UnsupportedVersion, 400)
    );
    assert_eq!(err(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n").status(), 400);
}

#[test]
fn head_space_before_colon_and_obs_fold_are_400() {
    // RFC 9112 §5.1 / §5.2: both have been used to smuggle a second framing header.
    let e = err(&post_with("Content-Length : 5\r\n"));
    assert_eq!((e.status(), e.closes_connection()), (400, true));
    let e = err(&post_with("X-A: 1\r\n folded\r\nContent-Length: 5\r\n"));
    assert_eq!((e.status(), e.closes_connection()), (400, true));
}

#[test]
fn head_leading_empty_lines_are_skipped_and_counted() {
    // RFC 9112 §2.2: a client may send a stray CRLF after a body; it belongs to no request.
    let wire = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let (h, n) = complete(wire);
    assert_eq!((h.path.as_str(), n), ("/", wire.len()));
}

#[test]
fn head_expect_continue_ignored_on_http10() {
    let (h, _) = complete(b"POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n");
    assert!(
        !h.expect_continue,
        "RFC 9110 §10.1.1: ignore it from HTTP/1.0 clients"
    );
}

#[test]
fn head_no_framing_headers_means_no_body() {
    let (h, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.body, BodyKind::None);
    assert_eq!(h.method, Method::Get);
}

#[test]
fn head_flags_expect_and_websocket_upgrade() {
    let (h, _) = complete(&post_with("Content-Length: 2\r\nExpect: 100-Continue\r\n"));
    assert!(h.expect_continue);
    let ws = b"GET /v1/ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\
               Upgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let (h, _) = complete(ws);
    assert!(h.upgrade_websocket);
    assert_eq!(h.headers.get("sec-websocket-version"), Some("13"));
    assert_eq!(h.headers.get("SEC-WEBSOCKET-VERSION"), Some("13"));
    let (h, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
    assert!(!h.upgrade_websocket, "Connection: upgrade is required too");
}

#[test]
fn head_headers_get_all_keeps_order() {
    let (h, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
    let all: Vec<&[u8]> = h.headers.get_all("X-A").collect();
    assert_eq!(all, vec![&b"1"[..], &b"2"[..]]);
}

#[test]
fn head_pipelined_requests_parse_one_after_another() {
    let first = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    let second = b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n".to_vec();
    let third = b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_vec();
    let mut buf = [
        first.clone(),
        second.clone(),
        b"xyz".to_vec(),
        third.clone(),
    ]
    .concat();

    let (h, n) = complete(&buf);
    assert_eq!((h.path.as_str(), n), ("/a", first.len()));
    buf.drain(..n);

    let (h, n) = complete(&buf);
    assert_eq!(
        (h.path.as_str(), n, h.body),
        ("/b", second.len(), BodyKind::Length(3))
    );
    buf.drain(..n);
    let mut reader = BodyReader::new(h.body, MAX_BODY_BYTES);
    let mut body = Vec::new();
    let p = reader
        .read(&buf, &mut body)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (p.consumed, p.done, body.as_slice()),
        (3, true, &b"xyz"[..])
    );
    buf.drain(..p.consumed);

    let (h, n) = complete(&buf);
    assert_eq!(
        (h.path.as_str(), n, h.keep_alive),
        ("/c", third.len(), false)
    );
    assert_eq!(n, buf.len());
}

// ---------------------------------------------------------------- bodies

#[test]
fn chunked_fed_byte_by_byte_decodes_same_body() {
    let body: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let mut wire = chunked(&body, 97);
    wire.extend_from_slice(b"GET /next");
    let every_byte: Vec<usize> = (1..wire.len()).collect();
    let (result, out, consumed) = drive_chunked(&wire, &every_byte, MAX_BODY_BYTES);
    assert_eq!(result, Ok(true));
    assert_eq!(out, body);
    assert_eq!(consumed, wire.len() - b"GET /next".len());
}

#[test]
fn chunked_split_at_every_boundary_decodes_same_body() {
    let wire = b"5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nT: v\r\n\r\n";
    for cut in 0..=wire.len() {
        let (result, out, consumed) = drive_chunked(wire, &[cut], 100);
        assert_eq!(result, Ok(true), "cut at {cut}");
        assert_eq!(out, b"hello world!", "cut at {cut}");
        assert_eq!(consumed, wire.len(), "cut at {cut}");
    }
}

#[test]
fn chunked_body_at_limit_ok_one_over_is_413() {
    let limit = MAX_BODY_BYTES;
    let at = vec![b'a'; usize::try_from(limit).unwrap_or(0)];
    let (result, out, _) = drive_chunked(&chunked(&at, 4096), &[], limit);
    assert_eq!((result, out.len()), (Ok(true), at.len()));
    let over = [at.as_slice(), b"b"].concat();
    let (result, out, _) = drive_chunked(&chunked(&over, 4096), &[], limit);
    let e = result.err().unwrap_or(HttpError::NotFound);
    assert_eq!((e.status(), e.code()), (413, "too_large"));
    assert_eq!(
        out.len(),
        at.len(),
        "the crossing chunk is refused before its data"
    );
}

#[test]
fn chunked_extension_and_trailer_limits_hold_when_split() {
    let ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_EXT_BYTES));
    let every: Vec<usize> = (1..ext.len()).collect();
    let (result, _, _) = drive_chunked(ext.as_bytes(), &every, 10);
    assert_eq!(
        result,
        Err(HttpError::Malformed("chunk extension too long"))
    );
    let trailer = format!("0\r\nT: {}\r\n\r\n", "v".repeat(MAX_TRAILER_BYTES));
    let (result, _, _) = drive_chunked(trailer.as_bytes(), &every, 10);
    assert_eq!(result.map_err(|e| e.status()), Err(431));
}

#[test]
fn length_reader_byte_by_byte_stops_at_length() {
    let mut r = LengthReader::new(4);
    let mut out = Vec::new();
    let mut consumed = 0;
    for b in b"abcdEF".chunks(1) {
        consumed += r.read(b, &mut out).consumed;
    }
    assert_eq!(
        (out.as_slice(), consumed, r.is_done()),
        (&b"abcd"[..], 4, true)
    );
}

// ---------------------------------------------------------------- errors and responses

#[test]
fn error_framing_response_is_spec_json_with_connection_close() {
    let e = HttpError::ConflictingFraming;
    let mut wire = Vec::new();
    e.to_response()
        .write(&mut wire, !e.closes_connection(), false);
    let text = String::from_utf8_lossy(&wire);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    assert_eq!(json["error"]["code"], "bad_request");
    assert!(json["error"]["message"].is_string());
}

#[test]
fn error_api_error_converts_with_question_mark() {
    fn handler() -> Result<Response, HttpError> {
        Err(ApiError::conflict("consultation is closed"))?
    }
    let e = handler().err().unwrap_or(HttpError::NotFound);
    assert_eq!(
        (e.status(), e.code(), e.closes_connection()),
        (409, "conflict", false)
    );
}

// ---------------------------------------------------------------- router

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum H {
    Health,
    List,
    Create,
    Get,
    Close,
}

fn router() -> Router<H> {
    Router::new()
        .route(Method::Get, "/healthz", H::Health)
        .route(Method::Get, "/v1/consultations", H::List)
        .route(Method::Post, "/v1/consultations", H::Create)
        .route(Method::Get, "/v1/consultations/{id}", H::Get)
        .route(Method::Post, "/v1/consultations/{id}/close", H::Close)
}

#[test]
fn router_params_found_and_percent_decoded() {
    let r = router();
    match r.find(&Method::Post, "/v1/consultations/c%2D1%20x/close") {
        Routed::Found(h, params) => {
            assert_eq!(*h, H::Close);
            assert_eq!(params.get("id"), Some("c-1 x"));
            assert_eq!(params.get("other"), None);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        r.find(&Method::Get, "/healthz"),
        Routed::Found(H::Health, _)
    ));
}

#[test]
fn router_unknown_path_is_404() {
    let r = router();
    for path in [
        "/nope",
        "/healthz/",
        "/v1/consultations//close",
        "/v1/consultations/a/b",
        "",
    ] {
        assert_eq!(r.find(&Method::Get, path), Routed::NotFound, "{path:?}");
    }
    assert_eq!(
        r.find(&Method::Get, "/v1/consultations/%zz"),
        Routed::NotFound
    );
}

#[test]
fn router_encoded_slash_never_matches_a_param() {
    let r = router();
    assert_eq!(
        r.find(&Method::Post, "/v1/consultations/a%2Fb/close"),
        Routed::NotFound
    );
    assert_eq!(
        r.find(&Method::Get, "/v1/consultations/a%2fb"),
        Routed::NotFound
    );
}

#[test]
fn router_wrong_method_is_405_with_allow() {
    let r = router();
    assert_eq!(
        r.find(&Method::Delete, "/v1/consultations"),
        Routed::MethodNotAllowed("GET, HEAD, POST".into())
    );
    assert_eq!(
        r.find(&Method::Get, "/v1/consultations/x/close"),
        Routed::MethodNotAllowed("POST".into())
    );
    let e = HttpError::MethodNotAllowed {
        allow: "POST".into(),
    };
    assert_eq!(e.to_response().header_value("Allow"), Some("POST"));
}

#[test]
fn router_head_is_served_by_get() {
    let r = router();
    assert!(matches!(
        r.find(&Method::Head, "/healthz"),
        Routed::Found(H::Health, _)
    ));
    assert_eq!(
        r.find(&Method::Head, "/v1/consultations/x/close"),
        Routed::MethodNotAllowed("POST".into())
    );
}

#[test]
fn query_u64_param_defaults_bounds_and_errors() {
    let q = Some("after=7&limit=1000&x=%zz");
    assert_eq!(parse_u64_param(q, "after", 0, u64::MAX), Ok(7));
    assert_eq!(parse_u64_param(q, "limit", 100, 1000), Ok(1000));
    assert_eq!(parse_u64_param(q, "missing", 100, 1000), Ok(100));
    assert_eq!(parse_u64_param(None, "limit", 100, 1000), Ok(100));
    for bad in [
        "limit=1001",
        "limit=",
        "limit=-1",
        "limit=1e3",
        "limit=1&limit=1",
        "limit",
    ] {
        let e = parse_u64_param(Some(bad), "limit", 100, 1000).err();
        let e = e.map(HttpError::from);
        assert_eq!(e.as_ref().map(HttpError::status), Some(400), "{bad:?}");
    }
    let e = parse_u64_param(Some("limit=5000"), "limit", 100, 1000).err();
    assert!(e.is_some_and(|e| e.message.contains("limit") && e.message.contains("1000")));
}

// ---------------------------------------------------------------- properties

/// Bytes that look like HTTP often enough to reach deep states, with some noise.
fn http_ish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"GET / HTTP/1.1\r\n".to_vec()),
        Just(b"POST /x?a=1 HTTP/1.0\r\n".to_vec()),
        Just(b"Host: a\r\n".to_vec()),
        Just(b"Content-Length: 3\r\n".to_vec()),
        Just(b"Content-Length: 99999999999999999999\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Connection: close\r\n".to_vec()),
        Just(b"X: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(token, 0..12).prop_map(|v| v.concat())
}

/// Bytes that look like a chunked body often enough to reach deep states.
fn chunked_ish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"3\r\nabc\r\n".to_vec()),
        Just(b"A;x=y\r\n0123456789\r\n".to_vec()),
        Just(b"0\r\n".to_vec()),
        Just(b"T: v\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"fffffffffffffffff\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
    ];
    prop::collection::vec(token, 0..10).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn prop_head_same_result_however_split(
        input in prop_oneof![http_ish(), prop::collection::vec(any::<u8>(), 0..300)],
        cuts in prop::collection::vec(0usize..300, 0..8),
        max_head in 16usize..400,
    ) {
        let limits = HeadLimits { max_head_bytes: max_head, max_body_bytes: 10 };
        let whole = match parse_head(&input, &limits) {
            Ok(Parsed::Complete(h, n)) => Ok(Some((h, n))),
            Ok(Parsed::Partial) => {
                prop_assert!(input.len() < max_head);
                Ok(None)
            }
            Err(e) => Err(e),
        };
        prop_assert_eq!(drive_head(&input, &cuts, &limits), whole);
    }

    #[test]
    fn prop_chunked_same_result_however_split(
        input in prop_oneof![chunked_ish(), prop::collection::vec(any::<u8>(), 0..200)],
        cuts in prop::collection::vec(0usize..200, 0..8),
        limit in 0u64..64,
    ) {
        let whole = drive_chunked(&input, &[], limit);
        prop_assert_eq!(drive_chunked(&input, &cuts, limit), whole);
    }

    #[test]
    fn prop_chunked_roundtrips_any_body(
        body in prop::collection::vec(any::<u8>(), 0..600),
        size in 1usize..80,
        cuts in prop::collection::vec(0usize..700, 0..10),
    ) {
        let wire = chunked(&body, size);
        let (result, out, consumed) = drive_chunked(&wire, &cuts, 600);
        prop_assert_eq!(result, Ok(true));
        prop_assert_eq!(out, body);
        prop_assert_eq!(consumed, wire.len());
    }
}
