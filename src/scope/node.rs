//! A scope: a node of the lifetime tree that owns child scopes, tasks and named timers.
//!
//! # Invariants
//! 1. A node's parent outlives it in memory (children hold a strong `Rc` to the parent; parents
//!    hold `Weak` children), so the tree has no reference cycle and a path can always be built.
//! 2. Once cancelled, a node stays cancelled with its first reason; its children are cancelled
//!    with `Parent(reason)`, its timers disarmed, its waiters woken — all in one call.
//! 3. No `RefCell` borrow of a node is held while foreign code runs (wakers, task drops, child
//!    cancellation), so cancellation can re-enter the tree safely.
//! 4. Cancelling a deep tree is a loop over an explicit work list, never recursion.
//!
//! # Implementation
//! Children, tasks and waiters live in small index-stable slabs so removal is O(1) even under
//! the server scope's ten thousand connections. Dropping the owning [`Scope`] handle cancels the
//! node with `Finished` and drops the tasks it still owns (which cancels them at once).

use super::deadlines::{DeadlineSet, ScopeDeadlines};
use super::fields::{ScopePath, TraceIdHex, TRACE_ID_BYTES};
use super::reason::CancelReason;
use super::registry::Registry;
use super::slab::{LazySlab, Slab};
use crate::wheel::{Key, TimerHandle, TimerOwner, Timers};
use smol::LocalExecutor;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::task::Waker;

/// What a scope stands for; printed in paths and the scope dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Server,
    Connection,
    Request,
    Session,
    Consultation,
    Task,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Server => "server",
            ScopeKind::Connection => "conn",
            ScopeKind::Request => "req",
            ScopeKind::Session => "session",
            ScopeKind::Consultation => "consult",
            ScopeKind::Task => "task",
        }
    }
}

/// How a scope timer acts when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Cancels the scope with `Deadline(name)`.
    Deadline,
    /// Only wakes whoever awaits it (a heartbeat ping is due, a warning is due).
    Alarm,
}

/// A timer of this scope. Its name lives in the wheel entry (`Wheel::deadline`), not here.
pub(crate) struct TimerRec {
    pub(crate) key: Key,
    pub(crate) kind: TimerKind,
}

/// What every scope of one executor shares.
pub struct Runtime {
    pub executor: LocalExecutor<'static>,
    pub timers: Timers,
    pub(crate) registry: Registry,
    next_id: Cell<u64>,
}

impl Runtime {
    pub fn new(timers: Timers) -> Rc<Runtime> {
        Rc::new(Runtime {
            executor: LocalExecutor::new(),
            timers,
            registry: Registry::default(),
            next_id: Cell::new(1),
        })
    }

    /// Live scopes (registered and not yet dropped).
    pub fn live_scopes(&self) -> usize {
        self.registry.len()
    }

    /// A new root scope (the server's).
    pub fn root(self: &Rc<Self>, kind: ScopeKind, label: &str) -> Scope {
        Scope::new_node(self.clone(), kind, label, None)
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }
}

pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) kind: ScopeKind,
    /// Boxed, not a `String`, and in a `Cell`, not a `RefCell` (read by taking it out and
    /// putting it back): 16 B of every scope. Read with [`Node::label`].
    pub(crate) label: Cell<Box<str>>,
    /// Tick the scope was created at.
    pub(crate) created_at: u64,
    pub(crate) rt: Rc<Runtime>,
    /// The parent and this node's slot in the parent's `children` (invariant 1).
    pub(crate) parent: RefCell<Option<(Rc<Node>, usize)>>,
    pub(crate) children: RefCell<LazySlab<Weak<Node>>>,
    /// `Some` once cancelled (invariant 2).
    pub(crate) reason: RefCell<Option<CancelReason>>,
    /// Tasks awaiting cancellation.
    pub(crate) waiters: RefCell<Slab<Waker>>,
    /// Tasks this scope owns; dropped (cancelled at once) when the owning handle drops.
    pub(crate) tasks: RefCell<LazySlab<smol::Task<()>>>,
    pub(crate) timers: RefCell<Vec<TimerRec>>,
    /// This node's slot in the registry; a `u32` packs with the small fields (8 B of every
    /// scope). `u32::MAX` if the registry ever held more slots (4 billion scopes: not in memory).
    pub(crate) registry_slot: u32,
    /// A W3C trace id for logs, set by the session or request that runs here; kept as its 16
    /// bytes (a hex `String` cost every session another allocation).
    pub(crate) trace_id: Cell<Option<[u8; TRACE_ID_BYTES]>>,
    /// This node, for timer owners and cancellation; set once at creation (`Rc::new_cyclic`).
    pub(crate) self_weak: Weak<Node>,
    /// Run once with the reason when this node is cancelled ([`Scope::on_cancel`]).
    pub(crate) on_cancel: Cell<Option<CancelHook>>,
    /// The deadlines sharing one wheel entry ([`Scope::deadlines`]); `None` for most scopes.
    /// A `Cell` (8 B less than a `RefCell`): reached only through [`Node::with_deadline_set`].
    pub(crate) deadline_set: Cell<Option<Box<DeadlineSet>>>,
}

/// Every scope costs a `Node` (in an `Rc`: +16 B): a session and half a consultation per socket.
/// 264 B keeps the allocation in glibc's 288-byte size class (it was 304 B, in the 320 class).
const _: () = assert!(
    std::mem::size_of::<Node>() <= 264,
    "the scope node grew: every socket pays for it"
);

/// What [`Scope::on_cancel`] runs.
pub(crate) type CancelHook = Box<dyn FnOnce(&CancelReason)>;

impl Drop for Node {
    fn drop(&mut self) {
        if self.registry_slot != u32::MAX {
            self.rt.registry.remove(self.registry_slot as usize);
        }
        if let Some((parent, slot)) = self.parent.borrow_mut().take() {
            parent.children.borrow_mut().remove(slot);
        }
    }
}

impl TimerOwner for Node {
    fn timer_fired(&self, key: Key, name: &'static str) {
        let kind = self
            .timers
            .borrow()
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.kind);
        match kind {
            Some(TimerKind::Deadline) => {
                log::info!(
                    "event=deadline_fired deadline={name} scope={} trace_id={}",
                    self.path(),
                    self.trace_id_hex()
                );
                self.cancel(CancelReason::Deadline(name));
            }
            Some(TimerKind::Alarm) => {
                log::debug!("event=alarm_fired alarm={name} scope={}", self.path());
            }
            None => {}
        }
    }

    /// A cancelled scope's timers stay dead (invariant 2).
    fn may_rearm(&self) -> bool {
        !self.is_cancelled()
    }

    fn timer_dropped(&self, key: Key) {
        self.forget_timer(key);
    }
}

impl Node {
    /// A copy of the label.
    pub(crate) fn label(&self) -> String {
        let label = self.label.take();
        let copy = label.to_string();
        self.label.set(label);
        copy
    }

    /// Runs `f` on the deadline set, if there is one. `f` runs no foreign code (it only reads or
    /// writes the set), so taking the set out for its duration is never observed.
    pub(crate) fn with_deadline_set<R>(&self, f: impl FnOnce(&mut DeadlineSet) -> R) -> Option<R> {
        let mut set = self.deadline_set.take()?;
        let out = f(&mut set);
        self.deadline_set.set(Some(set));
        Some(out)
    }

    /// The trace id as a log field: 32 lowercase hex digits, `-` if none was set.
    pub(crate) fn trace_id_hex(&self) -> TraceIdHex {
        TraceIdHex(self.trace_id.get())
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.reason.borrow().is_some()
    }

    /// `kind:id` segments from the root down, e.g. `server:1/conn:7/session:9`, written
    /// into the formatter when shown (no `String`: it is in every session's log lines).
    pub(crate) fn path(&self) -> ScopePath<'_> {
        ScopePath(self)
    }

    /// Cancels this node and everything below it (invariants 2-4).
    pub(crate) fn cancel(&self, reason: CancelReason) {
        let Some(me) = self.self_weak.upgrade() else {
            return;
        };
        // This node first, then its descendants from `work`, in the order a stack seeded
        // with this node gives; `work` allocates only when there are children (a session,
        // a request, a consultation usually has none: one allocation per cancel saved).
        let mut first = Some((me, reason));
        let mut work: Vec<(Rc<Node>, CancelReason)> = Vec::new();
        while let Some((node, reason)) = first.take().or_else(|| work.pop()) {
            if node.is_cancelled() {
                continue;
            }
            *node.reason.borrow_mut() = Some(reason.clone());
            let timers = node.rt.timers.clone();
            for rec in node.timers.borrow().iter() {
                timers.with_wheel(|w| w.cancel(rec.key));
            }
            for child in node
                .children
                .borrow()
                .iter()
                .filter_map(|(_, c)| c.upgrade())
            {
                // Flattened to the root cause: a deep tree must not build a deep reason.
                let inherited = CancelReason::Parent(Box::new(reason.root().clone()));
                work.push((child, inherited));
            }
            let waiters = node.waiters.borrow_mut().drain();
            for waker in waiters {
                waker.wake();
            }
            // Invariant 3: no borrow of the node is held while the hook runs.
            if let Some(hook) = node.on_cancel.take() {
                hook(&reason);
            }
        }
    }

    /// Adds a timer owned by this node.
    pub(crate) fn arm(&self, name: &'static str, at: u64, kind: TimerKind) -> TimerHandle {
        let owner: Weak<dyn TimerOwner> = self.self_weak.clone();
        let handle = self.rt.timers.arm(name, at, Some(owner));
        self.timers.borrow_mut().push(TimerRec {
            key: handle.key(),
            kind,
        });
        if self.is_cancelled() {
            handle.cancel();
        }
        handle
    }

    pub(crate) fn forget_timer(&self, key: Key) {
        self.timers.borrow_mut().retain(|t| t.key != key);
    }
}

/// The owning handle of a scope: dropping it cancels the scope (`Finished`, or `Panicked` when
/// dropped by a panic, unless it already has a reason) and drops the tasks it owns.
pub struct Scope {
    pub(crate) node: Rc<Node>,
}

impl Scope {
    pub(crate) fn new_node(
        rt: Rc<Runtime>,
        kind: ScopeKind,
        label: &str,
        parent: Option<&Rc<Node>>,
    ) -> Scope {
        let id = rt.next_id.get();
        rt.next_id.set(id + 1);
        let node = Rc::new_cyclic(|weak: &Weak<Node>| Node {
            id,
            kind,
            label: Cell::new(label.into()),
            created_at: rt.timers.now(),
            rt: rt.clone(),
            parent: RefCell::new(None),
            children: RefCell::new(LazySlab::default()),
            reason: RefCell::new(None),
            waiters: RefCell::new(Slab::default()),
            tasks: RefCell::new(LazySlab::default()),
            timers: RefCell::new(Vec::new()),
            registry_slot: u32::try_from(rt.registry.insert(weak.clone())).unwrap_or(u32::MAX),
            trace_id: Cell::new(None),
            self_weak: weak.clone(),
            on_cancel: Cell::new(None),
            deadline_set: Cell::new(None),
        });
        let scope = Scope { node };
        if let Some(parent) = parent {
            scope.attach(parent);
        }
        scope
    }

    fn attach(&self, parent: &Rc<Node>) {
        let slot = parent
            .children
            .borrow_mut()
            .insert(Rc::downgrade(&self.node));
        *self.node.parent.borrow_mut() = Some((parent.clone(), slot));
        let parent_reason = parent.reason.borrow().clone();
        if let Some(reason) = parent_reason {
            self.node.cancel(CancelReason::Parent(Box::new(reason)));
        }
    }

    fn detach(&self) {
        let old = self.node.parent.borrow_mut().take();
        if let Some((parent, slot)) = old {
            parent.children.borrow_mut().remove(slot);
        }
    }

    /// A child scope of this one.
    pub fn child(&self, kind: ScopeKind, label: &str) -> Scope {
        Scope::new_node(self.node.rt.clone(), kind, label, Some(&self.node))
    }

    /// Moves this scope under `new_parent`: it stops being cancelled with its old parent. This is
    /// how a WebSocket session leaves its upgrade request for the server.
    pub fn reparent(&self, new_parent: &ScopeRef) {
        let Some(parent) = new_parent.node.upgrade() else {
            self.cancel(CancelReason::Parent(Box::new(CancelReason::Finished)));
            return;
        };
        self.detach();
        self.attach(&parent);
        log::debug!("event=scope_reparented scope={}", self.path());
    }

    pub fn cancel(&self, reason: CancelReason) {
        self.node.cancel(reason);
    }

    /// True when `parent` is this scope's parent.
    pub fn is_child_of(&self, parent: &Scope) -> bool {
        self.node
            .parent
            .borrow()
            .as_ref()
            .is_some_and(|(p, _)| Rc::ptr_eq(p, &parent.node))
    }

    pub fn is_cancelled(&self) -> bool {
        self.node.is_cancelled()
    }

    /// The reason this scope was cancelled, if it was.
    pub fn reason(&self) -> Option<CancelReason> {
        self.node.reason.borrow().clone()
    }

    /// Runs `hook` once with the reason when this scope is cancelled (at once if it already
    /// is), inside `cancel`: it must be short; work that waits is spawned from it. Replaces an
    /// earlier hook. Costs one small box, where a task awaiting [`Scope::cancelled`] costs a
    /// task and its future (a consultation's close on its deadlines: ~600 B).
    pub fn on_cancel(&self, hook: impl FnOnce(&CancelReason) + 'static) {
        let reason = self.node.reason.borrow().clone();
        match reason {
            Some(reason) => hook(&reason),
            None => self.node.on_cancel.set(Some(Box::new(hook))),
        }
    }

    /// Resolves with the reason once this scope is cancelled.
    pub fn cancelled(&self) -> super::task::Cancelled {
        super::task::Cancelled::new(self.node.clone())
    }

    pub fn id(&self) -> u64 {
        self.node.id
    }

    pub fn kind(&self) -> ScopeKind {
        self.node.kind
    }

    /// This scope's path as it is now (see [`ScopePath`]): shown with `{}`, or
    /// `.to_string()`.
    pub fn path(&self) -> ScopePath<'_> {
        self.node.path()
    }

    pub fn set_label(&self, label: &str) {
        self.node.label.set(label.into());
    }

    /// Sets the trace id from its 32 hex digits; anything else clears it.
    pub fn set_trace_id(&self, trace_id: &str) {
        self.node.trace_id.set(parse_trace_id(trace_id));
    }

    /// Sets the trace id from its 16 bytes: what every request and upgrade has in hand (a
    /// parsed or minted `traceparent`), with no hex `String` made only to be parsed back.
    pub fn set_trace_id_bytes(&self, trace_id: [u8; TRACE_ID_BYTES]) {
        self.node.trace_id.set(Some(trace_id));
    }

    /// The trace id as 32 lowercase hex digits, if one was set.
    pub fn trace_id(&self) -> Option<String> {
        self.node
            .trace_id
            .get()
            .map(|_| self.node.trace_id_hex().to_string())
    }

    /// The trace id as a log field (`-` if none was set), written without a `String`.
    pub fn trace_id_hex(&self) -> TraceIdHex {
        self.node.trace_id_hex()
    }

    pub fn runtime(&self) -> &Rc<Runtime> {
        &self.node.rt
    }

    pub fn timers(&self) -> &Timers {
        &self.node.rt.timers
    }

    /// The cached current tick.
    pub fn now(&self) -> u64 {
        self.node.rt.timers.now()
    }

    /// A non-owning reference (for indexes such as "sessions of a sid").
    pub fn downgrade(&self) -> ScopeRef {
        ScopeRef {
            node: Rc::downgrade(&self.node),
        }
    }

    /// A timer that cancels this scope with `Deadline(name)` when it fires at tick `at`.
    pub fn deadline(&self, name: &'static str, at: u64) -> ScopeTimer {
        ScopeTimer::new(&self.node, name, at, TimerKind::Deadline)
    }

    /// A timer that only wakes its awaiter at tick `at`.
    pub fn alarm(&self, name: &'static str, at: u64) -> ScopeTimer {
        ScopeTimer::new(&self.node, name, at, TimerKind::Alarm)
    }

    /// Deadlines named `names` (at most [`super::deadlines::MAX_SET_DEADLINES`]), none set yet, sharing one wheel
    /// entry armed for the earliest (see [`super::deadlines`]). One set per scope.
    pub fn deadlines(&self, names: &'static [&'static str]) -> ScopeDeadlines {
        ScopeDeadlines::new(&self.node, names)
    }

    /// The earliest armed deadline of this scope and its ancestors: `(tick, name, scope id)`.
    /// Work started here inherits the time its ancestors have left.
    pub fn effective_deadline(&self) -> Option<(u64, &'static str, u64)> {
        let timers = &self.node.rt.timers;
        let mut best: Option<(u64, &'static str, u64)> = None;
        let mut cursor = Some(self.node.clone());
        while let Some(node) = cursor {
            for rec in node.timers.borrow().iter() {
                if rec.kind != TimerKind::Deadline {
                    continue;
                }
                let armed = timers
                    .with_wheel(|w| w.state(rec.key) == Some(crate::wheel::TimerState::Armed));
                let at = timers.with_wheel(|w| w.deadline(rec.key));
                if let (true, Some((at, name))) = (armed, at) {
                    if best.is_none_or(|(b, _, _)| at < b) {
                        best = Some((at, name, node.id));
                    }
                }
            }
            cursor = node.parent.borrow().as_ref().map(|(p, _)| p.clone());
        }
        best
    }

    /// Milliseconds left before the effective deadline (`None`: no deadline above).
    pub fn remaining_ms(&self) -> Option<u64> {
        self.effective_deadline()
            .map(|(at, _, _)| at.saturating_sub(self.now()))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // Dropped while unwinding: the scope's own work panicked (an async block drops its
        // locals, this handle among them, as the panic passes through it).
        let reason = if std::thread::panicking() {
            CancelReason::Panicked
        } else {
            CancelReason::Finished
        };
        self.node.cancel(reason);
        // Invariant 3: take the tasks out before dropping them; dropping runs their
        // destructors, which may touch this node.
        let tasks = self.node.tasks.borrow_mut().drain();
        drop(tasks);
    }
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scope({})", self.path())
    }
}

/// The 16 bytes of a trace id written as 32 hex digits (either case); `None` for anything
/// else. Decoded a nibble at a time: every upgrade and request sets one.
fn parse_trace_id(hex: &str) -> Option<[u8; TRACE_ID_BYTES]> {
    let digits = hex.as_bytes();
    if digits.len() != TRACE_ID_BYTES * 2 {
        return None;
    }
    let mut bytes = [0u8; TRACE_ID_BYTES];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = hex_nibble(*high)? << 4 | hex_nibble(*low)?;
    }
    Some(bytes)
}

fn hex_nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// A non-owning reference to a scope: can cancel and observe it, never keeps it alive.
#[derive(Clone)]
pub struct ScopeRef {
    pub(crate) node: Weak<Node>,
}

impl ScopeRef {
    pub fn cancel(&self, reason: CancelReason) {
        if let Some(node) = self.node.upgrade() {
            node.cancel(reason);
        }
    }

    /// True while the scope exists and is not cancelled.
    pub fn is_live(&self) -> bool {
        self.node.upgrade().is_some_and(|n| !n.is_cancelled())
    }

    pub fn id(&self) -> Option<u64> {
        self.node.upgrade().map(|n| n.id)
    }
}

/// A named timer owned by a scope; dropping it frees the wheel entry. Only the wheel's handle:
/// the scope is the entry's owner, which refuses re-arming once cancelled and forgets the timer
/// when it is dropped ([`TimerOwner`]), so a socket's timers are 16 B each, not 24.
pub struct ScopeTimer {
    handle: TimerHandle,
}

impl ScopeTimer {
    fn new(node: &Rc<Node>, name: &'static str, at: u64, kind: TimerKind) -> ScopeTimer {
        ScopeTimer {
            handle: node.arm(name, at, kind),
        }
    }

    /// Re-arms for tick `at`; ignored once the scope is cancelled (its timers stay dead).
    pub fn reset(&self, at: u64) {
        self.handle.reset(at);
    }

    /// Re-arms for `ms` after now.
    pub fn reset_after(&self, ms: u64) {
        self.handle.reset_after(ms);
    }

    pub fn cancel(&self) {
        self.handle.cancel();
    }

    pub fn has_fired(&self) -> bool {
        self.handle.has_fired()
    }

    pub fn is_armed(&self) -> bool {
        self.handle.is_armed()
    }

    /// The deadline tick and name.
    pub fn deadline(&self) -> (u64, &'static str) {
        self.handle.deadline()
    }

    /// Resolves when the timer fires.
    pub fn fired(&self) -> crate::wheel::handle::Fired<'_> {
        self.handle.fired()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_hex_round_trips_and_rejects_malformed() {
        let hex = "0af7651916cd43dd8448eb211c80319c";
        let bytes = parse_trace_id(hex);
        assert_eq!(bytes.map(|b| b[0]), Some(0x0a));
        let rt = Runtime::new(Timers::new(crate::wheel::Clock::manual(0)));
        let scope = rt.root(ScopeKind::Server, "t");
        scope.set_trace_id(hex);
        assert_eq!(scope.trace_id().as_deref(), Some(hex));
        scope.set_trace_id("0AF7651916CD43DD8448EB211C80319C");
        assert_eq!(
            scope.trace_id().as_deref(),
            Some(hex),
            "upper case is read too"
        );
        for bad in [
            "",
            "0af7",
            "zzf7651916cd43dd8448eb211c80319c",
            "é0af7651916cd43dd8448eb211c80319",
            "+af7651916cd43dd8448eb211c80319c",
            "0af7651916cd43dd8448eb211c80319c0",
        ] {
            scope.set_trace_id(bad);
            assert_eq!(scope.trace_id(), None, "input {bad:?}");
        }
    }

    #[test]
    fn path_lists_kind_and_id_from_the_root_down() {
        let rt = Runtime::new(Timers::new(crate::wheel::Clock::manual(0)));
        let server = rt.root(ScopeKind::Server, "s");
        let conn = server.child(ScopeKind::Connection, "c");
        let session = conn.child(ScopeKind::Session, "u");
        let expected = format!(
            "server:{}/conn:{}/session:{}",
            server.id(),
            conn.id(),
            session.id()
        );
        assert_eq!(session.path().to_string(), expected);
        assert_eq!(server.path().to_string(), format!("server:{}", server.id()));
    }

    #[test]
    fn on_cancel_runs_once_with_the_reason_even_when_registered_late() {
        let rt = Runtime::new(Timers::new(crate::wheel::Clock::manual(0)));
        let scope = rt.root(ScopeKind::Server, "t");
        let child = scope.child(ScopeKind::Consultation, "c");
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        child.on_cancel(move |r| log.borrow_mut().push(r.to_string()));
        child.cancel(CancelReason::Deadline("consult_idle"));
        child.cancel(CancelReason::Finished);
        let log = seen.clone();
        child.on_cancel(move |r| log.borrow_mut().push(format!("late {r}")));
        let first = CancelReason::Deadline("consult_idle").to_string();
        assert_eq!(*seen.borrow(), vec![first.clone(), format!("late {first}")]);
    }
}
