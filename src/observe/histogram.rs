//! A fixed-bucket histogram rendered in the Prometheus text format.
//!
//! # Invariants
//! - Bucket bounds are finite and strictly increasing (checked by `debug_assert!` in `new`).
//! - `count` equals the sum of the per-bucket counts; rendering is cumulative, so the `+Inf`
//!   bucket always equals `_count`.
//! - NaN observations are dropped, negative ones count as zero: a clock step back must not
//!   make `_sum` decrease.
//!
//! # Implementation
//! Per-bucket (non-cumulative) counts in a `RefCell<Vec<u64>>` with one slot for `+Inf`;
//! single-threaded, like the rest of [`super::metrics`].

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;

/// A fixed-bucket histogram.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds (inclusive, `le`), strictly increasing; `+Inf` is implicit.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); one more slot than `bounds` for `+Inf`.
    counts: RefCell<Vec<u64>>,
    /// Sum of all observations.
    sum: Cell<f64>,
    /// Number of observations.
    count: Cell<u64>,
}

impl Histogram {
    /// An empty histogram over `bounds` (strictly increasing, finite).
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(
            bounds.windows(2).all(|w| matches!(w, [a, b] if a < b)),
            "histogram bounds not increasing: bounds={bounds:?}"
        );
        Histogram {
            bounds,
            counts: RefCell::new(vec![0; bounds.len() + 1]),
            sum: Cell::new(0.0),
            count: Cell::new(0),
        }
    }

    /// Records one observation; NaN is ignored, negatives count as zero.
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let value = value.max(0.0);
        let slot = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.borrow_mut().get_mut(slot) {
            *count += 1;
        }
        self.sum.set(self.sum.get() + value);
        self.count.set(self.count.get() + 1);
    }

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        self.count.get()
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines of metric `name` to `out`.
    pub fn render(&self, out: &mut String, name: &str) {
        let counts = self.counts.borrow();
        let mut cumulative = 0u64;
        for (bound, count) in self.bounds.iter().zip(counts.iter()) {
            cumulative += count;
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                fmt_f64(*bound)
            );
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count.get());
        let _ = writeln!(out, "{name}_sum {}", fmt_f64(self.sum.get()));
        let _ = writeln!(out, "{name}_count {}", self.count.get());
    }
}

/// A float as Prometheus writes it: `+Inf`, `-Inf`, `NaN`, or a plain decimal.
pub fn fmt_f64(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[f64] = &[0.0005, 0.001, 0.0025];

    #[test]
    fn metrics_histogram_boundary_counts_in_its_bucket() {
        let h = Histogram::new(BOUNDS);
        h.observe(0.001);
        h.observe(f64::NAN);
        h.observe(-1.0);
        assert_eq!(h.count(), 2);
        let mut out = String::new();
        h.render(&mut out, "x");
        assert!(
            out.lines().any(|l| l == "x_bucket{le=\"0.0005\"} 1"),
            "{out}"
        );
        assert!(
            out.lines().any(|l| l == "x_bucket{le=\"0.001\"} 2"),
            "{out}"
        );
    }

    #[test]
    fn histogram_above_last_bound_counts_only_in_inf() {
        let h = Histogram::new(BOUNDS);
        h.observe(3.0);
        let mut out = String::new();
        h.render(&mut out, "x");
        assert!(
            out.lines().any(|l| l == "x_bucket{le=\"0.0025\"} 0"),
            "{out}"
        );
        assert!(out.lines().any(|l| l == "x_bucket{le=\"+Inf\"} 1"), "{out}");
        assert!(out.lines().any(|l| l == "x_sum 3"), "{out}");
    }

    #[test]
    fn histogram_float_spelling_matches_prometheus() {
        assert_eq!(fmt_f64(f64::INFINITY), "+Inf");
        assert_eq!(fmt_f64(f64::NEG_INFINITY), "-Inf");
        assert_eq!(fmt_f64(f64::NAN), "NaN");
        assert_eq!(fmt_f64(0.25), "0.25");
    }
}
