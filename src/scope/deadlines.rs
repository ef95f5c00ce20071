//! Several named deadlines of one scope on one wheel entry: what a scope pays once, not per
//! deadline.
//!
//! A WebSocket session has five deadlines (auth, heartbeat, idle, token, session limit) that all
//! do the same thing when they fire: cancel the session with `Deadline(name)`. Only the earliest
//! can fire first, and once one fires the scope is cancelled and the others are dead; so one
//! wheel entry armed for the earliest of them, under its name, fires exactly when and as the
//! first of five separate timers would. Each idle socket keeps its deadlines for its whole life
//! (issue 6: memory per socket): one entry instead of four or five saves ~200 B per socket.
//!
//! # Invariants
//! 1. The set's wheel entry is armed for the earliest deadline that is set, under that
//!    deadline's name (ties: the one listed first), or disarmed when none is set. So the scope
//!    is cancelled with `Deadline(name)` of the first to come due, logged and counted under
//!    that name, and [`super::Scope::effective_deadline`] sees the earliest.
//! 2. Every deadline that is set is listed by the `/debug/scopes` dump with its own name and
//!    due time, as a separate timer would be.
//! 3. Once the scope is cancelled, setting a deadline changes nothing (like
//!    [`super::ScopeTimer::reset`]): its timers stay dead.
//!
//! # Implementation
//! The ticks live in the scope's node (`Node::deadline_set`), so the dump reads them; the
//! entry is a `Deadline` timer of the node like any other, so firing and cancellation need
//! nothing new. Re-arming is one scan of at most [`MAX_SET_DEADLINES`] ticks and one O(1)
//! wheel reset (a later deadline is only recorded by the wheel).

use super::node::{Node, TimerKind};
use crate::wheel::{Key, TimerHandle};
use std::rc::{Rc, Weak};

/// Deadlines one set can hold: the session has five; a fixed array keeps the set one small
/// allocation.
pub const MAX_SET_DEADLINES: usize = 6;

/// "Not set" in [`DeadlineSet::at`].
const UNSET: u64 = u64::MAX;

/// The deadlines of a set, kept in the scope's node.
pub(crate) struct DeadlineSet {
    /// The set's wheel entry (a `Deadline` timer of the node).
    pub(crate) key: Key,
    /// The deadlines' names, by index.
    pub(crate) names: &'static [&'static str],
    /// Tick each deadline is set for, by index; `UNSET` when not set.
    pub(crate) at: [u64; MAX_SET_DEADLINES],
}

impl DeadlineSet {
    /// The deadlines that are set: `(tick, name)`, in list order.
    pub(crate) fn set(&self) -> impl Iterator<Item = (u64, &'static str)> + '_ {
        self.names
            .iter()
            .zip(self.at.iter())
            .filter(|(_, at)| **at != UNSET)
            .map(|(name, at)| (*at, *name))
    }

    /// The earliest deadline set (invariant 1: ties go to the one listed first).
    fn earliest(&self) -> Option<(u64, &'static str)> {
        self.set().fold(
            None,
            |best: Option<(u64, &'static str)>, (at, name)| match best {
                Some((b, _)) if b <= at => best,
                _ => Some((at, name)),
            },
        )
    }
}

/// The handle of a scope's deadline set ([`super::Scope::deadlines`]); dropping it frees the
/// wheel entry and the set.
pub struct ScopeDeadlines {
    handle: TimerHandle,
    node: Weak<Node>,
}

impl ScopeDeadlines {
    pub(crate) fn new(node: &Rc<Node>, names: &'static [&'static str]) -> ScopeDeadlines {
        debug_assert!(
            !names.is_empty() && names.len() <= MAX_SET_DEADLINES,
            "a deadline set holds 1..={MAX_SET_DEADLINES} deadlines: {names:?}"
        );
        let first = names.first().copied().unwrap_or("deadline");
        let handle = node.arm(first, UNSET, TimerKind::Deadline);
        handle.cancel();
        let previous = node.deadline_set.replace(Some(Box::new(DeadlineSet {
            key: handle.key(),
            names,
            at: [UNSET; MAX_SET_DEADLINES],
        })));
        debug_assert!(previous.is_none(), "one deadline set per scope");
        ScopeDeadlines {
            handle,
            node: Rc::downgrade(node),
        }
    }

    /// Sets deadline `index` (of the names the set was made with) for tick `at`, earlier or
    /// later than before. An index past the names is ignored.
    pub fn set(&self, index: usize, at: u64) {
        self.update(index, at.min(UNSET - 1));
    }

    /// Sets deadline `index` for `ms` after now.
    pub fn set_after(&self, index: usize, ms: u64) {
        let now = self.handle_now();
        self.set(index, now.saturating_add(ms));
    }

    /// Clears deadline `index`: it no longer fires.
    pub fn clear(&self, index: usize) {
        self.update(index, UNSET);
    }

    /// The tick deadline `index` is set for, `None` when it is not set.
    pub fn at(&self, index: usize) -> Option<u64> {
        let node = self.node.upgrade()?;
        node.with_deadline_set(|s| s.at.get(index).copied())
            .flatten()
            .filter(|at| *at != UNSET)
    }

    /// The armed entry's tick and name: the earliest deadline set (invariant 1).
    pub fn deadline(&self) -> (u64, &'static str) {
        self.handle.deadline()
    }

    /// True while a deadline is set and the scope is not cancelled.
    pub fn is_armed(&self) -> bool {
        self.handle.is_armed()
    }

    fn handle_now(&self) -> u64 {
        self.node.upgrade().map_or(0, |n| n.rt.timers.now())
    }

    fn update(&self, index: usize, at: u64) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        // Invariant 3.
        if node.is_cancelled() {
            return;
        }
        let earliest = node.with_deadline_set(|set| {
            if index >= set.names.len() {
                return Err(());
            }
            match set.at.get_mut(index) {
                Some(slot) => *slot = at,
                None => return Err(()),
            }
            Ok(set.earliest())
        });
        let Some(Ok(earliest)) = earliest else {
            return;
        };
        // The wheel is borrowed after the node's set is released.
        match earliest {
            Some((at, name)) => self.handle.reset_named(at, name),
            None => self.handle.cancel(),
        }
    }
}

impl Drop for ScopeDeadlines {
    fn drop(&mut self) {
        // The handle, dropped next, frees the entry and the node forgets it.
        if let Some(node) = self.node.upgrade() {
            node.deadline_set.set(None);
        }
    }
}

impl std::fmt::Debug for ScopeDeadlines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (at, name) = self.deadline();
        write!(f, "ScopeDeadlines(earliest={name} at={at})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::{dump, CancelReason, Runtime, Scope, ScopeKind};
    use crate::wheel::{Clock, Timers};

    const NAMES: &[&str] = &["auth", "heartbeat", "idle"];
    const AUTH: usize = 0;
    const HEARTBEAT: usize = 1;
    const IDLE: usize = 2;

    fn session() -> (Rc<Runtime>, Scope, Scope) {
        let rt = Runtime::new(Timers::new(Clock::manual(0)));
        let server = rt.root(ScopeKind::Server, "s");
        let session = server.child(ScopeKind::Session, "u");
        (rt, server, session)
    }

    /// Advances the manual clock and fires what is due, as the driver would.
    fn advance(rt: &Runtime, ms: u64) {
        rt.timers.advance(ms);
        while rt.timers.turn() {}
    }

    #[test]
    fn deadlines_earliest_fires_first_under_its_own_name() {
        let (rt, _server, session) = session();
        let set = session.deadlines(NAMES);
        set.set(HEARTBEAT, 45_000);
        set.set(IDLE, 30_000);
        assert_eq!(set.deadline(), (30_000, "idle"));
        assert_eq!(rt.timers.entries(), 1, "one wheel entry for the set");
        advance(&rt, 29_999);
        assert!(!session.is_cancelled());
        advance(&rt, 1);
        assert_eq!(session.reason(), Some(CancelReason::Deadline("idle")));
        assert_eq!(rt.timers.fired_by_name(), vec![("idle", 1)]);
        // Later deadlines of a cancelled scope stay dead (invariant 3).
        set.set(HEARTBEAT, 30_001);
        advance(&rt, 100_000);
        assert_eq!(rt.timers.fired_by_name(), vec![("idle", 1)]);
        assert!(!set.is_armed());
    }

    #[test]
    fn deadlines_moved_later_let_the_next_one_fire() {
        let (rt, _server, session) = session();
        let set = session.deadlines(NAMES);
        set.set(HEARTBEAT, 100);
        set.set(IDLE, 300);
        for _ in 0..5 {
            advance(&rt, 60);
            set.set_after(HEARTBEAT, 100);
        }
        // Heartbeat now at 400, idle at 300.
        assert_eq!(set.deadline(), (300, "idle"));
        advance(&rt, 300 - rt.timers.now());
        assert_eq!(session.reason(), Some(CancelReason::Deadline("idle")));
    }

    #[test]
    fn deadlines_tie_goes_to_the_one_listed_first_and_clear_disarms() {
        let (rt, _server, session) = session();
        let set = session.deadlines(NAMES);
        set.set(IDLE, 50);
        set.set(AUTH, 50);
        assert_eq!(set.deadline(), (50, "auth"));
        set.clear(AUTH);
        set.clear(IDLE);
        assert!(!set.is_armed(), "nothing set: disarmed");
        assert_eq!(set.at(IDLE), None);
        advance(&rt, 1_000);
        assert!(!session.is_cancelled());
        set.set(IDLE, 1_010);
        assert_eq!(set.at(IDLE), Some(1_010));
        set.set(99, 1_005);
        assert_eq!(
            set.deadline(),
            (1_010, "idle"),
            "an unknown index is ignored"
        );
        advance(&rt, 10);
        assert_eq!(session.reason(), Some(CancelReason::Deadline("idle")));
    }

    #[test]
    fn deadlines_dump_lists_each_deadline_set_and_drop_frees_the_entry() {
        let (rt, server, session) = session();
        let set = session.deadlines(NAMES);
        set.set(HEARTBEAT, 45_000);
        set.set(IDLE, 1_800_000);
        let _ping = session.alarm("ping", 15_000);
        let tree = dump(&rt);
        let timers = &tree["scopes"][0]["children"][0]["timers"];
        let listed: Vec<(String, u64)> = timers
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| {
                        (
                            t["name"].as_str().unwrap_or("?").to_owned(),
                            t["due_in_ms"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            listed,
            vec![
                ("heartbeat".to_owned(), 45_000),
                ("idle".to_owned(), 1_800_000),
                ("ping".to_owned(), 15_000)
            ]
        );
        assert_eq!(
            session.effective_deadline(),
            Some((45_000, "heartbeat", session.id()))
        );
        drop(set);
        assert_eq!(rt.timers.entries(), 1, "only the ping alarm is left");
        assert!(session.node.with_deadline_set(|_| ()).is_none());
        drop(server);
    }
}
