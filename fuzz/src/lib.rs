//! Invariant checks shared by the fuzz targets and `tests/fuzz_regressions.rs`.
//!
//! # Invariants
//! - Each module has one `pub fn check(data: &[u8])` that decodes any byte string into a call
//!   of one entry point of `consult_edge` and panics when a property of that entry point fails.
//!   The fuzz target of the same name is exactly that call, so a libFuzzer crash input replays
//!   through the regression test unchanged.
//! - The modules use only `consult_edge`, std and crates the main package already depends on
//!   (`tempfile`, `serde_json`, `hmac-sha256`), so the stable test can include them by `#[path]`.
//!
//! # Implementation
//! - `input`: a total byte cursor; `http_head`, `chunked`, `traceparent`, `config`, `jwt`,
//!   `ws_frame`: one check per entry point, each documenting its input layout and invariants.

pub mod chunked;
pub mod config;
pub mod http_head;
pub mod input;
pub mod jwt;
pub mod traceparent;
pub mod ws_frame;
