//! When the writer waits a little for more ops before it commits a batch.
//!
//! # Invariants
//! 1. A batch waits only when the wait is expected to gain an op: the ops committed over the
//!    last [`WINDOW`] arrived at least one per [`LINGER`] (a sustained rate), or the batch
//!    already holds [`LINGER_MIN_OPS`] (a burst). A lone op at a low rate is committed at
//!    once, so the wait never adds latency when there is nothing to group.
//! 2. The rate is measured on what was committed, not on the batch sizes, so waiting (which
//!    makes batches bigger) does not feed back into the decision to wait.
//!
//! # Why
//! Each commit costs the writer ~30 µs of CPU (`write`, `fdatasync`, the futex wake-ups),
//! whatever its size. At 20,000 msgs/s the batches, taken as they came, held 2.4 ops on
//! average: the writer thread used a third of the gateway's CPU. Waiting 200 µs when loaded
//! gives batches of 7–8 ops there (BENCHMARKS.md, fifth session).

use std::time::{Duration, Instant};

/// How long a loaded batch waits for more ops: a fraction of one commit's time on this disk.
pub(crate) const LINGER: Duration = Duration::from_micros(200);

/// A batch that already holds this many ops when the queue runs dry means a burst.
pub(crate) const LINGER_MIN_OPS: usize = 4;

/// How often the arrival rate is re-measured: short enough to follow a burst within a few
/// commits' worth of time, long enough to hold many ops at the rate that matters.
pub(crate) const WINDOW: Duration = Duration::from_millis(10);

/// The writer's view of the recent arrival rate.
#[derive(Debug)]
pub(crate) struct Linger {
    window_start: Instant,
    window_ops: u64,
    loaded: bool,
}

impl Linger {
    pub(crate) fn new(now: Instant) -> Linger {
        Linger {
            window_start: now,
            window_ops: 0,
            loaded: false,
        }
    }

    /// How long a batch of `staged` ops should wait before its commit (invariant 1).
    pub(crate) fn wait(&self, staged: usize) -> Option<Duration> {
        (self.loaded || staged >= LINGER_MIN_OPS).then_some(LINGER)
    }

    /// Counts a committed batch of `ops` at `now`; re-measures the rate once a window is over.
    pub(crate) fn committed(&mut self, now: Instant, ops: usize) {
        self.window_ops = self.window_ops.saturating_add(ops as u64);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            // At least one op per LINGER over the window: ops × LINGER ≥ elapsed.
            self.loaded = u128::from(self.window_ops) * LINGER.as_nanos() >= elapsed.as_nanos();
            self.window_start = now;
            self.window_ops = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits `batches` batches of `ops` each, evenly over `over`, from `start`.
    fn feed(l: &mut Linger, start: Instant, over: Duration, batches: u32, ops: usize) -> Instant {
        let step = over / batches;
        let mut now = start;
        for _ in 0..batches {
            now += step;
            l.committed(now, ops);
        }
        now
    }

    #[test]
    fn a_lone_op_at_a_low_rate_never_waits() {
        let t0 = Instant::now();
        let mut l = Linger::new(t0);
        assert_eq!(l.wait(1), None);
        // 1,000 ops a second (the 1,000 msgs/s scenario), one per batch.
        feed(&mut l, t0, Duration::from_millis(30), 30, 1);
        assert_eq!(l.wait(1), None);
        assert_eq!(l.wait(3), None);
    }

    #[test]
    fn a_burst_waits_even_before_a_rate_is_known() {
        let l = Linger::new(Instant::now());
        assert_eq!(l.wait(LINGER_MIN_OPS), Some(LINGER));
    }

    #[test]
    fn a_sustained_rate_waits_until_it_falls() {
        let t0 = Instant::now();
        let mut l = Linger::new(t0);
        // 20,000 ops a second in batches of 2: loaded after the first window.
        let t1 = feed(&mut l, t0, Duration::from_millis(10), 100, 2);
        assert_eq!(l.wait(1), Some(LINGER));
        // Exactly one op per LINGER is still loaded (the boundary of invariant 1).
        let t2 = feed(&mut l, t1, Duration::from_millis(10), 50, 1);
        assert_eq!(l.wait(1), Some(LINGER));
        // Then a long quiet spell: the first commit after it ends the window, unloaded.
        l.committed(t2 + Duration::from_secs(5), 1);
        assert_eq!(l.wait(1), None);
    }

    #[test]
    fn bigger_batches_at_the_same_rate_do_not_change_the_decision() {
        let t0 = Instant::now();
        let (mut small, mut big) = (Linger::new(t0), Linger::new(t0));
        // 3,000 ops a second either way: below one per LINGER.
        feed(&mut small, t0, Duration::from_millis(20), 60, 1);
        feed(&mut big, t0, Duration::from_millis(20), 10, 6);
        assert_eq!(small.wait(1), None);
        assert_eq!(big.wait(1), None);
    }
}
