//! The executor loop: one `LocalExecutor`, the wheel's driver task, and one cached `now` per
//! executor turn.
//!
//! # Invariants
//! 1. The cached tick is refreshed before every batch of at most [`TURN_TASKS`] task polls.
//! 2. Between batches the loop yields to `async_io::block_on`, which polls the reactor, so I/O
//!    is seen even while tasks keep each other busy.

use super::node::Runtime;
use std::future::Future;
use std::rc::Rc;

/// Task polls per executor turn before the clock is read again and the reactor polled: small
/// enough that `now` is stale by well under a millisecond, large enough to amortise both.
pub const TURN_TASKS: usize = 128;

impl Runtime {
    /// Runs `fut` to completion on this runtime's executor, with the wheel's driver running.
    pub fn block_on<T: 'static>(self: &Rc<Self>, fut: impl Future<Output = T> + 'static) -> T {
        let main = self.executor.spawn(fut);
        let driver = self.executor.spawn(self.timers.clone().drive());
        let rt = self.clone();
        let out = async_io::block_on(async move {
            loop {
                rt.timers.refresh_now();
                let mut ran = 0;
                while ran < TURN_TASKS && rt.executor.try_tick() {
                    ran += 1;
                }
                if main.is_finished() {
                    return main.await;
                }
                if ran == 0 {
                    // Nothing runnable: sleep in the reactor until a task is woken, run it.
                    rt.executor.tick().await;
                } else {
                    smol::future::yield_now().await;
                }
            }
        });
        drop(driver);
        out
    }
}
