//! Binds the wheel to the executor: one task sleeps on one `async_io::Timer` armed for the
//! earliest pending slot, and fires what is due when it wakes.
//!
//! # Invariants
//! 1. At most one `async_io::Timer` is armed for the whole gateway, for the earliest slot
//!    (`sleeping_until`); arming an earlier deadline kicks the driver to re-arm it.
//! 2. No `RefCell` borrow of the wheel is held while a waker or an owner callback runs: owners
//!    (scopes) may arm, reset or drop timers from inside the callback.
//! 3. `now` is read from the clock once per executor turn (`refresh_now`) and per driver turn;
//!    everything in between reuses the cached value.
//!
//! # Implementation
//! [`Timers`] is a cheap `Rc` handle shared by everything on the executor thread. Firing is
//! bounded per turn ([`FIRE_BUDGET`]); a burst beyond it (thousands of sockets reconnected in the
//! same second share deadlines) yields to the executor between batches instead of starving it.

use super::clock::Clock;
use super::core::{Key, TimerState, Wheel};
use super::handle::TimerHandle;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

/// Timers fired per driver turn before it yields to other tasks: large enough that a normal
/// second's expiries go in one turn, small enough (about 100 µs of work) that a mass expiry
/// cannot hold the executor.
pub const FIRE_BUDGET: usize = 1024;

/// What a timer does when it fires, besides waking whoever awaits it; and what its owner says
/// about re-arming and freeing it (a scope keeps a record of its timers).
pub trait TimerOwner {
    /// Called by the driver, with no wheel borrow held, when a timer of this owner fires.
    fn timer_fired(&self, key: Key, name: &'static str);

    /// Whether this owner's timers may be re-armed now (a cancelled scope's stay dead).
    fn may_rearm(&self) -> bool {
        true
    }

    /// Called, with no wheel borrow held, once a timer of this owner was freed (its handle
    /// dropped).
    fn timer_dropped(&self, _key: Key) {}
}

/// The value each wheel entry carries.
#[derive(Default)]
pub(crate) struct TimerEntry {
    /// The task awaiting this timer (`TimerHandle::fired`).
    pub(crate) waker: Option<Waker>,
    /// Told when the timer fires (a scope cancels itself on its deadlines).
    pub(crate) owner: Option<Weak<dyn TimerOwner>>,
}

/// Bytes of one wheel slab slot with its [`TimerEntry`]: every socket keeps several entries for
/// its whole life, so this is part of the memory per idle socket (88 B before the name became a
/// 1-byte id, the slot's tag, generation and list index were packed together and the filed
/// tick was dropped).
pub const TIMER_SLOT_BYTES: usize = super::core::slot_bytes::<TimerEntry>();
const _: () = assert!(
    TIMER_SLOT_BYTES <= 56,
    "a wheel slot grew past 56 bytes: every idle socket pays for it several times"
);

struct State {
    wheel: Wheel<TimerEntry>,
    /// Fired timers by name, for metrics: a handful of static names, so a short vector.
    fired_by_name: Vec<(&'static str, u64)>,
}

struct Shared {
    clock: Clock,
    state: RefCell<State>,
    /// The cached tick (invariant 3).
    now: Cell<u64>,
    /// The driver task, parked until `sleeping_until` or a kick.
    driver: RefCell<Option<Waker>>,
    /// The tick the driver's timer is armed for (`u64::MAX`: not sleeping on a deadline).
    sleeping_until: Cell<u64>,
    /// Set when the driver must recompute its sleep (earlier deadline, manual advance).
    kicked: Cell<bool>,
}

/// Handle to the gateway's timers. Clone freely; single-threaded.
#[derive(Clone)]
pub struct Timers {
    shared: Rc<Shared>,
}

impl Timers {
    pub fn new(clock: Clock) -> Timers {
        let now = clock.read();
        Timers {
            shared: Rc::new(Shared {
                clock,
                state: RefCell::new(State {
                    wheel: Wheel::new(now),
                    fired_by_name: Vec::new(),
                }),
                now: Cell::new(now),
                driver: RefCell::new(None),
                sleeping_until: Cell::new(u64::MAX),
                kicked: Cell::new(false),
            }),
        }
    }

    /// The cached current tick (ms).
    pub fn now(&self) -> u64 {
        self.shared.now.get()
    }

    /// Reads the clock into the cache; called once per executor turn.
    pub fn refresh_now(&self) -> u64 {
        let now = self.shared.clock.read().max(self.shared.now.get());
        self.shared.now.set(now);
        now
    }

    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Wall-clock unix milliseconds now (from the cached tick).
    pub fn unix_ms(&self) -> u64 {
        self.shared.clock.unix_ms(self.now())
    }

    /// Wall-clock unix seconds now.
    pub fn unix_s(&self) -> u64 {
        self.unix_ms() / 1000
    }

    /// Advances a manual clock and lets the driver fire what became due. Tests only.
    pub fn advance(&self, ms: u64) {
        self.shared.clock.advance(ms);
        self.refresh_now();
        self.kick();
    }

    /// Arms a timer named `name` for tick `deadline`. `owner` is told when it fires.
    pub fn arm(
        &self,
        name: &'static str,
        deadline: u64,
        owner: Option<Weak<dyn TimerOwner>>,
    ) -> TimerHandle {
        let entry = TimerEntry { waker: None, owner };
        let key = self
            .shared
            .state
            .borrow_mut()
            .wheel
            .insert(deadline, name, entry);
        self.kick_if_earlier(deadline);
        TimerHandle::new(key, self.clone())
    }

    /// Timers armed and not yet fired.
    pub fn pending(&self) -> usize {
        self.shared.state.borrow().wheel.armed()
    }

    /// Timer entries alive (armed or not): returns to zero when every handle is dropped.
    pub fn entries(&self) -> usize {
        self.shared.state.borrow().wheel.len()
    }

    /// How many timers fired, by name.
    pub fn fired_by_name(&self) -> Vec<(&'static str, u64)> {
        self.shared.state.borrow().fired_by_name.clone()
    }

    /// Sleeps for `ms` on the wheel.
    pub async fn sleep(&self, ms: u64) {
        let handle = self.arm("sleep", self.now().saturating_add(ms), None);
        handle.fired().await;
    }

    /// Fires up to [`FIRE_BUDGET`] due timers. Returns true if more are due now.
    pub fn turn(&self) -> bool {
        let now = self.refresh_now();
        for _ in 0..FIRE_BUDGET {
            let fired = {
                let mut state = self.shared.state.borrow_mut();
                let Some(key) = state.wheel.poll(now) else {
                    return false;
                };
                let name = state.wheel.deadline(key).map_or("?", |(_, name)| name);
                match state.fired_by_name.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, count)) => *count += 1,
                    None => state.fired_by_name.push((name, 1)),
                }
                state
                    .wheel
                    .get_mut(key)
                    .map(|e| (key, name, e.waker.take(), e.owner.clone()))
            };
            // Invariant 2: callbacks run with no borrow held.
            if let Some((key, name, waker, owner)) = fired {
                if let Some(owner) = owner.and_then(|o| o.upgrade()) {
                    owner.timer_fired(key, name);
                }
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        }
        self.shared
            .state
            .borrow()
            .wheel
            .next_deadline()
            .is_some_and(|t| t <= now)
    }

    /// The driver task: run it once on the executor for the life of the gateway.
    pub async fn drive(self) {
        let mut sleeper = Sleeper {
            timers: self.clone(),
            timer: None,
        };
        loop {
            if self.turn() {
                // More due than the budget: let other tasks run between batches.
                smol::future::yield_now().await;
                continue;
            }
            (&mut sleeper).await;
        }
    }

    // ----------------------------------------------------------------- for TimerHandle

    pub(crate) fn with_wheel<R>(&self, f: impl FnOnce(&mut Wheel<TimerEntry>) -> R) -> R {
        f(&mut self.shared.state.borrow_mut().wheel)
    }

    pub(crate) fn reset(&self, key: Key, deadline: u64) {
        if self.owner_allows_rearm(key) {
            self.with_wheel(|w| w.reset(key, deadline));
            self.kick_if_earlier(deadline);
        }
    }

    pub(crate) fn reset_named(&self, key: Key, deadline: u64, name: &'static str) {
        if self.owner_allows_rearm(key) {
            self.with_wheel(|w| w.reset_named(key, deadline, name));
            self.kick_if_earlier(deadline);
        }
    }

    /// False when `key` has an owner that is gone or refuses (`TimerOwner::may_rearm`); asked
    /// with no wheel borrow held (invariant 2).
    fn owner_allows_rearm(&self, key: Key) -> bool {
        let owner = self.with_wheel(|w| w.get(key).map(|e| e.owner.clone()));
        match owner {
            Some(Some(owner)) => owner.upgrade().is_some_and(|o| o.may_rearm()),
            Some(None) => true,
            None => false,
        }
    }

    /// Frees `key`'s entry and tells its owner (after the borrow: invariant 2).
    pub(crate) fn remove(&self, key: Key) {
        let entry = self.with_wheel(|w| w.remove(key));
        if let Some(owner) = entry.and_then(|e| e.owner).and_then(|o| o.upgrade()) {
            owner.timer_dropped(key);
        }
    }

    pub(crate) fn state(&self, key: Key) -> Option<TimerState> {
        self.shared.state.borrow().wheel.state(key)
    }

    fn kick_if_earlier(&self, deadline: u64) {
        if deadline < self.shared.sleeping_until.get() {
            self.kick();
        }
    }

    fn kick(&self) {
        self.shared.kicked.set(true);
        // Clone out of the borrow: waking may run nothing now, but keep invariant 2 simple.
        let waker = self.shared.driver.borrow().clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The driver's wait: until the earliest slot's tick, or a kick.
struct Sleeper {
    timers: Timers,
    /// The one `async_io::Timer` (invariant 1) and the tick it is armed for.
    timer: Option<(u64, async_io::Timer)>,
}

impl Future for Sleeper {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let shared = self.timers.shared.clone();
        {
            let mut driver = shared.driver.borrow_mut();
            if !driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *driver = Some(cx.waker().clone());
            }
        }
        if shared.kicked.replace(false) {
            shared.sleeping_until.set(u64::MAX);
            return Poll::Ready(());
        }
        let next = shared.state.borrow().wheel.next_deadline();
        let Some(next) = next else {
            shared.sleeping_until.set(u64::MAX);
            self.timer = None;
            return Poll::Pending;
        };
        shared.sleeping_until.set(next);
        if next <= self.timers.refresh_now() {
            return Poll::Ready(());
        }
        let Some(at) = shared.clock.instant_at(next) else {
            // Manual clock: `advance` kicks us.
            return Poll::Pending;
        };
        if self.timer.as_ref().map(|(t, _)| *t) != Some(next) {
            self.timer = Some((next, async_io::Timer::at(at)));
        }
        match self.timer.as_mut() {
            Some((_, timer)) => match Pin::new(timer).poll(cx) {
                Poll::Ready(_) => {
                    self.timer = None;
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            },
            None => Poll::Pending,
        }
    }
}
