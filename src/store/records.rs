//! The store's plain records: what callers hand in and get back, and how each is encoded on disk.
//!
//! # Invariants
//! 1. A record is plain data: no handle, no lock, no knowledge of HTTP, WebSocket or JWT.
//! 2. A consultation id is [`ID_BYTES`] random bytes as lowercase hex, so it cannot be guessed
//!    from another one.
//! 3. Messages are encoded by `super::log_record` (binary, in the message log), not here.
//!
//! # Implementation
//! redb values are encoded with `serde_json`: the records are small, JSON is self-describing so a
//! field can be added later with `#[serde(default)]` without a migration, a dump of the file
//! stays readable when diagnosing a kiosk, and the encoding cost is noise next to the fsync of
//! every commit (they change only at create, close and token events). Keys are redb's native tuples, so ordered range
//! scans need no encoding of our own.

use serde::{Deserialize, Serialize};

use super::StoreError;

/// Random bytes in a consultation id: 128 bits, so ids cannot be enumerated or guessed.
pub const ID_BYTES: usize = 16;

/// Whether a consultation still accepts messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsultState {
    /// Members may send; idle and time-limit deadlines are running.
    Open,
    /// Final: sends are refused with [`StoreError::Closed`]; history stays readable.
    Closed,
}

/// One consultation between a patient and a doctor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consultation {
    /// Unguessable id: [`ID_BYTES`] random bytes as lowercase hex.
    pub id: String,
    /// User id (`sub`) of the patient who opened it.
    pub patient: String,
    /// User id (`sub`) of the doctor it was opened with.
    pub doctor: String,
    /// Open or closed.
    pub state: ConsultState,
    /// Creation time, unix milliseconds, as given by the caller's clock.
    pub created_at_ms: u64,
    /// Seq of the newest stored message; 0 while there is none. Seqs are dense from 1.
    pub last_seq: u64,
    /// Time of the newest stored message, unix ms; the creation time while there is none, so the
    /// idle deadline can always be restored from it.
    pub last_message_at_ms: u64,
    /// Why it was closed (`closed_by_member`, `idle`, `time_limit`); `None` while open.
    pub closed_reason: Option<String>,
    /// When it was closed, unix ms; `None` while open.
    pub closed_at_ms: Option<u64>,
}

/// One message as stored, with the seq the store gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Id of the consultation it belongs to.
    pub consultation: String,
    /// Its place in the consultation: dense, from 1.
    pub seq: u64,
    /// User id of the sender.
    pub from: String,
    /// Sender's role as the caller names it (`patient`, `doctor`).
    pub role: String,
    /// Message text.
    pub body: String,
    /// The sender's idempotency key: (consultation, from, client_id) is stored at most once.
    pub client_id: String,
    /// When it was stored, unix ms.
    pub ts_ms: u64,
    /// W3C `traceparent` of the send's span; empty if none.
    pub traceparent: String,
}

/// A message to append: a [`StoredMessage`] before the store gives it a seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// Id of the consultation to append to.
    pub consultation: String,
    /// User id of the sender.
    pub from: String,
    /// Sender's role.
    pub role: String,
    /// Message text.
    pub body: String,
    /// Sender's idempotency key.
    pub client_id: String,
    /// Time of the send, unix ms.
    pub ts_ms: u64,
    /// W3C `traceparent` of the send's span; empty if none.
    pub traceparent: String,
}

/// Result of an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The stored message: the new one, or the original one when `duplicate`.
    pub message: StoredMessage,
    /// `true` if (consultation, from, client_id) was already stored: nothing new was written and
    /// the message must not be delivered again.
    pub duplicate: bool,
}

/// Outcome of presenting a refresh token's `jti`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshUse {
    /// First use: it is now recorded as used.
    Fresh,
    /// It was used before: the caller must treat this as theft and revoke the sid.
    Reused,
}

/// How many expired entries [`Store::purge_expired`](super::Store::purge_expired) removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeCount {
    /// Revocations whose `until` had passed.
    pub revocations: u64,
    /// Used refresh-token jtis whose `exp` had passed.
    pub refresh_jtis: u64,
}

/// Encodes a value for the file. Fails only on a bug (these types always serialize).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Io(format!("encode: {e}")))
}

/// Decodes a value read from the file; a value that does not decode is corruption.
pub(crate) fn decode<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A fresh unguessable consultation id (invariant 2).
pub(crate) fn new_id() -> String {
    let mut bytes = [0u8; ID_BYTES];
    jwt_simple::reexports::rand::fill(&mut bytes[..]);
    let mut id = String::with_capacity(ID_BYTES * 2);
    for b in bytes {
        id.push(hex_digit(b >> 4));
        id.push(hex_digit(b & 0x0f));
    }
    id
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_new_is_32_lowercase_hex_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), ID_BYTES * 2);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{a}"
        );
        assert_ne!(a, b);
    }

    #[test]
    fn state_encodes_as_lowercase_name() {
        assert_eq!(encode(&ConsultState::Open).ok(), Some(b"\"open\"".to_vec()));
        assert_eq!(
            encode(&ConsultState::Closed).ok(),
            Some(b"\"closed\"".to_vec())
        );
    }

    #[test]
    fn decode_garbage_is_corrupt() {
        let r: Result<Consultation, _> = decode("consultation", b"\x00\xff");
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    }
}
