//! The hierarchical deadline wheel: every deadline of the gateway in one structure.
//!
//! - [`core`]: the wheel itself, a pure data structure over `core` + `alloc` (ticks in, keys
//!   out), so it could move to a `no_std` target unchanged.
//! - [`level`]: the geometry (levels, slots, horizon) as bit arithmetic.
//!
//! # Invariants
//! See each file's `# Invariants`; the wheel never reads a clock itself.

pub mod core;
pub mod level;

pub use self::core::{Key, TimerState, Wheel};
