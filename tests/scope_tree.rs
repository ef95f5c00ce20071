//! Scopes over the real executor and the real wheel, with a manual clock: cancellation reaches
//! tasks and timers, panics stay in their scope, re-parenting keeps sessions alive, and nothing
//! a scope started outlives it.

use consult_edge::scope::{dump, CancelReason, Runtime, ScopeKind};
use consult_edge::wheel::{Clock, Timers};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

fn runtime() -> Rc<Runtime> {
    Runtime::new(Timers::new(Clock::manual(1_700_000_000_000)))
}

/// Lets every runnable task run (the driver included) until the executor is idle.
async fn settle(rt: &Rc<Runtime>) {
    for _ in 0..64 {
        smol::future::yield_now().await;
    }
    let _ = rt;
}

// ------------------------------------------------------------------ cancellation

#[test]
fn cancel_child_task_stops_at_next_await() {
    let rt = runtime();
    let rt2 = rt.clone();
    rt.block_on(async move {
        let server = rt2.root(ScopeKind::Server, "test");
        let conn = server.child(ScopeKind::Connection, "c1");
        let progressed = Rc::new(Cell::new(0u32));
        let stopped = Rc::new(Cell::new(false));
        let (tx, rx) = async_channel::unbounded::<()>();
        {
            let progressed = progressed.clone();
            let stopped = stopped.clone();
            conn.spawn(async move {
                struct Flag(Rc<Cell<bool>>);
                impl Drop for Flag {
                    fn drop(&mut self) {
                        self.0.set(true);
                    }
                }
                let _flag = Flag(stopped);
                while rx.recv().await.is_ok() {
                    progressed.set(progressed.get() + 1);
                }
            });
        }
        tx.send(()).await.unwrap();
        settle(&rt2).await;
        assert_eq!(progressed.get(), 1);
        server.cancel(CancelReason::Shutdown);
        assert_eq!(
            conn.reason(),
            Some(CancelReason::Parent(Box::new(CancelReason::Shutdown)))
        );
        assert_eq!(conn.reason().unwrap().root(), &CancelReason::Shutdown);
        settle(&rt2).await;
        assert!(stopped.get(), "task dropped after its scope was cancelled");
        let _ = tx.send(()).await;
        settle(&rt2).await;
        assert_eq!(progressed.get(), 1, "no progress after cancellation");
    });
}

#[test]
fn cancel_first_reason_wins() {
    let rt = runtime();
    let s = rt.root(ScopeKind::Server, "s");
    let c = s.child(ScopeKind::Session, "x");
    c.cancel(CancelReason::Revoked);
    c.cancel(CancelReason::Shutdown);
    s.cancel(CancelReason::Shutdown);
    assert_eq!(c.reason(), Some(CancelReason::Revoked));
}

#[test]
fn cancel_deep_tree_is_not_recursive() {
    let rt = runtime();
    let root = rt.root(ScopeKind::Server, "s");
    let mut chain = vec![root.child(ScopeKind::Task, "0")];
    for i in 1..20_000 {
        let next = chain[i - 1].child(ScopeKind::Task, "n");
        chain.push(next);
    }
    root.cancel(CancelReason::Shutdown);
    assert!(chain.last().unwrap().is_cancelled());
    assert_eq!(
        chain.last().unwrap().reason().unwrap().root(),
        &CancelReason::Shutdown
    );
    // Drop leaf first so no drop recursion either.
    while chain.pop().is_some() {}
}

// ------------------------------------------------------------------ deadlines

#[test]
fn deadline_fired_cancels_scope_with_its_name_and_alarm_only_wakes() {
    let rt = runtime();
    let rt2 = rt.clone();
    rt.block_on(async move {
        let server = rt2.root(ScopeKind::Server, "s");
        let session = server.child(ScopeKind::Session, "u1");
        let now = session.now();
        let _hb = session.deadline("heartbeat", now + 45_000);
        let ping = session.alarm("ping", now + 15_000);
        rt2.timers.advance(15_000);
        ping.fired().await;
        assert!(!session.is_cancelled(), "an alarm does not cancel");
        rt2.timers.advance(29_999);
        settle(&rt2).await;
        assert!(!session.is_cancelled());
        rt2.timers.advance(1);
        let reason = session.cancelled().await;
        assert_eq!(reason, CancelReason::Deadline("heartbeat"));
    });
}

#[test]
fn deadline_reset_pushes_it_out() {
    let rt = runtime();
    let rt2 = rt.clone();
    rt.block_on(async move {
        let server = rt2.root(ScopeKind::Server, "s");
        let session = server.child(ScopeKind::Session, "u1");
        let idle = session.deadline("idle", session.now() + 100);
        for _ in 0..10 {
            rt2.timers.advance(60);
            settle(&rt2).await;
            idle.reset_after(100);
        }
        assert!(!session.is_cancelled());
        rt2.timers.advance(100);
        assert_eq!(session.cancelled().await, CancelReason::Deadline("idle"));
    });
}

#[test]
fn effective_deadline_inherits_the_earliest_ancestor() {
    let rt = runtime();
    let server = rt.root(ScopeKind::Server, "s");
    let conn = server.child(ScopeKind::Connection, "c");
    let req = conn.child(ScopeKind::Request, "r");
    let _head = conn.deadline("head", 10_000);
    let _own = req.deadline("body", 20_000);
    assert_eq!(
        req.effective_deadline().map(|(at, name, _)| (at, name)),
        Some((10_000, "head"))
    );
    assert_eq!(req.remaining_ms(), Some(10_000));
    let task = req.child(ScopeKind::Task, "work");
    assert_eq!(
        task.remaining_ms(),
        Some(10_000),
        "work inherits the time left"
    );
}

#[test]
fn cancelled_scope_disarms_its_timers_and_keeps_them_dead() {
    let rt = runtime();
    let server = rt.root(ScopeKind::Server, "s");
    let s = server.child(ScopeKind::Session, "x");
    let t = s.deadline("token", 500);
    assert_eq!(rt.timers.pending(), 1);
    s.cancel(CancelReason::Revoked);
    assert_eq!(rt.timers.pending(), 0);
    t.reset(900);
    assert!(
        !t.is_armed(),
        "a cancelled scope's timer cannot be re-armed"
    );
}

// ------------------------------------------------------------------ leaks

#[test]
fn scopes_with_timers_leave_nothing_behind() {
    let rt = runtime();
    let rt2 = rt.clone();
    rt.block_on(async move {
        let server = rt2.root(ScopeKind::Server, "s");
        let baseline_scopes = rt2.live_scopes();
        for i in 0..10_000u64 {
            let conn = server.child(ScopeKind::Connection, "c");
            let session = conn.child(ScopeKind::Session, "u");
            let _a = session.deadline("heartbeat", 45_000 + i);
            let _b = session.alarm("ping", 15_000);
            let _c = conn.deadline("idle", 30_000);
            session.spawn(async {
                std::future::pending::<()>().await;
            });
            if i % 3 == 0 {
                session.reparent(&server.downgrade());
            }
            if i % 2 == 0 {
                session.cancel(CancelReason::PeerClosed);
            }
        }
        settle(&rt2).await;
        assert_eq!(rt2.live_scopes(), baseline_scopes, "scopes leaked");
        assert_eq!(rt2.timers.entries(), 0, "timer entries leaked");
        assert_eq!(rt2.timers.pending(), 0, "armed timers leaked");
        let dumped = dump(&rt2);
        assert_eq!(dumped["scopes"].as_array().map(|a| a.len()), Some(1));
        assert_eq!(
            dumped["scopes"][0]["children"].as_array().map(|a| a.len()),
            Some(0)
        );
    });
}

// ------------------------------------------------------------------ panics

#[test]
fn panic_in_task_cancels_only_its_scope() {
    let rt = runtime();
    let rt2 = rt.clone();
    rt.block_on(async move {
        let server = rt2.root(ScopeKind::Server, "s");
        let sibling_runs = Rc::new(Cell::new(0));
        let (tx, rx) = async_channel::unbounded::<()>();
        {
            let sibling_runs = sibling_runs.clone();
            server.spawn_child(ScopeKind::Session, "ok", move |scope| async move {
                while rx.recv().await.is_ok() {
                    sibling_runs.set(sibling_runs.get() + 1);
                }
                drop(scope);
            });
        }
        let seen = Rc::new(RefCell::new(None));
        let (watch_tx, watch_rx) = async_channel::bounded(1);
        let bad = server.spawn_child(ScopeKind::Session, "bad", move |scope| async move {
            // Someone outside the scope watches it end.
            let _ = watch_tx.send(scope.cancelled()).await;
            smol::future::yield_now().await;
            panic!("handler bug");
        });
        {
            let seen = seen.clone();
            server.spawn(async move {
                if let Ok(watcher) = watch_rx.recv().await {
                    *seen.borrow_mut() = Some(watcher.await);
                }
            });
        }
        settle(&rt2).await;
        assert!(!bad.is_live());
        assert_eq!(*seen.borrow(), Some(CancelReason::Panicked));
        assert!(!server.is_cancelled(), "the parent goes on");
        tx.send(()).await.unwrap();
        settle(&rt2).await;
        assert_eq!(sibling_runs.get(), 1, "the sibling goes on");
    });
}

#[test]
fn run_catches_panic_and_reports_panicked() {
    let rt = runtime();
    let rt2 = rt.clone();
    rt.block_on(async move {
        let server = rt2.root(ScopeKind::Server, "s");
        let req = server.child(ScopeKind::Request, "r");
        let out: Result<(), CancelReason> = req.run(async { panic!("boom") }).await;
        assert_eq!(out, Err(CancelReason::Panicked));
        assert_eq!(req.reason(), Some(CancelReason::Panicked));
        let req2 = server.child(ScopeKind::Request, "r2");
        assert_eq!(req2.run(async { 7 }).await, Ok(7));
    });
}

// ------------------------------------------------------------------ re-parenting

#[test]
fn reparented_session_survives_its_upgrade_request() {
    let rt = runtime();
    let rt2 = rt.clone();
    rt.block_on(async move {
        let server = rt2.root(ScopeKind::Server, "s");
        let conn = server.child(ScopeKind::Connection, "c");
        let request = conn.child(ScopeKind::Request, "upgrade");
        let session = request.child(ScopeKind::Session, "u1");
        session.reparent(&server.downgrade());
        drop(request);
        assert!(!session.is_cancelled(), "the session outlives its request");
        assert!(session.path().to_string().starts_with("server:"));
        assert!(!session.path().to_string().contains("req:"));
        // Not re-parented: dies with the request (the incident's bug, for contrast).
        let request2 = conn.child(ScopeKind::Request, "upgrade2");
        let orphan = request2.child(ScopeKind::Session, "u2");
        drop(request2);
        assert!(orphan.is_cancelled());
        server.cancel(CancelReason::Shutdown);
        assert_eq!(session.reason().unwrap().root(), &CancelReason::Shutdown);
    });
}
