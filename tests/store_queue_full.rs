//! A session that meets the store writer's full queue, against the real binary (`serve --dev`,
//! `POST`/`GET /debug/store-faults` with `hold`): the session half of the backpressure path,
//! `Session::wait_queued` (`src/ws/session/send.rs`). The store half is `tests/store.rs`.
//!
//! # Scenario
//! Patient P and doctor D share consultation C, both joined. The writer is held; P queues a few
//! sends, then filler sockets (another pair's consultation, at most [`MAX_IN_FLIGHT`] sends
//! each: a socket reads no further frame while that many wait for their commits) fill the queue
//! to exactly [`QUEUE_CAPACITY`], each step waited on by polling the queue depth; [`WAITERS`]
//! more filler sockets send one each, which wait in their own `wait_queued`. P then sends two
//! more: the first meets the full queue and waits in `wait_queued`, the second stays unread
//! behind it. While held, D leaves and rejoins C: P must still be told (`presence`), P's socket
//! stays open, nothing is acked or relayed, and C's `last_seq` has not moved. Then the writer is
//! released, and P's waiting send competes with the waiters for the room the first batch frees.
//!
//! A second test reads a refused send (not a member: `not_found`, known at once) and the
//! waiting send in one incoming batch, so the refusal is at the head of P's FIFO while P waits:
//! its error must reach P while the writer is still held (`wait_queued`'s answer branch).
//!
//! # What it catches
//! - a send lost by `wait_queued` (never queued, or its ticket dropped without an answer): P's
//!   acks stop short of it, or C's history has a hole;
//! - a send reordered around the wait (the waiting send queued after the one read behind it, or
//!   its ack written out of FIFO order): P's ack client_ids or seqs are out of send order;
//! - an ack or relay twice: a sync send after the release gets the next dense seq, with no
//!   stray ack before it, and D's messages are exactly P's since D joined, once each, in order;
//! - a session that stops writing its outbox while it waits (the outgoing branch), or closes
//!   instead of waiting: the presence frames do not reach P while the writer is held;
//! - a session that stops answering while it waits (the answer branch): the refusal's error
//!   does not reach P while held (second test);
//! - an ack before the commit: any `ack` or `message` reaching P while held, or D's rejoin
//!   seeing a `last_seq` that moved;
//! - fillers' sends lost or doubled at the full queue: every filler socket gets exactly its
//!   acks, in its send order, and the filler consultation's seqs are exactly 1..=N.
//!
//! What it cannot see: the instant P's session read the waiting send (no observable marks it),
//! so the presence proves the session delivers while its send is held back by the store, not
//! that the frame was already read; and whether P's queued sends commit while P still waits.
//! They rarely do: the commit that answers them wakes P's session, which polls its waiting send
//! first and finds the room the same batch freed. So the first test's acks prove order and
//! count, not which branch wrote them; the second test is the one that pins the answer branch.
//!
//! Checked by mutating `wait_queued` and `send` by hand: no outgoing branch (first test fails:
//! no presence while held, which also shows P had read its send by then), no answer branch
//! (second test fails), the waited-for ticket dropped (both fail: ack missing), the waited-for
//! send acked before the sends queued ahead of it (first test fails: order).
//!
//! Bounds: every frame wait is the harness's `FRAME_TIMEOUT`, every queue wait [`QUEUE_WAIT`];
//! `FILLERS + WAITERS` (386) filler sockets, `QUEUE_CAPACITY + 1 + WAITERS` sends from fillers
//! and P, and 5 more from P.

mod support;

use consult_edge::auth::Role;
use consult_edge::store::{MAX_BATCH, QUEUE_CAPACITY};
use consult_edge::ws::pipeline::MAX_IN_FLIGHT;
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::ws::{connect_ready, Client, Event};
use support::Gateway;

/// Filler sockets: enough to queue `QUEUE_CAPACITY` ops and the one the held writer has taken,
/// at `MAX_IN_FLIGHT` each (so none of a filler's sends waits itself), plus one spare.
const FILLERS: usize = (QUEUE_CAPACITY + 1).div_ceil(MAX_IN_FLIGHT) + 1;
/// Filler sockets whose one send meets the full queue before P's does and waits in their own
/// `wait_queued`: a batch's worth, so that after the release P's waiting send competes with
/// them for the room the first batch frees (who wins is the channel's and executor's choice;
/// P's order must hold either way).
const WAITERS: usize = MAX_BATCH;
/// Upper bound of every wait on the queue depth (each frame wait is bounded by the harness).
const QUEUE_WAIT: Duration = Duration::from_secs(30);
/// P's sends acked before the writer is held.
const P_BEFORE: u64 = 2;
/// P's sends queued in the held writer's queue before the fillers fill it.
const P_QUEUED: u64 = 3;

fn mint(gw: &Gateway, sub: &str, role: Role) -> String {
    support::mint_with(&support::gateway_keys(&gw.data_dir), sub, role)
}

/// Polls the queue depth until it is at least `at_least`; returns it. Each poll is a request
/// answered by the gateway (an event), bounded by [`QUEUE_WAIT`].
fn wait_queued_ops(gw: &Gateway, at_least: usize) -> usize {
    let start = Instant::now();
    loop {
        let depth = gw.queued_ops();
        if depth >= at_least {
            return depth;
        }
        assert!(
            start.elapsed() < QUEUE_WAIT,
            "queue depth {depth} never reached {at_least} within {QUEUE_WAIT:?}"
        );
    }
}

/// The (seq, client_id) of each message of `id` in the stored history.
fn history(gw: &Gateway, id: &str, token: &str) -> Vec<(u64, String)> {
    gw.history(id, token)
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().expect("seq"),
                m["client_id"].as_str().expect("client_id").to_owned(),
            )
        })
        .collect()
}

/// Sockets of another pair's consultation that fill the writer's queue, and what each sent.
struct Fillers {
    consultation: String,
    sockets: Vec<Client>,
    /// The client_ids each socket sent, in send order.
    sent: Vec<Vec<String>>,
}

impl Fillers {
    async fn connect(gw: &Gateway, token: &str, consultation: &str, count: usize) -> Fillers {
        let mut sockets = Vec::with_capacity(count);
        for _ in 0..count {
            sockets.push(connect_nodelay(gw.addr, token).await);
        }
        Fillers {
            consultation: consultation.to_owned(),
            sockets,
            sent: vec![Vec::new(); count],
        }
    }

    fn total(&self) -> usize {
        self.sent.iter().map(Vec::len).sum()
    }

    /// With the writer held and `since_hold` sends made since (the writer holds the first),
    /// sends from the first [`FILLERS`] sockets until the queue holds exactly
    /// [`QUEUE_CAPACITY`] ops, waiting on the queue depth after each socket's sends.
    async fn fill(&mut self, gw: &Gateway, mut since_hold: usize) {
        let mut depth = wait_queued_ops(gw, since_hold.saturating_sub(1));
        let fill = self.sockets.iter_mut().zip(&mut self.sent).take(FILLERS);
        for (i, (f, sent)) in fill.enumerate() {
            let n = MAX_IN_FLIGHT.min(QUEUE_CAPACITY.saturating_sub(depth));
            if n == 0 {
                break;
            }
            for j in 0..n {
                let client_id = format!("f{i}-{j}");
                send(f, &self.consultation, &client_id).await;
                sent.push(client_id);
            }
            since_hold += n;
            depth = wait_queued_ops(gw, (since_hold - 1).min(QUEUE_CAPACITY));
        }
        assert_eq!(
            depth, QUEUE_CAPACITY,
            "{FILLERS} filler sockets did not fill the queue"
        );
    }

    /// One send from each socket after the first [`FILLERS`]: each meets the full queue.
    async fn send_waiting(&mut self) {
        let wait = self.sockets.iter_mut().zip(&mut self.sent).skip(FILLERS);
        for (i, (w, sent)) in wait.enumerate() {
            let client_id = format!("w{i}");
            send(w, &self.consultation, &client_id).await;
            sent.push(client_id);
        }
    }

    /// Every socket gets exactly its acks, in its send order, and the consultation's seqs are
    /// exactly 1..=N: nothing lost or stored twice.
    async fn expect_all_acked(&mut self, gw: &Gateway, token: &str) {
        let mut seqs = Vec::new();
        for (f, sent) in self.sockets.iter_mut().zip(&self.sent) {
            let mut last = 0;
            for client_id in sent {
                let ack = next_ack(f, "filler").await;
                assert_eq!(ack["client_id"], client_id.as_str(), "{ack}");
                let seq = ack["seq"].as_u64().expect("seq");
                assert!(seq > last, "a filler's seqs follow its sends: {ack}");
                last = seq;
                seqs.push(seq);
            }
        }
        let total = u64::try_from(self.total()).expect("fits");
        seqs.sort_unstable();
        let dense: Vec<u64> = (1..=total).collect();
        assert_eq!(seqs, dense, "every filler send acked once, none lost");
        assert_eq!(
            gw.last_seq(&self.consultation, token),
            total,
            "the filler consultation's last seq"
        );
    }
}

/// [`connect_ready`] with Nagle off: a filler's sends get no answer while the writer is held,
/// so with Nagle each small frame after the first would wait for the peer's delayed ACK (40 ms).
async fn connect_nodelay(addr: std::net::SocketAddr, token: &str) -> Client {
    let (c, _) = connect_ready(addr, token).await;
    c.ws.get_ref()
        .get_ref()
        .set_nodelay(true)
        .expect("TCP_NODELAY");
    c
}

async fn send(c: &mut Client, consultation: &str, client_id: &str) {
    c.send(json!({
        "type": "send",
        "consultation": consultation,
        "client_id": client_id,
        "body": format!("body of {client_id}"),
    }))
    .await;
}

/// The next frame of type `kind` on `c` (presence frames skipped); any other frame fails the
/// test.
async fn next_of(c: &mut Client, kind: &str, who: &str) -> Value {
    loop {
        let v = c.recv().await;
        match v["type"].as_str() {
            Some(k) if k == kind => return v,
            Some("presence") => continue,
            _ => panic!("{who}: expected {kind}, got {v}"),
        }
    }
}

async fn next_ack(c: &mut Client, who: &str) -> Value {
    next_of(c, "ack", who).await
}

async fn next_message(c: &mut Client, who: &str) -> Value {
    next_of(c, "message", who).await
}

/// Reads P's frames until the presence of `user` with `online`; fails on anything but
/// presence (an ack or a message while the writer is held) or a close.
async fn expect_presence_only(p: &mut Client, user: &str, online: bool) {
    loop {
        match p.next_event().await {
            Event::Json(v) if v["type"] == "presence" => {
                if v["user"] == user && v["online"] == online {
                    return;
                }
            }
            Event::Json(v) => panic!("P got {v} while the store writer was held"),
            Event::Closed(code) => panic!("P's socket closed ({code:?}) while its send waited"),
        }
    }
}

#[test]
fn queue_full_send_waits_session_keeps_delivering_then_all_acked_once_in_order() {
    let gw = Gateway::start(&["--dev"]);
    let patient = mint(&gw, "p1", Role::Patient);
    let doctor = mint(&gw, "d1", Role::Doctor);
    let filler = mint(&gw, "pf", Role::Patient);
    let c = gw.create_consultation(&patient, "d1");
    let cf = gw.create_consultation(&filler, "df");
    smol::block_on(async {
        let mut d = connect_nodelay(gw.addr, &doctor).await;
        d.join(&c, 0).await;
        let mut p = connect_nodelay(gw.addr, &patient).await;
        p.join(&c, 0).await;
        let mut p_sent: Vec<String> = Vec::new();
        for i in 1..=P_BEFORE {
            let client_id = format!("before-{i}");
            send(&mut p, &c, &client_id).await;
            let ack = next_ack(&mut p, "P").await;
            assert_eq!(ack["client_id"], client_id.as_str(), "{ack}");
            assert_eq!(ack["seq"], i, "{ack}");
            p_sent.push(client_id);
        }
        for i in 1..=P_BEFORE {
            let m = next_message(&mut d, "D").await;
            assert_eq!(m["seq"], i, "{m}");
        }
        let mut fillers = Fillers::connect(&gw, &filler, &cf, FILLERS + WAITERS).await;

        // ---------------------------------------------------------- hold and fill
        assert_eq!(gw.hold_store_writer(true)["queued_ops"], 0);
        // The writer takes P's first queued send and holds it; the rest queue.
        for i in 1..=P_QUEUED {
            let client_id = format!("queued-{i}");
            send(&mut p, &c, &client_id).await;
            p_sent.push(client_id);
        }
        fillers
            .fill(&gw, usize::try_from(P_QUEUED).expect("small"))
            .await;
        assert_eq!(
            fillers.total() + usize::try_from(P_QUEUED).expect("small"),
            QUEUE_CAPACITY + 1,
            "the full queue and the held op are P's and the fillers' sends"
        );
        fillers.send_waiting().await;
        // A round trip after the waiters' frames are in the gateway's sockets: their sessions,
        // woken first, begin to wait before P's does.
        assert_eq!(
            gw.queued_ops(),
            QUEUE_CAPACITY,
            "a waiter's send was queued"
        );

        // ---------------------------------------------------------- P meets the full queue
        // The first waits in `wait_queued`; the second is not read until the first is queued.
        for client_id in ["waiting-1", "waiting-2"] {
            send(&mut p, &c, client_id).await;
            p_sent.push(client_id.to_owned());
        }
        // While held, P's session still writes its outbox: D leaves and rejoins, P is told both.
        d.send(json!({"type": "leave", "consultation": c})).await;
        expect_presence_only(&mut p, "d1", false).await;
        let (replay, joined) = d.join(&c, P_BEFORE).await;
        assert!(replay.is_empty(), "replayed while held: {replay:?}");
        assert_eq!(
            joined["last_seq"], P_BEFORE,
            "nothing commits while the writer is held: {joined}"
        );
        expect_presence_only(&mut p, "d1", true).await;
        assert_eq!(
            gw.queued_ops(),
            QUEUE_CAPACITY,
            "P's waiting send must not have entered the full queue"
        );

        // ---------------------------------------------------------- release
        gw.hold_store_writer(false);
        let mut next_seq = P_BEFORE + 1;
        for client_id in &p_sent[usize::try_from(P_BEFORE).expect("small")..] {
            let ack = next_ack(&mut p, "P").await;
            assert_eq!(
                (ack["client_id"].as_str(), ack["seq"].as_u64()),
                (Some(client_id.as_str()), Some(next_seq)),
                "P's acks must follow its sends, seqs dense: {ack}"
            );
            assert_eq!(ack["consultation"], c.as_str(), "{ack}");
            next_seq += 1;
        }
        // A sync send: its ack is the very next frame (no duplicate ack before it) and takes
        // the next dense seq (nothing stored twice or skipped).
        send(&mut p, &c, "after").await;
        p_sent.push("after".to_owned());
        let ack = next_ack(&mut p, "P").await;
        assert_eq!(ack["client_id"], "after", "a stray ack: {ack}");
        assert_eq!(ack["seq"], next_seq, "{ack}");

        // D: every message of P since the join, once each, in seq order, in P's send order.
        let mut relayed = Vec::new();
        while relayed.last().map(|(seq, _)| *seq) != Some(next_seq) {
            let m = next_message(&mut d, "D").await;
            assert_eq!(m["from"], "p1", "{m}");
            let seq = m["seq"].as_u64().expect("seq");
            assert!(seq <= next_seq, "D got a seq past P's last: {m}");
            relayed.push((seq, m["client_id"].as_str().expect("client_id").to_owned()));
        }
        let expected: Vec<(u64, String)> = (1..)
            .zip(p_sent.iter().cloned())
            .skip(usize::try_from(P_BEFORE).expect("small"))
            .collect();
        assert_eq!(relayed, expected, "D's messages: once each, in order");
        let stored: Vec<(u64, String)> = (1..).zip(p_sent.iter().cloned()).collect();
        assert_eq!(history(&gw, &c, &patient), stored, "C's history");

        fillers.expect_all_acked(&gw, &filler).await;
    });
}

#[test]
fn queue_full_refusal_read_with_waiting_send_is_answered_while_held() {
    let gw = Gateway::start(&["--dev"]);
    let patient = mint(&gw, "p1", Role::Patient);
    let filler = mint(&gw, "pf", Role::Patient);
    let c = gw.create_consultation(&patient, "d1");
    let cf = gw.create_consultation(&filler, "df");
    smol::block_on(async {
        let mut p = connect_nodelay(gw.addr, &patient).await;
        let mut fillers = Fillers::connect(&gw, &filler, &cf, FILLERS).await;
        assert_eq!(gw.hold_store_writer(true)["queued_ops"], 0);
        fillers.fill(&gw, 0).await;

        // One write, so one incoming batch: the refusal (P is no member of the fillers'
        // consultation, whose room is open) enters P's FIFO as known, then the send to C meets
        // the full queue and waits with the refusal at the head of the FIFO.
        let refused = json!({"type": "send", "consultation": cf, "client_id": "refused",
            "body": "not a member"});
        let waiting = json!({"type": "send", "consultation": c, "client_id": "waiting",
            "body": "body of waiting"});
        for frame in [refused, waiting] {
            p.ws.feed(frame.to_string().into()).await.expect("feed");
        }
        p.ws.flush().await.expect("flush");
        let error = match p.next_event().await {
            Event::Json(v) => v,
            Event::Closed(code) => panic!("P closed ({code:?}) while its send waited"),
        };
        assert_eq!(
            (
                error["type"].as_str(),
                error["code"].as_str(),
                error["ref"].as_str()
            ),
            (Some("error"), Some("not_found"), Some("refused")),
            "the refusal is answered while the writer is held: {error}"
        );
        assert_eq!(
            gw.queued_ops(),
            QUEUE_CAPACITY,
            "P's waiting send must not have entered the full queue"
        );

        gw.hold_store_writer(false);
        let ack = next_ack(&mut p, "P").await;
        assert_eq!(
            (ack["client_id"].as_str(), ack["seq"].as_u64()),
            (Some("waiting"), Some(1)),
            "{ack}"
        );
        send(&mut p, &c, "after").await;
        let ack = next_ack(&mut p, "P").await;
        assert_eq!(
            (ack["client_id"].as_str(), ack["seq"].as_u64()),
            (Some("after"), Some(2)),
            "a stray ack, or a seq skipped: {ack}"
        );
        let expected = vec![(1, "waiting".to_owned()), (2, "after".to_owned())];
        assert_eq!(history(&gw, &c, &patient), expected, "C's history");
        fillers.expect_all_acked(&gw, &filler).await;
    });
}

// ------------------------------------------------------------------ the dev route itself

#[test]
fn debug_store_faults_bad_body_is_400_and_sets_nothing() {
    let gw = Gateway::start(&["--dev"]);
    let bodies: [&[u8]; 6] = [
        b"{}",
        b"{\"hold\": 1}",
        b"{\"fail\": \"yes\"}",
        b"{\"hold\": true, \"drop\": true}",
        b"[true]",
        b"hold",
    ];
    for body in bodies {
        let r = gw.request(
            "POST",
            "/debug/store-faults",
            &[("Content-Type", "application/json")],
            body,
        );
        let shown = String::from_utf8_lossy(body);
        assert_eq!(r.status, 400, "{shown}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "bad_request", "{shown}");
    }
    // Nothing was held: a send still commits at once.
    let patient = mint(&gw, "p1", Role::Patient);
    let c = gw.create_consultation(&patient, "d1");
    smol::block_on(async {
        let mut p = connect_nodelay(gw.addr, &patient).await;
        send(&mut p, &c, "free").await;
        let ack = next_ack(&mut p, "P").await;
        assert_eq!(ack["seq"], 1, "{ack}");
    });
    // Both keys at once: the answer says what was set.
    let r = gw.request(
        "POST",
        "/debug/store-faults",
        &[("Content-Type", "application/json")],
        br#"{"fail": false, "hold": false}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"fail": false, "hold": false, "queued_ops": 0})
    );
}

#[test]
fn debug_store_faults_without_dev_is_404() {
    let gw = Gateway::start(&[]);
    assert_eq!(gw.get("/debug/store-faults").status, 404);
    let r = gw.request(
        "POST",
        "/debug/store-faults",
        &[("Content-Type", "application/json")],
        br#"{"hold": true}"#,
    );
    assert_eq!(r.status, 404, "{}", r.text());
}

// ------------------------------------------------------------------ the read deadline

/// Read deadline of the test below, and its heartbeat: a store stall of several read timeouts
/// is observed by counting pings, not by sleeping.
const SHORT_READ_TIMEOUT_MS: u64 = 600;
const SHORT_HEARTBEAT_MS: u64 = 150;

/// A store stall longer than the read timeout closes no session: neither P, whose send waits
/// for room in the full queue (`wait_queued`), nor the fillers, whose FIFOs are full. Neither
/// reads frames meanwhile (backpressure), so the client's silence is the store's, and a 4004
/// ("reconnect") would send every waiting client back into the same stalled store. Both keep
/// pinging. Fails if `heartbeat` runs while reads are held (P, then every filler, is closed
/// with 4004 after the read timeout) or if `wait_queued` stops pinging (P sees no ping).
#[test]
fn queue_full_longer_than_the_read_timeout_closes_no_session_and_pings_go_on() {
    let heartbeat = SHORT_HEARTBEAT_MS.to_string();
    let read_timeout = SHORT_READ_TIMEOUT_MS.to_string();
    let gw = Gateway::start(&[
        "--dev",
        "--heartbeat-ms",
        &heartbeat,
        "--read-timeout-ms",
        &read_timeout,
    ]);
    let patient = mint(&gw, "p1", Role::Patient);
    let filler = mint(&gw, "pf", Role::Patient);
    let c = gw.create_consultation(&patient, "d1");
    let cf = gw.create_consultation(&filler, "df");
    smol::block_on(async {
        let mut p = connect_nodelay(gw.addr, &patient).await;
        // Exactly the fillers that fill the queue, each with a full FIFO: a socket with room in
        // its FIFO reads, and these test clients answer no ping while they are not read, so
        // the gateway would rightly close a spare one (4004).
        let full_fifos = QUEUE_CAPACITY / MAX_IN_FLIGHT;
        assert_eq!(full_fifos * MAX_IN_FLIGHT, QUEUE_CAPACITY);
        let mut fillers = Fillers::connect(&gw, &filler, &cf, full_fifos).await;
        assert_eq!(gw.hold_store_writer(true)["queued_ops"], 0);
        // The op the held writer has taken is P's; the fillers fill the queue behind it.
        send(&mut p, &c, "first").await;
        fillers.fill(&gw, 1).await;
        send(&mut p, &c, "waiting").await;
        // Pings spanning twice the read timeout, counted from after the send was written.
        let pings = 2 * SHORT_READ_TIMEOUT_MS / SHORT_HEARTBEAT_MS;
        for _ in 0..pings {
            match p.next_kind().await {
                Some("ping") => {}
                other => panic!("P got {other:?} while its send waited for the store"),
            }
        }
        assert_eq!(
            gw.queued_ops(),
            QUEUE_CAPACITY,
            "the writer was held all along"
        );
        gw.hold_store_writer(false);
        for (client_id, seq) in [("first", 1), ("waiting", 2)] {
            let ack = next_ack(&mut p, "P").await;
            assert_eq!(
                (ack["client_id"].as_str(), ack["seq"].as_u64()),
                (Some(client_id), Some(seq)),
                "{ack}"
            );
        }
        // Every filler is still open: each gets all its acks (a close fails `next_ack`).
        fillers.expect_all_acked(&gw, &filler).await;
    });
}
