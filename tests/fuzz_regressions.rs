//! Fuzz regressions on the stable toolchain: every saved fuzz input replayed through the fuzz
//! targets' own checks, and proptest versions of the same properties so CI exercises them.
//!
//! # Invariants
//! - The checks are the fuzz crate's source files, included verbatim (`#[path]`): a property
//!   fixed in one place holds in both, and a libFuzzer crash file replays here unchanged.
//! - Replayed inputs: `tests/fuzz_regressions/<target>/*` (minimised crashes, kept forever) and
//!   `fuzz/seeds/<target>/*` (the committed seed corpus), so each replay test has inputs.
//!
//! # Implementation
//! One replay test and a few proptests per target; proptests build structured near-valid inputs
//! (heads, chunked bodies, traceparents, config lines, tokens) that random bytes rarely reach.

#[path = "../fuzz/src/chunked.rs"]
mod chunked;
#[path = "../fuzz/src/config.rs"]
mod config;
#[path = "../fuzz/src/http_head.rs"]
mod http_head;
#[path = "../fuzz/src/input.rs"]
mod input;
#[path = "../fuzz/src/jwt.rs"]
mod jwt;
#[path = "../fuzz/src/traceparent.rs"]
mod traceparent;
#[path = "../fuzz/src/ws_frame.rs"]
mod ws_frame;

use std::path::{Path, PathBuf};

use consult_edge::http::{ChunkedDecoder, HeadLimits};
use proptest::prelude::*;
use serde_json::Value;

/// Proptest cases per property: a few hundred keeps the whole file near a second.
const CASES: u32 = 256;

// ---------------------------------------------------------------- replay

/// Every file under `tests/fuzz_regressions/<target>` and `fuzz/seeds/<target>`.
fn saved_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs = [
        root.join("tests/fuzz_regressions").join(target),
        root.join("fuzz/seeds").join(target),
    ];
    let mut inputs = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                let bytes = std::fs::read(&path).expect("read a saved input");
                inputs.push((path, bytes));
            }
        }
    }
    inputs.sort();
    inputs
}

/// Replays every saved input of `target` through `check`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let inputs = saved_inputs(target);
    assert!(!inputs.is_empty(), "no saved inputs for {target}");
    for (path, bytes) in inputs {
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(outcome.is_ok(), "saved input {} fails", path.display());
    }
}

#[test]
fn replay_http_head_saved_inputs_hold() {
    replay("http_head", http_head::check);
}

#[test]
fn replay_chunked_saved_inputs_hold() {
    replay("chunked", chunked::check);
}

#[test]
fn replay_traceparent_saved_inputs_hold() {
    replay("traceparent", traceparent::check);
}

#[test]
fn replay_config_saved_inputs_hold() {
    replay("config", config::check);
}

#[test]
fn replay_jwt_saved_inputs_hold() {
    replay("jwt", jwt::check);
}

#[test]
fn replay_ws_frame_saved_inputs_hold() {
    replay("ws_frame", ws_frame::check);
}

// ---------------------------------------------------------------- http_head

/// A request head built from parts that reach the framing rules, plus arbitrary trailing bytes.
fn near_valid_head() -> impl Strategy<Value = Vec<u8>> {
    use prop::sample::select;
    let method = select(vec!["GET", "POST", "OPTIONS", "get", "PUT"]);
    let target = select(vec![
        "/",
        "/v1/ws?x=1",
        "*",
        "http://a/b?c",
        "HTTPS://h",
        "x",
        "/%zz",
    ]);
    let version = select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2.0"]);
    let name = select(vec![
        "Host",
        "host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Expect",
        "Upgrade",
        "X-A",
    ]);
    let value = select(vec![
        "a",
        "5",
        "0",
        "5, 5",
        "5,6",
        "+5",
        "99999999999999999999",
        "chunked",
        "gzip, chunked",
        " chunked ",
        "close",
        "keep-alive, Upgrade",
        "websocket",
        "100-continue",
        "\u{e9}",
    ]);
    let header = (name, value).prop_map(|(n, v)| format!("{n}: {v}\r\n"));
    let line_end = select(vec!["\r\n", "\n"]);
    (
        method,
        target,
        version,
        line_end,
        prop::collection::vec(header, 0..6),
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(m, t, v, eol, headers, tail)| {
            let mut head = format!("{m} {t} {v}{eol}{}\r\n", headers.concat()).into_bytes();
            head.extend(tail);
            head
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn http_head_near_valid_invariants_hold(head in near_valid_head(), limit in 1usize..200) {
        http_head::check_with(&head, &HeadLimits::default());
        let small = HeadLimits { max_head_bytes: limit, max_body_bytes: 4 };
        http_head::check_with(&head, &small);
    }

    #[test]
    fn http_head_arbitrary_bytes_invariants_hold(data in prop::collection::vec(any::<u8>(), 0..256)) {
        http_head::check(&data);
    }
}

// ---------------------------------------------------------------- chunked

/// One chunk of a valid encoding: its data, an optional extension.
fn chunk() -> impl Strategy<Value = (Vec<u8>, Option<String>)> {
    (
        prop::collection::vec(any::<u8>(), 1..40),
        prop::option::of("[a-z=; \t\"]{0,12}"),
    )
}

/// A valid chunked encoding of `chunks` with `trailers`, sizes in hex of the chosen case.
fn encode(chunks: &[(Vec<u8>, Option<String>)], trailers: &[String], upper: bool) -> Vec<u8> {
    let mut wire = Vec::new();
    for (data, ext) in chunks {
        let size = if upper {
            format!("{:X}", data.len())
        } else {
            format!("{:x}", data.len())
        };
        wire.extend(size.as_bytes());
        if let Some(ext) = ext {
            wire.extend(format!(";{ext}").as_bytes());
        }
        wire.extend(b"\r\n");
        wire.extend(data);
        wire.extend(b"\r\n");
    }
    wire.extend(b"0\r\n");
    for t in trailers {
        wire.extend(format!("{t}\r\n").as_bytes());
    }
    wire.extend(b"\r\n");
    wire
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn chunked_valid_encoding_decodes_to_its_data(
        chunks in prop::collection::vec(chunk(), 0..6),
        trailers in prop::collection::vec("[A-Za-z-]{1,8}: [ -~]{0,12}", 0..3),
        upper in any::<bool>(),
        next in prop::collection::vec(any::<u8>(), 0..8),
        raw_cuts in prop::collection::vec(any::<u16>(), 0..8),
    ) {
        let wire = encode(&chunks, &trailers, upper);
        let mut input = wire.clone();
        input.extend(&next);
        let mut out = Vec::new();
        let progress = ChunkedDecoder::new(u64::MAX).decode(&input, &mut out);
        let expected: Vec<u8> = chunks.iter().flat_map(|(d, _)| d.clone()).collect();
        prop_assert_eq!(progress.map(|p| (p.consumed, p.done)), Ok((wire.len(), true)));
        prop_assert_eq!(out, expected);
        let mut cuts: Vec<usize> =
            raw_cuts.iter().map(|&c| usize::from(c) % (input.len() + 1)).collect();
        cuts.sort_unstable();
        for limit in chunked::LIMITS {
            chunked::check_split(&input, &cuts, limit);
        }
    }

    #[test]
    fn chunked_arbitrary_bytes_invariants_hold(data in prop::collection::vec(any::<u8>(), 0..256)) {
        chunked::check(&data);
    }
}

// ---------------------------------------------------------------- traceparent

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn traceparent_near_valid_invariants_hold(
        version in "[0-9a-fA-F]{2}",
        trace in "[0-9a-f]{31,33}",
        parent in "[0-9a-f]{15,17}",
        flags in "[0-9a-fA-F]{2}",
        suffix in prop::sample::select(vec!["", "-", "-x", "x", "-00-ab"]),
        ows in "[ \t]{0,2}",
    ) {
        let value = format!("{ows}{version}-{trace}-{parent}-{flags}{suffix}{ows}");
        traceparent::check_text(&value);
    }

    #[test]
    fn traceparent_arbitrary_text_invariants_hold(value in "\\PC{0,70}") {
        traceparent::check_text(&value);
    }
}

// ---------------------------------------------------------------- config

/// A config line: a key (valid or not), `=`, a quoted, literal or bare value, a comment.
fn config_line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        "[a-z_]{1,20}",
        "heartbeat_ms",
        "read_timeout_ms",
        "listen",
        "Bad-Key",
        ""
    ];
    let value = prop_oneof![
        "\"[ -~]{0,12}\"",
        "'[ -~]{0,12}'",
        "[ -~]{0,12}",
        "[0-9]{1,8}",
        "\"\\\\[nt\"\\\\q]\""
    ];
    let comment = prop_oneof!["", " # c", "#c", " x"];
    (key, "[ \t]{0,2}", value, comment).prop_map(|(k, s, v, c)| format!("{k}{s}={s}{v}{c}"))
}

/// An argv word: a subcommand, an option in either form, or a value.
fn argv_word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("serve".to_string()),
        Just("token".to_string()),
        Just("loadgen".to_string()),
        Just("--help".to_string()),
        Just("--config".to_string()),
        Just("--dev".to_string()),
        Just("--refresh".to_string()),
        "--(sub|role|ttl|sid|listen|heartbeat-ms|read-timeout-ms|jwt-secret-file|jwt-public-key)",
        "--(heartbeat-ms|read-timeout-ms|max-head-bytes|dev)=[0-9a-z]{0,6}",
        "(patient|doctor|x|[0-9]{1,6}|127.0.0.1:[0-9]{1,5}|)",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn config_text_lines_invariants_hold(lines in prop::collection::vec(config_line(), 0..6)) {
        config::check_file_text(&lines.join("\n"));
    }

    #[test]
    fn config_command_invariants_hold(
        argv in prop::collection::vec(argv_word(), 0..7),
        env in prop::collection::vec(
            ("CONSULT_EDGE_(HEARTBEAT_MS|READ_TIMEOUT_MS|CONFIG|DEV)", "[0-9a-z]{0,6}"), 0..3),
        lines in prop::collection::vec(config_line(), 0..4),
    ) {
        let mut data = lines.join("\n").into_bytes();
        for word in &argv {
            data.push(0);
            data.extend(word.as_bytes());
        }
        for (name, value) in &env {
            data.push(0);
            data.push(1);
            data.extend(format!("{name}={value}").as_bytes());
        }
        config::check(&data);
    }
}

// ---------------------------------------------------------------- jwt

/// A JSON number or an ill-typed value for a time claim.
fn time_claim() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..2_000).prop_map(|d| (jwt::NOW - 1_000 + d).to_string()),
        Just(jwt::NOW.to_string()),
        Just("\"soon\"".to_string()),
        Just("-1".to_string()),
        Just("1.5e9".to_string()),
        Just("18446744073709551616".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn jwt_mutated_minted_token_never_accepted_with_other_claims(
        edits in prop::collection::vec(any::<u8>(), 0..36),
        refresh in any::<bool>(),
    ) {
        let mut data = vec![1, u8::from(refresh), 8];
        data.extend(edits);
        jwt::check(&data);
    }

    #[test]
    fn jwt_arbitrary_token_text_invariants_hold(token in "[A-Za-z0-9_.=-]{0,120}") {
        let mut data = vec![0];
        data.extend(token.as_bytes());
        jwt::check(&data);
    }

    #[test]
    fn jwt_signed_payload_checks_hold(
        alg in prop_oneof!["HS256", "none", "EdDSA", "hs256"],
        kid in prop::option::of(Just(())),
        typ in prop_oneof!["\"access\"", "\"refresh\"", "1", "\"\""],
        role in prop_oneof!["\"patient\"", "\"admin\"", "\"root\"", "null"],
        iat in time_claim(),
        exp in time_claim(),
        nbf in prop::option::of(time_claim()),
        sub in prop_oneof!["\"u\"", "\"\"", "7"],
    ) {
        let kid = kid.map(|()| ",\"kid\":\"00000000\"").unwrap_or_default();
        let header = format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"{kid}}}");
        let nbf = nbf.map(|n| format!(",\"nbf\":{n}")).unwrap_or_default();
        let payload = format!(
            "{{\"sub\":{sub},\"role\":{role},\"sid\":\"s\",\"jti\":\"j\",\
             \"iat\":{iat},\"exp\":{exp},\"typ\":{typ}{nbf}}}"
        );
        let mut data = vec![2];
        data.extend(header.as_bytes());
        data.push(0);
        data.extend(payload.as_bytes());
        jwt::check(&data);
    }
}

// ---------------------------------------------------------------- ws_frame

/// A JSON value for a frame field: strings of every shape, and the wrong types.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[ -~]{0,10}".prop_map(Value::from),
        "\\PC{0,6}".prop_map(Value::from),
        (60usize..70).prop_map(|n| Value::from("é".repeat(n))),
        Just(Value::from("x".repeat(16 * 1024 + 1))),
        Just(Value::from("c".repeat(129))),
        any::<u64>().prop_map(Value::from),
        Just(Value::from(-1)),
        Just(Value::from(1.5)),
        Just(Value::Null),
        Just(Value::Bool(true)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn ws_frame_structured_invariants_hold(
        kind in prop::sample::select(vec!["auth", "join", "leave", "send", "renew", "x y", ""]),
        fields in prop::collection::btree_map(
            prop::sample::select(vec![
                "token", "consultation", "after", "client_id", "body", "traceparent", "extra",
            ]),
            field_value(),
            0..6,
        ),
    ) {
        let mut object: serde_json::Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        object.insert("type".to_string(), Value::from(kind));
        ws_frame::check_text(&Value::Object(object).to_string());
    }

    #[test]
    fn ws_frame_arbitrary_text_invariants_hold(text in "\\PC{0,80}") {
        ws_frame::check_text(&text);
    }
}
