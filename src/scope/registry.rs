//! The registry of live scopes and the `/debug/scopes` dump.
//!
//! # Invariants
//! 1. Every node is registered from creation to drop, so a scope that outlives its work (a
//!    leak) stays visible in the dump and in `live_scopes`.
//! 2. The dump walks from roots (nodes without a parent) through children; depth is bounded by
//!    [`MAX_DUMP_DEPTH`].

use super::node::{Node, TimerKind};
use super::slab::Slab;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::{Rc, Weak};

/// The tree is server → connection → request/session (+ consultations): four levels. Anything
/// deeper is cut off in the dump rather than recursed into.
pub const MAX_DUMP_DEPTH: usize = 16;

#[derive(Default)]
pub(crate) struct Registry {
    nodes: RefCell<Slab<Weak<Node>>>,
}

impl Registry {
    pub(crate) fn insert(&self, node: Weak<Node>) -> usize {
        self.nodes.borrow_mut().insert(node)
    }

    pub(crate) fn remove(&self, slot: usize) {
        self.nodes.borrow_mut().remove(slot);
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    fn roots(&self) -> Vec<Rc<Node>> {
        let nodes: Vec<Rc<Node>> = self
            .nodes
            .borrow()
            .iter()
            .filter_map(|(_, n)| n.upgrade())
            .collect();
        nodes
            .into_iter()
            .filter(|n| n.parent.borrow().is_none())
            .collect()
    }
}

/// The live scope tree as JSON: one object per scope with id, kind, label, parent, age_ms,
/// cancelled reason, owned timers (name, kind, due_in_ms), task count and children.
pub fn dump(rt: &super::Runtime) -> Value {
    let now = rt.timers.now();
    let roots: Vec<Value> = rt
        .registry()
        .roots()
        .iter()
        .map(|n| dump_node(n, now, 0))
        .collect();
    json!({ "live_scopes": rt.live_scopes(), "pending_timers": rt.timers.pending(), "scopes": roots })
}

fn dump_node(node: &Rc<Node>, now: u64, depth: usize) -> Value {
    let set = node.with_deadline_set(|s| (s.key, s.set().collect::<Vec<_>>()));
    let mut timers: Vec<Value> = Vec::new();
    for t in node.timers.borrow().iter() {
        let armed = node
            .rt
            .timers
            .with_wheel(|w| w.state(t.key) == Some(crate::wheel::TimerState::Armed));
        let kind = match t.kind {
            TimerKind::Deadline => "deadline",
            TimerKind::Alarm => "alarm",
        };
        // A deadline set's entry: each deadline set is listed on its own (`deadlines.rs`,
        // invariant 2), due while the entry is armed (the scope is not cancelled).
        if let Some((_, deadlines)) = set.as_ref().filter(|(key, _)| *key == t.key) {
            for &(at, name) in deadlines {
                let due = armed.then(|| at.saturating_sub(now));
                timers.push(json!({ "name": name, "kind": kind, "due_in_ms": due }));
            }
            continue;
        }
        let deadline = node.rt.timers.with_wheel(|w| w.deadline(t.key));
        let due = deadline
            .filter(|_| armed)
            .map(|(at, _)| at.saturating_sub(now));
        let name = deadline.map_or("?", |(_, name)| name);
        timers.push(json!({ "name": name, "kind": kind, "due_in_ms": due }));
    }
    let children: Vec<Rc<Node>> = node
        .children
        .borrow()
        .iter()
        .filter_map(|(_, c)| c.upgrade())
        .collect();
    let children: Vec<Value> = if depth + 1 >= MAX_DUMP_DEPTH {
        Vec::new()
    } else {
        children
            .iter()
            .map(|c| dump_node(c, now, depth + 1))
            .collect()
    };
    json!({
        "id": node.id,
        "kind": node.kind.as_str(),
        "label": node.label(),
        "parent": node.parent.borrow().as_ref().map(|(p, _)| p.id),
        "age_ms": now.saturating_sub(node.created_at),
        "cancelled": node.reason.borrow().as_ref().map(|r| r.to_string()),
        "timers": timers,
        "tasks": node.tasks.borrow().len(),
        "children": children,
    })
}
