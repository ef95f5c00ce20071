//! The gateway's counters, gauges and histograms (SPEC §7), rendered as Prometheus text 0.0.4.
//!
//! # Invariants
//! - Single-threaded: `Cell`/`RefCell` only; the server holds one `Rc<Metrics>`. A `RefCell`
//!   borrow never outlives the method that takes it, so no call can find one borrowed.
//! - Label values of families are `&'static str` chosen by our code or `u16` codes, never
//!   client text, so every family has a small, bounded number of series.
//! - Gauges never go below zero: decrements saturate (a double close must not wrap to 2^64).
//! - Every name is `consult_edge_` + a snake_case name; counters end in `_total`.
//!
//! # Implementation
//! Hot counters are plain `Cell<u64>` fields. Labelled families are `BTreeMap`s (sorted output,
//! stable for diffing). Histograms keep per-bucket counts over fixed bounds declared below and
//! are rendered cumulatively with `_bucket{le=..}`, `_sum` and `_count`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub use super::histogram::{fmt_f64, Histogram};

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "consult_edge_";

/// Store commit latency buckets (seconds): a group commit is an fsync, ~0.5 ms on NVMe, tens
/// of ms on the SD cards of kiosk gateways; beyond 1 s acks are visibly late.
pub const COMMIT_LATENCY_BUCKETS_S: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// HTTP request duration buckets (seconds), from a cached `/healthz` (sub-ms) up to the 10 s
/// head/body deadlines (SPEC §4).
pub const HTTP_DURATION_BUCKETS_S: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric of SPEC §7 that the server updates as things happen.
#[derive(Debug)]
pub struct Metrics {
    /// Client TCP connections open now.
    connections_open: Cell<u64>,
    /// Client TCP connections accepted since start.
    connections_accepted: Cell<u64>,
    /// Connections refused because `max_connections` were open.
    connections_rejected: Cell<u64>,
    /// Consultation creates refused because the patient had the most open already.
    consultations_refused: Cell<u64>,
    /// Authenticated WebSocket sessions open now.
    sessions_open: Cell<u64>,
    /// Successful WebSocket upgrades since start.
    upgrades: Cell<u64>,
    /// Chat messages committed to the store.
    messages_stored: Cell<u64>,
    /// `message` frames queued to recipients' sockets.
    messages_relayed: Cell<u64>,
    /// Frames waiting in all outbound queues together, now.
    outbound_queue_depth: Cell<u64>,
    /// Refused authentications by reason (`expired`, `bad_signature`, `revoked`, ...).
    auth_failures: RefCell<BTreeMap<&'static str, u64>>,
    /// WebSocket closes by close code.
    closes: RefCell<BTreeMap<u16, u64>>,
    /// Deadlines that fired, by deadline name.
    deadlines_fired: RefCell<BTreeMap<&'static str, u64>>,
    /// HTTP responses by status code.
    http_requests: RefCell<BTreeMap<u16, u64>>,
    /// Store group-commit latency.
    commit_latency: Histogram,
    /// HTTP request durations, head received to response written.
    http_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn saturating_dec(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().saturating_sub(by));
}

fn bump<K: Ord>(map: &RefCell<BTreeMap<K, u64>>, key: K) {
    *map.borrow_mut().entry(key).or_insert(0) += 1;
}

impl Metrics {
    /// All zero.
    pub fn new() -> Self {
        Metrics {
            connections_open: Cell::new(0),
            connections_accepted: Cell::new(0),
            connections_rejected: Cell::new(0),
            consultations_refused: Cell::new(0),
            sessions_open: Cell::new(0),
            upgrades: Cell::new(0),
            messages_stored: Cell::new(0),
            messages_relayed: Cell::new(0),
            outbound_queue_depth: Cell::new(0),
            auth_failures: RefCell::new(BTreeMap::new()),
            closes: RefCell::new(BTreeMap::new()),
            deadlines_fired: RefCell::new(BTreeMap::new()),
            http_requests: RefCell::new(BTreeMap::new()),
            commit_latency: Histogram::new(COMMIT_LATENCY_BUCKETS_S),
            http_duration: Histogram::new(HTTP_DURATION_BUCKETS_S),
        }
    }

    /// A connection was accepted (and is now open).
    pub fn connection_opened(&self) {
        self.connections_accepted
            .set(self.connections_accepted.get() + 1);
        self.connections_open.set(self.connections_open.get() + 1);
    }
    /// An accepted connection ended.
    pub fn connection_closed(&self) {
        saturating_dec(&self.connections_open, 1);
    }
    /// A connection was refused over `max_connections`.
    pub fn connection_rejected(&self) {
        self.connections_rejected
            .set(self.connections_rejected.get() + 1);
    }
    /// A consultation create was refused over `max_open_consultations_per_patient`.
    pub fn consultation_refused(&self) {
        self.consultations_refused
            .set(self.consultations_refused.get() + 1);
    }
    /// Connections open now.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.get()
    }
    /// A WebSocket upgrade succeeded.
    pub fn inc_upgrade(&self) {
        self.upgrades.set(self.upgrades.get() + 1);
    }
    /// An authenticated session started.
    pub fn session_started(&self) {
        self.sessions_open.set(self.sessions_open.get() + 1);
    }
    /// An authenticated session ended.
    pub fn session_ended(&self) {
        saturating_dec(&self.sessions_open, 1);
    }
    /// An authentication was refused for `reason`.
    pub fn inc_auth_failure(&self, reason: &'static str) {
        bump(&self.auth_failures, reason);
    }
    /// A WebSocket was closed with `code`.
    pub fn inc_close(&self, code: u16) {
        bump(&self.closes, code);
    }
    /// The deadline `name` fired.
    /// Overwrites the fired-deadline counters with the wheel's own counts (the wheel counts
    /// by name as it fires; this copies them at scrape time).
    pub fn set_deadlines_fired(&self, fired: &[(&'static str, u64)]) {
        let mut map = self.deadlines_fired.borrow_mut();
        for (name, count) in fired {
            map.insert(*name, *count);
        }
    }

    pub fn inc_deadline(&self, name: &'static str) {
        bump(&self.deadlines_fired, name);
    }
    /// `n` messages were committed to the store.
    pub fn inc_stored(&self, n: u64) {
        self.messages_stored.set(self.messages_stored.get() + n);
    }
    /// `n` message frames were queued to recipients.
    pub fn inc_relayed(&self, n: u64) {
        self.messages_relayed.set(self.messages_relayed.get() + n);
    }
    /// `n` frames entered an outbound queue.
    pub fn outbound_queued(&self, n: u64) {
        self.outbound_queue_depth
            .set(self.outbound_queue_depth.get() + n);
    }
    /// `n` frames left an outbound queue (written or dropped with their socket).
    pub fn outbound_drained(&self, n: u64) {
        saturating_dec(&self.outbound_queue_depth, n);
    }
    /// A store commit took `secs` seconds.
    pub fn observe_commit(&self, secs: f64) {
        self.commit_latency.observe(secs);
    }
    /// An HTTP request was answered with `status` after `secs` seconds.
    pub fn observe_http(&self, status: u16, secs: f64) {
        bump(&self.http_requests, status);
        self.http_duration.observe(secs);
    }

    /// The Prometheus text exposition (format 0.0.4). `extra_gauges` are `(name, help, value)`
    /// known only at render time (pending timers, live scopes); names get the prefix.
    pub fn render(&self, extra_gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(4096);
        let simple: [(&str, &str, &str, u64); 9] = [
            (
                "connections_open",
                "gauge",
                "Client connections open now.",
                self.connections_open.get(),
            ),
            (
                "connections_accepted_total",
                "counter",
                "Client connections accepted.",
                self.connections_accepted.get(),
            ),
            (
                "connections_rejected_total",
                "counter",
                "Connections refused over max_connections.",
                self.connections_rejected.get(),
            ),
            (
                "consultations_refused_total",
                "counter",
                "Consultation creates refused over max_open_consultations_per_patient.",
                self.consultations_refused.get(),
            ),
            (
                "sessions_open",
                "gauge",
                "Authenticated WebSocket sessions open now.",
                self.sessions_open.get(),
            ),
            (
                "upgrades_total",
                "counter",
                "Successful WebSocket upgrades.",
                self.upgrades.get(),
            ),
            (
                "messages_stored_total",
                "counter",
                "Chat messages committed to the store.",
                self.messages_stored.get(),
            ),
            (
                "messages_relayed_total",
                "counter",
                "Message frames queued to recipients.",
                self.messages_relayed.get(),
            ),
            (
                "outbound_queue_depth",
                "gauge",
                "Frames waiting in all outbound queues.",
                self.outbound_queue_depth.get(),
            ),
        ];
        for (name, kind, help, value) in simple {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{METRIC_PREFIX}{name} {value}");
        }
        family(
            &mut out,
            "auth_failures_total",
            "Refused authentications by reason.",
            "reason",
            &self.auth_failures.borrow(),
        );
        family(
            &mut out,
            "closes_total",
            "WebSocket closes by close code.",
            "code",
            &self.closes.borrow(),
        );
        family(
            &mut out,
            "deadlines_fired_total",
            "Deadlines that fired, by name.",
            "name",
            &self.deadlines_fired.borrow(),
        );
        family(
            &mut out,
            "http_requests_total",
            "HTTP responses by status code.",
            "code",
            &self.http_requests.borrow(),
        );
        header(
            &mut out,
            "store_commit_seconds",
            "histogram",
            "Store group-commit latency.",
        );
        self.commit_latency
            .render(&mut out, &format!("{METRIC_PREFIX}store_commit_seconds"));
        header(
            &mut out,
            "http_request_duration_seconds",
            "histogram",
            "HTTP request durations.",
        );
        self.http_duration.render(
            &mut out,
            &format!("{METRIC_PREFIX}http_request_duration_seconds"),
        );
        for (name, help, value) in extra_gauges {
            let name = name.strip_prefix(METRIC_PREFIX).unwrap_or(name);
            debug_assert!(valid_name(name), "bad extra gauge name={name:?}");
            header(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{METRIC_PREFIX}{name} {}", fmt_f64(*value));
        }
        out
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {METRIC_PREFIX}{name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {METRIC_PREFIX}{name} {kind}");
}

fn family<K: ToString>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &BTreeMap<K, u64>,
) {
    header(out, name, "counter", help);
    for (key, value) in values {
        let key = escape_label(&key.to_string());
        let _ = writeln!(out, "{METRIC_PREFIX}{name}{{{label}=\"{key}\"}} {value}");
    }
}

/// Escapes a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Escapes a HELP docstring: `\` → `\\`, newline → `\n`.
pub fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::prom::{parse_prometheus_text, Sample};

    fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.name == format!("{METRIC_PREFIX}{name}")
                    && label.is_none_or(|(k, v)| s.label(k) == Some(v))
            })
            .map(|s| s.value)
    }

    #[test]
    fn metrics_empty_render_is_valid_text() {
        let samples = parse_prometheus_text(&Metrics::new().render(&[])).expect("valid");
        assert_eq!(value(&samples, "connections_open", None), Some(0.0));
        assert_eq!(
            value(&samples, "store_commit_seconds_count", None),
            Some(0.0)
        );
        assert!(samples.iter().all(|s| s.name.starts_with(METRIC_PREFIX)));
    }

    #[test]
    fn metrics_events_round_trip_through_parser() {
        let m = Metrics::new();
        m.connection_opened();
        m.connection_opened();
        m.connection_closed();
        m.connection_rejected();
        m.inc_upgrade();
        m.session_started();
        m.inc_auth_failure("expired");
        m.inc_auth_failure("expired");
        m.inc_auth_failure("revoked");
        m.inc_close(4001);
        m.inc_deadline("heartbeat");
        m.inc_stored(3);
        m.inc_relayed(5);
        m.outbound_queued(4);
        m.outbound_drained(1);
        m.observe_commit(0.003);
        m.observe_commit(7.0);
        m.observe_http(200, 0.002);
        m.observe_http(404, 0.0001);
        let text = m.render(&[
            ("pending_timers", "Timers in the wheel.", 12.0),
            ("live_scopes", "Live scopes.", 4.0),
        ]);
        let samples = parse_prometheus_text(&text).expect("valid exposition");

        assert_eq!(value(&samples, "connections_open", None), Some(1.0));
        assert_eq!(
            value(&samples, "connections_accepted_total", None),
            Some(2.0)
        );
        assert_eq!(
            value(&samples, "connections_rejected_total", None),
            Some(1.0)
        );
        assert_eq!(value(&samples, "sessions_open", None), Some(1.0));
        assert_eq!(value(&samples, "upgrades_total", None), Some(1.0));
        assert_eq!(
            value(&samples, "auth_failures_total", Some(("reason", "expired"))),
            Some(2.0)
        );
        assert_eq!(
            value(&samples, "auth_failures_total", Some(("reason", "revoked"))),
            Some(1.0)
        );
        assert_eq!(
            value(&samples, "closes_total", Some(("code", "4001"))),
            Some(1.0)
        );
        assert_eq!(
            value(
                &samples,
                "deadlines_fired_total",
                Some(("name", "heartbeat"))
            ),
            Some(1.0)
        );
        assert_eq!(value(&samples, "messages_stored_total", None), Some(3.0));
        assert_eq!(value(&samples, "messages_relayed_total", None), Some(5.0));
        assert_eq!(value(&samples, "outbound_queue_depth", None), Some(3.0));
        assert_eq!(
            value(&samples, "http_requests_total", Some(("code", "404"))),
            Some(1.0)
        );
        assert_eq!(value(&samples, "pending_timers", None), Some(12.0));
        assert_eq!(value(&samples, "live_scopes", None), Some(4.0));

        let bucket = |le| value(&samples, "store_commit_seconds_bucket", Some(("le", le)));
        assert_eq!(bucket("0.0025"), Some(0.0));
        assert_eq!(bucket("0.005"), Some(1.0));
        assert_eq!(bucket("2.5"), Some(1.0));
        assert_eq!(bucket("+Inf"), Some(2.0));
        assert_eq!(
            value(&samples, "store_commit_seconds_sum", None),
            Some(7.003)
        );
        assert_eq!(
            value(&samples, "http_request_duration_seconds_count", None),
            Some(2.0)
        );
    }

    #[test]
    fn metrics_gauges_saturate_at_zero() {
        let m = Metrics::new();
        m.connection_closed();
        m.session_ended();
        m.outbound_drained(10);
        let samples = parse_prometheus_text(&m.render(&[])).expect("valid");
        assert_eq!(value(&samples, "connections_open", None), Some(0.0));
        assert_eq!(value(&samples, "sessions_open", None), Some(0.0));
        assert_eq!(value(&samples, "outbound_queue_depth", None), Some(0.0));
    }

    #[test]
    fn metrics_label_value_escaped_round_trips() {
        let m = Metrics::new();
        m.inc_auth_failure("odd \"reason\" \\ with\nnewline");
        let samples = parse_prometheus_text(&m.render(&[])).expect("valid");
        let reason = Some(("reason", "odd \"reason\" \\ with\nnewline"));
        assert_eq!(value(&samples, "auth_failures_total", reason), Some(1.0));
    }

    #[test]
    fn metrics_extra_gauge_values_special_floats() {
        let text = Metrics::new().render(&[("consult_edge_weird", "Inf.", f64::INFINITY)]);
        let samples = parse_prometheus_text(&text).expect("valid");
        assert_eq!(value(&samples, "weird", None), Some(f64::INFINITY));
    }

    proptest::proptest! {
        #[test]
        fn metrics_any_event_sequence_renders_valid_text(
            events in proptest::collection::vec((0u8..10, 0u16..5000, 0.0f64..20.0), 0..60)
        ) {
            const REASONS: [&str; 3] = ["expired", "bad_signature", "revoked"];
            let m = Metrics::new();
            for (kind, code, secs) in &events {
                let reason = REASONS.get(usize::from(*code) % REASONS.len()).copied().unwrap_or("x");
                match kind {
                    0 => m.connection_opened(),
                    1 => m.connection_closed(),
                    2 => m.inc_close(*code),
                    3 => m.inc_auth_failure(reason),
                    4 => m.inc_deadline(reason),
                    5 => m.observe_commit(*secs),
                    6 => m.observe_http(*code, *secs),
                    7 => m.outbound_queued(u64::from(*code)),
                    8 => m.outbound_drained(u64::from(*code)),
                    _ => m.session_started(),
                }
            }
            let samples = parse_prometheus_text(&m.render(&[("pending_timers", "t", 1.0)]));
            proptest::prop_assert!(samples.is_ok(), "{:?}", samples.err());
        }
    }
}
