//! A session that meets the store writer's full queue, against the real binary (`serve --dev`,
//! `POST`/`GET /debug/store-faults` with `hold`): the session half of the backpressure path,
//! `Session::wait_queued` (`src/ws/session/send.rs`). The store half is `tests/store.rs`.
//!
//! # Scenario
//! Patient P and doctor D share consultation C, both joined. The writer is held; P queues a few
//! sends, then filler sockets (another pair's consultation, at most [`MAX_IN_FLIGHT`] sends
//! each: a socket reads no further frame while that many wait for their commits) fill the queue
//! to exactly [`QUEUE_CAPACITY`], each step waited on by polling the queue depth. P then sends
//! two more: the first meets the full queue and waits in `wait_queued`, the second stays unread
//! behind it. While held, D leaves and rejoins C: P must still be told (`presence`), P's socket
//! stays open, nothing is acked or relayed, and C's `last_seq` has not moved. Then the writer is
//! released.
//!
//! # What it catches
//! - a send lost by `wait_queued` (never queued, or its ticket dropped without an answer): P's
//!   acks stop short of it, or C's history has a hole;
//! - a send reordered around the wait (the waiting send queued after the one read behind it, or
//!   its ack written out of FIFO order): P's ack client_ids or seqs are out of send order;
//! - an ack or relay twice: a sync send after the release gets the next dense seq, with no
//!   stray ack before it, and D's messages are exactly seqs 3..=8, once each;
//! - a session that stops writing its outbox while it waits (the `Outgoing` branch), or that
//!   closes instead of waiting: the presence frames do not reach P while the writer is held;
//! - an ack before the commit: any `ack` or `message` reaching P or D while held;
//! - fillers' sends lost or doubled at the full queue: every filler socket gets exactly its
//!   acks, in its send order, and the filler consultation's seqs are exactly 1..=N.
//!
//! It cannot tell whether P's session had already read the waiting send when D's presence
//! reached it (no observable distinguishes that instant): the presence proves the session
//! delivers while its send is held back by the store; the acks prove what it did with it.

mod support;

use consult_edge::auth::Role;
use consult_edge::store::QUEUE_CAPACITY;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::ws::{connect_ready, Client, Event};
use support::Gateway;

/// Sends one socket may have waiting for their commits before the session reads no further
/// frame (`consult_edge::ws::pipeline::MAX_IN_FLIGHT`, not public): each filler sends at most
/// this many, so none of its sends waits in `wait_queued` itself.
const MAX_IN_FLIGHT: usize = 8;
/// Filler sockets: enough to queue `QUEUE_CAPACITY` ops, one the held writer has taken, and P's
/// queued sends, at `MAX_IN_FLIGHT` each, plus one spare.
const FILLERS: usize = (QUEUE_CAPACITY + 1).div_ceil(MAX_IN_FLIGHT) + 1;
/// Upper bound of every wait on the queue depth.
const QUEUE_WAIT: Duration = Duration::from_secs(30);
/// P's sends acked before the writer is held.
const P_BEFORE: u64 = 2;
/// P's sends queued in the held writer's queue before the fillers fill it.
const P_QUEUED: u64 = 3;

fn mint(gw: &Gateway, sub: &str, role: Role) -> String {
    support::mint_with(&support::gateway_keys(&gw.data_dir), sub, role)
}

fn create(gw: &Gateway, patient: &str, doctor: &str) -> String {
    let r = gw.request(
        "POST",
        "/v1/consultations",
        &[
            ("Authorization", &format!("Bearer {patient}")),
            ("Content-Type", "application/json"),
        ],
        json!({ "doctor": doctor }).to_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().expect("id").to_owned()
}

fn hold_writer(gw: &Gateway, hold: bool) -> Value {
    let r = gw.request(
        "POST",
        "/debug/store-faults",
        &[("Content-Type", "application/json")],
        json!({ "hold": hold }).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["hold"], hold, "{answer}");
    answer
}

fn queued_ops(gw: &Gateway) -> usize {
    let r = gw.get("/debug/store-faults");
    assert_eq!(r.status, 200, "{}", r.text());
    let depth = r.json()["queued_ops"].as_u64().expect("queued_ops");
    usize::try_from(depth).expect("queue depth fits usize")
}

/// Polls the queue depth until it is at least `at_least`; returns it. Each poll is a request
/// answered by the gateway (an event), bounded by [`QUEUE_WAIT`].
fn wait_queued_ops(gw: &Gateway, at_least: usize) -> usize {
    let start = Instant::now();
    loop {
        let depth = queued_ops(gw);
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
    let r = gw.request(
        "GET",
        &format!("/v1/consultations/{id}/messages?limit=1000"),
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().expect("seq"),
                m["client_id"].as_str().expect("client_id").to_owned(),
            )
        })
        .collect()
}

fn last_seq(gw: &Gateway, id: &str, token: &str) -> u64 {
    let r = gw.request(
        "GET",
        &format!("/v1/consultations/{id}"),
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["last_seq"].as_u64().expect("last_seq")
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

/// The next `ack` on `c` (presence frames skipped); any other frame fails the test.
async fn next_ack(c: &mut Client, who: &str) -> Value {
    loop {
        let v = c.recv().await;
        match v["type"].as_str() {
            Some("ack") => return v,
            Some("presence") => continue,
            _ => panic!("{who}: expected an ack, got {v}"),
        }
    }
}

/// The next `message` frame on `c` (presence frames skipped); any other frame fails the test.
async fn next_message(c: &mut Client, who: &str) -> Value {
    loop {
        let v = c.recv().await;
        match v["type"].as_str() {
            Some("message") => return v,
            Some("presence") => continue,
            _ => panic!("{who}: expected a message, got {v}"),
        }
    }
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
    let c = create(&gw, &patient, "d1");
    let cf = create(&gw, &filler, "df");
    smol::block_on(async {
        let (mut d, _) = connect_ready(gw.addr, &doctor).await;
        d.join(&c, 0).await;
        let (mut p, _) = connect_ready(gw.addr, &patient).await;
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
        let mut fillers = Vec::with_capacity(FILLERS);
        for _ in 0..FILLERS {
            fillers.push(connect_ready(gw.addr, &filler).await.0);
        }

        // ---------------------------------------------------------- hold and fill
        assert_eq!(hold_writer(&gw, true)["queued_ops"], 0);
        // Sends since the hold; the writer takes the first and holds it, the rest queue.
        let mut sent_since_hold = 0usize;
        for i in 1..=P_QUEUED {
            let client_id = format!("queued-{i}");
            send(&mut p, &c, &client_id).await;
            p_sent.push(client_id);
            sent_since_hold += 1;
        }
        let mut depth = wait_queued_ops(&gw, sent_since_hold - 1);
        // client_ids each filler sent, in order.
        let mut filler_sent: Vec<Vec<String>> = vec![Vec::new(); FILLERS];
        for (i, (f, sent)) in fillers.iter_mut().zip(&mut filler_sent).enumerate() {
            let n = MAX_IN_FLIGHT.min(QUEUE_CAPACITY.saturating_sub(depth));
            if n == 0 {
                break;
            }
            for j in 0..n {
                let client_id = format!("f{i}-{j}");
                send(f, &cf, &client_id).await;
                sent.push(client_id);
            }
            sent_since_hold += n;
            depth = wait_queued_ops(&gw, (sent_since_hold - 1).min(QUEUE_CAPACITY));
        }
        assert_eq!(
            depth, QUEUE_CAPACITY,
            "the fillers ({FILLERS} sockets) did not fill the queue"
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
            queued_ops(&gw),
            QUEUE_CAPACITY,
            "P's waiting send must not have entered the full queue"
        );

        // ---------------------------------------------------------- release
        hold_writer(&gw, false);
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

        // Fillers: each gets exactly its acks in its send order; C_f's seqs are exactly 1..=N.
        let mut filler_seqs = Vec::new();
        for (f, sent) in fillers.iter_mut().zip(&filler_sent) {
            let mut last = 0;
            for client_id in sent {
                let ack = next_ack(f, "filler").await;
                assert_eq!(ack["client_id"], client_id.as_str(), "{ack}");
                let seq = ack["seq"].as_u64().expect("seq");
                assert!(seq > last, "a filler's seqs follow its sends: {ack}");
                last = seq;
                filler_seqs.push(seq);
            }
        }
        let filler_total = filler_sent.iter().map(Vec::len).sum::<usize>();
        assert_eq!(
            filler_total + usize::try_from(P_QUEUED).expect("small"),
            QUEUE_CAPACITY + 1,
            "the full queue and the held op were P's and the fillers' sends"
        );
        filler_seqs.sort_unstable();
        let dense: Vec<u64> = (1..=u64::try_from(filler_total).expect("fits")).collect();
        assert_eq!(
            filler_seqs, dense,
            "every filler send acked once, none lost"
        );
        assert_eq!(
            last_seq(&gw, &cf, &filler),
            u64::try_from(filler_total).expect("fits"),
            "the filler consultation's last seq"
        );
    });
}
