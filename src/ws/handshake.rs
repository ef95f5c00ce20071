//! The WebSocket opening handshake (RFC 6455 §4.2) on top of a parsed HTTP request, and the
//! cross-site check of SPEC §5.
//!
//! # Invariants
//! 1. A `101` is produced only for a GET with `Connection: upgrade`, `Upgrade: websocket`,
//!    `Sec-WebSocket-Version: 13` and a key that is base64 of 16 bytes.
//! 2. An `Origin` naming another host than `Host` is refused (403) unless it is listed in
//!    `--allowed-origins`: a page on another site cannot ride a kiosk's cookies or network
//!    position (cross-site WebSocket hijacking). No `Origin` (native apps) is allowed.
//! 3. No subprotocol and no extension (no compression) is ever agreed.

use crate::http::{ApiError, HttpError, RequestHead, Response};

/// RFC 6455 §4.1: the only version we speak.
const WS_VERSION: &str = "13";

/// Why an upgrade was refused; each maps to one response.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a WebSocket upgrade at all, or a malformed key.
    NotAnUpgrade(&'static str),
    /// Another version than 13: 426 with the version we speak.
    WrongVersion,
    /// Cross-site origin not allowed.
    ForeignOrigin,
}

impl HandshakeError {
    pub fn to_response(&self) -> Response {
        match self {
            HandshakeError::NotAnUpgrade(why) => {
                HttpError::from(ApiError::bad_request(*why)).to_response()
            }
            HandshakeError::WrongVersion => Response::json(
                426,
                &serde_json::json!({"error": {"code": "bad_request", "message": "WebSocket version 13 required"}}),
            )
            .header("Sec-WebSocket-Version", WS_VERSION),
            HandshakeError::ForeignOrigin => {
                HttpError::from(ApiError::forbidden("cross-site WebSocket origin not allowed"))
                    .to_response()
            }
        }
    }
}

/// Checks the handshake; returns the `101 Switching Protocols` response to send.
pub fn accept(head: &RequestHead, allowed_origins: &[String]) -> Result<Response, HandshakeError> {
    if !head.upgrade_websocket {
        return Err(HandshakeError::NotAnUpgrade(
            "expected Connection: upgrade and Upgrade: websocket",
        ));
    }
    if head.headers.get("sec-websocket-version").map(str::trim) != Some(WS_VERSION) {
        return Err(HandshakeError::WrongVersion);
    }
    let key = head
        .headers
        .get("sec-websocket-key")
        .map(str::trim)
        .filter(|k| is_valid_key(k))
        .ok_or(HandshakeError::NotAnUpgrade(
            "missing or malformed Sec-WebSocket-Key",
        ))?;
    check_origin(head, allowed_origins)?;
    let accept = async_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok(Response::new(101)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", accept))
}

/// Base64 of exactly 16 bytes: 22 symbols and `==`.
fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes.ends_with(b"==")
        && bytes
            .iter()
            .take(22)
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

fn check_origin(head: &RequestHead, allowed: &[String]) -> Result<(), HandshakeError> {
    let Some(origin) = head.headers.get("origin").map(str::trim) else {
        return Ok(());
    };
    if allowed
        .iter()
        .any(|a| a.trim().eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or("");
    let host = head.headers.get("host").map(str::trim).unwrap_or("");
    if !origin_host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(HandshakeError::ForeignOrigin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_head, HeadLimits, Parsed};

    fn head(extra: &str) -> RequestHead {
        let raw = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: gw.local:8080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{extra}\r\n"
        );
        match parse_head(raw.as_bytes(), &HeadLimits::default()) {
            Ok(Parsed::Complete(h, _)) => h,
            other => panic!("bad test head: {other:?}"),
        }
    }

    const KEY: &str =
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn handshake_valid_gives_rfc_accept_key() {
        let r = accept(&head(KEY), &[]).expect("accepted");
        assert_eq!(r.status, 101);
        // RFC 6455 §1.3's worked example.
        assert_eq!(
            r.header_value("sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }

    #[test]
    fn handshake_rejects_missing_pieces() {
        assert_eq!(
            accept(&head("Sec-WebSocket-Version: 13\r\n"), &[]).err(),
            Some(HandshakeError::NotAnUpgrade(
                "missing or malformed Sec-WebSocket-Key"
            ))
        );
        assert_eq!(
            accept(
                &head(
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"
                ),
                &[]
            )
            .err(),
            Some(HandshakeError::WrongVersion)
        );
        assert_eq!(
            accept(
                &head("Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n"),
                &[]
            )
            .err(),
            Some(HandshakeError::NotAnUpgrade(
                "missing or malformed Sec-WebSocket-Key"
            ))
        );
    }

    #[test]
    fn handshake_origin_same_host_or_allowed_only() {
        let same = format!("{KEY}Origin: http://gw.local:8080\r\n");
        assert!(accept(&head(&same), &[]).is_ok());
        let foreign = format!("{KEY}Origin: https://evil.example\r\n");
        assert_eq!(
            accept(&head(&foreign), &[]).err(),
            Some(HandshakeError::ForeignOrigin)
        );
        assert!(accept(&head(&foreign), &["https://evil.example".into()]).is_ok());
        let other_port = format!("{KEY}Origin: http://gw.local:9999\r\n");
        assert_eq!(
            accept(&head(&other_port), &[]).err(),
            Some(HandshakeError::ForeignOrigin)
        );
        let null = format!("{KEY}Origin: null\r\n");
        assert_eq!(
            accept(&head(&null), &[]).err(),
            Some(HandshakeError::ForeignOrigin)
        );
    }
}
