//! Fuzz check for `http::parse_head`: the request-head parser every connection runs first.
//!
//! # Invariants checked
//! 1. `Complete(head, n)`: `0 < n <= input.len()`, `n <= max_head_bytes`, the head ends with LF,
//!    and re-parsing exactly the first `n` bytes gives the same head (what follows a head is
//!    the next request's business, never this one's).
//! 2. `Partial` only while `input.len() < max_head_bytes` (a client cannot make us buffer
//!    more than the limit).
//! 3. A prefix of the input parses to `Partial` or to the same result as the whole input
//!    (the result does not depend on how the bytes arrived).
//! 4. A complete head has one framing within the limits: `Length(l)` with `l <= max_body`,
//!    `Chunked` only on HTTP/1.1; version is 1.0 or 1.1; the path is `*` or starts with `/`;
//!    HTTP/1.1 has exactly one `Host`; never both `Content-Length` and `Transfer-Encoding`.
//!
//! # Implementation
//! The input is checked twice: under the spec's default limits, and under a small head limit
//! (`1 + 8 * first byte`, up to 2041 bytes) so the 431 path is reached by inputs of a few KiB.

use consult_edge::http::{parse_head, BodyKind, HeadLimits, Parsed, RequestHead};

/// Body limit of the small-limit run: small enough that `Content-Length` values cross it.
const SMALL_BODY_LIMIT: u64 = 1024;

/// Runs every invariant on `data` (panics on a violation).
pub fn check(data: &[u8]) {
    check_with(data, &HeadLimits::default());
    let small = HeadLimits {
        max_head_bytes: 1 + 8 * usize::from(data.first().copied().unwrap_or(0)),
        max_body_bytes: SMALL_BODY_LIMIT,
    };
    check_with(data, &small);
}

/// The invariants of the module doc under `limits`.
pub fn check_with(data: &[u8], limits: &HeadLimits) {
    let whole = parse_head(data, limits);
    match &whole {
        Ok(Parsed::Complete(head, n)) => {
            let n = *n;
            assert!(n > 0 && n <= data.len(), "consumed={n} len={}", data.len());
            assert!(
                n <= limits.max_head_bytes,
                "consumed={n} limit={}",
                limits.max_head_bytes
            );
            assert_eq!(data.get(n - 1), Some(&b'\n'), "a head ends with LF");
            let exact = parse_head(data.get(..n).unwrap_or_default(), limits);
            assert_eq!(exact, whole, "re-parsing the head alone differs");
            check_head(head, limits);
        }
        Ok(Parsed::Partial) => assert!(
            data.len() < limits.max_head_bytes,
            "Partial at len={} limit={}",
            data.len(),
            limits.max_head_bytes
        ),
        Err(_) => {}
    }
    for cut in prefix_cuts(data.len()) {
        let prefix = parse_head(data.get(..cut).unwrap_or_default(), limits);
        assert!(
            prefix == Ok(Parsed::Partial) || prefix == whole,
            "prefix of {cut} bytes gave {prefix:?}, whole gave {whole:?}"
        );
    }
}

/// Up to a dozen prefix lengths spread over `0..len` (every one for short inputs).
fn prefix_cuts(len: usize) -> impl Iterator<Item = usize> {
    let step = (len / 12).max(1);
    (0..len)
        .step_by(step)
        .chain(len.checked_sub(1))
        .chain(len.checked_sub(2))
}

/// Invariant 4 on one complete head.
fn check_head(head: &RequestHead, limits: &HeadLimits) {
    assert!(head.version_minor <= 1, "version 1.{}", head.version_minor);
    assert!(
        head.path == "*" || head.path.starts_with('/'),
        "path={:?}",
        head.path
    );
    match head.body {
        BodyKind::None => {}
        BodyKind::Length(l) => assert!(l <= limits.max_body_bytes, "length={l}"),
        BodyKind::Chunked => assert_eq!(head.version_minor, 1, "chunked on HTTP/1.0"),
    }
    let hosts = head.headers.get_all("host").count();
    if head.version_minor == 1 {
        assert_eq!(hosts, 1, "HTTP/1.1 with {hosts} Host fields");
    } else {
        assert!(hosts <= 1, "HTTP/1.0 with {hosts} Host fields");
    }
    let has = |name| head.headers.get_all(name).next().is_some();
    assert!(
        !(has("content-length") && has("transfer-encoding")),
        "both framings accepted"
    );
    assert!(
        head.headers
            .iter()
            .all(|(n, _)| !n.bytes().any(|b| b.is_ascii_uppercase())),
        "header names are lower-cased"
    );
}
