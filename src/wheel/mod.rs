//! The hierarchical deadline wheel: every deadline of the gateway in one structure.
//!
//! - [`core`]: the wheel itself, a pure data structure over `core` + `alloc` (ticks in, keys
//!   out), so it could move to a `no_std` target unchanged; it cancels by key.
//! - [`level`]: the geometry (levels, slots, horizon) as bit arithmetic.
//! - [`clock`]: the one clock (monotonic or manual for tests).
//! - [`driver`]: binds the wheel to async-io: one timer for the earliest slot, bounded firing.
//! - [`handle`]: the RAII handle that cancels on drop.
//!
//! # Invariants
//! See each file's `# Invariants`; only `clock` reads time.

pub mod clock;
pub mod core;
pub mod driver;
pub mod handle;
pub mod level;

pub use self::clock::Clock;
pub use self::core::{Key, TimerState, Wheel, MAX_NAMES, OVERFLOW_NAME};
pub use self::driver::{TimerOwner, Timers, FIRE_BUDGET, TIMER_SLOT_BYTES};
pub use self::handle::TimerHandle;
