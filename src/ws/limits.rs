//! Per-socket abuse limits: a token bucket for `send` and a sliding count of bad frames.
//!
//! # Invariants
//! 1. The bucket holds at most `burst` tokens and refills at `rate` per second; a send takes one.
//! 2. Bad frames are counted in a window of `window_ms`; more than `max` in it closes the socket
//!    with 1008.

/// Token bucket over ticks (ms).
pub struct SendBucket {
    rate_per_s: u64,
    burst: u64,
    /// Tokens in thousandths, so refills at any rate are exact in integer ms.
    milli_tokens: u64,
    last_ms: u64,
}

impl SendBucket {
    pub fn new(rate_per_s: u64, burst: u64, now_ms: u64) -> SendBucket {
        SendBucket {
            rate_per_s,
            burst,
            milli_tokens: burst * 1000,
            last_ms: now_ms,
        }
    }

    /// Takes a token if one is there.
    pub fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.milli_tokens = (self.milli_tokens + elapsed * self.rate_per_s).min(self.burst * 1000);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// Bad frames in a fixed window.
pub struct BadFrames {
    max: u32,
    window_ms: u64,
    window_start: u64,
    count: u32,
}

impl BadFrames {
    pub fn new(max: u32, window_ms: u64, now_ms: u64) -> BadFrames {
        BadFrames {
            max,
            window_ms,
            window_start: now_ms,
            count: 0,
        }
    }

    /// Counts one; true when the limit is now exceeded.
    pub fn record(&mut self, now_ms: u64) -> bool {
        if now_ms >= self.window_start + self.window_ms {
            self.window_start = now_ms;
            self.count = 0;
        }
        self.count += 1;
        self.count > self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let mut b = SendBucket::new(50, 100, 0);
        assert_eq!((0..150).filter(|_| b.take(0)).count(), 100, "burst");
        assert!(!b.take(0));
        assert!(!b.take(19), "19 ms refill 0.95 token");
        assert!(b.take(20), "20 ms refill one token at 50/s");
        assert_eq!(
            (0..100).filter(|_| b.take(1020)).count(),
            50,
            "one second refills 50"
        );
        assert_eq!(
            (0..200).filter(|_| b.take(100_000)).count(),
            100,
            "capped at burst"
        );
    }

    #[test]
    fn bad_frames_over_limit_in_window() {
        let mut b = BadFrames::new(20, 10_000, 0);
        for i in 0..20 {
            assert!(!b.record(i), "frame {i}");
        }
        assert!(b.record(20), "the 21st in 10 s");
        let mut b = BadFrames::new(20, 10_000, 0);
        for i in 0..20 {
            b.record(i);
        }
        assert!(!b.record(10_000), "a new window starts");
    }
}
