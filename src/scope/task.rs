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
use std::pin::Pin;
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
        let this = &mut *self;
        super::slab::register_waker(&this.node.waiters, &mut this.slot, cx.waker());
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
        // Combinators built outside any async block: the future is stored once, not copied
        // into a block's state next to the variable it was moved from.
        let cancelled = Cancelled::new(self.node.clone());
        let raced = async move {
            cancelled.await;
        }
        .or(fut);
        self.spawn_owned(Box::pin(raced), self.downgrade());
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
        self.spawn_owned(Box::pin(f(child)), child_ref.clone());
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

    /// Spawns a task into this scope's task slab; the task frees its own slot when it ends, and
    /// a panic in it cancels `panic_scope` (invariant 3).
    fn spawn_owned(&self, fut: Pin<Box<dyn Future<Output = ()>>>, panic_scope: ScopeRef) {
        let node = self.node.clone();
        let slot = node.tasks.borrow_mut().reserve();
        let task = node.rt.executor.spawn(OwnedTask {
            fut,
            panic_scope,
            owner: Rc::downgrade(&node),
            slot,
        });
        node.tasks.borrow_mut().fill(slot, task);
    }
}

/// A task owned by a scope. Polls its (boxed, stored once) future and catches a panic at the
/// poll, so the scope is cancelled with `Panicked` while the panicking future still exists.
struct OwnedTask {
    fut: Pin<Box<dyn Future<Output = ()>>>,
    /// The scope a panic cancels: the task's own child scope, or the spawning scope.
    panic_scope: ScopeRef,
    /// The scope whose task slab holds this task's handle, and the slot.
    owner: std::rc::Weak<Node>,
    slot: usize,
}

impl Future for OwnedTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| this.fut.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(())) => {}
            Err(payload) => {
                report_panic(&this.panic_scope, &*payload);
            }
        }
        if let Some(node) = this.owner.upgrade() {
            let own = node.tasks.borrow_mut().remove(this.slot);
            // Our own handle: detach, never drop-cancel the running task.
            if let Some(task) = own {
                task.detach();
            }
        }
        Poll::Ready(())
    }
}

fn report_panic(scope: &ScopeRef, payload: &(dyn std::any::Any + Send)) -> CancelReason {
    let path = scope
        .node
        .upgrade()
        .map(|n| n.path().to_string())
        .unwrap_or_else(|| "-".to_owned());
    log::error!(
        "event=panic scope={path} panic={:?}",
        panic_message(payload)
    );
    scope.cancel(CancelReason::Panicked);
    CancelReason::Panicked
}
