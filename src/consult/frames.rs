//! The WebSocket protocol's JSON frames (SPEC §5): decoding client frames into commands and
//! encoding server frames.
//!
//! # Invariants
//! 1. Decoding never panics and never allocates more than the frame's own size (tungstenite
//!    already capped the frame at 64 KiB).
//! 2. A frame is either a well-formed command or a [`FrameError`] that names what is wrong
//!    without echoing client text (except a short, plain `type` as the error's `ref`).
//! 3. Field limits (client_id ≤ 64 chars, body ≤ 16 KiB of UTF-8, ids ≤ 128 bytes) are checked
//!    here, once: a command that decodes is within them.
//!
//! # Implementation
//! Fast path: one serde derive over borrowed fields (`Text`, no copies for unescaped text), and
//! the command borrows them in turn.
//! Only when it fails does a slow path parse into a `serde_json::Value` to say precisely which
//! field is missing or ill-typed.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// SPEC §5: `client_id` of at most 64 characters.
pub const MAX_CLIENT_ID_CHARS: usize = 64;
/// SPEC §5: `body` of at most 16 KiB of UTF-8.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Consultation ids are 32 hex chars; anything longer than this is not one of ours.
pub const MAX_ID_BYTES: usize = 128;
/// A `type` short and plain enough to echo back as an error's `ref`.
const MAX_REF_CHARS: usize = 32;

/// A decoded client command. Its text borrows from the frame unless the JSON escaped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    Auth {
        token: Cow<'a, str>,
    },
    Join {
        consultation: Cow<'a, str>,
        after: u64,
    },
    Leave {
        consultation: Cow<'a, str>,
    },
    Send {
        consultation: Cow<'a, str>,
        client_id: Cow<'a, str>,
        body: Cow<'a, str>,
        traceparent: Option<Cow<'a, str>>,
    },
    Renew {
        token: Cow<'a, str>,
    },
    /// Development builds only (`--dev`): panics inside the session, to test 1011.
    DebugPanic,
}

impl ClientFrame<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientFrame::Auth { .. } => "auth",
            ClientFrame::Join { .. } => "join",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::Send { .. } => "send",
            ClientFrame::Renew { .. } => "renew",
            ClientFrame::DebugPanic => "debug_panic",
        }
    }
}

/// Why a client frame was refused (all are the client's fault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON, or not a JSON object.
    InvalidJson,
    MissingType,
    /// `type` names no command; carries it when short and plain enough to echo as `ref`.
    UnknownType(Option<String>),
    MissingField(&'static str),
    IllTyped(&'static str),
    /// A field over its limit (`too_large`, not counted as a bad frame).
    TooLarge(&'static str),
}

impl FrameError {
    /// The error frame's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge(_) => "too_large",
            _ => "bad_request",
        }
    }

    /// Counts toward the bad-frame limit (SPEC §5: invalid JSON, unknown type, missing or
    /// ill-typed fields).
    pub fn is_bad_frame(&self) -> bool {
        !matches!(self, FrameError::TooLarge(_))
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::InvalidJson => f.write_str("frame is not a JSON object"),
            FrameError::MissingType => f.write_str("frame has no \"type\""),
            FrameError::UnknownType(_) => f.write_str("unknown frame type"),
            FrameError::MissingField(name) => write!(f, "missing field \"{name}\""),
            FrameError::IllTyped(name) => write!(f, "field \"{name}\" has the wrong type"),
            FrameError::TooLarge(name) => write!(f, "field \"{name}\" is too large"),
        }
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    token: Option<Text<'a>>,
    #[serde(borrow)]
    consultation: Option<Text<'a>>,
    after: Option<u64>,
    #[serde(borrow)]
    client_id: Option<Text<'a>>,
    #[serde(borrow)]
    body: Option<Text<'a>>,
    #[serde(borrow)]
    traceparent: Option<Text<'a>>,
}

/// A JSON string borrowed from the frame when it has no escapes, owned otherwise. (serde's own
/// `Cow<str>` always allocates inside an `Option`: `#[serde(borrow)]` only reaches a bare
/// `Cow`.)
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Decodes one text frame.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame<'_>, FrameError> {
    let raw: Raw<'_> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(_) => return Err(diagnose(text)),
    };
    let kind = raw.kind.ok_or(FrameError::MissingType)?.0;
    match &*kind {
        "auth" => Ok(ClientFrame::Auth {
            token: field(raw.token, "token")?,
        }),
        "renew" => Ok(ClientFrame::Renew {
            token: field(raw.token, "token")?,
        }),
        "join" => Ok(ClientFrame::Join {
            consultation: id(raw.consultation, "consultation")?,
            after: raw.after.unwrap_or(0),
        }),
        "leave" => Ok(ClientFrame::Leave {
            consultation: id(raw.consultation, "consultation")?,
        }),
        "send" => {
            let consultation = id(raw.consultation, "consultation")?;
            let client_id = field(raw.client_id, "client_id")?;
            if client_id.is_empty() {
                return Err(FrameError::MissingField("client_id"));
            }
            if client_id.chars().count() > MAX_CLIENT_ID_CHARS {
                return Err(FrameError::TooLarge("client_id"));
            }
            let body = field(raw.body, "body")?;
            if body.len() > MAX_BODY_BYTES {
                return Err(FrameError::TooLarge("body"));
            }
            Ok(ClientFrame::Send {
                consultation,
                client_id,
                body,
                traceparent: raw.traceparent.map(|t| t.0),
            })
        }
        "debug_panic" => Ok(ClientFrame::DebugPanic),
        other => Err(FrameError::UnknownType(plain_ref(other))),
    }
}

/// A required string field.
fn field<'a>(value: Option<Text<'a>>, name: &'static str) -> Result<Cow<'a, str>, FrameError> {
    value.map(|t| t.0).ok_or(FrameError::MissingField(name))
}

/// A required id field, within [`MAX_ID_BYTES`].
fn id<'a>(value: Option<Text<'a>>, name: &'static str) -> Result<Cow<'a, str>, FrameError> {
    let value = field(value, name)?;
    if value.len() > MAX_ID_BYTES {
        return Err(FrameError::TooLarge(name));
    }
    Ok(value)
}

/// The slow path: which field made the fast path fail.
fn diagnose(text: &str) -> FrameError {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        return FrameError::InvalidJson;
    };
    const STRINGS: [&str; 6] = [
        "type",
        "token",
        "consultation",
        "client_id",
        "body",
        "traceparent",
    ];
    for name in STRINGS {
        if let Some(value) = map.get(name) {
            if !value.is_string() && !value.is_null() {
                return FrameError::IllTyped(name);
            }
        }
    }
    if let Some(after) = map.get("after") {
        if !after.is_u64() && !after.is_null() {
            return FrameError::IllTyped("after");
        }
    }
    FrameError::InvalidJson
}

fn plain_ref(kind: &str) -> Option<String> {
    let plain = !kind.is_empty()
        && kind.len() <= MAX_REF_CHARS
        && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    plain.then(|| kind.to_owned())
}

// ------------------------------------------------------------------ server frames

/// Server → client frames. Serialised with `to_json`; a relayed `message` is serialised once
/// for all recipients.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Ready {
        session: u64,
        user: &'a str,
        role: &'a str,
        token_exp: u64,
        heartbeat_s: u64,
        idle_timeout_s: u64,
    },
    Joined {
        consultation: &'a str,
        last_seq: u64,
        state: &'a str,
    },
    Message(MessageFields<'a>),
    Ack {
        client_id: &'a str,
        consultation: &'a str,
        seq: u64,
    },
    Presence {
        consultation: &'a str,
        user: &'a str,
        online: bool,
    },
    TokenExpiring {
        exp: u64,
    },
    Renewed {
        exp: u64,
    },
    ConsultationClosed {
        consultation: &'a str,
        reason: &'a str,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
}

/// A stored message as clients see it: the `message` frame's fields, which are also what
/// `GET /v1/consultations/{id}/messages` lists.
#[derive(Debug, Serialize)]
pub struct MessageFields<'a> {
    pub consultation: &'a str,
    pub seq: u64,
    pub from: &'a str,
    pub role: &'a str,
    pub body: &'a str,
    pub client_id: &'a str,
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    pub traceparent: &'a str,
}

impl<'a> From<&'a crate::store::StoredMessage> for MessageFields<'a> {
    fn from(m: &'a crate::store::StoredMessage) -> MessageFields<'a> {
        MessageFields {
            consultation: &m.consultation,
            seq: m.seq,
            from: &m.from,
            role: &m.role,
            body: &m.body,
            client_id: &m.client_id,
            ts: crate::observe::time::rfc3339_ms(m.ts_ms),
            traceparent: &m.traceparent,
        }
    }
}

impl ServerFrame<'_> {
    pub fn to_json(&self) -> String {
        // Serialising our own plain structs cannot fail; an empty object keeps the socket sane
        // if it ever did.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_every_command() {
        assert_eq!(
            decode_client_frame(r#"{"type":"auth","token":"t"}"#),
            Ok(ClientFrame::Auth { token: "t".into() })
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"join","consultation":"c"}"#),
            Ok(ClientFrame::Join {
                consultation: "c".into(),
                after: 0
            })
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"join","consultation":"c","after":7}"#),
            Ok(ClientFrame::Join {
                consultation: "c".into(),
                after: 7
            })
        );
        assert_eq!(
            decode_client_frame(
                r#"{"type":"send","consultation":"c","client_id":"k","body":"h\u00e9"}"#
            ),
            Ok(ClientFrame::Send {
                consultation: "c".into(),
                client_id: "k".into(),
                body: "hé".into(),
                traceparent: None
            })
        );
        assert!(matches!(
            decode_client_frame(r#"{"type":"leave","consultation":"c","extra":1}"#),
            Ok(ClientFrame::Leave { .. })
        ));
        assert!(matches!(
            decode_client_frame(r#"{"type":"renew","token":"x"}"#),
            Ok(ClientFrame::Renew { .. })
        ));
    }

    #[test]
    fn frames_bad_input_named_precisely() {
        assert_eq!(decode_client_frame("nope"), Err(FrameError::InvalidJson));
        assert_eq!(decode_client_frame("[1]"), Err(FrameError::InvalidJson));
        assert_eq!(decode_client_frame("{}"), Err(FrameError::MissingType));
        assert_eq!(
            decode_client_frame(r#"{"type":"fly"}"#),
            Err(FrameError::UnknownType(Some("fly".into())))
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"<script>"}"#),
            Err(FrameError::UnknownType(None))
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"join"}"#),
            Err(FrameError::MissingField("consultation"))
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"join","consultation":"c","after":-1}"#),
            Err(FrameError::IllTyped("after"))
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"send","consultation":5}"#),
            Err(FrameError::IllTyped("consultation"))
        );
        assert_eq!(
            decode_client_frame(r#"{"type":7}"#),
            Err(FrameError::IllTyped("type"))
        );
    }

    #[test]
    fn frames_limits_at_boundaries() {
        let send = |cid: &str, body: &str| {
            let text =
                serde_json::json!({"type":"send","consultation":"c","client_id":cid,"body":body})
                    .to_string();
            decode_client_frame(&text).map(|frame| frame.type_name())
        };
        assert!(send(&"k".repeat(64), "x").is_ok());
        assert!(send(&"é".repeat(64), "x").is_ok(), "64 chars, not bytes");
        assert_eq!(
            send(&"k".repeat(65), "x"),
            Err(FrameError::TooLarge("client_id"))
        );
        assert!(send("k", &"b".repeat(MAX_BODY_BYTES)).is_ok());
        assert_eq!(
            send("k", &"b".repeat(MAX_BODY_BYTES + 1)),
            Err(FrameError::TooLarge("body"))
        );
        assert_eq!(send("", "x"), Err(FrameError::MissingField("client_id")));
        assert!(!FrameError::TooLarge("body").is_bad_frame());
        assert!(FrameError::InvalidJson.is_bad_frame());
    }

    #[test]
    fn frames_server_encoding_matches_spec_fields() {
        let json = ServerFrame::Error {
            code: "forbidden",
            message: "m",
            reference: Some("k1"),
        }
        .to_json();
        assert_eq!(
            json,
            r#"{"type":"error","code":"forbidden","message":"m","ref":"k1"}"#
        );
        let json = ServerFrame::TokenExpiring { exp: 5 }.to_json();
        assert_eq!(json, r#"{"type":"token_expiring","exp":5}"#);
        let json = ServerFrame::ConsultationClosed {
            consultation: "c",
            reason: "idle",
        }
        .to_json();
        assert_eq!(
            json,
            r#"{"type":"consultation_closed","consultation":"c","reason":"idle"}"#
        );
    }
}
