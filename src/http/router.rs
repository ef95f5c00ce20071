//! Routing: method + path pattern to a handler, and typed query parameters.
//!
//! # Invariants
//!
//! 1. A path matches a pattern only segment by segment, after percent-decoding each segment
//!    to UTF-8; a decoded segment containing `/` (sent as `%2F`) matches nothing, so a
//!    parameter never spans segments.
//! 2. `find` answers `Found` only for a registered method; when the path matches under other
//!    methods it answers `MethodNotAllowed` with all of them (405 + `Allow`, RFC 9110
//!    §15.5.6); otherwise `NotFound`. A path that cannot be decoded names no resource: 404.
//! 3. `HEAD` is served by the `GET` route when no `HEAD` route is registered (RFC 9110 §9.3.2),
//!    and `Allow` lists `HEAD` wherever it lists `GET`.
//!
//! # Implementation
//!
//! Routes are a list tried in registration order: this API has about ten routes, so a linear
//! scan of pre-split patterns beats any tree. The router is generic over the handler type so
//! the server can store async handler closures or plain ids.

use std::borrow::Cow;

use super::error::ApiError;
use super::head::Method;

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Must equal the decoded path segment.
    Literal(String),
    /// Matches any non-empty decoded segment, captured under this name.
    Param(String),
}

/// A registered route.
#[derive(Debug)]
struct Route<H> {
    /// The method it serves.
    method: Method,
    /// The pattern, split at `/` (without the leading empty segment).
    segments: Vec<Segment>,
    /// What `find` hands back.
    handler: H,
}

/// Path parameters captured by a route: `{name}` to its decoded value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// `(name, decoded value)` in pattern order.
    pairs: Vec<(String, String)>,
}

impl Params {
    /// The decoded value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The answer of [`Router::find`].
#[derive(Debug, PartialEq, Eq)]
pub enum Routed<'r, H> {
    /// A route serves this method and path.
    Found(&'r H, Params),
    /// The path exists under other methods; the `Allow` header value, e.g. `GET, HEAD`.
    MethodNotAllowed(String),
    /// No route has this path.
    NotFound,
}

/// Maps method + path patterns such as `/v1/consultations/{id}/close` to handlers.
#[derive(Debug)]
pub struct Router<H> {
    /// Routes in registration order.
    routes: Vec<Route<H>>,
}

impl<H> Default for Router<H> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<H> Router<H> {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `method` on `pattern` (builder style).
    ///
    /// # Panics
    ///
    /// At start-up, on a programming error: a pattern not starting with `/`, an empty or
    /// unnamed segment, or the same method and pattern twice. Client input never gets here.
    pub fn route(mut self, method: Method, pattern: &str, handler: H) -> Self {
        let segments = parse_pattern(pattern)
            .unwrap_or_else(|why| panic!("invalid route pattern {pattern:?}: {why}"));
        let duplicate = self
            .routes
            .iter()
            .any(|r| r.method == method && same_shape(&r.segments, &segments));
        assert!(!duplicate, "route {method} {pattern:?} registered twice");
        self.routes.push(Route {
            method,
            segments,
            handler,
        });
        self
    }

    /// Finds the handler for `method` on `path` (the raw, percent-encoded path).
    pub fn find(&self, method: &Method, path: &str) -> Routed<'_, H> {
        let Some(segments) = decode_path(path) else {
            return Routed::NotFound;
        };
        let mut allowed: Vec<&Method> = Vec::new();
        let mut get_route = None;
        for route in &self.routes {
            let Some(params) = match_segments(&route.segments, &segments) else {
                continue;
            };
            if route.method == *method {
                return Routed::Found(&route.handler, params);
            }
            if route.method == Method::Get && get_route.is_none() {
                get_route = Some((&route.handler, params));
            }
            if !allowed.contains(&&route.method) {
                allowed.push(&route.method);
            }
        }
        if *method == Method::Head {
            if let Some((handler, params)) = get_route {
                return Routed::Found(handler, params);
            }
        }
        if allowed.is_empty() {
            return Routed::NotFound;
        }
        let mut allow: Vec<&str> = Vec::new();
        for m in allowed {
            allow.push(m.as_str());
            if *m == Method::Get && !self.serves(&Method::Head, &segments) {
                allow.push("HEAD");
            }
        }
        Routed::MethodNotAllowed(allow.join(", "))
    }

    /// True when a route of exactly `method` matches `segments`.
    fn serves(&self, method: &Method, segments: &[String]) -> bool {
        self.routes
            .iter()
            .any(|r| r.method == *method && match_segments(&r.segments, segments).is_some())
    }
}

/// Splits a pattern into segments; `Err` says what is wrong with it.
fn parse_pattern(pattern: &str) -> Result<Vec<Segment>, &'static str> {
    let rest = pattern.strip_prefix('/').ok_or("must start with '/'")?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some("") => Err("empty parameter name"),
                Some(name) => Ok(Segment::Param(name.to_owned())),
                None if s.is_empty() => Err("empty segment"),
                None if s.contains(['{', '}']) => Err("braces inside a literal segment"),
                None => Ok(Segment::Literal(s.to_owned())),
            },
        )
        .collect()
}

/// True when two patterns match the same paths (parameter names aside).
fn same_shape(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (Segment::Literal(x), Segment::Literal(y)) => x == y,
            (Segment::Param(_), Segment::Param(_)) => true,
            _ => false,
        })
}

/// Decodes a raw path into its segments; `None` when it does not start with `/` or a
/// segment is not valid percent-encoded UTF-8.
fn decode_path(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    rest.split('/')
        .map(|s| percent_decode(s).map(Cow::into_owned))
        .collect()
}

/// Matches decoded segments against a pattern, capturing parameters (invariant 1).
fn match_segments(pattern: &[Segment], segments: &[String]) -> Option<Params> {
    if pattern.len() != segments.len() {
        return None;
    }
    let mut params = Params::default();
    for (p, s) in pattern.iter().zip(segments) {
        if s.contains('/') {
            return None;
        }
        match p {
            Segment::Literal(l) if l == s => {}
            Segment::Param(name) if !s.is_empty() => params.pairs.push((name.clone(), s.clone())),
            _ => return None,
        }
    }
    Some(params)
}

/// Percent-decodes `s` (RFC 3986 §2.1) to UTF-8; `None` on a bad escape or invalid UTF-8.
/// `+` stays `+`: it means space only in form bodies, not in paths.
pub fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = char::from(bytes.next()?).to_digit(16)?;
            let lo = char::from(bytes.next()?).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Reads the unsigned integer parameter `name` from a raw query string such as
/// `after=3&limit=50`: `default` when absent, 400 when empty, not a decimal, given twice, or
/// over `max` (the message names the parameter and the bound).
pub fn parse_u64_param(
    query: Option<&str>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    let mut found: Option<Cow<'_, str>> = None;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(key).as_deref() != Some(name) {
            continue;
        }
        if found.is_some() {
            return Err(ApiError::bad_request(format!(
                "{name} given more than once"
            )));
        }
        found = Some(
            percent_decode(value)
                .ok_or_else(|| ApiError::bad_request(format!("{name} is badly encoded")))?,
        );
    }
    let Some(value) = found else {
        return Ok(default);
    };
    let n = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<u64>().ok()
    } else {
        None
    };
    match n {
        Some(n) if n <= max => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be an integer from 0 to {max}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_pattern_errors_are_reported() {
        assert_eq!(parse_pattern("/"), Ok(vec![]));
        assert!(parse_pattern("v1").is_err());
        assert!(parse_pattern("/a//b").is_err());
        assert!(parse_pattern("/a/{}").is_err());
        assert!(parse_pattern("/a/x{id}").is_err());
    }

    #[test]
    fn router_percent_decode_rejects_bad_escapes() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%E5%95%8F").as_deref(), Some("問"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%FF"), None, "not UTF-8");
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn router_duplicate_route_panics_at_startup() {
        let _ = Router::new()
            .route(Method::Get, "/a/{id}", 1)
            .route(Method::Get, "/a/{x}", 2);
    }
}
