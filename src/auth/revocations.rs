//! The in-memory set of revoked login sessions (`sid`s) checked on every token verification.
//!
//! # Invariants
//!
//! - A sid inserted with `until` is reported revoked for every `now < until`; `until` only ever
//!   grows (the latest valid token wins). `purge` drops entries that can no longer answer `true`.
//! - `until` is the latest unix second at which any token of that sid could still be valid
//!   (callers pass `max(refresh exp, access exp)`), so purging at `now >= until` cannot let a
//!   revoked token back in: every such token is already refused as `expired`.
//! - This set is a cache of the store: the caller loads it from the store at start and commits a
//!   new revocation to the store *before* inserting it here and closing sockets.
//!
//! # Implementation
//!
//! Single-threaded (one smol `LocalExecutor`): a `RefCell<HashMap<sid, until>>`, so shared
//! holders use `&Revocations` (or an `Rc`). No borrow is held across an `.await` or a callback.

use std::cell::RefCell;
use std::collections::HashMap;

/// Revoked sids, each with the unix second until which it must stay revoked.
#[derive(Debug, Default)]
pub struct Revocations {
    /// sid → latest unix second at which a token of that sid could still be valid.
    until_by_sid: RefCell<HashMap<String, u64>>,
}

impl Revocations {
    /// An empty set.
    pub fn new() -> Revocations {
        Revocations::default()
    }

    /// Revokes `sid` until `until_unix`; a later `until` for the same sid extends it, an earlier
    /// one is ignored.
    pub fn insert(&self, sid: &str, until_unix: u64) {
        let mut map = self.until_by_sid.borrow_mut();
        match map.get_mut(sid) {
            Some(until) => *until = (*until).max(until_unix),
            None => {
                map.insert(sid.to_owned(), until_unix);
            }
        }
    }

    /// Whether `sid` is revoked at `now_unix`: it was inserted with an `until` after `now_unix`.
    /// Past its `until` an entry answers `false` whether or not it was purged yet, so `purge` is
    /// only memory reclamation and never changes an answer.
    pub fn is_revoked(&self, sid: &str, now_unix: u64) -> bool {
        self.until_by_sid
            .borrow()
            .get(sid)
            .is_some_and(|until| *until > now_unix)
    }

    /// Forgets every sid whose `until` is at or before `now_unix` (no token of it can still be
    /// valid); returns how many were removed.
    pub fn purge(&self, now_unix: u64) -> usize {
        let mut map = self.until_by_sid.borrow_mut();
        let before = map.len();
        map.retain(|_, until| *until > now_unix);
        before - map.len()
    }

    /// Adds many revocations at once (at start, from the store); same rules as `insert`.
    pub fn load<I, S>(&self, entries: I)
    where
        I: IntoIterator<Item = (S, u64)>,
        S: AsRef<str>,
    {
        for (sid, until) in entries {
            self.insert(sid.as_ref(), until);
        }
    }

    /// How many sids are currently held.
    pub fn len(&self) -> usize {
        self.until_by_sid.borrow().len()
    }

    /// Whether no sid is held.
    pub fn is_empty(&self) -> bool {
        self.until_by_sid.borrow().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_insert_then_query_reports_revoked() {
        let r = Revocations::new();
        r.insert("s1", 100);
        assert!(r.is_revoked("s1", 50));
        assert!(!r.is_revoked("s2", 50));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn revocations_later_until_extends_earlier_is_ignored() {
        let r = Revocations::new();
        r.insert("s1", 100);
        r.insert("s1", 200);
        r.insert("s1", 150);
        assert!(r.is_revoked("s1", 199));
        assert!(!r.is_revoked("s1", 200));
        assert_eq!(r.purge(199), 0);
        assert_eq!(r.purge(200), 1);
        assert!(!r.is_revoked("s1", 199));
        assert!(r.is_empty());
    }

    #[test]
    fn revocations_purge_boundary_keeps_until_plus_one() {
        let r = Revocations::new();
        r.load([("a", 10u64), ("b", 11), ("c", 12)]);
        assert_eq!(r.purge(10), 1);
        assert!(!r.is_revoked("a", 10));
        assert!(r.is_revoked("b", 10));
        assert!(r.is_revoked("c", 10));
        assert_eq!(r.len(), 2);
    }
}
