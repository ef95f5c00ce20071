//! W3C Trace Context `traceparent`: parse, generate, child spans, display.
//!
//! # Invariants
//! - [`TraceParent::parse`] never panics and accepts exactly what the W3C Trace Context
//!   (Level 1, §3.2 "traceparent Header") accepts; anything else is `None`, and callers then
//!   start a new trace. A rejected value is never echoed or logged verbatim.
//! - A `TraceParent` never holds an all-zero trace id or parent id (both invalid per §3.2.2.3
//!   and §3.2.2.4), so `Display` always produces a header other systems accept.
//! - `Display` always writes version `00` (the one version we implement), lowercase hex.
//!
//! # Implementation
//! Parsing walks the bytes with `get(..)`, never indexing. Rules:
//! - the version is two lowercase hex digits followed by `-`; `ff` is invalid;
//! - version `00` is exactly 55 characters: `00-<32 hex>-<16 hex>-<2 hex>`;
//! - a higher version may be longer: its first 55 characters are parsed as for `00` and, when
//!   longer, the 56th must be `-` (the rest is the future version's business);
//! - hex must be lowercase; all-zero trace id or parent id is invalid.
//!
//! Random ids come from SipHash keyed by std's per-process random `RandomState` over a
//! per-thread counter and the clock: unpredictable enough for trace ids (which are for
//! correlation, not security) without a new dependency.

use crate::scope::TraceIdHex;
use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;

/// Length of a version-00 `traceparent` (W3C §3.2.2: 2 + 1 + 32 + 1 + 16 + 1 + 2).
pub const TRACEPARENT_V00_LEN: usize = 55;
/// Bytes in a trace id (W3C §3.2.2.3: 16 bytes, 32 hex digits); defined with the scope's
/// trace-id field, which holds them.
pub use crate::scope::fields::TRACE_ID_BYTES;
/// Bytes in a parent (span) id (W3C §3.2.2.4: 8 bytes, 16 hex digits).
pub const PARENT_ID_BYTES: usize = 8;
/// The `sampled` bit of trace-flags (W3C §3.2.2.5.1).
pub const FLAG_SAMPLED: u8 = 0x01;

/// A parsed or generated `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The whole trace's id; shared by every span of the trace; never all zero.
    pub trace_id: [u8; TRACE_ID_BYTES],
    /// The id of the span that is the parent of the next one (ours, once we act on it);
    /// never all zero.
    pub parent_id: [u8; PARENT_ID_BYTES],
    /// Trace flags as received (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` header value (surrounding blanks, HTTP's OWS, are ignored).
    /// `None` for anything the W3C rules reject.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let bytes = value.trim_matches([' ', '\t']).as_bytes();
        let version = hex_byte(bytes.get(0..2)?)?;
        if version == 0xff || bytes.get(2) != Some(&b'-') {
            return None;
        }
        if version == 0x00 && bytes.len() != TRACEPARENT_V00_LEN {
            return None;
        }
        if bytes.len() > TRACEPARENT_V00_LEN && bytes.get(TRACEPARENT_V00_LEN) != Some(&b'-') {
            return None;
        }
        if bytes.get(35) != Some(&b'-') || bytes.get(52) != Some(&b'-') {
            return None;
        }
        let mut trace_id = [0u8; TRACE_ID_BYTES];
        hex_into(bytes.get(3..35)?, &mut trace_id)?;
        let mut parent_id = [0u8; PARENT_ID_BYTES];
        hex_into(bytes.get(36..52)?, &mut parent_id)?;
        let flags = hex_byte(bytes.get(53..55)?)?;
        if trace_id == [0; TRACE_ID_BYTES] || parent_id == [0; PARENT_ID_BYTES] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Starts a new trace: random trace id and span id, sampled.
    pub fn generate() -> TraceParent {
        let high = random_u64().to_be_bytes();
        let low = random_u64().to_be_bytes();
        let mut trace_id = [0u8; TRACE_ID_BYTES];
        for (slot, byte) in trace_id.iter_mut().zip(high.iter().chain(low.iter())) {
            *slot = *byte;
        }
        if trace_id == [0; TRACE_ID_BYTES] {
            trace_id = [1; TRACE_ID_BYTES];
        }
        TraceParent {
            trace_id,
            parent_id: random_span_id(),
            flags: FLAG_SAMPLED,
        }
    }

    /// A new span of the same trace: same trace id and flags, fresh parent id.
    pub fn child(&self) -> TraceParent {
        TraceParent {
            parent_id: random_span_id(),
            ..*self
        }
    }

    /// The trace id as 32 lowercase hex digits (the `trace_id=` of log lines).
    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(TRACE_ID_BYTES * 2);
        push_hex(&mut out, &self.trace_id);
        out
    }

    /// The trace id as a log field (`trace_id=`), written without a `String`.
    pub fn trace_id_field(&self) -> TraceIdHex {
        TraceIdHex(Some(self.trace_id))
    }

    /// The parent (span) id as 16 lowercase hex digits.
    pub fn parent_id_hex(&self) -> String {
        let mut out = String::with_capacity(PARENT_ID_BYTES * 2);
        push_hex(&mut out, &self.parent_id);
        out
    }

    /// Whether the sampled flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
}

impl TraceParent {
    /// The `traceparent` header value (version 00), in one allocation and no `fmt` pass: every
    /// sent message carries one.
    pub fn to_header(&self) -> String {
        let mut out = String::with_capacity(TRACEPARENT_V00_LEN);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.parent_id);
        out.push('-');
        push_hex(&mut out, &[self.flags]);
        out
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_header())
    }
}

fn random_span_id() -> [u8; PARENT_ID_BYTES] {
    match random_u64() {
        0 => 1u64.to_be_bytes(),
        n => n.to_be_bytes(),
    }
}

thread_local! {
    /// Keys chosen at random by std once per thread (per process seeding, then distinct).
    static RANDOM_KEYS: RandomState = RandomState::new();
    /// Number of ids drawn on this thread: makes successive draws distinct inputs.
    static DRAWS: Cell<u64> = const { Cell::new(0) };
}

fn random_u64() -> u64 {
    let draw = DRAWS.with(|draws| {
        let next = draws.get().wrapping_add(1);
        draws.set(next);
        next
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    RANDOM_KEYS.with(|keys| keys.hash_one((draw, nanos)))
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    match pair {
        [high, low] => Some(hex_value(*high)? << 4 | hex_value(*low)?),
        _ => None,
    }
}

fn hex_into(digits: &[u8], out: &mut [u8]) -> Option<()> {
    if digits.len() != out.len() * 2 {
        return None;
    }
    for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *slot = hex_byte(pair)?;
    }
    Some(())
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        for nibble in [byte >> 4, byte & 0x0f] {
            if let Some(digit) = DIGITS.get(usize::from(nibble)) {
                out.push(char::from(*digit));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn trace_valid_v00_parses_and_displays_same() {
        let parsed = TraceParent::parse(VALID).expect("valid");
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id_hex(), "00f067aa0ba902b7");
        assert_eq!(parsed.flags, 1);
        assert!(parsed.sampled());
        assert_eq!(parsed.to_string(), VALID);
    }

    #[test]
    fn trace_surrounding_ows_ignored() {
        assert!(TraceParent::parse(&format!(" \t{VALID} ")).is_some());
    }

    #[test]
    fn trace_v00_wrong_length_rejected() {
        assert_eq!(TraceParent::parse(&VALID[..54]), None);
        assert_eq!(TraceParent::parse(&format!("{VALID}-")), None);
        assert_eq!(TraceParent::parse(&format!("{VALID}-extra")), None);
        assert_eq!(TraceParent::parse(&format!("{VALID}0")), None);
        assert_eq!(TraceParent::parse(""), None);
    }

    #[test]
    fn trace_uppercase_hex_rejected() {
        for upper in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(upper), None, "{upper}");
        }
    }

    #[test]
    fn trace_non_hex_rejected() {
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0.",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn trace_wrong_separators_rejected() {
        for bad in [
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-3600f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn trace_all_zero_ids_rejected() {
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let zero_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        assert_eq!(TraceParent::parse(zero_trace), None);
        assert_eq!(TraceParent::parse(zero_parent), None);
    }

    #[test]
    fn trace_version_ff_rejected() {
        let ff = "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceParent::parse(ff), None);
    }

    #[test]
    fn trace_future_version_longer_with_dash_accepted() {
        let future =
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-holds";
        let parsed = TraceParent::parse(future).expect("future version accepted");
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.flags, 0x09);
        assert_eq!(
            parsed.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09"
        );
        let exact = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(TraceParent::parse(exact).is_some());
    }

    #[test]
    fn trace_future_version_longer_without_dash_rejected() {
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09what";
        assert_eq!(TraceParent::parse(future), None);
        let short = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0";
        assert_eq!(TraceParent::parse(short), None);
    }

    #[test]
    fn trace_generate_valid_and_distinct() {
        let a = TraceParent::generate();
        let b = TraceParent::generate();
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.parent_id, b.parent_id);
        assert_eq!(TraceParent::parse(&a.to_string()), Some(a));
        assert!(a.sampled());
    }

    #[test]
    fn trace_child_keeps_trace_new_span() {
        let parent = TraceParent::parse(VALID).expect("valid");
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_eq!(child.flags, parent.flags);
        assert_ne!(child.parent_id, parent.parent_id);
        assert_ne!(child.parent_id, [0; PARENT_ID_BYTES]);
    }

    proptest! {
        #[test]
        fn trace_parse_arbitrary_never_panics(text in "\\PC{0,80}") {
            let _ = TraceParent::parse(&text);
        }

        #[test]
        fn trace_parse_near_valid_never_panics(text in "[0-9a-fA-F-]{50,60}") {
            if let Some(parsed) = TraceParent::parse(&text) {
                prop_assert!(parsed.trace_id != [0; TRACE_ID_BYTES]);
            }
        }

        #[test]
        fn trace_display_round_trips(
            trace_id in any::<[u8; 16]>(),
            parent_id in any::<[u8; 8]>(),
            flags in any::<u8>(),
        ) {
            prop_assume!(trace_id != [0; 16] && parent_id != [0; 8]);
            let original = TraceParent { trace_id, parent_id, flags };
            let text = original.to_string();
            prop_assert_eq!(text.len(), TRACEPARENT_V00_LEN);
            prop_assert_eq!(TraceParent::parse(&text), Some(original));
        }

        #[test]
        fn trace_parsed_v00_displays_identically(text in "00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}") {
            let zero_ids = text.get(3..35) == Some(&"0".repeat(32)[..])
                || text.get(36..52) == Some(&"0".repeat(16)[..]);
            let shown = TraceParent::parse(&text).map(|parsed| parsed.to_string());
            prop_assert_eq!(shown, (!zero_ids).then(|| text.clone()));
        }
    }
}
