//! The one clock the gateway reads: monotonic ticks (ms) for deadlines, plus the wall-clock time
//! of tick 0 so token times (unix seconds) map onto ticks.
//!
//! # Invariants
//! 1. Ticks never go backwards (a monotonic `Instant`, or a manual counter only advanced).
//! 2. `unix_ms(t) - unix_ms(0) == t`: wall-clock steps after start do not move deadlines.
//!
//! # Implementation
//! `Monotonic` reads `Instant::now()`; `Manual` is a counter that tests advance by hand, so every
//! deadline can be tested without sleeping.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct Clock {
    kind: Kind,
    /// Wall-clock time (unix ms) at tick 0.
    unix_origin_ms: u64,
}

enum Kind {
    Monotonic { origin: Instant },
    Manual { now: Cell<u64> },
}

impl Clock {
    /// The real clock: tick 0 is now.
    pub fn monotonic() -> Clock {
        let unix_origin_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            kind: Kind::Monotonic {
                origin: Instant::now(),
            },
            unix_origin_ms,
        }
    }

    /// A clock that moves only when [`Clock::advance`] is called; tick 0 is `unix_origin_ms`.
    pub fn manual(unix_origin_ms: u64) -> Clock {
        Clock {
            kind: Kind::Manual { now: Cell::new(0) },
            unix_origin_ms,
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(self.kind, Kind::Manual { .. })
    }

    /// The current tick.
    pub fn read(&self) -> u64 {
        match &self.kind {
            Kind::Monotonic { origin } => origin.elapsed().as_millis() as u64,
            Kind::Manual { now } => now.get(),
        }
    }

    /// Moves a manual clock forward by `ms`; a monotonic clock ignores it.
    pub fn advance(&self, ms: u64) {
        if let Kind::Manual { now } = &self.kind {
            now.set(now.get().saturating_add(ms));
        }
    }

    /// Wall-clock unix milliseconds at tick `tick`.
    pub fn unix_ms(&self, tick: u64) -> u64 {
        self.unix_origin_ms.saturating_add(tick)
    }

    /// The tick at which wall-clock time reaches `unix_ms` (0 if it is before tick 0).
    pub fn tick_at_unix_ms(&self, unix_ms: u64) -> u64 {
        unix_ms.saturating_sub(self.unix_origin_ms)
    }

    /// The `Instant` of tick `tick` on a monotonic clock (`None` on a manual one).
    pub fn instant_at(&self, tick: u64) -> Option<Instant> {
        match &self.kind {
            Kind::Monotonic { origin } => origin.checked_add(Duration::from_millis(tick)),
            Kind::Manual { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_maps_unix_time() {
        let c = Clock::manual(1_700_000_000_000);
        assert_eq!(c.read(), 0);
        c.advance(1500);
        assert_eq!(c.read(), 1500);
        assert_eq!(c.unix_ms(1500), 1_700_000_001_500);
        assert_eq!(c.tick_at_unix_ms(1_700_000_002_000), 2000);
        assert_eq!(c.tick_at_unix_ms(1), 0);
        assert!(c.instant_at(5).is_none());
    }

    #[test]
    fn monotonic_clock_never_goes_back() {
        let c = Clock::monotonic();
        let a = c.read();
        let b = c.read();
        assert!(b >= a);
        assert!(c.instant_at(10).is_some());
    }
}
