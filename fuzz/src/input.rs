//! A byte cursor that turns fuzzer bytes into the few structured choices a check needs.
//!
//! # Invariants
//! - Every read is total: an exhausted cursor yields zeros and empty slices, never a panic, so
//!   any byte string (a libFuzzer input, a saved regression file) is a valid input to a check.
//! - The same bytes always decode to the same choices (saved inputs replay exactly).
//!
//! # Implementation
//! Plain slice splitting with `split_first` / `split_at_checked`; no `arbitrary` dependency, so
//! the stable-toolchain regression test can include this file verbatim (`#[path]`).

/// Reads choices from the front of a byte string.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    /// The bytes not yet read.
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { rest: bytes }
    }

    /// One byte, or 0 once exhausted.
    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, rest)) => {
                self.rest = rest;
                b
            }
            None => 0,
        }
    }

    /// A little-endian u16 from two bytes (zeros once exhausted).
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

/// `bytes` as text: valid UTF-8 as is, otherwise with U+FFFD for each bad sequence.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
