//! Store faults against the real binary (`serve --dev`, `POST /debug/store-faults`): while every
//! commit fails, a `send` is answered `error internal` and never acked, nothing half-written
//! becomes visible, reads keep working, creates and logouts fail with 500 without side effects
//! (a logout must not close the socket: revocation is durable first, SPEC §3); once healed, sends
//! resume with the next dense seq (SPEC §5, §6).

mod support;

/// An access token with a fresh sid, minted with the gateway's own key.
fn mint(data_dir: &std::path::Path, sub: &str, role: Role) -> String {
    support::mint_with(&support::gateway_keys(data_dir), sub, role)
}

use consult_edge::auth::Role;
use serde_json::{json, Value};
use support::ws::{connect_ready, Client, Event};
use support::{Gateway, Response};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn call(gw: &Gateway, method: &str, path: &str, token: &str, body: &Value) -> Response {
    let body = if method == "POST" {
        body.to_string().into_bytes()
    } else {
        Vec::new()
    };
    gw.request(
        method,
        path,
        &[
            ("Authorization", &bearer(token)),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
}

fn set_faults(gw: &Gateway, fail: bool) {
    let r = gw.request(
        "POST",
        "/debug/store-faults",
        &[("Content-Type", "application/json")],
        json!({ "fail": fail }).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The stored history's (seq, body) pairs.
fn history(gw: &Gateway, id: &str, token: &str) -> Vec<(u64, String)> {
    gw.history(id, token)
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().expect("seq"),
                m["body"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Sends and returns the first `ack` or `error` that answers `client_id`.
async fn send_answer(c: &mut Client, id: &str, client_id: &str, body: &str) -> Value {
    c.send(json!({"type": "send", "consultation": id, "client_id": client_id, "body": body}))
        .await;
    loop {
        let v = c.recv().await;
        let answers = v["client_id"] == client_id || v["ref"] == client_id;
        if answers && (v["type"] == "ack" || v["type"] == "error") {
            return v;
        }
    }
}

struct Setup {
    gw: Gateway,
    patient: String,
    doctor: String,
    /// The consultation the faults are aimed at.
    id: String,
    /// Another pair's consultation, read while the store fails.
    other_id: String,
    other_patient: String,
}

fn setup() -> Setup {
    let gw = Gateway::start(&["--dev"]);
    let patient = mint(&gw.data_dir, "p1", Role::Patient);
    let doctor = mint(&gw.data_dir, "d1", Role::Doctor);
    let other_patient = mint(&gw.data_dir, "p2", Role::Patient);
    let id = gw.create_consultation(&patient, "d1");
    let other_id = gw.create_consultation(&other_patient, "d2");
    Setup {
        gw,
        patient,
        doctor,
        id,
        other_id,
        other_patient,
    }
}

// ------------------------------------------------------------------ sends

#[test]
fn store_faults_send_gets_internal_without_ack_then_heals_with_next_dense_seq() {
    let s = setup();
    smol::block_on(async {
        let (mut p, _) = connect_ready(s.gw.addr, &s.patient).await;
        let (mut d, _) = connect_ready(s.gw.addr, &s.doctor).await;
        p.join(&s.id, 0).await;
        d.join(&s.id, 0).await;
        for i in 1..=3u64 {
            let ack = send_answer(&mut p, &s.id, &format!("ok-{i}"), "before").await;
            assert_eq!(ack["type"], "ack", "{ack}");
            assert_eq!(ack["seq"], i);
        }
        let before = history(&s.gw, &s.id, &s.patient);
        assert_eq!(before.len(), 3);

        set_faults(&s.gw, true);
        for i in 0..3 {
            let answer = send_answer(&mut p, &s.id, &format!("lost-{i}"), "during").await;
            assert_eq!(
                answer["type"], "error",
                "a failed commit must not be acked: {answer}"
            );
            assert_eq!(answer["code"], "internal", "{answer}");
        }
        // Reads keep working and show nothing half-written.
        assert_eq!(history(&s.gw, &s.id, &s.patient), before);
        assert_eq!(s.gw.last_seq(&s.id, &s.doctor), 3);
        assert_eq!(history(&s.gw, &s.other_id, &s.other_patient), vec![]);
        assert_eq!(s.gw.last_seq(&s.other_id, &s.other_patient), 0);
        // A fresh join replays exactly the committed messages.
        let (mut late, _) = connect_ready(s.gw.addr, &s.doctor).await;
        let (replay, joined) = late.join(&s.id, 0).await;
        assert_eq!(joined["last_seq"], 3, "{joined}");
        let seqs: Vec<u64> = replay.iter().filter_map(|m| m["seq"].as_u64()).collect();
        assert_eq!(seqs, vec![1, 2, 3]);

        set_faults(&s.gw, false);
        let ack = send_answer(&mut p, &s.id, "after", "healed").await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["seq"], 4, "the next seq is dense after failed commits");
        // The doctor saw 1, 2, 3 then 4: nothing from the failed sends was relayed.
        let mut relayed = Vec::new();
        let next = loop {
            match d.next_event().await {
                Event::Json(v) if v["type"] == "message" => {
                    relayed.push(v["seq"].as_u64().unwrap_or(0));
                    if v["seq"] == 4 {
                        break v;
                    }
                }
                Event::Json(_) => continue,
                Event::Closed(code) => panic!("doctor closed ({code:?})"),
            }
        };
        assert_eq!(relayed, vec![1, 2, 3, 4]);
        assert_eq!(next["body"], "healed");
        let after = history(&s.gw, &s.id, &s.patient);
        let seqs: Vec<u64> = after.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        assert!(after.iter().all(|(_, body)| body != "during"));
    });
}

#[test]
fn store_faults_retry_of_failed_send_after_heal_is_stored_once() {
    let s = setup();
    smol::block_on(async {
        let (mut p, _) = connect_ready(s.gw.addr, &s.patient).await;
        p.join(&s.id, 0).await;
        set_faults(&s.gw, true);
        let answer = send_answer(&mut p, &s.id, "retry-me", "x").await;
        assert_eq!(answer["code"], "internal", "{answer}");
        set_faults(&s.gw, false);
        // The same client_id retried after the heal: stored now, once, with seq 1.
        let ack = send_answer(&mut p, &s.id, "retry-me", "x").await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["seq"], 1);
        let again = send_answer(&mut p, &s.id, "retry-me", "x").await;
        assert_eq!(again["seq"], 1, "idempotent retry: {again}");
        assert_eq!(history(&s.gw, &s.id, &s.patient).len(), 1);
    });
}

// ------------------------------------------------------------------ HTTP writes

#[test]
fn store_faults_create_consultation_is_500_and_nothing_is_listed() {
    let s = setup();
    set_faults(&s.gw, true);
    let r = call(
        &s.gw,
        "POST",
        "/v1/consultations",
        &s.patient,
        &json!({"doctor": "d9"}),
    );
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "internal");
    let list = call(&s.gw, "GET", "/v1/consultations", &s.patient, &Value::Null);
    assert_eq!(list.status, 200, "reads keep working: {}", list.text());
    let ids: Vec<String> = list.json()["consultations"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        ids,
        vec![s.id.clone()],
        "the failed create left no consultation"
    );
    set_faults(&s.gw, false);
    s.gw.create_consultation(&s.patient, "d9");
}

#[test]
fn store_faults_logout_is_500_and_keeps_socket_and_token_until_healed() {
    let s = setup();
    smol::block_on(async {
        let (mut p, _) = connect_ready(s.gw.addr, &s.patient).await;
        p.join(&s.id, 0).await;
        set_faults(&s.gw, true);
        let r = call(&s.gw, "POST", "/v1/auth/logout", &s.patient, &Value::Null);
        assert_eq!(r.status, 500, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "internal");
        set_faults(&s.gw, false);
        // Not revoked anywhere: the token still works over HTTP and the socket still sends.
        assert_eq!(s.gw.last_seq(&s.id, &s.patient), 0);
        let ack = send_answer(&mut p, &s.id, "still-here", "hi").await;
        assert_eq!(
            ack["type"], "ack",
            "socket kept after a failed logout: {ack}"
        );
        assert_eq!(ack["seq"], 1);
        // Once healed, the logout succeeds and closes the socket with 4503.
        let r = call(&s.gw, "POST", "/v1/auth/logout", &s.patient, &Value::Null);
        assert_eq!(r.status, 204, "{}", r.text());
        assert_eq!(p.expect_close().await, Some(4503));
    });
}
