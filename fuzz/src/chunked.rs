//! Fuzz check for `http::ChunkedDecoder`: `Transfer-Encoding: chunked` fed in arbitrary pieces.
//!
//! # Invariants checked
//! 1. Decoding the body in random pieces gives the same outcome as decoding it in one piece:
//!    same decoded bytes, same total `consumed`, same `done`, same error.
//! 2. Each call consumes at most its input, and all of it unless the body is `done`.
//! 3. Never more than `max_body_bytes` decoded bytes.
//! 4. After `done`, a call consumes nothing and decodes nothing; after an error, every later
//!    call returns the same error.
//!
//! # Implementation
//! Input layout: one byte picks the body limit from [`LIMITS`], one byte the number of split
//! points (0..=15), two bytes per split point (offsets taken modulo the body length), and the
//! rest is the body.

use consult_edge::http::{ChunkedDecoder, HttpError};

use crate::input::Cursor;

/// Body limits to choose from: zero, tiny, a chunk-size boundary, the spec's 64 KiB, none.
pub const LIMITS: [u64; 6] = [0, 1, 16, 4096, 64 * 1024, u64::MAX];

/// Most split points one input can ask for (bounds the work per input).
const MAX_SPLITS: u8 = 15;

/// What decoding a whole body did.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// Decoded body bytes (up to the error, if any).
    out: Vec<u8>,
    /// Input bytes consumed over all calls; 0 after an error (a failing call does not say).
    consumed: usize,
    /// Whether the decoder reported the end of the body.
    done: bool,
    /// The error, if one was returned.
    error: Option<HttpError>,
}

/// Runs every invariant on `data` (panics on a violation).
pub fn check(data: &[u8]) {
    let mut cursor = Cursor::new(data);
    let limit = LIMITS
        .get(usize::from(cursor.byte()) % LIMITS.len())
        .copied()
        .unwrap_or(u64::MAX);
    let splits = cursor.byte() % (MAX_SPLITS + 1);
    let raw_cuts: Vec<u16> = (0..splits).map(|_| cursor.u16()).collect();
    let body = cursor.rest();
    let mut cuts: Vec<usize> = raw_cuts
        .iter()
        .map(|&c| usize::from(c) % (body.len() + 1))
        .collect();
    cuts.sort_unstable();
    check_split(body, &cuts, limit);
}

/// Invariants 1-4 for `body` cut at the sorted offsets `cuts`, under `limit`.
pub fn check_split(body: &[u8], cuts: &[usize], limit: u64) {
    let whole = decode(&[body], limit);
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
        pieces.push(body.get(start..cut).unwrap_or_default());
        start = cut;
    }
    let split = decode(&pieces, limit);
    assert_eq!(split, whole, "split at {cuts:?} differs from one piece");
}

/// Feeds `pieces` in order to one decoder, checking invariants 2-4 on every call.
fn decode(pieces: &[&[u8]], limit: u64) -> Outcome {
    let mut decoder = ChunkedDecoder::new(limit);
    let mut outcome = Outcome {
        out: Vec::new(),
        consumed: 0,
        done: false,
        error: None,
    };
    for piece in pieces {
        let before = outcome.out.len();
        match decoder.decode(piece, &mut outcome.out) {
            Ok(progress) => {
                assert!(progress.consumed <= piece.len(), "{progress:?}");
                assert!(
                    progress.done || progress.consumed == piece.len(),
                    "not done but left input: {progress:?} len={}",
                    piece.len()
                );
                if outcome.done {
                    assert_eq!(progress.consumed, 0, "consumed after done");
                    assert_eq!(outcome.out.len(), before, "decoded after done");
                }
                assert_eq!(progress.done, decoder.is_done());
                outcome.consumed += progress.consumed;
                outcome.done = progress.done;
            }
            Err(e) => {
                let mut again = Vec::new();
                assert_eq!(decoder.decode(b"0\r\n\r\n", &mut again), Err(e.clone()));
                assert!(again.is_empty(), "a failed decoder decoded more");
                outcome.error = Some(e);
                outcome.consumed = 0;
                break;
            }
        }
    }
    let decoded = u64::try_from(outcome.out.len()).unwrap_or(u64::MAX);
    assert!(decoded <= limit, "decoded={decoded} limit={limit}");
    outcome
}
