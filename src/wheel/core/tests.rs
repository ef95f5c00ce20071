//! Unit tests of the wheel's invariants, and a property test against a `BTreeMap` model.

use super::*;
use crate::wheel::level::{level_range, MAX_DURATION};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn drain(wheel: &mut Wheel<u32>, now: u64) -> Vec<u32> {
    let mut out = Vec::new();
    while let Some(key) = wheel.poll(now) {
        out.push(*wheel.get(key).expect("fired key is live"));
    }
    out
}

#[test]
fn insert_fires_at_deadline_not_before() {
    let mut w = Wheel::new(0);
    w.insert(10, "t", 1);
    assert_eq!(drain(&mut w, 9), Vec::<u32>::new());
    assert_eq!(drain(&mut w, 10), vec![1]);
    assert_eq!(w.armed(), 0);
    assert_eq!(w.len(), 1, "a fired entry stays until removed");
}

#[test]
fn past_deadline_fires_on_next_poll() {
    let mut w = Wheel::new(1000);
    let k = w.insert(5, "past", 7);
    assert_eq!(w.next_deadline(), Some(1000));
    assert_eq!(drain(&mut w, 1000), vec![7]);
    assert_eq!(w.state(k), Some(TimerState::Fired));
}

#[test]
fn cascade_fires_far_deadlines_on_time() {
    for deadline in [
        63u64,
        64,
        65,
        4095,
        4096,
        4097,
        262_143,
        262_144,
        1 << 32,
        MAX_DURATION - 1,
    ] {
        let mut w = Wheel::new(0);
        w.insert(deadline, "far", 1);
        assert_eq!(
            drain(&mut w, deadline - 1),
            Vec::<u32>::new(),
            "deadline={deadline}"
        );
        assert_eq!(drain(&mut w, deadline), vec![1], "deadline={deadline}");
    }
}

#[test]
fn beyond_horizon_deadline_is_refiled_and_fires_exactly() {
    let mut w = Wheel::new(0);
    let deadline = MAX_DURATION * 3 + 17;
    w.insert(deadline, "very-far", 1);
    assert_eq!(drain(&mut w, deadline - 1), Vec::<u32>::new());
    assert_eq!(drain(&mut w, deadline), vec![1]);
}

#[test]
fn one_slot_fires_in_deadline_order_within_a_tick() {
    let mut w = Wheel::new(0);
    // All in level 1's slot 1 (64..128), inserted out of order.
    for (i, d) in [(0u32, 100u64), (1, 70), (2, 127), (3, 64), (4, 70)] {
        w.insert(d, "t", i);
    }
    assert_eq!(drain(&mut w, 200), vec![3, 1, 4, 0, 2]);
}

#[test]
fn cancel_by_key_prevents_fire_and_is_idempotent() {
    let mut w = Wheel::new(0);
    let k = w.insert(50, "t", 1);
    assert!(w.cancel(k));
    assert!(!w.cancel(k));
    assert_eq!(w.armed(), 0);
    assert_eq!(drain(&mut w, 100), Vec::<u32>::new());
    assert_eq!(w.remove(k), Some(1));
    assert_eq!(w.remove(k), None, "stale key refused");
}

#[test]
fn cancel_after_fire_returns_the_entry_to_idle() {
    let mut w = Wheel::new(0);
    let k = w.insert(5, "t", 1);
    assert_eq!(drain(&mut w, 5), vec![1]);
    assert_eq!(w.state(k), Some(TimerState::Fired));
    assert!(!w.cancel(k), "it was not armed");
    assert_eq!(
        w.state(k),
        Some(TimerState::Idle),
        "a cancelled fired timer no longer reads fired"
    );
}

#[test]
fn remove_after_fire_is_harmless_and_key_is_not_reused() {
    let mut w = Wheel::new(0);
    let k = w.insert(5, "t", 1);
    assert_eq!(drain(&mut w, 5), vec![1]);
    assert_eq!(w.remove(k), Some(1));
    let k2 = w.insert(9, "t", 2);
    assert_ne!(k, k2, "generation differs on reuse");
    assert!(!w.reset(k, 100), "stale key cannot re-arm the new entry");
    assert_eq!(w.deadline(k2), Some((9, "t")));
}

#[test]
fn reset_later_is_lazy_and_fires_at_new_deadline() {
    let mut w = Wheel::new(0);
    let k = w.insert(10, "heartbeat", 1);
    for d in [20u64, 500, 45_000] {
        assert!(w.reset(k, d));
    }
    assert_eq!(
        drain(&mut w, 10),
        Vec::<u32>::new(),
        "old slot re-files lazily"
    );
    assert_eq!(w.armed(), 1);
    assert_eq!(drain(&mut w, 44_999), Vec::<u32>::new());
    assert_eq!(drain(&mut w, 45_000), vec![1]);
}

#[test]
fn reset_earlier_moves_the_entry() {
    let mut w = Wheel::new(0);
    let k = w.insert(10_000, "t", 1);
    assert!(w.reset(k, 3));
    assert_eq!(drain(&mut w, 3), vec![1]);
}

#[test]
fn reset_earlier_within_its_slot_is_lazy_and_fires_on_time() {
    let mut w = Wheel::new(0);
    // Level 1, slot 1: processed at tick 64.
    let k = w.insert(100, "t", 1);
    let before = w.lists[DUE].head;
    assert!(w.reset(k, 70));
    assert_eq!(w.lists[DUE].head, before, "not moved to due");
    assert_eq!(
        w.next_deadline(),
        Some(64),
        "still filed in the slot processed at 64"
    );
    assert_eq!(drain(&mut w, 69), Vec::<u32>::new());
    assert_eq!(drain(&mut w, 70), vec![1]);
    // At the slot's start exactly: fires when the slot is processed.
    let k = w.insert(200, "t", 2);
    assert!(w.reset(k, 192));
    assert_eq!(drain(&mut w, 191), Vec::<u32>::new());
    assert_eq!(drain(&mut w, 192), vec![2]);
}

#[test]
fn reset_after_fire_rearms() {
    let mut w = Wheel::new(0);
    let k = w.insert(3, "t", 1);
    assert_eq!(drain(&mut w, 3), vec![1]);
    assert!(w.reset(k, 8));
    assert_eq!(w.state(k), Some(TimerState::Armed));
    assert_eq!(drain(&mut w, 8), vec![1]);
}

#[test]
fn next_deadline_is_a_lower_bound_of_the_earliest() {
    let mut w = Wheel::new(0);
    assert_eq!(w.next_deadline(), None);
    w.insert(5000, "t", 1);
    let nd = w.next_deadline().expect("armed");
    assert!(nd <= 5000 && nd + level_range(1) > 5000, "nd={nd}");
    w.insert(7, "t", 2);
    assert_eq!(w.next_deadline(), Some(7));
}

#[test]
fn slab_is_reused_after_remove() {
    let mut w = Wheel::with_capacity(0, 4);
    for round in 0..1000u64 {
        let k = w.insert(round + 10, "t", 0);
        w.remove(k);
    }
    assert!(w.slab.len() <= 1, "slab grew to {}", w.slab.len());
}

#[test]
fn slot_is_56_bytes_with_a_32_byte_value() {
    assert_eq!(SLOT_HEADER_BYTES, 24);
    assert_eq!(slot_bytes::<[u64; 4]>(), 56);
}

#[test]
fn names_survive_slot_reuse_and_equal_strings_share_an_id() {
    let mut w = Wheel::new(0);
    let a = w.insert(5, "heartbeat", 1);
    w.remove(a);
    let b = w.insert(6, "idle", 2);
    assert_eq!(
        w.deadline(b),
        Some((6, "idle")),
        "the reused slot takes the new name"
    );
    // The same text from another allocation is the same name.
    let owned: &'static str = Box::leak(String::from("heartbeat").into_boxed_str());
    let c = w.insert(7, owned, 3);
    assert_eq!(w.deadline(c), Some((7, "heartbeat")));
    assert_eq!(w.names.len(), 2, "names: {:?}", w.names);
}

#[test]
fn reset_named_renames_and_rearms() {
    let mut w = Wheel::new(0);
    let k = w.insert(100, "heartbeat", 1);
    assert!(w.reset_named(k, 40, "idle"));
    assert_eq!(w.deadline(k), Some((40, "idle")));
    assert_eq!(drain(&mut w, 39), Vec::<u32>::new());
    assert_eq!(drain(&mut w, 40), vec![1]);
    assert_eq!(
        w.deadline(k),
        Some((40, "idle")),
        "fired under its last name"
    );
    w.remove(k);
    assert!(!w.reset_named(k, 50, "token"), "stale key refused");
}

// ------------------------------------------------------------------ property test vs model

#[derive(Debug, Clone)]
enum Op {
    /// Arm a new timer `delta` ticks from now; `past` arms it that far in the past instead.
    Insert {
        delta: u64,
        past: bool,
    },
    /// Re-arm a live timer; with `rename`, through `reset_named` under `NAMES[rename]`.
    Reset {
        pick: usize,
        delta: u64,
        past: bool,
        rename: Option<usize>,
    },
    Cancel(usize),
    Remove(usize),
    Advance(u64),
}

fn delta() -> impl Strategy<Value = u64> {
    // Spread over every level, and past the horizon.
    prop_oneof![0u64..70, 0u64..5000, 0u64..300_000, 0u64..(1u64 << 38)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (delta(), prop::bool::weighted(0.1)).prop_map(|(delta, past)| Op::Insert { delta, past }),
        2 => (any::<usize>(), delta(), prop::bool::weighted(0.1), prop::option::of(0..NAMES.len()))
            .prop_map(|(pick, delta, past, rename)| Op::Reset { pick, delta, past, rename }),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::Remove),
        3 => prop_oneof![0u64..3, 0u64..100, 0u64..10_000, 0u64..(1u64 << 37)].prop_map(Op::Advance),
    ]
}

/// Names the property test gives and renames timers to; `insert` uses the first.
const NAMES: [&str; 3] = ["t", "idle", "token"];

/// The model: armed timers as id -> the tick they are due (a deadline already past when armed
/// is due at the time it was armed), and every live timer's name.
struct Model {
    now: u64,
    armed: BTreeMap<u32, u64>,
    names: BTreeMap<u32, &'static str>,
    live: Vec<(u32, Key)>,
}

impl Model {
    fn deadline(&self, delta: u64, past: bool) -> u64 {
        if past {
            self.now.saturating_sub(delta)
        } else {
            self.now + delta
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn wheel_matches_btreemap_model(start in 0u64..(1u64 << 40), ops in prop::collection::vec(op(), 1..60)) {
        let mut w: Wheel<u32> = Wheel::new(start);
        let mut m = Model { now: start, armed: BTreeMap::new(), names: BTreeMap::new(), live: Vec::new() };
        let mut next_id = 0u32;
        for op in ops {
            match op {
                Op::Insert { delta, past } => {
                    let deadline = m.deadline(delta, past);
                    let key = w.insert(deadline, NAMES[0], next_id);
                    m.armed.insert(next_id, deadline.max(m.now));
                    m.names.insert(next_id, NAMES[0]);
                    m.live.push((next_id, key));
                    next_id += 1;
                }
                Op::Reset { pick, delta, past, rename } if !m.live.is_empty() => {
                    let (id, key) = m.live[pick % m.live.len()];
                    let deadline = m.deadline(delta, past);
                    match rename {
                        Some(n) => {
                            prop_assert!(w.reset_named(key, deadline, NAMES[n]));
                            m.names.insert(id, NAMES[n]);
                        }
                        None => prop_assert!(w.reset(key, deadline)),
                    }
                    m.armed.insert(id, deadline.max(m.now));
                    prop_assert_eq!(w.deadline(key).map(|(_, name)| name), m.names.get(&id).copied());
                }
                Op::Cancel(pick) if !m.live.is_empty() => {
                    let (id, key) = m.live[pick % m.live.len()];
                    prop_assert_eq!(w.cancel(key), m.armed.remove(&id).is_some());
                }
                Op::Remove(pick) if !m.live.is_empty() => {
                    let (id, key) = m.live.swap_remove(pick % m.live.len());
                    prop_assert_eq!(w.remove(key), Some(id));
                    m.armed.remove(&id);
                    m.names.remove(&id);
                }
                Op::Advance(d) => {
                    m.now += d;
                    let mut fired: Vec<(u64, u32)> = Vec::new();
                    while let Some(key) = w.poll(m.now) {
                        let id = *w.get(key).expect("fired key is live");
                        prop_assert_eq!(w.deadline(key).map(|(_, name)| name), m.names.get(&id).copied(),
                            "fired under another name than its last");
                        let due = m.armed.remove(&id);
                        prop_assert!(due.is_some(), "fired id={} not armed in the model", id);
                        fired.push((due.unwrap_or_default(), id));
                    }
                    prop_assert!(m.armed.values().all(|due| *due > m.now),
                        "not fired by now={}: {:?}", m.now, m.armed);
                    prop_assert!(fired.windows(2).all(|p| p[0].0 <= p[1].0),
                        "fired out of deadline order: {:?}", fired);
                    prop_assert_eq!(w.armed(), m.armed.len());
                }
                _ => {}
            }
        }
    }
}
