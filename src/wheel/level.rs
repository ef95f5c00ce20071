//! Geometry of the hierarchical wheel: which level and slot a deadline belongs to.
//!
//! # Invariants
//! 1. Level `L` has [`SLOTS`] slots, each `SLOTS^L` ticks wide; the whole level spans
//!    `SLOTS^(L+1)` ticks. With 1 ms ticks: level 0 = 1 ms slots / 64 ms range, level 1 = 64 ms /
//!    4.1 s, level 2 = 4.1 s / 4.4 min, level 3 = 4.4 min / 4.7 h, level 4 = 4.7 h / 12.4 days,
//!    level 5 = 12.4 days / 2.2 years.
//! 2. A deadline `d` filed while the wheel's time is `e` goes to the level of the highest bit in
//!    which `d` and `e` differ: so a level only ever holds deadlines within the *current* slot of
//!    the level above it, and a slot is processed exactly when time reaches its start.
//! 3. `occupied` bit `s` is set exactly when slot `s` of that level holds at least one entry
//!    (kept by `core.rs`, which owns the lists).
//!
//! # Implementation
//! Pure bit arithmetic over `u64` (only `core`), after the layout of tokio's timer wheel.
//! Finding the next occupied slot is one rotate and one `trailing_zeros` over the level's
//! 64-bit occupancy mask, so the cost does not depend on how many timers are pending.

/// log2 of the fan-out. 64 slots make each level's occupancy exactly one `u64` mask.
pub const SLOT_BITS: u32 = 6;
/// Slots per level.
pub const SLOTS: usize = 1 << SLOT_BITS;
/// Number of levels. Six levels of 64 slots cover 2^36 ms (about 2.2 years): more than the
/// 2^32 ms the design asks for, and far more than the longest deadline we arm (7-day refresh
/// revocation purge).
pub const NUM_LEVELS: usize = 6;
/// The farthest deadline the wheel files exactly, in ticks from now, derived from the geometry.
/// Later deadlines are filed at this horizon and re-filed when it comes due.
pub const MAX_DURATION: u64 = 1 << (SLOT_BITS as usize * NUM_LEVELS);
const _: () = assert!(
    MAX_DURATION >= 1 << 32,
    "the wheel must span at least 2^32 ms"
);

const SLOT_MASK: u64 = (SLOTS as u64) - 1;

/// Ticks covered by one slot of `level`.
pub const fn slot_range(level: usize) -> u64 {
    1 << (SLOT_BITS as usize * level)
}

/// Ticks covered by the whole of `level`.
pub const fn level_range(level: usize) -> u64 {
    slot_range(level) * SLOTS as u64
}

/// The level a deadline `when` belongs to when the wheel's time is `elapsed`.
///
/// `when` must be later than `elapsed` and less than `MAX_DURATION` ticks away.
pub fn level_for(elapsed: u64, when: u64) -> usize {
    debug_assert!(
        when > elapsed && when - elapsed < MAX_DURATION,
        "level_for out of range: elapsed={elapsed}; when={when}"
    );
    // Or-ing the slot mask keeps deadlines in the current 64-tick block at level 0. A deadline
    // less than the horizon away can still differ from `elapsed` above the top level's bits
    // (crossing a 2^36 boundary): it goes to the top level, whose slot then reads as the next
    // turn of that level (see `Occupancy::next_expiration`).
    let masked = ((elapsed ^ when) | SLOT_MASK).min(MAX_DURATION - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    significant / SLOT_BITS as usize
}

/// The slot of `when` at `level`.
pub fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (level * SLOT_BITS as usize)) & SLOT_MASK) as usize
}

/// Occupancy of one level: bit `s` set when slot `s` holds entries.
#[derive(Debug, Default, Clone, Copy)]
pub struct Occupancy(pub u64);

impl Occupancy {
    pub fn set(&mut self, slot: usize) {
        self.0 |= 1 << slot;
    }

    pub fn clear(&mut self, slot: usize) {
        self.0 &= !(1 << slot);
    }

    /// The first occupied slot after the slot that `now` falls in at `level`, in the order
    /// time reaches them, with the tick at which that slot starts. `None` when the level is
    /// empty.
    ///
    /// The slot `now` falls in is searched last: by invariant 2 it can only be occupied on the
    /// top level, by a deadline in that level's next turn (one that crossed a 2^36 boundary).
    pub fn next_expiration(&self, level: usize, now: u64) -> Option<(usize, u64)> {
        if self.0 == 0 {
            return None;
        }
        let first = (slot_for(now, level) + 1) % SLOTS;
        let rotated = self.0.rotate_right(first as u32);
        let slot = (rotated.trailing_zeros() as usize + first) % SLOTS;
        Some((slot, slot_start(level, slot, now)))
    }
}

/// The tick at which slot `slot` of `level` is next processed when the wheel's time is `now`:
/// its start in the current turn of the level, or in the next turn if that is not after `now`
/// (invariant 2: only the top level's slots can be in the next turn).
pub fn slot_start(level: usize, slot: usize, now: u64) -> u64 {
    let level_start = now & !(level_range(level) - 1);
    let start = level_start + slot as u64 * slot_range(level);
    if start <= now {
        // Behind `now` in this turn of the level: it belongs to the next turn.
        start + level_range(level)
    } else {
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_covers_at_least_2_pow_32_ms() {
        assert_eq!(level_range(NUM_LEVELS - 1), MAX_DURATION);
        assert_eq!(slot_range(1), 64);
        assert_eq!(level_range(0), 64);
    }

    #[test]
    fn level_for_boundaries_plus_minus_one() {
        // Within the current 64-tick block: level 0.
        assert_eq!(level_for(0, 1), 0);
        assert_eq!(level_for(0, 63), 0);
        // First tick of the next block: level 1.
        assert_eq!(level_for(0, 64), 1);
        assert_eq!(level_for(63, 64), 1);
        assert_eq!(level_for(64, 127), 0);
        assert_eq!(level_for(0, 4095), 1);
        assert_eq!(level_for(0, 4096), 2);
        assert_eq!(level_for(0, MAX_DURATION - 1), NUM_LEVELS - 1);
        assert_eq!(level_for(4095, 4096), 2);
        // Crossing the horizon's boundary stays on the top level.
        assert_eq!(level_for(1, MAX_DURATION), NUM_LEVELS - 1);
    }

    #[test]
    fn slot_for_boundaries() {
        assert_eq!(slot_for(63, 0), 63);
        assert_eq!(slot_for(64, 0), 0);
        assert_eq!(slot_for(64, 1), 1);
        assert_eq!(slot_for(4095, 1), 63);
        assert_eq!(slot_for(4096, 1), 0);
        assert_eq!(slot_for(4096, 2), 1);
    }

    #[test]
    fn next_expiration_finds_first_slot_at_or_after_now() {
        let mut occ = Occupancy::default();
        assert_eq!(occ.next_expiration(0, 10), None);
        occ.set(12);
        occ.set(3);
        assert_eq!(occ.next_expiration(0, 10), Some((12, 12)));
        assert_eq!(occ.next_expiration(0, 11), Some((12, 12)));
        // Slot 3 is behind time 12: next turn of level 0.
        assert_eq!(occ.next_expiration(0, 12), Some((3, 64 + 3)));
        // Level 1: slots of 64 ticks; time 70 is in slot 1 of block 0.
        let mut occ1 = Occupancy::default();
        occ1.set(2);
        assert_eq!(occ1.next_expiration(1, 70), Some((2, 128)));
        occ1.clear(2);
        assert_eq!(occ1.next_expiration(1, 70), None);
        // The current slot is searched last (top-level wrap): slot 6 comes first.
        let top = NUM_LEVELS - 1;
        let mut occ5 = Occupancy::default();
        occ5.set(0);
        occ5.set(6);
        assert_eq!(occ5.next_expiration(top, 1), Some((6, 6 * slot_range(top))));
        occ5.clear(6);
        assert_eq!(occ5.next_expiration(top, 1), Some((0, MAX_DURATION)));
    }
}
