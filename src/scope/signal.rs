//! A one-shot broadcast signal (e.g. "the gateway is draining"): fired once, awaited by many.
//!
//! Not a scope, so it does not show in the scope tree: it owns no work, it only tells.

use super::slab::Slab;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Clone, Default)]
pub struct Signal {
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    fired: Cell<bool>,
    waiters: RefCell<Slab<Waker>>,
}

impl Signal {
    pub fn fire(&self) {
        if self.inner.fired.replace(true) {
            return;
        }
        let waiters = self.inner.waiters.borrow_mut().drain();
        for waker in waiters {
            waker.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.inner.fired.get()
    }

    /// Resolves once the signal has fired.
    pub fn wait(&self) -> Wait {
        Wait {
            inner: self.inner.clone(),
            slot: None,
        }
    }
}

pub struct Wait {
    inner: Rc<Inner>,
    slot: Option<usize>,
}

impl Future for Wait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.fired.get() {
            return Poll::Ready(());
        }
        let this = &mut *self;
        super::slab::register_waker(&this.inner.waiters, &mut this.slot, cx.waker());
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.inner.waiters.borrow_mut().remove(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_wakes_every_waiter_once_fired() {
        let signal = Signal::default();
        let a = signal.wait();
        let b = signal.wait();
        assert!(!signal.is_fired());
        signal.fire();
        smol::block_on(async {
            a.await;
            b.await;
        });
        assert!(signal.is_fired());
    }
}
