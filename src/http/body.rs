//! Request bodies: `Content-Length` and chunked readers as byte-fed state machines.
//!
//! # Invariants
//!
//! 1. Readers never block and never look back: each call takes the bytes it is given,
//!    appends decoded body bytes to `out`, and says how many input bytes it consumed. Until
//!    the body is done it consumes everything; once done, the unconsumed rest belongs to the
//!    next request (pipelining).
//! 2. The outcome does not depend on how the input is split across calls.
//! 3. A chunked body never decodes past `max_body_bytes`: a chunk whose size would cross it is
//!    refused (413) as soon as its size line ends, before any of its data arrives.
//! 4. Every part of the chunked syntax is bounded: size digits by u64 overflow, extensions by
//!    [`MAX_CHUNK_EXT_BYTES`], trailers by [`MAX_TRAILER_BYTES`]. Line ends are strict CRLF:
//!    a bare CR or LF is an error (lenient line ends are a smuggling vector).
//!
//! # Implementation
//!
//! [`ChunkedDecoder`] is a state machine over RFC 9112 §7.1; chunk extensions and trailer
//! fields are skipped (we define none; trailers are ignored as §7.1.2 allows). Data bytes
//! are copied in bulk, everything else byte by byte. After an error the decoder stays failed.

use super::error::HttpError;
use super::head::BodyKind;

/// Longest chunk extension (after the size, before CRLF) we skip: extensions carry nothing
/// we use, and an unbounded one is a free way to hold a connection (CVE-2023-39326 style).
pub const MAX_CHUNK_EXT_BYTES: usize = 256;

/// Longest trailer section we skip, final CRLF included: trailers are ignored, so only a
/// small allowance for well-behaved clients that send one.
pub const MAX_TRAILER_BYTES: usize = 4 * 1024;

/// What one call to a reader did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyProgress {
    /// Input bytes used; equals the input length unless `done`.
    pub consumed: usize,
    /// The body has ended; bytes after `consumed` belong to the next request.
    pub done: bool,
}

/// The brief's name for the chunked decoder's progress; same type as for every reader.
pub type ChunkProgress = BodyProgress;

/// Reads a body of exactly `Content-Length` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthReader {
    /// Body bytes not yet received.
    remaining: u64,
}

impl LengthReader {
    /// A reader for a body of `length` bytes (already checked against the limit).
    pub fn new(length: u64) -> Self {
        LengthReader { remaining: length }
    }

    /// Takes up to the remaining length from `input` into `out`.
    pub fn read(&mut self, input: &[u8], out: &mut Vec<u8>) -> BodyProgress {
        let take = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(input.len());
        let (data, _) = input.split_at_checked(take).unwrap_or((input, &[]));
        out.extend_from_slice(data);
        self.remaining -= data.len() as u64;
        BodyProgress {
            consumed: data.len(),
            done: self.remaining == 0,
        }
    }

    /// True once every byte has been read.
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }
}

/// Where the chunked decoder is in RFC 9112 §7.1's grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChunkState {
    /// In `chunk-size`; `size` is the value so far, `digits` how many hex digits were seen.
    Size { size: u64, digits: usize },
    /// In a chunk extension after `size`; `len` bytes of it skipped so far.
    Ext { size: u64, len: usize },
    /// Saw CR after the size line; LF must follow.
    SizeLf { size: u64 },
    /// In `chunk-data`; `remaining` bytes of this chunk still to come.
    Data { remaining: u64 },
    /// After chunk data; CR must follow.
    DataCr,
    /// After chunk data and CR; LF must follow.
    DataLf,
    /// In the trailer section at the start of a line.
    TrailerLineStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Saw CR inside a trailer line; LF must follow. `last` when the line was empty.
    TrailerLf { last: bool },
    /// The body has ended.
    Done,
    /// An error was returned; every later call returns it again.
    Failed(HttpError),
}

/// Decodes `Transfer-Encoding: chunked`, fed with whatever bytes arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedDecoder {
    /// The grammar position.
    state: ChunkState,
    /// Body bytes decoded so far (chunk data only).
    decoded: u64,
    /// Trailer-section bytes seen so far.
    trailer_bytes: usize,
    /// Most body bytes allowed (invariant 3).
    max_body_bytes: u64,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body limited to `max_body_bytes` decoded bytes.
    pub fn new(max_body_bytes: u64) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size { size: 0, digits: 0 },
            decoded: 0,
            trailer_bytes: 0,
            max_body_bytes,
        }
    }

    /// True once the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes as much of `input` as possible, appending body bytes to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<ChunkProgress, HttpError> {
        let mut rest = input;
        loop {
            match self.state.clone() {
                ChunkState::Done => break,
                ChunkState::Failed(e) => return Err(e),
                ChunkState::Data { remaining } => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    let Some((data, after)) = rest.split_at_checked(take) else {
                        break;
                    };
                    out.extend_from_slice(data);
                    rest = after;
                    let remaining = remaining - data.len() as u64;
                    self.state = if remaining == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data { remaining }
                    };
                    if rest.is_empty() {
                        break;
                    }
                }
                state => {
                    let Some((&byte, after)) = rest.split_first() else {
                        break;
                    };
                    rest = after;
                    match self.step(state, byte) {
                        Ok(next) => self.state = next,
                        Err(e) => {
                            self.state = ChunkState::Failed(e.clone());
                            return Err(e);
                        }
                    }
                }
            }
        }
        debug_assert!(
            self.is_done() || rest.is_empty(),
            "a body not done must consume all input; rest={} state={:?}",
            rest.len(),
            self.state
        );
        Ok(ChunkProgress {
            consumed: input.len() - rest.len(),
            done: self.is_done(),
        })
    }

    /// One byte of the non-data grammar.
    fn step(&mut self, state: ChunkState, byte: u8) -> Result<ChunkState, HttpError> {
        use ChunkState::*;
        Ok(match state {
            Size { size, digits } => match (char::from(byte).to_digit(16), byte) {
                (Some(d), _) => {
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(d)))
                        .ok_or(HttpError::Malformed("chunk size overflows"))?;
                    Size {
                        size,
                        digits: digits + 1,
                    }
                }
                (None, _) if digits == 0 => return Err(HttpError::Malformed("invalid chunk size")),
                (None, b';') => Ext { size, len: 1 },
                (None, b'\r') => SizeLf { size },
                (None, _) => return Err(HttpError::Malformed("invalid chunk size")),
            },
            Ext { size, len } => match byte {
                b'\r' => SizeLf { size },
                _ if len >= MAX_CHUNK_EXT_BYTES => {
                    return Err(HttpError::Malformed("chunk extension too long"))
                }
                b'\t' | b' '..=b'~' | 0x80..=0xff => Ext { size, len: len + 1 },
                _ => return Err(HttpError::Malformed("invalid byte in chunk extension")),
            },
            SizeLf { size } => match byte {
                b'\n' if size == 0 => TrailerLineStart,
                b'\n' => {
                    let limit = self.max_body_bytes;
                    match self.decoded.checked_add(size) {
                        Some(total) if total <= limit => self.decoded = total,
                        _ => return Err(HttpError::BodyTooLarge { limit }),
                    }
                    Data { remaining: size }
                }
                _ => return Err(HttpError::Malformed("chunk size line must end with CRLF")),
            },
            DataCr => match byte {
                b'\r' => DataLf,
                _ => return Err(HttpError::Malformed("chunk data must end with CRLF")),
            },
            DataLf => match byte {
                b'\n' => Size { size: 0, digits: 0 },
                _ => return Err(HttpError::Malformed("chunk data must end with CRLF")),
            },
            TrailerLineStart | TrailerLine | TrailerLf { .. }
                if self.trailer_bytes >= MAX_TRAILER_BYTES =>
            {
                return Err(HttpError::TrailersTooLarge)
            }
            TrailerLineStart | TrailerLine => {
                self.trailer_bytes += 1;
                match byte {
                    b'\r' => TrailerLf {
                        last: state == TrailerLineStart,
                    },
                    b'\n' | 0 => return Err(HttpError::Malformed("invalid trailer line")),
                    _ => TrailerLine,
                }
            }
            TrailerLf { last } => match byte {
                b'\n' => {
                    self.trailer_bytes += 1;
                    if last {
                        Done
                    } else {
                        TrailerLineStart
                    }
                }
                _ => return Err(HttpError::Malformed("trailer line must end with CRLF")),
            },
            Data { .. } | Done | Failed(_) => state,
        })
    }
}

/// Either reader, chosen from a head's [`BodyKind`], so the connection loop drives one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyReader {
    /// `Content-Length` (or no body: length 0).
    Length(LengthReader),
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
}

impl BodyReader {
    /// The reader for `kind`, with the chunked body limited to `max_body_bytes`.
    pub fn new(kind: BodyKind, max_body_bytes: u64) -> Self {
        match kind {
            BodyKind::None => BodyReader::Length(LengthReader::new(0)),
            BodyKind::Length(n) => BodyReader::Length(LengthReader::new(n)),
            BodyKind::Chunked => BodyReader::Chunked(ChunkedDecoder::new(max_body_bytes)),
        }
    }

    /// Feeds `input`; see [`BodyProgress`].
    pub fn read(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<BodyProgress, HttpError> {
        match self {
            BodyReader::Length(r) => Ok(r.read(input, out)),
            BodyReader::Chunked(d) => d.decode(input, out),
        }
    }

    /// True once the body has ended.
    pub fn is_done(&self) -> bool {
        match self {
            BodyReader::Length(r) => r.is_done(),
            BodyReader::Chunked(d) => d.is_done(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], limit: u64) -> Result<(Vec<u8>, BodyProgress), HttpError> {
        let mut out = Vec::new();
        let p = ChunkedDecoder::new(limit).decode(input, &mut out)?;
        Ok((out, p))
    }

    #[test]
    fn chunked_size_line_grammar() {
        let ok = |s: &str| decode_all(s.as_bytes(), 1024).map(|(o, _)| o);
        assert_eq!(
            ok("A\r\n0123456789\r\n0\r\n\r\n"),
            Ok(b"0123456789".to_vec())
        );
        assert_eq!(ok("003;x=y\r\nabc\r\n0;z\r\n\r\n"), Ok(b"abc".to_vec()));
        assert!(ok("\r\n").is_err(), "empty size");
        assert!(ok("0x3\r\nabc\r\n").is_err(), "0x prefix");
        assert!(ok("-1\r\n").is_err());
        assert!(ok("3\nabc\r\n").is_err(), "bare LF after size");
        assert!(ok("3\r\nabc\n0\r\n\r\n").is_err(), "bare LF after data");
        assert!(ok("3\r\nabcd\r\n").is_err(), "data longer than size");
        assert!(ok("0\r\nX: y\n\r\n").is_err(), "bare LF in trailer");
    }

    #[test]
    fn chunked_size_overflow_is_malformed_not_too_large() {
        let e = decode_all(b"10000000000000000\r\n", u64::MAX);
        assert_eq!(e, Err(HttpError::Malformed("chunk size overflows")));
        let e = decode_all(b"FFFFFFFFFFFFFFFF\r\n", 10);
        assert_eq!(e, Err(HttpError::BodyTooLarge { limit: 10 }));
    }

    #[test]
    fn chunked_extension_bounded() {
        let at = format!(
            "1;{}\r\nx\r\n0\r\n\r\n",
            "e".repeat(MAX_CHUNK_EXT_BYTES - 1)
        );
        assert!(decode_all(at.as_bytes(), 10).is_ok());
        let over = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_EXT_BYTES));
        assert_eq!(
            decode_all(over.as_bytes(), 10),
            Err(HttpError::Malformed("chunk extension too long"))
        );
    }

    #[test]
    fn chunked_trailers_skipped_and_bounded() {
        let (out, p) = decode_all(b"1\r\nx\r\n0\r\nA: b\r\nC: d\r\n\r\nNEXT", 10).expect("valid");
        assert_eq!((out.as_slice(), p.done, p.consumed), (&b"x"[..], true, 23));
        // The trailer section counts its lines and the final CRLF.
        let line = format!("T: {}\r\n", "v".repeat(MAX_TRAILER_BYTES - 7));
        let at = format!("0\r\n{line}\r\n");
        assert_eq!(line.len() + 2, MAX_TRAILER_BYTES);
        assert!(decode_all(at.as_bytes(), 10).is_ok_and(|(_, p)| p.done));
        let over = format!("0\r\n{line}x\r\n");
        assert_eq!(
            decode_all(over.as_bytes(), 10),
            Err(HttpError::TrailersTooLarge)
        );
    }

    #[test]
    fn chunked_failed_decoder_stays_failed() {
        let mut d = ChunkedDecoder::new(10);
        let mut out = Vec::new();
        assert!(d.decode(b"z", &mut out).is_err());
        assert!(d.decode(b"0\r\n\r\n", &mut out).is_err());
    }

    #[test]
    fn length_reader_stops_at_length() {
        let mut r = LengthReader::new(3);
        let mut out = Vec::new();
        assert_eq!(
            r.read(b"ab", &mut out),
            BodyProgress {
                consumed: 2,
                done: false
            }
        );
        assert_eq!(
            r.read(b"cdef", &mut out),
            BodyProgress {
                consumed: 1,
                done: true
            }
        );
        assert_eq!(out, b"abc");
        assert_eq!(
            r.read(b"x", &mut out),
            BodyProgress {
                consumed: 0,
                done: true
            }
        );
    }
}
