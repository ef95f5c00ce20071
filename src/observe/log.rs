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

use super::time::push_rfc3339_ms;
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
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|since| u64::try_from(since.as_millis()).ok())
                .filter(|ms| *ms < FAST_TS_END_MS);
            let fallback;
            let ts = match now {
                Some(ms) => LineTs::UnixMs(ms),
                None => {
                    fallback = buf.timestamp_millis();
                    LineTs::Shown(&fallback)
                }
            };
            let reused = LINE.try_with(|line| {
                let mut line = line.try_borrow_mut().ok()?;
                line.clear();
                write_line(&mut line, ts, record);
                Some(buf.write_all(&line))
            });
            match reused {
                Ok(Some(written)) => written,
                // Logging while an argument is formatted, or from a thread-local's destructor
                // at thread exit (the buffer is then busy or gone): a buffer of its own.
                _ => {
                    let mut line = Vec::new();
                    write_line(&mut line, ts, record);
                    buf.write_all(&line)
                }
            }
        })
        .try_init();
}

/// The first instant (year 10000) whose timestamp [`push_rfc3339_ms`] does not write as
/// env_logger does; from it on (and before 1970) the line takes env_logger's own.
const FAST_TS_END_MS: u64 = 253_402_300_800_000;

thread_local! {
    /// The line being formatted on this thread, reused: it keeps the capacity of the longest
    /// line written, a few hundred bytes ([`MAX_LOG_VALUE_CHARS`] bounds each client value).
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A line's timestamp: unix milliseconds, written by [`push_rfc3339_ms`] as env_logger's
/// `timestamp_millis` writes them, or (out of that range) env_logger's own.
#[derive(Clone, Copy)]
pub enum LineTs<'a> {
    UnixMs(u64),
    Shown(&'a dyn fmt::Display),
}

/// Appends one line with its newline: `ts=... level=... target=... message`.
///
/// Written into a byte buffer and handed to env_logger in one write: through `writeln!` on
/// env_logger's formatter, each piece of the line went through `io::Write`'s adapter and a
/// `RefCell` borrow, and the timestamp through jiff's `fmt` (~4,000 instructions per socket
/// for ~2.5 lines; docs/perf.md, "Upgrades").
pub fn write_line(out: &mut Vec<u8>, ts: LineTs<'_>, record: &log::Record<'_>) {
    out.extend_from_slice(b"ts=");
    match ts {
        LineTs::UnixMs(ms) => push_rfc3339_ms(out, ms),
        LineTs::Shown(shown) => {
            let _ = write!(VecWriter(out), "{shown}");
        }
    }
    out.extend_from_slice(b" level=");
    out.extend_from_slice(record.level().as_str().as_bytes());
    out.extend_from_slice(b" target=");
    out.extend_from_slice(record.target().as_bytes());
    out.push(b' ');
    match record.args().as_str() {
        Some(message) => out.extend_from_slice(message.as_bytes()),
        None => {
            let _ = VecWriter(out).write_fmt(*record.args());
        }
    }
    out.push(b'\n');
}

/// `fmt::Write` into a byte buffer (what `String` does, without a `String`).
struct VecWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A peer's address as `SocketAddr`'s `Display` writes it (`127.0.0.1:5`, `[::1]:5`), an IPv4
/// one in a single write from a stack buffer: `core::fmt` spent ~3,100 instructions on the
/// `peer=` of each `ws_open` line (padding checks per octet and for the port).
pub struct PeerAddr<'a>(pub &'a std::net::SocketAddr);

/// `255.255.255.255:65535`.
const MAX_V4_PEER_LEN: usize = 21;

impl fmt::Display for PeerAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let std::net::SocketAddr::V4(v4) = self.0 else {
            return fmt::Display::fmt(self.0, f);
        };
        let mut text = [0u8; MAX_V4_PEER_LEN];
        let mut len = 0;
        let mut push = |byte: u8| {
            if let Some(slot) = text.get_mut(len) {
                *slot = byte;
                len += 1;
            }
        };
        for (i, octet) in v4.ip().octets().into_iter().enumerate() {
            if i > 0 {
                push(b'.');
            }
            push_decimal(&mut push, u32::from(octet));
        }
        push(b':');
        push_decimal(&mut push, u32::from(v4.port()));
        // Digits, dots and a colon only.
        f.write_str(std::str::from_utf8(text.get(..len).unwrap_or_default()).unwrap_or_default())
    }
}

/// Feeds `n`'s decimal digits to `push`, most significant first.
fn push_decimal(push: &mut impl FnMut(u8), n: u32) {
    let mut divisor = 1;
    while divisor * 10 <= n {
        divisor *= 10;
    }
    while divisor > 0 {
        push(b'0' + ((n / divisor) % 10) as u8);
        divisor /= 10;
    }
}

/// A log field value, quoted and escaped when needed: `LogValue(client_id)`.
///
/// Bare when it is non-empty and only `[A-Za-z0-9._:/@+-]`; otherwise in double quotes with
/// `\"`, `\\`, `\n`, `\r`, `\t` and `\u{..}` for other control characters.
pub struct LogValue<'a>(pub &'a str);

impl fmt::Display for LogValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A `match`, not `"._:/@+-".contains(c)`: a string search per character was ~2,000
        // instructions per socket for the `user=` and the access line's `path=`.
        let bare = |c: char| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '@' | '+' | '-')
        };
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

    fn line(ts: LineTs<'_>, args: fmt::Arguments<'_>) -> String {
        let record = log::Record::builder()
            .level(log::Level::Warn)
            .target("consult_edge::http")
            .args(args)
            .build();
        let mut out = Vec::new();
        write_line(&mut out, ts, &record);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn log_line_has_fields_in_order() {
        let expected = "ts=2026-12-26T12:09:09.499Z level=WARN target=consult_edge::http event=accept peer=127.0.0.1:5\n";
        let ms = 1_798_286_949_499;
        assert_eq!(
            line(
                LineTs::UnixMs(ms),
                format_args!("event=accept peer=127.0.0.1:5")
            ),
            expected
        );
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 5));
        assert_eq!(
            line(
                LineTs::Shown(&"2026-12-26T12:09:09.499Z"),
                format_args!("event=accept peer={}", PeerAddr(&peer))
            ),
            expected,
            "formatted arguments and a shown timestamp give the same line"
        );
    }

    #[test]
    fn log_peer_addr_writes_what_socket_addr_display_writes() {
        for addr in [
            "0.0.0.0:0",
            "1.2.3.4:80",
            "10.200.30.4:9",
            "255.255.255.255:65535",
            "[::1]:443",
            "[fe80::1%2]:8080",
        ] {
            let addr: std::net::SocketAddr = addr.parse().expect("test address");
            assert_eq!(PeerAddr(&addr).to_string(), addr.to_string());
        }
    }

    proptest::proptest! {
        #[test]
        fn log_peer_addr_matches_display_for_any_v4(ip in proptest::prelude::any::<[u8; 4]>(), port in proptest::prelude::any::<u16>()) {
            let addr = std::net::SocketAddr::from((ip, port));
            proptest::prop_assert_eq!(PeerAddr(&addr).to_string(), addr.to_string());
        }
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

    /// Logs while it is being formatted into a log line.
    struct LogsWhenShown;
    impl fmt::Display for LogsWhenShown {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            log::info!("event=test_log_nested");
            f.write_str("shown")
        }
    }

    #[test]
    fn log_line_logged_while_formatting_another_takes_its_own_buffer() {
        init_logging();
        // The outer line holds the thread's buffer while its argument logs: with a plain
        // `borrow_mut` this would panic.
        log::info!("event=test_log_outer value={}", LogsWhenShown);
        assert_eq!(
            line(LineTs::UnixMs(0), format_args!("v={}", LogsWhenShown)),
            "ts=1970-01-01T00:00:00.000Z level=WARN target=consult_edge::http v=shown\n"
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
