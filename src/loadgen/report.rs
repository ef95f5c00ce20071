//! What a run prints: the one JSON line on stdout, the progress line on stderr, and the
//! gateway's resident memory read from `/proc/PID/status`.
//!
//! # Invariants
//!
//! - The JSON report is exactly one line with every key of SPEC §8 / the loadgen brief, always
//!   present: latencies are `null` when nothing was delivered, `rss` is `null` without `--pid`.
//! - `lost` is `sent − received`, never negative.
//!
//! # Implementation
//!
//! `serde` structs (field order = key order) over a snapshot of [`Stats`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::stats::{Phase, Stats};

/// The JSON report of one run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Sockets asked for (`--connections`).
    pub connections_target: usize,
    /// Sockets connected, joined and still open when sending ended.
    pub connections_held: usize,
    /// Seconds to connect, upgrade, authenticate and join every socket.
    pub connect_secs: f64,
    /// Sockets opened up to `joined` per second of that phase.
    pub upgrades_per_sec: f64,
    /// `send` frames handed to sockets.
    pub sent: u64,
    /// `ack` frames received.
    pub acked: u64,
    /// Relayed `message` frames received at the partner sockets.
    pub received: u64,
    /// `sent − received` after the drain.
    pub lost: u64,
    /// Failures by name (server error codes and the load generator's own).
    pub errors: BTreeMap<String, u64>,
    /// Server close frames by code.
    pub closes: BTreeMap<String, u64>,
    /// Relayed messages per second of the send phase.
    pub msgs_per_sec: f64,
    /// Send → relayed `message` latency percentiles, µs.
    pub latency_us: Latency,
    /// The gateway's resident memory (with `--pid`).
    pub rss: Option<Rss>,
}

/// Latency percentiles in µs; `None` (JSON `null`) when no message was delivered.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub p999: Option<u64>,
    pub max: Option<u64>,
}

/// The gateway's VmRSS at three moments, KiB, and the cost of one idle joined socket.
#[derive(Debug, Serialize)]
pub struct Rss {
    /// Before any socket was opened.
    pub before_kib: Option<u64>,
    /// With every socket joined, after the idle wait.
    pub idle_kib: Option<u64>,
    /// When sending and draining were over.
    pub end_kib: Option<u64>,
    /// `(idle − before) / held`, KiB.
    pub kib_per_socket: Option<f64>,
}

impl Rss {
    /// The three samples and the per-socket cost over `held` sockets.
    pub fn new(before: Option<u64>, idle: Option<u64>, end: Option<u64>, held: usize) -> Rss {
        let kib_per_socket = match (before, idle) {
            (Some(b), Some(i)) if held > 0 => {
                Some(round2(i.saturating_sub(b) as f64 / held as f64))
            }
            _ => None,
        };
        Rss {
            before_kib: before,
            idle_kib: idle,
            end_kib: end,
            kib_per_socket,
        }
    }
}

/// The timings measured by the run itself (not counters).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// Seconds of the connect phase.
    pub connect_secs: f64,
    /// Sockets that reached `joined`.
    pub opened: usize,
    /// Seconds of the send phase (first scheduled send to the end of the drain).
    pub send_secs: f64,
}

impl Report {
    /// Builds the report from the counters at the end of the run.
    pub fn new(target: usize, stats: &Stats, timings: Timings, rss: Option<Rss>) -> Report {
        let h = &stats.latency;
        let pct = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q));
        Report {
            connections_target: target,
            connections_held: stats.held,
            connect_secs: round2(timings.connect_secs),
            upgrades_per_sec: per_sec(timings.opened as f64, timings.connect_secs),
            sent: stats.sent,
            acked: stats.acked,
            received: stats.received,
            lost: stats.sent.saturating_sub(stats.received),
            errors: stats.errors.clone(),
            closes: stats.closes.clone(),
            msgs_per_sec: per_sec(stats.received as f64, timings.send_secs),
            latency_us: Latency {
                p50: pct(0.5),
                p90: pct(0.9),
                p99: pct(0.99),
                p999: pct(0.999),
                max: (!h.is_empty()).then(|| h.max()),
            },
            rss,
        }
    }

    /// Whether everything went to plan: every socket held, nothing lost, no error.
    pub fn to_plan(&self) -> bool {
        self.connections_held == self.connections_target && self.lost == 0 && self.errors.is_empty()
    }

    /// The one JSON line.
    pub fn to_json_line(&self) -> String {
        // Plain structs of numbers, strings and maps: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"report_error\":\"{e}\"}}"))
    }
}

fn per_sec(count: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        round2(count / secs)
    } else {
        0.0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One progress line: phase, elapsed seconds and the counters so far.
pub fn progress_line(phase: Phase, elapsed_s: u64, target: usize, stats: &Stats) -> String {
    let p99 = if stats.latency.is_empty() {
        "-".to_string()
    } else {
        stats.latency.value_at_quantile(0.99).to_string()
    };
    let errors: u64 = stats.errors.values().sum();
    format!(
        "loadgen t={elapsed_s}s phase={phase} held={}/{target} sent={} acked={} received={} \
         errors={errors} p99_us={p99}",
        stats.held, stats.sent, stats.acked, stats.received
    )
}

/// The VmRSS of process `pid` in KiB, from `/proc/PID/status`; `None` if it cannot be read.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_parsed_from_proc_status_of_self() {
        let text = "Name:\tx\nVmPeak:\t 100 kB\nVmRSS:\t    2048 kB\nThreads: 1\n";
        assert_eq!(parse_vm_rss(text), Some(2048));
        assert_eq!(parse_vm_rss("VmRSS: lots\n"), None);
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn rss_per_socket_from_idle_minus_before() {
        let rss = Rss::new(Some(1000), Some(3000), Some(3500), 100);
        assert_eq!(rss.kib_per_socket, Some(20.0));
        assert_eq!(Rss::new(Some(1000), None, None, 100).kib_per_socket, None);
        assert_eq!(Rss::new(Some(1), Some(2), None, 0).kib_per_socket, None);
    }

    #[test]
    fn report_json_has_every_key_and_null_latency_when_nothing_delivered() {
        let run = super::super::stats::Run::new();
        run.record(|s| {
            s.sent = 5;
            s.received = 3;
            s.held = 2;
        });
        let timings = Timings {
            connect_secs: 0.5,
            opened: 2,
            send_secs: 1.0,
        };
        let report = run.read(|s| Report::new(4, s, timings, None));
        assert!(!report.to_plan());
        let json: serde_json::Value = serde_json::from_str(&report.to_json_line()).unwrap();
        for key in [
            "connections_target",
            "connections_held",
            "connect_secs",
            "upgrades_per_sec",
            "sent",
            "acked",
            "received",
            "lost",
            "errors",
            "closes",
            "msgs_per_sec",
            "latency_us",
            "rss",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["lost"], 2);
        assert_eq!(json["upgrades_per_sec"], 4.0);
        assert!(json["latency_us"]["p99"].is_null());
    }
}
