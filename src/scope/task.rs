//! Tasks owned by scopes: spawning, running until cancelled, catching panics at the scope.
//!
//! # Invariants
//! 1. A task spawned with [`Scope::spawn`] stops at its next await once its scope is cancelled.
//! 2. A task started with [`Scope::spawn_child`] owns its child scope; the parent owns the task.
//! 3. A panic inside a scope's task cancels that scope with `Panicked` (before the panicking
//!    future is dropped, so the first reason is the panic) and nothing else.
//!
//! # Implementation
//! Each task reserves its slot in the scope's task slab before it is spawned, and frees it
//! (detaching its own handle) when it ends, so the slab holds exactly the running tasks.

use super::node::{Node, Scope, ScopeKind, ScopeRef};
use super::reason::CancelReason;
use smol::future::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll};

/// Future of [`Scope::cancelled`]: resolves with the scope's reason.
pub struct Cancelled {
    node: Rc<Node>,
    /// This waiter's slot in the node's waiter slab while registered.
    slot: Option<usize>,
}

impl Cancelled {
    pub(crate) fn new(node: Rc<Node>) -> Cancelled {
        Cancelled { node, slot: None }
    }
}

impl Future for Cancelled {
    type Output = CancelReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CancelReason> {
        if let Some(reason) = self.node.reason.borrow().clone() {
            return Poll::Ready(reason);
        }
        let waker = cx.waker().clone();
        let mut waiters = self.node.waiters.borrow_mut();
        let slot = self.slot;
        match slot.and_then(|s| waiters.get_mut(s)) {
            Some(existing) => *existing = waker,
            None => {
                let slot = waiters.insert(waker);
                drop(waiters);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.node.waiters.borrow_mut().remove(slot);
        }
    }
}

/// A readable message from a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "non-string panic payload"
    }
}

impl Scope {
    /// Spawns `fut` as a task owned by this scope; it stops at its next await once the scope is
    /// cancelled, and a panic in it cancels this scope with `Panicked`.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        let node = self.node.clone();
        self.spawn_owned(async move {
            let scope_ref = ScopeRef {
                node: Rc::downgrade(&node),
            };
            let cancelled = Cancelled::new(node);
            let work = pin!(AssertUnwindSafe(fut).catch_unwind());
            let outcome = async { Some(cancelled.await) }
                .or(async { work.await.err().map(|p| report_panic(&scope_ref, &*p)) })
                .await;
            let _ = outcome;
        });
    }

    /// Creates a child scope and spawns `f(child)` as a task owned by this scope. The task owns
    /// the child scope: when it returns, the child ends. A panic cancels the child with
    /// `Panicked`; this scope and its other children go on.
    pub fn spawn_child<F, Fut>(&self, kind: ScopeKind, label: &str, f: F) -> ScopeRef
    where
        F: FnOnce(Scope) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        self.spawn_with(self.child(kind, label), f)
    }

    /// Adopts `child` (re-parenting it under this scope) and spawns `f(child)` as a task owned by
    /// this scope, as [`Scope::spawn_child`] does for a new child. This is how an upgraded
    /// WebSocket session moves from its request to the server.
    pub fn spawn_with<F, Fut>(&self, child: Scope, f: F) -> ScopeRef
    where
        F: FnOnce(Scope) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        if !child.is_child_of(self) {
            child.reparent(&self.downgrade());
        }
        let child_ref = child.downgrade();
        let fut = f(child);
        let panic_ref = child_ref.clone();
        self.spawn_owned(async move {
            let mut work = pin!(AssertUnwindSafe(fut).catch_unwind());
            if let Err(payload) = work.as_mut().await {
                // Invariant 3: cancel before the future (holding the child scope) is dropped.
                report_panic(&panic_ref, &*payload);
            }
        });
        child_ref
    }

    /// Runs `fut` inside this scope: `Err(reason)` if the scope is cancelled first (the future is
    /// dropped at that await), `Err(Panicked)` if it panics (the scope is then cancelled with
    /// `Panicked`; its parent and siblings go on).
    pub async fn run<F: Future>(&self, fut: F) -> Result<F::Output, CancelReason> {
        let scope_ref = self.downgrade();
        let cancelled = self.cancelled();
        let work = AssertUnwindSafe(fut).catch_unwind();
        async { Err(cancelled.await) }
            .or(async {
                work.await.map_err(|payload| {
                    report_panic(&scope_ref, &*payload);
                    CancelReason::Panicked
                })
            })
            .await
    }

    /// Spawns a task into this scope's task slab; the task frees its own slot when it ends.
    fn spawn_owned(&self, fut: impl Future<Output = ()> + 'static) {
        let node = self.node.clone();
        let slot = node.tasks.borrow_mut().reserve();
        let weak = Rc::downgrade(&node);
        let task = node.rt.executor.spawn(async move {
            fut.await;
            if let Some(node) = weak.upgrade() {
                let own = node.tasks.borrow_mut().remove(slot);
                // Our own handle: detach, never drop-cancel the running task.
                if let Some(task) = own {
                    task.detach();
                }
            }
        });
        node.tasks.borrow_mut().fill(slot, task);
    }
}

fn report_panic(scope: &ScopeRef, payload: &(dyn std::any::Any + Send)) -> CancelReason {
    let path = scope
        .node
        .upgrade()
        .map(|n| n.path())
        .unwrap_or_else(|| "-".to_owned());
    log::error!(
        "event=panic scope={path} panic={:?}",
        panic_message(payload)
    );
    scope.cancel(CancelReason::Panicked);
    CancelReason::Panicked
}
