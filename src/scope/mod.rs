//! Scopes: every unit of work runs inside one, and a scope owns its child scopes, its tasks and
//! its named timers, so nothing it started can outlive it.
//!
//! The tree is server → connection → (request | session), with consultation scopes under the
//! server. A WebSocket session is re-parented from its upgrade request to the server
//! ([`Scope::reparent`]) — the fix for the incident where sockets died with the upgrade request.
//!
//! - [`node`]: the tree, cancellation with reasons, timers, effective deadlines.
//! - [`deadlines`]: several deadlines of one scope on one wheel entry.
//! - [`task`]: tasks owned by scopes, panics caught at the scope.
//! - [`fields`]: a scope's path and trace id as log fields, written without a `String`.
//! - [`registry`]: live scopes and the `/debug/scopes` dump.
//! - [`runtime`]: the executor loop with one cached `now` per turn.
//!
//! # Invariants
//! See [`node`] (tree and cancellation) and [`task`] (ownership of tasks).

pub mod deadlines;
pub mod fields;
pub mod node;
pub mod reason;
pub mod registry;
pub mod runtime;
pub mod signal;
mod slab;
pub mod task;

pub use deadlines::ScopeDeadlines;
pub use fields::{ScopePath, TraceIdHex};
pub use node::{Runtime, Scope, ScopeKind, ScopeRef, ScopeTimer, TimerKind};
pub use reason::CancelReason;
pub use registry::dump;
pub use signal::Signal;
