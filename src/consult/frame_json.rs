//! Hand-written JSON for the frames every message costs: `message` (to each recipient) and
//! `ack` (to the sender); and for those every socket costs once: `ready`, `joined`, `presence`.
//!
//! # Invariants
//! 1. The output is byte for byte what serde_json writes for the same [`ServerFrame`] (tested
//!    against it, every escape included), so clients see one format whichever path wrote it.
//! 2. One allocation per frame, sized up front from the fields' lengths. The `ack` is sized
//!    exactly: a `String` whose length is its capacity becomes `Bytes` without a second
//!    allocation (for the shared count), and the ack is never cloned, so nothing allocates it
//!    later. The `message` frame is cloned for each recipient, which allocates that count
//!    anyway, so an estimate will do for it.
//!
//! # Implementation
//! Strings are scanned for bytes that need an escape (`"`, `\`, controls below 0x20) in a
//! branch-free pass the compiler vectorises; text without any (nearly all chat text) is copied
//! with one `extend_from_slice`. Escapes follow serde_json's table: `\" \\ \b \f \n \r \t`,
//! other controls `\u00XX`. serde's derive spent about 4,000 instructions on a 200-byte
//! `message` frame and `fmt` another 3,000 on its timestamp (callgrind); this is the relay's
//! hot path. The three once-per-socket frames cost serde ~6,500 instructions per upgrade
//! (docs/perf.md, "Upgrades").
//!
//! [`ServerFrame`]: super::frames::ServerFrame

use crate::observe::time::{push_padded, push_rfc3339_ms, RFC3339_MS_LEN};
use crate::store::StoredMessage;

/// Room for the field names, quotes, separators and numbers of a `message` frame.
const MESSAGE_OVERHEAD: usize = 160;
/// The constant part of an `ack` frame: all but its values (strings with their quotes).
const ACK_FIXED: usize = r#"{"type":"ack","client_id":,"consultation":,"seq":}"#.len();
/// The same for a `ready` frame (four numbers of up to 20 digits).
const READY_OVERHEAD: usize = 192;
/// The same for a `joined` frame.
const JOINED_OVERHEAD: usize = 80;
/// The same for a `presence` frame.
const PRESENCE_OVERHEAD: usize = 72;

/// The `message` frame of a stored message.
pub fn message_json(m: &StoredMessage) -> Vec<u8> {
    let text = m.consultation.len()
        + m.from.len()
        + m.role.len()
        + m.body.len()
        + m.client_id.len()
        + m.traceparent.len();
    let mut out = Vec::with_capacity(text + RFC3339_MS_LEN + MESSAGE_OVERHEAD);
    out.extend_from_slice(br#"{"type":"message","consultation":"#);
    push_str(&mut out, &m.consultation);
    out.extend_from_slice(br#","seq":"#);
    push_padded(&mut out, m.seq, 1);
    out.extend_from_slice(br#","from":"#);
    push_str(&mut out, &m.from);
    out.extend_from_slice(br#","role":"#);
    push_str(&mut out, &m.role);
    out.extend_from_slice(br#","body":"#);
    push_str(&mut out, &m.body);
    out.extend_from_slice(br#","client_id":"#);
    push_str(&mut out, &m.client_id);
    out.extend_from_slice(br#","ts":""#);
    push_rfc3339_ms(&mut out, m.ts_ms);
    out.extend_from_slice(br#"","traceparent":"#);
    push_str(&mut out, &m.traceparent);
    out.push(b'}');
    out
}

/// The `ack` frame of a committed send.
pub fn ack_json(client_id: &str, consultation: &str, seq: u64) -> String {
    let exact = ACK_FIXED + escaped_len(client_id) + escaped_len(consultation) + digits(seq);
    let mut out = Vec::with_capacity(exact);
    out.extend_from_slice(br#"{"type":"ack","client_id":"#);
    push_str(&mut out, client_id);
    out.extend_from_slice(br#","consultation":"#);
    push_str(&mut out, consultation);
    out.extend_from_slice(br#","seq":"#);
    push_padded(&mut out, seq, 1);
    out.push(b'}');
    // Built from `&str`s, ASCII and escapes only: valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// The `ready` frame: the session is authenticated (fields as [`ServerFrame::Ready`]).
pub fn ready_json(
    session: u64,
    user: &str,
    role: &str,
    token_exp: u64,
    heartbeat_s: u64,
    idle_timeout_s: u64,
) -> String {
    let mut out = Vec::with_capacity(user.len() + role.len() + READY_OVERHEAD);
    out.extend_from_slice(br#"{"type":"ready","session":"#);
    push_padded(&mut out, session, 1);
    out.extend_from_slice(br#","user":"#);
    push_str(&mut out, user);
    out.extend_from_slice(br#","role":"#);
    push_str(&mut out, role);
    out.extend_from_slice(br#","token_exp":"#);
    push_padded(&mut out, token_exp, 1);
    out.extend_from_slice(br#","heartbeat_s":"#);
    push_padded(&mut out, heartbeat_s, 1);
    out.extend_from_slice(br#","idle_timeout_s":"#);
    push_padded(&mut out, idle_timeout_s, 1);
    out.push(b'}');
    // Built from `&str`s, ASCII and escapes only: valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// The `joined` frame: the join's replay is done (fields as [`ServerFrame::Joined`]).
pub fn joined_json(consultation: &str, last_seq: u64, state: &str) -> String {
    let mut out = Vec::with_capacity(consultation.len() + state.len() + JOINED_OVERHEAD);
    out.extend_from_slice(br#"{"type":"joined","consultation":"#);
    push_str(&mut out, consultation);
    out.extend_from_slice(br#","last_seq":"#);
    push_padded(&mut out, last_seq, 1);
    out.extend_from_slice(br#","state":"#);
    push_str(&mut out, state);
    out.push(b'}');
    // Built from `&str`s, ASCII and escapes only: valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// The `presence` frame: `user` came online or went offline in `consultation` (fields as
/// [`ServerFrame::Presence`]). UTF-8, like every frame here.
pub fn presence_json(consultation: &str, user: &str, online: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(consultation.len() + user.len() + PRESENCE_OVERHEAD);
    out.extend_from_slice(br#"{"type":"presence","consultation":"#);
    push_str(&mut out, consultation);
    out.extend_from_slice(br#","user":"#);
    push_str(&mut out, user);
    out.extend_from_slice(if online {
        br#","online":true}"#
    } else {
        br#","online":false}"#
    });
    out
}

/// Appends `s` as a JSON string literal, quotes included.
fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
    } else {
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape: &[u8] = match short_escape(b) {
                Some(escape) => escape,
                None if b < 0x20 => &[],
                None => continue,
            };
            out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
            if escape.is_empty() {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            } else {
                out.extend_from_slice(escape);
            }
            start = i + 1;
        }
        out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    }
    out.push(b'"');
}

const HEX: [u8; 16] = *b"0123456789abcdef";

/// How [`push_str`] writes byte `b` when it has a two-character escape; `None` for every other
/// byte (a control byte is then written `\u00XX`, anything else as itself). One table for the
/// writer and [`escaped_len`], so the ack's exact size cannot drift from what is written.
fn short_escape(b: u8) -> Option<&'static [u8]> {
    match b {
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b'\t' => Some(b"\\t"),
        0x08 => Some(b"\\b"),
        0x0c => Some(b"\\f"),
        _ => None,
    }
}

/// The length of `s` as [`push_str`] writes it, quotes included.
fn escaped_len(s: &str) -> usize {
    s.bytes().fold(0, |len, b| {
        len + match short_escape(b) {
            Some(escape) => escape.len(),
            None if b < 0x20 => 6,
            None => 1,
        }
    }) + 2
}

/// The number of decimal digits [`push_padded`] writes for `n` at width 1.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Whether any byte of `bytes` must be escaped. No early exit, so it vectorises.
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consult::frames::ServerFrame;
    use proptest::prelude::*;

    fn stored(body: &str, client_id: &str, seq: u64, ts_ms: u64) -> StoredMessage {
        StoredMessage {
            consultation: "c0ffee00c0ffee00c0ffee00c0ffee00".to_owned(),
            seq,
            from: "patient-1".to_owned(),
            role: "patient".to_owned(),
            body: body.to_owned(),
            client_id: client_id.to_owned(),
            ts_ms,
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        }
    }

    fn serde_message(m: &StoredMessage) -> String {
        ServerFrame::Message(m.into()).to_json()
    }

    #[test]
    fn frame_json_message_matches_serde_for_plain_and_escaped_text() {
        for body in [
            "hello doctor",
            "",
            "quote \" backslash \\ slash / tab \t newline \n cr \r",
            "bell \u{7} nul \u{0} unit \u{1f} del \u{7f} bs \u{8} ff \u{c}",
            "accents é 中文 emoji 🩺 and \u{2028}",
        ] {
            let m = stored(body, "c-1", 42, 1_798_286_949_499);
            assert_eq!(
                String::from_utf8(message_json(&m)).ok(),
                Some(serde_message(&m))
            );
        }
    }

    #[test]
    fn frame_json_once_per_socket_frames_match_serde_for_plain_and_escaped_text() {
        for text in ["patient-1", "", "q\"b\\n\n\u{1}", "é 中文 🩺"] {
            assert_eq!(
                ready_json(u64::MAX, text, "doctor", 0, 15, 300),
                ServerFrame::Ready {
                    session: u64::MAX,
                    user: text,
                    role: "doctor",
                    token_exp: 0,
                    heartbeat_s: 15,
                    idle_timeout_s: 300,
                }
                .to_json()
            );
            assert_eq!(
                joined_json(text, 7, "open"),
                ServerFrame::Joined {
                    consultation: text,
                    last_seq: 7,
                    state: "open"
                }
                .to_json()
            );
            for online in [true, false] {
                assert_eq!(
                    String::from_utf8(presence_json("c0ffee", text, online)).ok(),
                    Some(
                        ServerFrame::Presence {
                            consultation: "c0ffee",
                            user: text,
                            online
                        }
                        .to_json()
                    )
                );
            }
        }
    }

    #[test]
    fn frame_json_ack_fills_its_capacity_exactly() {
        for (client_id, consultation, seq) in [
            ("c-1", "c0ffee", 0),
            ("", "", 9),
            ("q\"b\\n\n\u{1}\u{1f}\u{8}\u{c}\t\r", "é 中文 🩺", 10),
            ("x", "y", u64::MAX),
        ] {
            let ack = ack_json(client_id, consultation, seq);
            assert_eq!(ack.len(), ack.capacity(), "{ack}");
        }
    }

    #[test]
    fn frame_json_ack_matches_serde() {
        let serde = ServerFrame::Ack {
            client_id: "c\"1",
            consultation: "abc",
            seq: u64::MAX,
        }
        .to_json();
        assert_eq!(ack_json("c\"1", "abc", u64::MAX), serde);
    }

    proptest! {
        #[test]
        fn frame_json_message_matches_serde_for_any_text(
            body in any::<String>(),
            client_id in "\\PC{0,16}",
            seq in any::<u64>(),
            ts_ms in 0u64..253_402_300_800_000,
        ) {
            let m = stored(&body, &client_id, seq, ts_ms);
            prop_assert_eq!(String::from_utf8(message_json(&m)).ok(), Some(serde_message(&m)));
            let ack = ack_json(&body, &client_id, seq);
            prop_assert_eq!(ack.len(), ack.capacity());
            prop_assert_eq!(
                ack,
                ServerFrame::Ack { client_id: &body, consultation: &client_id, seq }.to_json()
            );
        }

        #[test]
        fn frame_json_once_per_socket_frames_match_serde(
            user in any::<String>(),
            text in "\\PC{0,40}",
            numbers in any::<[u64; 4]>(),
            online in any::<bool>(),
        ) {
            let [session, token_exp, heartbeat_s, idle_timeout_s] = numbers;
            prop_assert_eq!(
                ready_json(session, &user, &text, token_exp, heartbeat_s, idle_timeout_s),
                ServerFrame::Ready {
                    session, user: &user, role: &text, token_exp, heartbeat_s, idle_timeout_s,
                }
                .to_json()
            );
            prop_assert_eq!(
                joined_json(&user, session, &text),
                ServerFrame::Joined { consultation: &user, last_seq: session, state: &text }
                    .to_json()
            );
            prop_assert_eq!(
                String::from_utf8(presence_json(&text, &user, online)).ok(),
                Some(ServerFrame::Presence { consultation: &text, user: &user, online }.to_json())
            );
        }
    }
}
