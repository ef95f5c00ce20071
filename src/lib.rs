//! consult-edge: an edge gateway for online medical consultation.
//!
//! Every lifetime is an explicit, owned, observable scope; every deadline lives in one
//! hand-written hierarchical deadline wheel. The contract is `SPEC.md` in the shared folder;
//! the map of this crate, lowest layer first:
#![forbid(unsafe_code)]

pub mod auth; // JWT keys, verification, minting, refresh rotation, revocation
pub mod config; // command line, environment and config-file settings with their defaults
pub mod consult; // consultations: membership, sequencing, fan-out (no transport)
pub mod http; // HTTP/1.1: heads, bodies, limits, routing, responses, the server
pub mod kiosk; // the embedded kiosk web client
pub mod loadgen;
pub mod observe; // logs, W3C trace context, metrics, the scope dump
pub mod scope; // scope tree: owned tasks and timers, cancellation with reasons, the executor loop
pub mod store; // the embedded crash-safe store: consultations, messages, refresh state, revocations
pub mod wheel; // hierarchical deadline wheel (core + alloc only) and its async-io driver
pub mod ws; // WebSocket: upgrade, session loop, frames, deadlines, close codes // the load generator (a client: speaks the protocol only)
