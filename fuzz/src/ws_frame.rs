//! Fuzz check for `ws::frames::decode_client_frame`: the WebSocket command decoder.
//!
//! # Invariants checked
//! 1. A decoded command is within the protocol's limits: ids at most `MAX_ID_BYTES`, a
//!    `client_id` of 1 ..= `MAX_CLIENT_ID_CHARS` characters, a body of at most
//!    `MAX_BODY_BYTES` bytes.
//! 2. A decoded command agrees with an independent reading of the same text as a JSON object
//!    (`serde_json::Value`): same `type`, same field values, `after` defaulting to 0.
//! 3. Decoding is independent of the JSON spelling: the object re-serialised (other key order,
//!    escapes, whitespace) decodes to the same command.
//! 4. An error's `ref` is a short plain token (at most 32 of `[A-Za-z0-9_]`), never client text
//!    of another shape; text that does not start with `{` is `InvalidJson`.
//!
//! 2 and 3 apply when `serde_json::Value` reads the text. It refuses lone UTF-16 surrogate
//! escapes (`"\ud800"`) that RFC 8259 §8.2 allows and that the decoder, rightly, skips inside
//! fields it ignores; such frames are checked for 1 and 4 only (first fuzz run, see README).
//!
//! # Implementation
//! The input bytes are the text frame (lossy UTF-8: the WebSocket layer closes 1007 on invalid
//! UTF-8 before anything reaches the decoder).

use consult_edge::ws::frames::{
    decode_client_frame, ClientFrame, FrameError, MAX_BODY_BYTES, MAX_CLIENT_ID_CHARS, MAX_ID_BYTES,
};
use serde_json::Value;

use crate::input::text;

/// Longest `type` echoed back as an error's `ref` (the decoder's own limit, not exported).
const MAX_REF_CHARS: usize = 32;

/// Runs every invariant on `data` (panics on a violation).
pub fn check(data: &[u8]) {
    check_text(&text(data));
}

/// The invariants of the module doc on one text frame.
pub fn check_text(frame: &str) {
    let decoded = decode_client_frame(frame);
    let value = serde_json::from_str::<Value>(frame).ok();
    match &decoded {
        Ok(command) => {
            check_limits(command);
            assert!(
                frame.trim_start().starts_with('{'),
                "decoded {command:?} from text that is not a JSON object"
            );
            let Some(object) = value.as_ref().and_then(Value::as_object) else {
                return;
            };
            check_agrees(command, object);
            let respelled = serde_json::to_string(object).unwrap_or_default();
            assert_eq!(
                decode_client_frame(&respelled).as_ref(),
                Ok(command),
                "re-serialised {respelled:?} decodes differently"
            );
        }
        Err(FrameError::UnknownType(Some(reference))) => assert!(
            !reference.is_empty()
                && reference.len() <= MAX_REF_CHARS
                && reference
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "ref {reference:?} is not plain"
        ),
        Err(e) => {
            if !frame.trim_start().starts_with('{') {
                assert_eq!(e, &FrameError::InvalidJson, "non-object text");
            }
        }
    }
}

/// Invariant 1.
fn check_limits(command: &ClientFrame) {
    match command {
        ClientFrame::Join { consultation, .. } | ClientFrame::Leave { consultation } => {
            assert!(consultation.len() <= MAX_ID_BYTES, "consultation too long");
        }
        ClientFrame::Send {
            consultation,
            client_id,
            body,
            ..
        } => {
            assert!(consultation.len() <= MAX_ID_BYTES, "consultation too long");
            let chars = client_id.chars().count();
            assert!(
                (1..=MAX_CLIENT_ID_CHARS).contains(&chars),
                "client_id of {chars}"
            );
            assert!(body.len() <= MAX_BODY_BYTES, "body of {}", body.len());
        }
        ClientFrame::Auth { .. } | ClientFrame::Renew { .. } | ClientFrame::DebugPanic => {}
    }
}

/// Invariant 2: `command` says what `object` says.
fn check_agrees(command: &ClientFrame, object: &serde_json::Map<String, Value>) {
    let string = |name: &str| object.get(name).and_then(Value::as_str);
    assert_eq!(string("type"), Some(command.type_name()), "type differs");
    match command {
        ClientFrame::Auth { token } | ClientFrame::Renew { token } => {
            assert_eq!(string("token"), Some(&**token));
        }
        ClientFrame::Join {
            consultation,
            after,
        } => {
            assert_eq!(string("consultation"), Some(&**consultation));
            let expected = object.get("after").and_then(Value::as_u64).unwrap_or(0);
            assert_eq!(*after, expected, "after differs");
        }
        ClientFrame::Leave { consultation } => {
            assert_eq!(string("consultation"), Some(&**consultation));
        }
        ClientFrame::Send {
            consultation,
            client_id,
            body,
            traceparent,
        } => {
            assert_eq!(string("consultation"), Some(&**consultation));
            assert_eq!(string("client_id"), Some(&**client_id));
            assert_eq!(string("body"), Some(&**body));
            assert_eq!(string("traceparent"), traceparent.as_deref());
        }
        ClientFrame::DebugPanic => {}
    }
}
