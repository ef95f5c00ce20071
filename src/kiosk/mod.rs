//! The embedded kiosk web client: a self-contained page (HTML, CSS, plain JavaScript) served at `/`.
//!
//! # Invariants
//!
//! 1. Every asset is compiled into the binary (`include_str!`): the page works offline, on a
//!    gateway with no Internet, and never loads anything from another origin.
//! 2. No asset contains an inline script, an inline style or an event-handler attribute, so the
//!    page runs under [`CONTENT_SECURITY_POLICY`] without `'unsafe-inline'`. The unit tests
//!    below check the HTML for this.
//! 3. All protocol logic lives in `consult-client.js` (one ES module, documented in
//!    `docs/kiosk.md`); `app.js` is only a view over it, so native kiosk apps can reuse the module.
//!
//! # Implementation
//!
//! [`asset`] maps a request path to a static [`Asset`] with its content type and cache policy.
//! The HTTP router serves the body with those two headers plus [`CONTENT_SECURITY_POLICY`],
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

/// The Content-Security-Policy sent with every kiosk asset.
///
/// Nothing is allowed unless named: scripts and styles only from the gateway itself (no inline
/// code, so an injected chat message can never run), sockets and `fetch` only to the gateway
/// (`'self'` covers same-origin `fetch`; `ws:`/`wss:` are needed because older browsers do not
/// match `ws://same-host` against `'self'`), images only from the gateway or `data:` (the blank
/// favicon), no `<base>` rewriting, no form posts, and no framing (clickjacking).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Cache policy of every kiosk asset: revalidate on each load.
///
/// The file names carry no content hash, so a cached copy could outlive a gateway upgrade and
/// run an old client against a new server. The page is a few tens of KiB served over the local
/// network, so always fetching it is cheap.
const CACHE_CONTROL: &str = "no-cache";

/// One embedded file of the kiosk client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// The exact bytes to send as the response body.
    pub body: &'static [u8],
    /// The `Content-Type` header value (with charset for text).
    pub content_type: &'static str,
    /// The `Cache-Control` header value.
    pub cache_control: &'static str,
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const CLIENT_JS: &str = include_str!("assets/consult-client.js");

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The asset served at `path` (the request target without query), or `None` if it is not one
/// of the kiosk's files.
///
/// ```
/// let page = consult_edge::kiosk::asset("/").expect("the page is embedded");
/// assert!(page.content_type.starts_with("text/html"));
/// assert!(consult_edge::kiosk::asset("/secret").is_none());
/// ```
pub fn asset(path: &str) -> Option<Asset> {
    let (text, content_type) = match path {
        "/" | "/index.html" => (INDEX_HTML, HTML),
        "/app.js" => (APP_JS, JAVASCRIPT),
        "/app.css" => (APP_CSS, CSS),
        "/consult-client.js" => (CLIENT_JS, JAVASCRIPT),
        _ => return None,
    };
    Some(Asset {
        body: text.as_bytes(),
        content_type,
        cache_control: CACHE_CONTROL,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATHS: [&str; 5] = [
        "/",
        "/index.html",
        "/app.js",
        "/app.css",
        "/consult-client.js",
    ];

    #[test]
    fn asset_known_paths_are_served_with_type_and_cache_policy() {
        for path in PATHS {
            let a = asset(path).unwrap_or_else(|| panic!("missing asset path={path}"));
            assert!(!a.body.is_empty(), "empty asset path={path}");
            assert!(a.content_type.contains("charset=utf-8"), "path={path}");
            assert_eq!(a.cache_control, "no-cache", "path={path}");
        }
        assert_eq!(
            asset("/").map(|a| a.body),
            asset("/index.html").map(|a| a.body)
        );
        assert_eq!(asset("/app.css").map(|a| a.content_type), Some(CSS));
        assert_eq!(asset("/app.js").map(|a| a.content_type), Some(JAVASCRIPT));
    }

    #[test]
    fn asset_unknown_or_traversal_path_is_none() {
        for path in [
            "",
            "/app.js/",
            "/../Cargo.toml",
            "/assets/app.js",
            "/APP.JS",
            "/index.html?x=1",
            "/favicon.ico",
        ] {
            assert_eq!(asset(path), None, "path={path:?}");
        }
    }

    #[test]
    fn page_html_has_no_inline_script_style_or_handler() {
        let html = INDEX_HTML.to_ascii_lowercase();
        assert!(!html.contains("<style"), "inline <style> in index.html");
        assert!(!html.contains(" style="), "style attribute in index.html");
        assert!(
            !html.contains("javascript:"),
            "javascript: URL in index.html"
        );
        for (i, _) in html.match_indices("<script") {
            let tag = html
                .get(i..)
                .and_then(|t| t.split('>').next())
                .unwrap_or("");
            assert!(
                tag.contains(" src="),
                "inline <script> in index.html: {tag}"
            );
        }
        for handler in [
            " onclick=",
            " onload=",
            " onerror=",
            " oninput=",
            " onsubmit=",
        ] {
            assert!(
                !html.contains(handler),
                "event handler {handler} in index.html"
            );
        }
    }

    #[test]
    fn page_scripts_never_assign_html_from_strings() {
        // Chat bodies come from other people: rendering must go through textContent only.
        for (name, js) in [("app.js", APP_JS), ("consult-client.js", CLIENT_JS)] {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!js.contains(sink), "{name} uses {sink}");
            }
        }
    }

    #[test]
    fn csp_is_strict() {
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                CONTENT_SECURITY_POLICY.contains(directive),
                "missing {directive}"
            );
        }
        assert!(
            !CONTENT_SECURITY_POLICY.contains("unsafe"),
            "unsafe-* in CSP"
        );
    }

    #[test]
    fn page_every_spec_close_code_has_words_in_both_languages() {
        for code in [
            1000, 1001, 1003, 1007, 1008, 1009, 1011, 4000, 4001, 4004, 4009, 4029, 4503, 4508,
        ] {
            let key = format!("close_{code}:");
            assert_eq!(
                APP_JS.matches(&key).count(),
                2,
                "close code {code} needs one English and one Chinese text in app.js"
            );
        }
    }
}
