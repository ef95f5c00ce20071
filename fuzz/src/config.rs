//! Fuzz check for the config layer: `config::file::parse_config_text` and
//! `config::parse_command` with random argv, environment and config file.
//!
//! # Invariants checked
//! 1. Config text: an accepted file has unique keys of `[a-z0-9_]+` on strictly increasing
//!    line numbers within the file, and writing its entries back out (`key = "escaped"`) parses
//!    to the same keys and values; a rejected file names a line that exists.
//! 2. `parse_command` is deterministic: the same argv, environment and file give the same result.
//! 3. Accepted `serve`/`token` settings pass the cross-field checks (at most one key option,
//!    heartbeat shorter than the read timeout) and `reload_file` reproduces them exactly
//!    (SIGHUP with an unchanged file changes nothing).
//! 4. `token`: `sub` and a given `sid` are non-empty; `loadgen` passes its arguments through.
//!
//! # Implementation
//! Input layout: NUL-separated segments. The first is the config file's text; each later one
//! is an argv entry, or, when it starts with byte 0x01, an environment entry `NAME=VALUE`.
//! The file is written to a per-process temp dir, and every `--config` value (and
//! `CONSULT_EDGE_CONFIG`) is redirected to it, so a run never reads another file of the machine.

use std::cell::RefCell;
use std::path::PathBuf;

use consult_edge::config::file::parse_config_text;
use consult_edge::config::{parse_command, Command, Settings};

use crate::input::text;

/// Marks an environment entry among the argv segments.
const ENV_MARK: u8 = 0x01;

/// The config option's flag, redirected to the fuzz file.
const CONFIG_FLAG: &str = "--config";

/// The config option's environment variable, redirected to the fuzz file.
const CONFIG_ENV: &str = "CONSULT_EDGE_CONFIG";

thread_local! {
    /// The per-process temp dir holding the config file; removed when the thread ends.
    static DIR: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

/// Writes `text` as this process's config file and returns its path.
fn config_file(text: &str) -> PathBuf {
    DIR.with(|dir| {
        let mut dir = dir.borrow_mut();
        let dir = dir.get_or_insert_with(|| tempfile::tempdir().expect("temp dir for fuzzing"));
        let path = dir.path().join("consult-edge.conf");
        std::fs::write(&path, text).expect("write the fuzz config file");
        path
    })
}

/// Runs every invariant on `data` (panics on a violation).
pub fn check(data: &[u8]) {
    let mut segments = data.split(|&b| b == 0);
    let file_text = text(segments.next().unwrap_or_default());
    check_file_text(&file_text);
    let mut argv = Vec::new();
    let mut env = Vec::new();
    for segment in segments {
        match segment.split_first() {
            Some((&ENV_MARK, entry)) => {
                let entry = text(entry);
                let (name, value) = entry.split_once('=').unwrap_or((&entry, ""));
                env.push((name.to_string(), value.to_string()));
            }
            _ => argv.push(text(segment)),
        }
    }
    let path = config_file(&file_text);
    check_command(&argv, &env, &path);
}

/// Invariant 1 on one config file text.
pub fn check_file_text(file: &str) {
    let line_count = file.lines().count();
    let entries = match parse_config_text(file) {
        Ok(entries) => entries,
        Err((line, _)) => {
            assert!(
                (1..=line_count).contains(&line),
                "error on line {line} of {line_count}"
            );
            return;
        }
    };
    let mut previous = 0;
    for (i, entry) in entries.iter().enumerate() {
        assert!(
            entry.line > previous && entry.line <= line_count,
            "{entry:?}"
        );
        previous = entry.line;
        assert!(
            !entry.key.is_empty()
                && entry
                    .key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{entry:?}"
        );
        let later = entries.get(i + 1..).unwrap_or_default();
        assert!(later.iter().all(|e| e.key != entry.key), "repeated key");
    }
    let rendered: String = entries
        .iter()
        .map(|e| format!("{} = \"{}\"\n", e.key, escape(&e.value)))
        .collect();
    let again = parse_config_text(&rendered);
    let pairs = |es: &[consult_edge::config::file::Entry]| -> Vec<(String, String)> {
        es.iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    };
    assert_eq!(
        again.as_deref().map(pairs),
        Ok(pairs(&entries)),
        "re-rendered file {rendered:?} parses differently"
    );
}

/// A value as the inside of a `"..."` config string.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// Invariants 2-4 for one argv and environment, with `--config` redirected to `file`.
pub fn check_command(argv: &[String], env: &[(String, String)], file: &std::path::Path) {
    let argv = redirect_config(argv, file);
    let lookup = |name: &str| -> Option<String> {
        if name == CONFIG_ENV {
            return env
                .iter()
                .any(|(n, _)| n == CONFIG_ENV)
                .then(|| file.display().to_string());
        }
        env.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let first = parse_command(&argv, &lookup);
    assert_eq!(parse_command(&argv, &lookup), first, "not deterministic");
    match first {
        Ok(Command::Serve(settings)) => check_settings(&settings),
        Ok(Command::Token(token)) => {
            assert!(!token.sub.is_empty(), "empty sub accepted");
            assert!(
                token.sid.as_ref().is_none_or(|s| !s.is_empty()),
                "empty sid"
            );
            check_settings(&token.settings);
        }
        Ok(Command::Loadgen(rest)) => assert_eq!(Some(rest.as_slice()), argv.get(1..)),
        Ok(Command::Help(help)) => assert!(!help.is_empty()),
        Err(_) => {}
    }
}

/// Invariant 3 on accepted settings.
fn check_settings(settings: &Settings) {
    let keys = [
        settings.jwt_secret_file.is_some(),
        settings.jwt_private_key.is_some(),
        settings.jwt_public_key.is_some(),
    ];
    assert!(keys.iter().filter(|k| **k).count() <= 1, "two key options");
    assert!(
        settings.heartbeat_ms < settings.read_timeout_ms,
        "heartbeat_ms={} read_timeout_ms={}",
        settings.heartbeat_ms,
        settings.read_timeout_ms
    );
    assert_eq!(
        settings.reload_file().as_ref(),
        Ok(settings),
        "reload with an unchanged file differs"
    );
}

/// `argv` with every `--config` value replaced by `file`.
fn redirect_config(argv: &[String], file: &std::path::Path) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut redirect_next = false;
    for arg in argv {
        if redirect_next && !arg.starts_with("--") {
            out.push(file.display().to_string());
        } else if arg.starts_with(&format!("{CONFIG_FLAG}=")) {
            out.push(format!("{CONFIG_FLAG}={}", file.display()));
        } else {
            out.push(arg.clone());
        }
        redirect_next = arg == CONFIG_FLAG;
    }
    out
}
