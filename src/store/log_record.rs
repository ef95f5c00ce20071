//! One message as a record of the message log: the bytes on disk and back.
//!
//! # Invariants
//! 1. A record is `[payload length: u32 LE][CRC-32 of the payload: u32 LE][payload]`, and a
//!    record whose length is out of range, whose CRC does not match or whose payload does not
//!    decode is rejected as a whole: [`decode`] never returns part of a message.
//! 2. Every record is at most [`MAX_RECORD_BYTES`] long; [`encode`] refuses a bigger message
//!    before anything is written.
//! 3. Decoding never panics, whatever the bytes (the file is input we did not write this run).
//!
//! # Implementation
//! Payload, little-endian: version byte, then the consultation id, seq, ts_ms, from, role,
//! client_id, traceparent and body. Strings are a length (u16, u32 for the body) and UTF-8
//! bytes. A binary layout, because the record is written once per message on the hot path and
//! read back only on replay; the version byte leaves room to change it.

use super::crc32::crc32;
use super::records::StoredMessage;
use super::StoreError;

/// Bytes before the payload: its length and its CRC.
pub(crate) const HEADER_BYTES: usize = 8;
/// Largest record: a 64 KiB message (the largest WebSocket frame we accept) with its fields.
/// The session layer already refuses bodies over 16 KiB; this bound keeps a corrupt length
/// field from making recovery allocate gigabytes.
pub(crate) const MAX_RECORD_BYTES: usize = 80 * 1024;
/// Layout version of the payload.
const VERSION: u8 = 1;

/// Appends `m` as one record to `out`. Refuses (`Io`, nothing appended) a message too large
/// for one record or with a field longer than its length prefix.
pub(crate) fn encode(m: &StoredMessage, out: &mut Vec<u8>) -> Result<(), StoreError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_BYTES]);
    out.push(VERSION);
    let written = put_str16(out, &m.consultation)
        .and_then(|()| {
            out.extend_from_slice(&m.seq.to_le_bytes());
            out.extend_from_slice(&m.ts_ms.to_le_bytes());
            put_str16(out, &m.from)
        })
        .and_then(|()| put_str16(out, &m.role))
        .and_then(|()| put_str16(out, &m.client_id))
        .and_then(|()| put_str16(out, &m.traceparent))
        .and_then(|()| {
            let len = u32::try_from(m.body.len()).map_err(|_| too_long("body"))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(m.body.as_bytes());
            Ok(())
        });
    let payload_len = out.len() - start - HEADER_BYTES;
    let fits = HEADER_BYTES + payload_len <= MAX_RECORD_BYTES;
    let result = written.and_then(|()| {
        if fits {
            Ok(())
        } else {
            Err(too_long("record"))
        }
    });
    match result {
        Ok(()) => {
            let crc = crc32(out.get(start + HEADER_BYTES..).unwrap_or_default());
            let len = u32::try_from(payload_len).map_err(|_| too_long("record"))?;
            if let Some(header) = out.get_mut(start..start + HEADER_BYTES) {
                header[..4].copy_from_slice(&len.to_le_bytes());
                header[4..].copy_from_slice(&crc.to_le_bytes());
            }
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn too_long(what: &str) -> StoreError {
    StoreError::Io(format!("message too large for the log: {what}"))
}

fn put_str16(out: &mut Vec<u8>, s: &str) -> Result<(), StoreError> {
    let len = u16::try_from(s.len()).map_err(|_| too_long("field"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// What the bytes at the start of a buffer are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole valid record of this many bytes (header included).
    Record(StoredMessage, usize),
    /// The buffer ends inside the record: this many bytes (header included) are needed.
    Incomplete(usize),
    /// Not a valid record (bad length, CRC or payload): the reason, for the log.
    Invalid(&'static str),
}

/// Reads the payload length from a header, if `buf` holds one: the record's total length.
fn record_len(buf: &[u8]) -> Result<Option<usize>, &'static str> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len == 0 {
        return Err("empty record");
    }
    let total = HEADER_BYTES.saturating_add(len);
    if total > MAX_RECORD_BYTES {
        return Err("record length out of range");
    }
    Ok(Some(total))
}

/// Parses the record at the start of `buf` (invariants 1 and 3).
pub(crate) fn decode(buf: &[u8]) -> Parsed {
    let total = match record_len(buf) {
        Ok(Some(total)) => total,
        Ok(None) => return Parsed::Incomplete(HEADER_BYTES),
        Err(why) => return Parsed::Invalid(why),
    };
    let (Some(header), Some(payload)) = (buf.get(..HEADER_BYTES), buf.get(HEADER_BYTES..total))
    else {
        return Parsed::Incomplete(total);
    };
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if crc32(payload) != crc {
        return Parsed::Invalid("checksum mismatch");
    }
    match decode_payload(payload) {
        Some(m) => Parsed::Record(m, total),
        None => Parsed::Invalid("payload does not decode"),
    }
}

/// A cursor over a payload; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.0.get(..n)?;
        self.0 = self.0.get(n..)?;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b: [u8; 8] = self.take(8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    }
    fn string(&mut self, len: usize) -> Option<String> {
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    fn str16(&mut self) -> Option<String> {
        let len = self.u16()?;
        self.string(usize::from(len))
    }
}

fn decode_payload(payload: &[u8]) -> Option<StoredMessage> {
    let mut r = Reader(payload);
    if r.u8()? != VERSION {
        return None;
    }
    let consultation = r.str16()?;
    let seq = r.u64()?;
    let ts_ms = r.u64()?;
    let from = r.str16()?;
    let role = r.str16()?;
    let client_id = r.str16()?;
    let traceparent = r.str16()?;
    let body_len = usize::try_from(r.u32()?).ok()?;
    let body = r.string(body_len)?;
    if !r.0.is_empty() || seq == 0 {
        return None;
    }
    Some(StoredMessage {
        consultation,
        seq,
        from,
        role,
        body,
        client_id,
        ts_ms,
        traceparent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> StoredMessage {
        StoredMessage {
            consultation: "c0ffee".to_owned(),
            seq: 7,
            from: "p1".to_owned(),
            role: "patient".to_owned(),
            body: body.to_owned(),
            client_id: "c-7".to_owned(),
            ts_ms: 1_700_000_000_123,
            traceparent: String::new(),
        }
    }

    #[test]
    fn record_roundtrip_gives_the_same_message_and_length() {
        let m = message("你好, doctor");
        let mut buf = Vec::new();
        assert_eq!(encode(&m, &mut buf), Ok(()));
        assert_eq!(decode(&buf), Parsed::Record(m, buf.len()));
    }

    #[test]
    fn record_every_truncation_is_incomplete_never_a_record() {
        let mut buf = Vec::new();
        assert_eq!(encode(&message("hello"), &mut buf), Ok(()));
        for cut in 0..buf.len() {
            let parsed = decode(buf.get(..cut).unwrap_or_default());
            assert!(
                matches!(parsed, Parsed::Incomplete(_)),
                "cut={cut}: {parsed:?}"
            );
        }
    }

    #[test]
    fn record_any_flipped_byte_is_rejected() {
        let mut buf = Vec::new();
        assert_eq!(encode(&message("hello"), &mut buf), Ok(()));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            let parsed = decode(&bad);
            assert!(
                !matches!(parsed, Parsed::Record(..)),
                "byte {i}: {parsed:?}"
            );
        }
    }

    #[test]
    fn record_zero_filled_tail_is_invalid() {
        assert_eq!(decode(&[0u8; 64]), Parsed::Invalid("empty record"));
    }

    #[test]
    fn record_too_large_is_refused_and_nothing_appended() {
        let mut buf = vec![1, 2, 3];
        let big = "x".repeat(MAX_RECORD_BYTES);
        assert!(matches!(
            encode(&message(&big), &mut buf),
            Err(StoreError::Io(_))
        ));
        assert_eq!(buf, vec![1, 2, 3]);
    }

    proptest::proptest! {
        #[test]
        fn record_decode_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
