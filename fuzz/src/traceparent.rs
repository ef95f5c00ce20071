//! Fuzz check for `observe::trace::TraceParent::parse`: the W3C `traceparent` header.
//!
//! # Invariants checked
//! 1. An accepted value displays as a version-00 header of exactly 55 characters that parses
//!    back to the same value (Display round-trips).
//! 2. The display repeats the accepted text after the version: `trimmed[2..55]` (so nothing
//!    the client sent is altered, only the version is normalised to `00`), and for version
//!    `00` the display is the trimmed input itself.
//! 3. Accepted ids are never all zero.
//! 4. Surrounding blanks (SP / HTAB) do not change the result.
//!
//! # Implementation
//! The input bytes are the header value (lossy UTF-8, as an HTTP layer that kept only valid
//! UTF-8 values would never pass anything else).

use consult_edge::observe::trace::{TraceParent, TRACEPARENT_V00_LEN};

use crate::input::text;

/// Runs every invariant on `data` (panics on a violation).
pub fn check(data: &[u8]) {
    check_text(&text(data));
}

/// The invariants of the module doc on one header value.
pub fn check_text(value: &str) {
    let parsed = TraceParent::parse(value);
    assert_eq!(
        TraceParent::parse(&format!(" \t{value}\t ")),
        parsed,
        "surrounding blanks changed the result"
    );
    let Some(tp) = parsed else {
        return;
    };
    assert_ne!(tp.trace_id, [0; 16], "all-zero trace id accepted");
    assert_ne!(tp.parent_id, [0; 8], "all-zero parent id accepted");
    let shown = tp.to_string();
    assert_eq!(shown.len(), TRACEPARENT_V00_LEN, "display {shown:?}");
    assert_eq!(
        TraceParent::parse(&shown),
        Some(tp),
        "display does not round-trip"
    );
    let trimmed = value.trim_matches([' ', '\t']);
    assert_eq!(
        shown.get(2..),
        trimmed.get(2..TRACEPARENT_V00_LEN),
        "display alters the accepted text"
    );
    if trimmed.starts_with("00") {
        assert_eq!(shown, trimmed, "version 00 must display as sent");
    }
}
