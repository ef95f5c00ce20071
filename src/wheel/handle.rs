//! The RAII timer handle: dropping it cancels and frees its wheel entry.
//!
//! # Invariants
//! 1. One handle per wheel entry; the entry lives exactly as long as the handle.
//! 2. Dropping a handle after its timer fired, or after the wheel re-used nothing, is harmless:
//!    the wheel refuses stale keys.
//!
//! # Implementation
//! A handle is a [`Key`] plus the [`Timers`] it belongs to; every method is one O(1) wheel call.

use super::core::{Key, TimerState};
use super::driver::Timers;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct TimerHandle {
    key: Key,
    timers: Timers,
}

impl TimerHandle {
    pub(crate) fn new(key: Key, timers: Timers) -> TimerHandle {
        TimerHandle { key, timers }
    }

    /// Re-arms for tick `deadline` (earlier or later; also after it fired); ignored when the
    /// timer's owner is gone or refuses ([`super::TimerOwner::may_rearm`]).
    pub fn reset(&self, deadline: u64) {
        self.timers.reset(self.key, deadline);
    }

    /// Re-arms for tick `deadline` under the name `name` (see [`super::Wheel::reset_named`]).
    pub fn reset_named(&self, deadline: u64, name: &'static str) {
        self.timers.reset_named(self.key, deadline, name);
    }

    /// Re-arms for `ms` after now.
    pub fn reset_after(&self, ms: u64) {
        self.reset(self.timers.now().saturating_add(ms));
    }

    /// Disarms without freeing; `reset` arms it again.
    pub fn cancel(&self) {
        self.timers.with_wheel(|w| w.cancel(self.key));
    }

    /// True once fired and not re-armed since.
    pub fn has_fired(&self) -> bool {
        self.timers.state(self.key) == Some(TimerState::Fired)
    }

    /// True while armed.
    pub fn is_armed(&self) -> bool {
        self.timers.state(self.key) == Some(TimerState::Armed)
    }

    /// The requested deadline (tick) and the timer's name.
    pub fn deadline(&self) -> (u64, &'static str) {
        self.timers
            .with_wheel(|w| w.deadline(self.key))
            .unwrap_or((u64::MAX, "?"))
    }

    /// Resolves once the timer has fired (immediately if it already has).
    pub fn fired(&self) -> Fired<'_> {
        Fired { handle: self }
    }

    pub fn key(&self) -> Key {
        self.key
    }
}

impl Drop for TimerHandle {
    fn drop(&mut self) {
        self.timers.remove(self.key);
    }
}

impl std::fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (deadline, name) = self.deadline();
        write!(f, "TimerHandle(name={name} deadline={deadline})")
    }
}

/// Future of [`TimerHandle::fired`].
pub struct Fired<'a> {
    handle: &'a TimerHandle,
}

impl Future for Fired<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let key = self.handle.key;
        self.handle.timers.with_wheel(|w| {
            if w.state(key) == Some(TimerState::Fired) {
                return Poll::Ready(());
            }
            if let Some(entry) = w.get_mut(key) {
                if !entry
                    .waker
                    .as_ref()
                    .is_some_and(|k| k.will_wake(cx.waker()))
                {
                    entry.waker = Some(cx.waker().clone());
                }
            }
            Poll::Pending
        })
    }
}
