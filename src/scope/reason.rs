//! Why a scope ended: the first reason wins and is what cleanup code reads.
//!
//! # Invariants
//! 1. A scope's reason is set once; later cancels are no-ops.
//! 2. A child cancelled because an ancestor was carries `Parent(root cause)`, flattened to one
//!    level, so the first deadline in a chain is visible from any scope below it.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// A named deadline of this scope fired ("heartbeat", "idle", "token", ...).
    Deadline(&'static str),
    /// The login session (sid) was revoked: logout, refresh-token reuse, admin.
    Revoked,
    /// The gateway is shutting down.
    Shutdown,
    /// The peer closed the connection or vanished.
    PeerClosed,
    /// A task of this scope panicked.
    Panicked,
    /// The client could not keep up with its outbound queue.
    SlowConsumer,
    /// The scope's work finished and its owner dropped it.
    Finished,
    /// An ancestor was cancelled for this reason (always a root cause, never itself `Parent`).
    Parent(Box<CancelReason>),
}

impl CancelReason {
    /// The reason at the top of a `Parent` chain: what actually happened first.
    pub fn root(&self) -> &CancelReason {
        let mut reason = self;
        while let CancelReason::Parent(inner) = reason {
            reason = inner;
        }
        reason
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelReason::Deadline(name) => write!(f, "deadline:{name}"),
            CancelReason::Revoked => f.write_str("revoked"),
            CancelReason::Shutdown => f.write_str("shutdown"),
            CancelReason::PeerClosed => f.write_str("peer_closed"),
            CancelReason::Panicked => f.write_str("panicked"),
            CancelReason::SlowConsumer => f.write_str("slow_consumer"),
            CancelReason::Finished => f.write_str("finished"),
            CancelReason::Parent(inner) => write!(f, "parent({inner})"),
        }
    }
}
