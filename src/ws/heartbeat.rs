//! When a session sends its first heartbeat Ping.
//!
//! # Invariants
//! 1. The first Ping comes within the last half of one heartbeat period after the session
//!    starts: never later than `heartbeat_ms` (SPEC §5: a Ping every `heartbeat_s`), never
//!    sooner than half of it. Later Pings follow every `heartbeat_ms`.
//! 2. Sessions started together get first Pings spread over that half period.
//!
//! # Implementation
//! Sockets that connect together — every kiosk reconnecting after a gateway restart, a load
//! generator's batch — would otherwise ping, and be answered, in one burst every period for as
//! long as they live: 10,000 sockets opened in about a second send 10,000 Pings and read 10,000
//! Pongs in that second, every 15 s, and a message relayed then waits behind them. The spread
//! is by session id (ids are consecutive) through Fibonacci hashing, which scatters consecutive
//! integers evenly; no random source is needed.

/// The multiplier of Fibonacci hashing: 2^64 divided by the golden ratio, odd.
const FIBONACCI_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// Milliseconds from the start of session `id` to its first Ping (invariants 1 and 2).
pub fn first_ping_after_ms(id: u64, heartbeat_ms: u64) -> u64 {
    let spread = heartbeat_ms / 2;
    // The hash's high bits are the well-mixed ones.
    let offset = (id.wrapping_mul(FIBONACCI_MULTIPLIER) >> 32) % (spread + 1);
    heartbeat_ms - offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_first_ping_within_the_last_half_period() {
        for heartbeat_ms in [0, 1, 2, 3, 100, 15_000, u64::MAX] {
            for id in (0..2_000).chain([u64::MAX - 1, u64::MAX]) {
                let at = first_ping_after_ms(id, heartbeat_ms);
                assert!(at <= heartbeat_ms, "id {id}: {at} > {heartbeat_ms}");
                assert!(at >= heartbeat_ms - heartbeat_ms / 2, "id {id}: {at}");
            }
        }
    }

    #[test]
    fn heartbeat_first_pings_of_consecutive_sessions_spread_evenly() {
        let heartbeat_ms = 15_000;
        let (lo, width) = (heartbeat_ms / 2, heartbeat_ms / 2 / 10);
        let mut tenths = [0u32; 10];
        for id in 1..=10_000u64 {
            let at = first_ping_after_ms(id, heartbeat_ms);
            let tenth = usize::try_from((at - lo) / width).unwrap_or(9).min(9);
            tenths[tenth] += 1;
        }
        // 1,000 per tenth when even; a burst would put thousands in one.
        for (i, n) in tenths.iter().enumerate() {
            assert!(
                (900..=1_100).contains(n),
                "tenth {i}: {n} of 10,000 ({tenths:?})"
            );
        }
    }
}
