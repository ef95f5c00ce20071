//! consult-edge: an edge gateway for online medical consultation.
//!
//! Every lifetime is an explicit, owned, observable scope; every deadline lives in one
//! hand-written hierarchical deadline wheel. The contract is `SPEC.md` in the shared folder.
//! The map of this crate, lowest layer first:
//!
//! - `wheel`: hierarchical deadline wheel (core + alloc only) and its async-io driver
//! - `scope`: scope tree: owned tasks and timers, cancellation with reasons, the executor loop
//! - `config`: command line, environment and config-file settings with their defaults
//! - `observe`: logs, W3C trace context, metrics
//! - `store`: the embedded crash-safe store: consultations, messages, refresh state, revocations
//! - `auth`: JWT keys, verification, minting, refresh rotation, revocation
//! - `consult`: consultations: membership, sequencing, fan-out (no transport)
//! - `http`: HTTP/1.1: heads, bodies, limits, routing, responses, the server
//! - `ws`: WebSocket: upgrade, session loop, frames, deadlines, close codes
//! - `kiosk`: the embedded kiosk web client
//! - `gateway`: the composition root: wires every module into `consult-edge serve`
//! - `loadgen`: the load generator (a client: speaks the protocol only)
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod consult;
pub mod gateway;
pub mod http;
pub mod kiosk;
pub mod loadgen;
pub mod observe;
pub mod scope;
pub mod store;
pub mod wheel;
pub mod ws;
