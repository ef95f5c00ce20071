//! Process-wide logging: `env_logger` with one compact `key=value` line per event.
//!
//! # Invariants
//! - Every line is `ts=<RFC 3339 UTC, ms> level=<LEVEL> target=<module path> <message>`, and
//!   callers write the message itself as `event=<name> key=value ...` (see below), so a line is
//!   a flat list of `key=value` fields that `grep`/`awk`/log shippers can split.
//! - A value a client controls is written through [`LogValue`], which quotes and escapes it:
//!   a client cannot forge a line (newline) or a field (space, `=`), and cannot flood the log
//!   with a huge value (truncated at [`MAX_LOG_VALUE_CHARS`]).
//! - Tokens and secrets are never logged, not even truncated.
//! - [`init_logging`] is idempotent: only the first call installs the logger.
//!
//! # Implementation
//! The filter comes from `RUST_LOG` (default [`DEFAULT_LOG_FILTER`]), the write style from
//! `RUST_LOG_STYLE` (default [`DEFAULT_LOG_STYLE`]: no scan for colour codes). Conventional field names:
//! `event` (what happened, snake_case, first), `trace_id`, `scope` (the scope path, e.g.
//! `server/conn#12/ws#3`), `deadline` (which deadline fired), `peer`, `code`, `reason`,
//! `elapsed_ms`. Example:
//! `log::info!("event=deadline_fired deadline=heartbeat scope={path} trace_id={id}")`.

use std::fmt::{self, Write as _};
use std::io::Write as _;

/// The filter when `RUST_LOG` is unset: operators see lifecycle events, not per-frame chatter.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// The write style when `RUST_LOG_STYLE` is unset: `always`, i.e. write our bytes as they are.
/// Our lines carry no colour codes, and with `never` (what `auto` becomes when stderr is a file
/// or a pipe) env_logger scans every line for ANSI sequences to strip them: about half of a log
/// line's cost, three lines per WebSocket (docs/perf.md, "Upgrades: instructions per upgrade").
/// Client-controlled values cannot carry an escape sequence anyway: [`LogValue`] escapes
/// control characters.
pub const DEFAULT_LOG_STYLE: &str = "always";

/// Longest client-controlled value written to a log line, in characters; a longer one is cut
/// and marked with `...` so a hostile client cannot make each line arbitrarily large.
pub const MAX_LOG_VALUE_CHARS: usize = 256;

/// Installs the logger once; later calls do nothing (tests call this from many places).
pub fn init_logging() {
    let env = env_logger::Env::default()
        .default_filter_or(DEFAULT_LOG_FILTER)
        .default_write_style_or(DEFAULT_LOG_STYLE);
    let _already_installed = env_logger::Builder::from_env(env)
        .format(|buf, record| {
            let ts = buf.timestamp_millis();
            writeln!(buf, "{}", LogLine::new(&ts, record))
        })
        .try_init();
}

/// One formatted line (without the newline): `ts=... level=... target=... message`.
pub struct LogLine<'a> {
    ts: &'a dyn fmt::Display,
    level: log::Level,
    target: &'a str,
    args: &'a fmt::Arguments<'a>,
}

impl<'a> LogLine<'a> {
    /// A line for `record` stamped with `ts`.
    pub fn new(ts: &'a dyn fmt::Display, record: &'a log::Record<'a>) -> Self {
        LogLine {
            ts,
            level: record.level(),
            target: record.target(),
            args: record.args(),
        }
    }
}

impl fmt::Display for LogLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ts={} level={} target={} {}",
            self.ts, self.level, self.target, self.args
        )
    }
}

/// A log field value, quoted and escaped when needed: `LogValue(client_id)`.
///
/// Bare when it is non-empty and only `[A-Za-z0-9._:/@+-]`; otherwise in double quotes with
/// `\"`, `\\`, `\n`, `\r`, `\t` and `\u{..}` for other control characters.
pub struct LogValue<'a>(pub &'a str);

impl fmt::Display for LogValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare = |c: char| c.is_ascii_alphanumeric() || "._:/@+-".contains(c);
        let truncated = self.0.chars().count() > MAX_LOG_VALUE_CHARS;
        if !self.0.is_empty() && !truncated && self.0.chars().all(bare) {
            return f.write_str(self.0);
        }
        f.write_char('"')?;
        for c in self.0.chars().take(MAX_LOG_VALUE_CHARS) {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        if truncated {
            f.write_str("...")?;
        }
        f.write_char('"')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_line_has_fields_in_order() {
        let args = format_args!("event=accept peer=127.0.0.1:5");
        let record = log::Record::builder()
            .level(log::Level::Warn)
            .target("consult_edge::http")
            .args(args)
            .build();
        let ts = "2026-01-02T03:04:05.678Z";
        let line = LogLine::new(&ts, &record).to_string();
        assert_eq!(
            line,
            "ts=2026-01-02T03:04:05.678Z level=WARN target=consult_edge::http event=accept peer=127.0.0.1:5"
        );
    }

    struct OtherLogger;
    impl log::Log for OtherLogger {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            false
        }
        fn log(&self, _: &log::Record<'_>) {}
        fn flush(&self) {}
    }
    static OTHER_LOGGER: OtherLogger = OtherLogger;

    #[test]
    fn log_init_twice_keeps_first_logger() {
        init_logging();
        init_logging();
        log::info!("event=test_log_init");
        assert!(
            log::set_logger(&OTHER_LOGGER).is_err(),
            "init_logging must have installed a logger"
        );
    }

    #[test]
    fn log_value_safe_text_bare() {
        assert_eq!(LogValue("p-1_x.y:9/a@b").to_string(), "p-1_x.y:9/a@b");
    }

    #[test]
    fn log_value_injection_escaped() {
        assert_eq!(
            LogValue("a b\nlevel=ERROR \"x\"\\").to_string(),
            r#""a b\nlevel=ERROR \"x\"\\""#
        );
        assert_eq!(LogValue("").to_string(), r#""""#);
        assert_eq!(LogValue("\u{1b}[31m").to_string(), r#""\u{1b}[31m""#);
    }

    #[test]
    fn log_value_long_truncated() {
        let long = "x".repeat(MAX_LOG_VALUE_CHARS + 10);
        let shown = LogValue(&long).to_string();
        assert_eq!(shown.len(), MAX_LOG_VALUE_CHARS + "\"...\"".len());
        assert!(shown.ends_with("...\""));
    }
}
