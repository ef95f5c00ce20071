//! The hierarchical deadline wheel: a pure data structure over `core` and `alloc`.
//!
//! Time is a tick count (1 tick = 1 ms) handed in by the caller; nothing in this file reads a
//! clock, so it runs unchanged on a `no_std` target and tests drive it tick by tick.
//!
//! # Ground rules
//! - The wheel owns its entries in a slab; callers hold [`Key`]s (index + generation). A stale
//!   key (its entry removed, the slot reused) is refused by every method: cancel-after-fire and
//!   double removal are harmless.
//! - An entry lives from [`Wheel::insert`] to [`Wheel::remove`]; between them it can be armed,
//!   fired, disarmed and re-armed any number of times without allocating.
//!
//! # Invariants
//! 1. An armed entry is linked into exactly one list: a slot of one level, or the `due` list of
//!    entries whose deadline has passed and which [`Wheel::poll`] hands out next.
//! 2. An entry in a slot has a requested `deadline` no earlier than the tick at which that slot
//!    is processed (`level::slot_start`): re-arming to a deadline at or after it is lazy (only
//!    recorded), re-arming earlier moves the entry at once.
//! 3. Every slot whose start is at or before `elapsed` has been emptied: nothing armed is
//!    behind the wheel's time except in `due`.
//! 4. `armed` counts the entries linked into any list.
//!
//! # Implementation
//! Slab of entries with intrusive doubly-linked lists through `u32` indices, one list per slot
//! of each level plus `due`: insert, cancel and re-arm are O(1) and allocation-free once the
//! slab has grown to the working-set size. Every socket keeps several entries for its whole
//! life, so a slot is kept small: the name is a 1-byte index into the wheel's table of names
//! (interned on insert; a handful of static names), the vacant/idle/armed/fired tag is one byte,
//! a vacant slot reuses `next` as its free-list link and holds `T::default()`, and the slot an
//! entry is filed in is known from its list, not stored. Header 24 B, so 56 B with the driver's
//! 32-byte value (asserted in `driver.rs`; it was 88 B). Re-arming to a later deadline (every frame pushes a
//! heartbeat deadline out) only records the new deadline: the entry is re-filed when its old
//! slot comes due, as tokio's wheel does. Processing a slot of a higher level re-files its
//! entries into lower levels (cascading); level-0 slots are one tick wide, so entries reach
//! `due` in deadline order.

extern crate alloc;

use super::level::{level_for, slot_for, slot_start, Occupancy, MAX_DURATION, NUM_LEVELS, SLOTS};
use alloc::vec::Vec;

/// "No entry" in the intrusive lists.
const NIL: u32 = u32::MAX;
/// Index of the `due` list, after the `NUM_LEVELS * SLOTS` slot lists.
const DUE: usize = NUM_LEVELS * SLOTS;
const LISTS: usize = DUE + 1;

/// Names one entry of the wheel. Copyable; refused once its entry is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    index: u32,
    generation: u32,
}

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerState {
    /// Not armed: never armed, disarmed, or fired and handed out.
    Idle,
    /// Linked into a slot or the due list; will be handed out by `poll`.
    Armed,
    /// Handed out by `poll` and not re-armed since.
    Fired,
}

/// Distinct timer names one wheel can hold: the name is stored as a `u8` index. The gateway
/// arms about fifteen static names; an insert past this limit is a bug in the code that names
/// timers, and gets [`OVERFLOW_NAME`] (debug builds assert).
pub const MAX_NAMES: usize = 256;
/// The name given to timers beyond [`MAX_NAMES`] distinct names.
pub const OVERFLOW_NAME: &str = "other";

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

/// A slab slot's state: the entry states plus `Vacant` (on the free list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Vacant,
    Idle,
    Armed,
    Fired,
}

/// One slab slot, vacant or holding an entry. The tag, the name and the list index share one
/// 4-byte word after the links and the generation, so the header is 24 bytes.
struct Slot<T> {
    /// The deadline the owner asked for; not earlier than its slot's start (invariant 2).
    deadline: u64,
    prev: u32,
    /// The next entry of its list while armed; the next vacant slot while vacant.
    next: u32,
    /// Bumped on every removal, so that old keys to this index are refused.
    generation: u32,
    /// The list this entry is linked into while armed (`NO_LIST` otherwise); fewer than 2^16
    /// lists exist (`LISTS`).
    list: u16,
    /// Index into `Wheel::names`: "heartbeat", "idle", "token", ...
    name: u8,
    state: SlotState,
    /// The owner's value; `T::default()` while vacant.
    value: T,
}

/// `list` of an entry not linked into any list.
const NO_LIST: u16 = u16::MAX;
const _: () = assert!(LISTS < NO_LIST as usize, "list indices must fit in a u16");
/// The slot header without the value: what each entry costs besides its `T`.
pub const SLOT_HEADER_BYTES: usize = core::mem::size_of::<Slot<()>>();
const _: () = assert!(
    SLOT_HEADER_BYTES == 24,
    "the wheel's slot header grew past 24 bytes"
);

/// The byte size of one slab slot holding a `T`: what each timer entry costs in the slab.
pub const fn slot_bytes<T>() -> usize {
    core::mem::size_of::<Slot<T>>()
}

/// A hierarchical timing wheel holding values of type `T` with named deadlines.
pub struct Wheel<T> {
    /// The wheel's time: every deadline at or before it has been moved to `due`.
    elapsed: u64,
    slab: Vec<Slot<T>>,
    /// Head of the free list of vacant slab slots.
    free: u32,
    /// Entries in the slab (armed or not).
    len: usize,
    /// Entries linked into a list (invariant 4).
    armed: usize,
    lists: Vec<List>,
    occupied: [Occupancy; NUM_LEVELS],
    /// The names entries refer to by index, in first-use order; at most [`MAX_NAMES`].
    names: Vec<&'static str>,
}

impl<T: Default> Default for Wheel<T> {
    fn default() -> Self {
        Self::new(0)
    }
}

impl<T: Default> Wheel<T> {
    /// An empty wheel whose time starts at `now`.
    pub fn new(now: u64) -> Self {
        Wheel {
            elapsed: now,
            slab: Vec::new(),
            free: NIL,
            len: 0,
            armed: 0,
            lists: alloc::vec![EMPTY; LISTS],
            occupied: [Occupancy::default(); NUM_LEVELS],
            names: Vec::new(),
        }
    }

    /// An empty wheel with room for `capacity` entries before it allocates.
    pub fn with_capacity(now: u64, capacity: usize) -> Self {
        let mut wheel = Self::new(now);
        wheel.slab.reserve(capacity);
        wheel
    }

    /// The wheel's time: the latest `now` it was polled to completion with.
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Entries held (armed or not).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries armed and not yet handed out by `poll`.
    pub fn armed(&self) -> usize {
        self.armed
    }

    /// Adds an entry armed for `deadline` and returns its key.
    pub fn insert(&mut self, deadline: u64, name: &'static str, value: T) -> Key {
        let name = self.intern(name);
        let index = if self.free == NIL {
            let index = self.slab.len() as u32;
            self.slab.push(Slot {
                deadline,
                prev: NIL,
                next: NIL,
                generation: 0,
                list: NO_LIST,
                name,
                state: SlotState::Idle,
                value,
            });
            index
        } else {
            let index = self.free;
            let slot = &mut self.slab[index as usize];
            if slot.state != SlotState::Vacant {
                unreachable_free_list(index);
            }
            self.free = slot.next;
            slot.deadline = deadline;
            slot.prev = NIL;
            slot.next = NIL;
            slot.list = NO_LIST;
            slot.name = name;
            slot.state = SlotState::Idle;
            slot.value = value;
            index
        };
        self.len += 1;
        self.arm(index, deadline);
        Key {
            index,
            generation: self.slab[index as usize].generation,
        }
    }

    /// Re-arms `key` for `deadline`, whatever its state. Returns false for a stale key.
    ///
    /// A later deadline on an entry still in its slot is only recorded (O(1), no relinking).
    pub fn reset(&mut self, key: Key, deadline: u64) -> bool {
        let elapsed = self.elapsed;
        let Some(entry) = self.entry_mut(key) else {
            return false;
        };
        let list = entry.list as usize;
        // Invariant 2: still in its slot and not due before the slot is processed.
        if entry.state == SlotState::Armed
            && list < DUE
            && deadline >= slot_start(list / SLOTS, list % SLOTS, elapsed)
        {
            entry.deadline = deadline;
            return true;
        }
        self.disarm(key.index);
        self.arm(key.index, deadline);
        true
    }

    /// [`Wheel::reset`], and the entry takes the name `name` from now on (what `deadline`, the
    /// driver's metrics and logs report for it). Returns false for a stale key.
    pub fn reset_named(&mut self, key: Key, deadline: u64, name: &'static str) -> bool {
        let Some(current) = self.entry(key).map(|e| e.name) else {
            return false;
        };
        // The common case keeps the name: one pointer comparison, no table search.
        let same = self
            .names
            .get(current as usize)
            .is_some_and(|n| core::ptr::eq(*n, name));
        if !same {
            let id = self.intern(name);
            if let Some(entry) = self.entry_mut(key) {
                entry.name = id;
            }
        }
        self.reset(key, deadline)
    }

    /// Disarms `key` without removing it: an armed entry is unlinked, a fired one goes back to
    /// idle (so whoever awaits it waits again). Returns true if it was armed.
    pub fn cancel(&mut self, key: Key) -> bool {
        let state = self.entry(key).map(|e| e.state);
        match state {
            Some(SlotState::Armed) => {
                self.disarm(key.index);
                true
            }
            Some(SlotState::Fired) => {
                if let Some(entry) = self.entry_mut(key) {
                    entry.state = SlotState::Idle;
                }
                false
            }
            _ => false,
        }
    }

    /// Removes `key`'s entry (disarming it) and returns its value; `None` for a stale key.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        self.entry(key)?;
        self.disarm(key.index);
        let free = self.free;
        let slot = &mut self.slab[key.index as usize];
        slot.state = SlotState::Vacant;
        slot.next = free;
        slot.generation = slot.generation.wrapping_add(1);
        let value = core::mem::take(&mut slot.value);
        self.free = key.index;
        self.len -= 1;
        Some(value)
    }

    /// The state of `key`'s entry, `None` for a stale key.
    pub fn state(&self, key: Key) -> Option<TimerState> {
        self.entry(key).map(|e| match e.state {
            SlotState::Armed => TimerState::Armed,
            SlotState::Fired => TimerState::Fired,
            SlotState::Idle | SlotState::Vacant => TimerState::Idle,
        })
    }

    /// The requested deadline and name of `key`'s entry.
    pub fn deadline(&self, key: Key) -> Option<(u64, &'static str)> {
        self.entry(key).map(|e| (e.deadline, self.name_of(e.name)))
    }

    pub fn get(&self, key: Key) -> Option<&T> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        self.entry_mut(key).map(|e| &mut e.value)
    }

    /// The earliest tick at which `poll` may hand something out: now if anything is due, else
    /// the start of the earliest occupied slot (which may hold only lazily re-armed entries, so
    /// this is a lower bound, never later than the true next deadline).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.lists[DUE].head != NIL {
            return Some(self.elapsed);
        }
        self.next_slot().map(|(_, _, start)| start)
    }

    /// Hands out the next entry whose deadline is at or before `now`, marking it fired; `None`
    /// when nothing more is due. Call it in a loop, bounded by the caller's budget per turn.
    pub fn poll(&mut self, now: u64) -> Option<Key> {
        loop {
            let head = self.lists[DUE].head;
            if head != NIL {
                self.unlink(head);
                let slot = &mut self.slab[head as usize];
                slot.state = SlotState::Fired;
                return Some(Key {
                    index: head,
                    generation: slot.generation,
                });
            }
            match self.next_slot() {
                Some((level, slot, start)) if start <= now => self.process_slot(level, slot, start),
                _ => {
                    if now > self.elapsed {
                        self.elapsed = now;
                    }
                    return None;
                }
            }
        }
    }

    /// The index of `name` in the table of names, adding it on first use.
    fn intern(&mut self, name: &'static str) -> u8 {
        // Bounded by MAX_NAMES; pointer equality first, the usual case for a static name.
        let found = self
            .names
            .iter()
            .position(|n| core::ptr::eq(*n, name))
            .or_else(|| self.names.iter().position(|n| *n == name));
        let index = match found {
            Some(index) => index,
            None if self.names.len() < MAX_NAMES - 1 => {
                self.names.push(name);
                self.names.len() - 1
            }
            None => {
                debug_assert!(false, "more than {MAX_NAMES} timer names: {name}");
                match self.names.iter().position(|n| *n == OVERFLOW_NAME) {
                    Some(index) => index,
                    None => {
                        self.names.push(OVERFLOW_NAME);
                        self.names.len() - 1
                    }
                }
            }
        };
        index as u8
    }

    fn name_of(&self, id: u8) -> &'static str {
        self.names
            .get(id as usize)
            .copied()
            .unwrap_or(OVERFLOW_NAME)
    }

    /// The earliest occupied slot: lowest level first (a level only holds deadlines inside the
    /// current slot of the level above, so the lowest non-empty level is the earliest).
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        (0..NUM_LEVELS).find_map(|level| {
            self.occupied[level]
                .next_expiration(level, self.elapsed)
                .map(|(slot, start)| (level, slot, start))
        })
    }

    /// Advances time to `start` and empties slot `slot` of `level`: due entries go to `due` in
    /// list order, the rest are re-filed (cascade, or a lazily re-armed deadline).
    fn process_slot(&mut self, level: usize, slot: usize, start: u64) {
        debug_assert!(
            start >= self.elapsed,
            "slot behind the wheel: start={start}; elapsed={}; level={level}; slot={slot}",
            self.elapsed
        );
        self.elapsed = start;
        let list = level * SLOTS + slot;
        // Bounded: each entry of the slot is moved exactly once; re-filed entries land in a
        // lower level or a later slot, never back in this one.
        let mut index = self.lists[list].head;
        self.lists[list] = EMPTY;
        self.occupied[level].clear(slot);
        while index != NIL {
            let entry = &mut self.slab[index as usize];
            if entry.state != SlotState::Armed {
                unreachable_free_list(index);
            }
            let next = entry.next;
            entry.list = NO_LIST;
            entry.prev = NIL;
            entry.next = NIL;
            entry.state = SlotState::Idle;
            let deadline = entry.deadline;
            self.armed -= 1;
            self.arm(index, deadline);
            index = next;
        }
    }

    /// Links entry `index` (not linked) for `deadline`.
    fn arm(&mut self, index: u32, deadline: u64) {
        let elapsed = self.elapsed;
        let list = if deadline <= elapsed {
            DUE
        } else {
            // Farther than the wheel spans: file at the horizon, re-filed when it comes due.
            let filed = deadline.min(elapsed + (MAX_DURATION - 1));
            let level = level_for(elapsed, filed);
            let slot = slot_for(filed, level);
            self.occupied[level].set(slot);
            level * SLOTS + slot
        };
        let entry = &mut self.slab[index as usize];
        entry.deadline = deadline;
        entry.state = SlotState::Armed;
        self.push_back(list, index);
        self.armed += 1;
    }

    /// Unlinks entry `index` if it is armed and marks it idle.
    fn disarm(&mut self, index: u32) {
        if self.slab[index as usize].state == SlotState::Armed {
            self.unlink(index);
            self.slab[index as usize].state = SlotState::Idle;
        }
    }

    fn push_back(&mut self, list: usize, index: u32) {
        let tail = self.lists[list].tail;
        let entry = &mut self.slab[index as usize];
        entry.list = list as u16;
        entry.prev = tail;
        entry.next = NIL;
        if tail == NIL {
            self.lists[list].head = index;
        } else {
            self.slab[tail as usize].next = index;
        }
        self.lists[list].tail = index;
    }

    /// Unlinks an armed entry from its list (O(1)), keeping occupancy bits exact.
    fn unlink(&mut self, index: u32) {
        let entry = &mut self.slab[index as usize];
        if entry.state == SlotState::Vacant {
            unreachable_free_list(index);
        }
        let (list, prev, next) = (entry.list as usize, entry.prev, entry.next);
        entry.list = NO_LIST;
        entry.prev = NIL;
        entry.next = NIL;
        debug_assert!(list < LISTS, "unlink of an unlinked entry: index={index}");
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            self.slab[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            self.slab[next as usize].prev = prev;
        }
        if list != DUE && self.lists[list].head == NIL {
            self.occupied[list / SLOTS].clear(list % SLOTS);
        }
        self.armed -= 1;
    }

    /// The live entry `key` names: its generation matches and its slot is not vacant.
    fn entry(&self, key: Key) -> Option<&Slot<T>> {
        self.slab
            .get(key.index as usize)
            .filter(|s| s.generation == key.generation && s.state != SlotState::Vacant)
    }

    fn entry_mut(&mut self, key: Key) -> Option<&mut Slot<T>> {
        self.slab
            .get_mut(key.index as usize)
            .filter(|s| s.generation == key.generation && s.state != SlotState::Vacant)
    }
}

/// The free list and the lists only ever hold the right kind of slab slot; reaching this is a
/// bug in this file, never something a caller or a client can cause.
#[cold]
fn unreachable_free_list(index: u32) -> ! {
    panic!("deadline wheel slab corrupted at index={index}")
}

#[cfg(test)]
mod tests;
