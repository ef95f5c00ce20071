//! Live sessions by login session (`sid`), so a revocation reaches every socket of that sid.
//!
//! # Invariants
//! 1. Holds only weak references: a session's scope ends with its socket, never kept alive here.
//! 2. Entries of ended sessions are removed when the session unregisters (its guard drops).
//!
//! # Implementation
//! A map from sid to the sessions of that login (usually one). The sid string is stored once,
//! shared by the map key and the guards, and each list starts with room for one session: this
//! index is paid by every idle socket.

use crate::scope::{CancelReason, ScopeRef};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The sessions of one login: (session id, its scope).
type SidSessions = Vec<(u64, ScopeRef)>;

#[derive(Default)]
pub struct LiveSessions {
    by_sid: RefCell<HashMap<Rc<str>, SidSessions>>,
}

/// Unregisters its session when dropped.
pub struct LiveGuard {
    live: Rc<LiveSessions>,
    /// The map's own key (shared, not a copy).
    sid: Rc<str>,
    session_id: u64,
}

impl LiveGuard {
    /// The login-session id this guard registered (the map's key; no copy is kept).
    pub fn sid(&self) -> &str {
        &self.sid
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut by_sid = self.live.by_sid.borrow_mut();
        if let Some(list) = by_sid.get_mut(&*self.sid) {
            list.retain(|(id, _)| *id != self.session_id);
            if list.is_empty() {
                by_sid.remove(&*self.sid);
            }
        }
    }
}

impl LiveSessions {
    /// Registers session `session_id` (scope `scope`) under `sid`.
    pub fn register(self: &Rc<Self>, sid: &str, session_id: u64, scope: ScopeRef) -> LiveGuard {
        let mut by_sid = self.by_sid.borrow_mut();
        let key = match by_sid.get_key_value(sid) {
            Some((key, _)) => key.clone(),
            None => Rc::from(sid),
        };
        by_sid
            .entry(key.clone())
            .or_insert_with(|| Vec::with_capacity(1))
            .push((session_id, scope));
        LiveGuard {
            live: self.clone(),
            sid: key,
            session_id,
        }
    }

    /// Cancels every live session of `sid` with `reason`; returns how many.
    pub fn cancel_sid(&self, sid: &str, reason: CancelReason) -> usize {
        let scopes: Vec<ScopeRef> = self
            .by_sid
            .borrow()
            .get(sid)
            .map(|list| list.iter().map(|(_, s)| s.clone()).collect())
            .unwrap_or_default();
        // Cancel outside the borrow: cancellation wakes tasks that may unregister.
        for scope in &scopes {
            scope.cancel(reason.clone());
        }
        scopes.len()
    }

    /// Cancels every live session (shutdown); returns how many.
    pub fn cancel_all(&self, reason: CancelReason) -> usize {
        let scopes: Vec<ScopeRef> = self
            .by_sid
            .borrow()
            .values()
            .flat_map(|list| list.iter().map(|(_, s)| s.clone()))
            .collect();
        for scope in &scopes {
            scope.cancel(reason.clone());
        }
        scopes.len()
    }

    /// Sessions registered (all sids).
    pub fn len(&self) -> usize {
        self.by_sid.borrow().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
