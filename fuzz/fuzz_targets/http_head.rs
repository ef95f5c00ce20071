//! libFuzzer entry for `consult_edge_fuzz::http_head::check` (its invariants are documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| consult_edge_fuzz::http_head::check(data));
