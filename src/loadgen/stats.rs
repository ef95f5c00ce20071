//! The run's shared counters: what every socket task and the pacer record, on one thread.
//!
//! # Invariants
//!
//! - One [`Run`] per load run, shared as `Rc<Run>` by every task of the single-threaded
//!   executor; `stats` is borrowed only between awaits, never across one.
//! - Nothing is recorded once [`Run::stop_counting`] was called: the report describes the run,
//!   not our own teardown (our 1000 closes and their echoes are not the server's doing).
//! - Latencies are µs from the pacer handing a message to its socket to the partner socket
//!   reading the relayed `message`, both measured on [`Run::epoch`] (one monotonic clock).
//!
//! # Implementation
//!
//! Plain counters and `BTreeMap`s (sorted keys make the JSON stable) in a `RefCell`; latency in
//! an HDR histogram with 3 significant digits up to [`MAX_LATENCY_US`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Instant;

use hdrhistogram::Histogram;

/// Highest latency the histogram records exactly: one minute. Anything slower is clamped to it
/// (the incident this project exists for reached 47 s; a minute still shows such a collapse).
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// Significant decimal digits kept by the histogram: 0.1% resolution at every magnitude.
const LATENCY_SIGFIG: u8 = 3;

/// Where the run is; shown by the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Creating consultations over HTTP.
    Creating,
    /// Opening, upgrading and joining sockets.
    Connecting,
    /// All sockets joined, waiting for the gateway's RSS to settle.
    Idle,
    /// The pacer is sending.
    Sending,
    /// Sending is over; waiting for the last relayed messages.
    Draining,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Creating => "creating",
            Phase::Connecting => "connecting",
            Phase::Idle => "idle",
            Phase::Sending => "sending",
            Phase::Draining => "draining",
        })
    }
}

/// The counters of one run.
#[derive(Debug)]
pub struct Stats {
    /// Sockets connected, upgraded and joined, and not closed since.
    pub held: usize,
    /// `send` frames handed to a socket by the pacer.
    pub sent: u64,
    /// `ack` frames received.
    pub acked: u64,
    /// `message` frames received at the partner socket (replays before `joined` excluded).
    pub received: u64,
    /// Failures by name: the server's `error` codes, and ours (`connect_refused`,
    /// `upgrade_http_401`, `http_403`, `client_backlog`, `socket_io`...).
    pub errors: BTreeMap<String, u64>,
    /// Close frames received from the server, by code.
    pub closes: BTreeMap<String, u64>,
    /// Send → relayed `message` latency, µs.
    pub latency: Histogram<u64>,
}

impl Stats {
    fn new() -> Stats {
        // Constant bounds that meet the crate's preconditions (low ≥ 1, high ≥ 2·low,
        // sigfig ≤ 5): this cannot fail at run time, whatever a client sends.
        let latency = Histogram::new_with_bounds(1, MAX_LATENCY_US, LATENCY_SIGFIG)
            .expect("constant histogram bounds are valid");
        Stats {
            held: 0,
            sent: 0,
            acked: 0,
            received: 0,
            errors: BTreeMap::new(),
            closes: BTreeMap::new(),
            latency,
        }
    }
}

/// The state shared by every task of a run.
#[derive(Debug)]
pub struct Run {
    /// The run's clock origin: message bodies carry µs since this instant.
    pub epoch: Instant,
    /// The counters.
    stats: RefCell<Stats>,
    /// `false` once the report was taken: later events are teardown, not measurement.
    counting: Cell<bool>,
    /// The current phase.
    phase: Cell<Phase>,
}

impl Run {
    /// A fresh run starting now.
    pub fn new() -> Run {
        Run {
            epoch: Instant::now(),
            stats: RefCell::new(Stats::new()),
            counting: Cell::new(true),
            phase: Cell::new(Phase::Creating),
        }
    }

    /// µs since [`Run::epoch`].
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Applies `f` to the counters, unless counting has stopped.
    pub fn record(&self, f: impl FnOnce(&mut Stats)) {
        if self.counting.get() {
            f(&mut self.stats.borrow_mut());
        }
    }

    /// Counts one failure named `key`.
    pub fn error(&self, key: &str) {
        self.record(|s| *s.errors.entry(key.to_string()).or_default() += 1);
    }

    /// Records a relayed message sent at `sent_us` (µs since epoch) and read now.
    pub fn delivered(&self, sent_us: u64) {
        let latency = self
            .now_us()
            .saturating_sub(sent_us)
            .clamp(1, MAX_LATENCY_US);
        self.record(|s| {
            s.received += 1;
            // In bounds by the clamp above; a refused value would only lose one sample.
            let _ = s.latency.record(latency);
        });
    }

    /// Reads the counters.
    pub fn read<T>(&self, f: impl FnOnce(&Stats) -> T) -> T {
        f(&self.stats.borrow())
    }

    /// Stops counting: everything after this is teardown.
    pub fn stop_counting(&self) {
        self.counting.set(false);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        log::debug!("loadgen phase={}=>{}", self.phase.get(), phase);
        self.phase.set(phase);
    }
}

impl Default for Run {
    fn default() -> Self {
        Run::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_after_stop_counting_unchanged() {
        let run = Run::new();
        run.error("x");
        run.delivered(0);
        run.stop_counting();
        run.error("x");
        run.delivered(0);
        run.record(|s| s.sent += 1);
        run.read(|s| {
            assert_eq!(s.errors.get("x"), Some(&1));
            assert_eq!(s.received, 1);
            assert_eq!(s.sent, 0);
            assert_eq!(s.latency.len(), 1);
        });
    }

    #[test]
    fn latency_from_future_timestamp_clamped_not_lost() {
        let run = Run::new();
        run.delivered(u64::MAX);
        run.read(|s| assert_eq!((s.received, s.latency.max()), (1, 1)));
    }
}
