//! The send schedule: `rate` messages per second in total for `duration` seconds, round-robin
//! over the sending sockets; and the client heartbeat, one Ping per socket per interval,
//! spread evenly over it.
//!
//! # Invariants
//!
//! - Message `i` is due at `start + i / rate` and goes to lane `i mod lanes`: the load is
//!   spread evenly over sockets and over time; a late pacer catches up, it never skips.
//! - Each turn hands out at most [`MAX_SENDS_PER_TURN`] messages before yielding, so socket
//!   tasks (which time the relayed messages) are never starved by the pacer.
//! - A message counts as `sent` only when its socket's queue took it; a full queue is counted
//!   as the `client_backlog` error instead (the load generator, not the server, fell behind).
//! - Every `client_id` is `<run id>-<i>`: unique within the run and across runs, so the
//!   server's per-sender idempotency never merges two of our messages.
//!
//! # Implementation
//!
//! One task, async-io timers at the next due instant; latency timestamps are taken when the
//! message is handed over, so a late pacer does not inflate the server's latency.

use std::rc::Rc;
use std::time::{Duration, Instant};

use async_channel::Sender;
use smol::Timer;

use super::socket::{body_at, Out};
use super::stats::Run;

/// Messages handed out per turn before yielding to the socket tasks.
const MAX_SENDS_PER_TURN: usize = 256;

/// The finest step of the heartbeat schedule: with more sockets than milliseconds in the
/// interval, each step pings a few.
const MIN_PING_STEP: Duration = Duration::from_millis(1);

/// A socket that sends: its command queue and the consultation it joined.
#[derive(Debug, Clone)]
pub struct Lane {
    /// The socket task's command queue.
    pub tx: Sender<Out>,
    /// The consultation its messages go to.
    pub consultation: Rc<str>,
}

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Messages per second, in total.
    pub rate: u64,
    /// Seconds of sending.
    pub duration_s: u64,
    /// Bytes per body.
    pub body_bytes: usize,
}

impl Schedule {
    /// Messages in the whole send phase.
    pub fn total(&self) -> u64 {
        self.rate.saturating_mul(self.duration_s)
    }

    /// Offset of message `i` from the start.
    fn due(&self, i: u64) -> Duration {
        let nanos = u128::from(i) * 1_000_000_000 / u128::from(self.rate.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Runs the send phase over `lanes`; returns when the last message was handed out.
pub async fn send_phase(run: &Run, lanes: &[Lane], schedule: Schedule, run_id: &str) {
    if lanes.is_empty() {
        return;
    }
    let start = Instant::now();
    let total = schedule.total();
    let mut next = 0u64;
    let mut lane_iter = lanes.iter().cycle();
    while next < total {
        let now = start.elapsed();
        let mut handed = 0;
        while next < total && schedule.due(next) <= now && handed < MAX_SENDS_PER_TURN {
            let Some(lane) = lane_iter.next() else { return };
            send_one(run, lane, schedule.body_bytes, &format!("{run_id}-{next}"));
            next += 1;
            handed += 1;
        }
        if handed == MAX_SENDS_PER_TURN {
            smol::future::yield_now().await;
        } else if next < total {
            Timer::at(start + schedule.due(next)).await;
        }
    }
}

fn send_one(run: &Run, lane: &Lane, body_bytes: usize, client_id: &str) {
    let frame = serde_json::json!({
        "type": "send",
        "consultation": &*lane.consultation,
        "client_id": client_id,
        "body": body_at(run.now_us(), body_bytes),
    });
    match lane.tx.try_send(Out::Text(frame.to_string())) {
        Ok(()) => run.record(|s| s.sent += 1),
        Err(async_channel::TrySendError::Full(_)) => run.error("client_backlog"),
        // The socket task ended: the server closed it (already counted there).
        Err(async_channel::TrySendError::Closed(_)) => run.error("send_to_closed_socket"),
    }
}

/// How the heartbeat spreads `sockets` pings over `interval`: `(steps, step)`, step `k` pinging
/// sockets `k, k + steps, k + 2 × steps, …`. One socket per step where the interval has room
/// (one step per millisecond at most), so the gateway never sees a burst of our pings.
///
/// Why: with 1/150 of the sockets every 100 ms (67 pings at once at 10,000 sockets) each burst
/// of pings and the pongs it drew held both ends for most of a millisecond, ten times a second,
/// and the 1% of messages that met one made the p99 at 1,000 msgs/s over 10,000 sockets: with
/// the pings spread, p99 1.22 → 0.37 ms for consult-edge (durable), 1.23 → 0.26 ms for gin,
/// 0.94 → 0.32 ms for axum (one run each; BENCHMARKS.md, fifth session). Kiosks ping on
/// their own clocks, which is what this models.
fn ping_steps(sockets: usize, interval: Duration) -> (usize, Duration) {
    let max_steps = interval.as_nanos() / MIN_PING_STEP.as_nanos();
    let steps = u128::try_from(sockets)
        .unwrap_or(u128::MAX)
        .clamp(1, max_steps.max(1));
    let steps_u32 = u32::try_from(steps).unwrap_or(u32::MAX);
    (
        usize::try_from(steps).unwrap_or(usize::MAX),
        (interval / steps_u32).max(MIN_PING_STEP),
    )
}

/// Pings every socket once per `interval`, spread evenly over it ([`ping_steps`]).
/// Runs until dropped. A full queue skips that Ping: the socket is writing anyway.
pub async fn heartbeat(sockets: Vec<Sender<Out>>, interval: Duration) {
    let (steps, step) = ping_steps(sockets.len(), interval);
    let mut k = 0usize;
    let mut at = Instant::now();
    loop {
        at += step;
        Timer::at(at).await;
        k = (k + 1) % steps;
        for socket in sockets.iter().skip(k).step_by(steps) {
            let _ = socket.try_send(Out::Ping);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_pings_one_socket_per_step_where_the_interval_has_room() {
        let fifteen = Duration::from_secs(15);
        // 10,000 sockets over 15 s: one every 1.5 ms.
        assert_eq!(
            ping_steps(10_000, fifteen),
            (10_000, Duration::from_micros(1500))
        );
        assert_eq!(ping_steps(100, fifteen), (100, Duration::from_millis(150)));
        // More sockets than milliseconds: one step per millisecond, 7 sockets each.
        let (steps, step) = ping_steps(100_000, fifteen);
        assert_eq!((steps, step), (15_000, Duration::from_millis(1)));
        assert_eq!((0..100_000).skip(1).step_by(steps).count(), 7);
        // Degenerate inputs still give a usable schedule.
        assert_eq!(ping_steps(0, fifteen), (1, fifteen));
        assert_eq!(
            ping_steps(10, Duration::ZERO),
            (1, Duration::from_millis(1))
        );
    }

    #[test]
    fn schedule_spreads_messages_evenly_over_the_second() {
        let s = Schedule {
            rate: 4,
            duration_s: 2,
            body_bytes: 20,
        };
        assert_eq!(s.total(), 8);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(250));
        assert_eq!(s.due(7), Duration::from_millis(1750));
    }

    #[test]
    fn send_phase_round_robin_counts_sent_and_backlog() {
        let run = Run::new();
        let (tx_a, rx_a) = async_channel::bounded(1000);
        let (tx_b, rx_b) = async_channel::bounded(1);
        let lanes = [
            Lane {
                tx: tx_a,
                consultation: "c0".into(),
            },
            Lane {
                tx: tx_b,
                consultation: "c0".into(),
            },
        ];
        let schedule = Schedule {
            rate: 1000,
            duration_s: 1,
            body_bytes: 30,
        };
        smol::block_on(send_phase(&run, &lanes, schedule, "r"));
        assert_eq!(rx_a.len(), 500);
        assert_eq!(rx_b.len(), 1);
        run.read(|s| {
            assert_eq!(s.sent, 501);
            assert_eq!(s.errors.get("client_backlog"), Some(&499));
        });
        let Ok(Out::Text(first)) = rx_a.try_recv() else {
            panic!("lane a got no text")
        };
        let frame: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(frame["client_id"], "r-0");
        assert_eq!(frame["body"].as_str().map(str::len), Some(30));
    }
}
