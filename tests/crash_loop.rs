//! Crash safety (SPEC §6: "an `ack` means the message is committed"): the real binary is
//! SIGKILLed at a seeded-random moment while several sockets stream pipelined sends, then
//! restarted on the same data dir; every acked message must be in history at its seq, and each
//! consultation's seqs must stay dense from 1 (unacked sends may or may not be there).
//!
//! `CRASH_SEED=<u64>` replays another sequence of kill delays; the seed is printed on failure.

mod support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use consult_edge::auth::Role;
use serde_json::{json, Value};
use support::mint_with as mint;
use support::ws::{connect_ready, Client, Event};
use support::Gateway;

/// Kill/restart rounds: the brief's minimum, and what fits in well under 60 s on 2 cores.
const ROUNDS: u64 = 20;
/// Consultations written to concurrently; each has its patient and its doctor sending.
const CONSULTATIONS: usize = 3;
/// Sends in flight per socket: enough that a kill lands between a commit and its ack.
const WINDOW: usize = 8;
/// Kill delay range after the senders start (ms): from "before the first group commit" to
/// "hundreds of commits in".
const MIN_KILL_MS: u64 = 5;
const MAX_KILL_MS: u64 = 400;
/// Rate limits far above what the senders reach, so every send is a store write.
const NO_RATE_LIMIT: &[&str] = &["--send-rate-per-s", "1000000", "--send-burst", "1000000"];

/// xorshift64: a tiny seeded RNG, so a failing sequence of kill moments can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// One acked send: where the server said it was stored.
#[derive(Debug, Clone)]
struct Acked {
    seq: u64,
    client_id: String,
    body: String,
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The whole stored history of `id`, paged through `after`.
fn history(gw: &Gateway, id: &str, token: &str) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let after = all.last().and_then(|m| m["seq"].as_u64()).unwrap_or(0);
        let r = gw.request(
            "GET",
            &format!("/v1/consultations/{id}/messages?after={after}&limit=1000"),
            &[("Authorization", &bearer(token))],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json()["messages"].as_array().cloned().expect("messages");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Streams pipelined sends (at most `WINDOW` unacked) until the connection dies; records acks.
async fn stream_sends(mut c: Client, id: String, prefix: String, acked: Rc<RefCell<Vec<Acked>>>) {
    let mut sent = 0usize;
    let mut in_flight = 0usize;
    loop {
        while in_flight < WINDOW {
            sent += 1;
            let frame = json!({
                "type": "send", "consultation": id,
                "client_id": format!("{prefix}-{sent}"), "body": format!("body {prefix} {sent}"),
            });
            c.send_raw(Message::text(frame.to_string())).await;
            in_flight += 1;
        }
        match c.next_event().await {
            Event::Json(v) if v["type"] == "ack" => {
                in_flight -= 1;
                let client_id = v["client_id"].as_str().expect("client_id").to_owned();
                let n = client_id.rsplit('-').next().unwrap_or("");
                acked.borrow_mut().push(Acked {
                    seq: v["seq"].as_u64().expect("seq"),
                    body: format!("body {prefix} {n}"),
                    client_id,
                });
            }
            Event::Json(v) if v["type"] == "error" => panic!("send refused: {v}"),
            Event::Json(_) => {}
            Event::Closed(_) => return,
        }
    }
}

/// Checks every acked message is stored at its seq and the seqs are dense from 1.
fn check_history(gw: &Gateway, id: &str, token: &str, acked: &[Acked], round: u64, seed: u64) {
    let stored = history(gw, id, token);
    let seqs: Vec<u64> = stored.iter().filter_map(|m| m["seq"].as_u64()).collect();
    let dense: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs, dense,
        "round {round} seed {seed}: seqs of {id} not dense from 1"
    );
    let by_seq: BTreeMap<u64, &Value> = stored
        .iter()
        .filter_map(|m| Some((m["seq"].as_u64()?, m)))
        .collect();
    for a in acked {
        let Some(m) = by_seq.get(&a.seq) else {
            panic!(
                "round {round} seed {seed}: acked seq {} ({}) of {id} lost after kill -9 (stored up to {})",
                a.seq,
                a.client_id,
                seqs.len()
            );
        };
        assert_eq!(
            m["client_id"],
            a.client_id.as_str(),
            "round {round} seed {seed}"
        );
        assert_eq!(m["body"], a.body.as_str(), "round {round} seed {seed}");
    }
}

#[test]
fn crash_loop_sigkill_at_random_moment_keeps_every_acked_message_dense() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15);
    let mut rng = XorShift(seed.max(1));
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();

    // Round 0 creates the consultations; every round reuses them, so history accumulates.
    let gw = Gateway::start_in(&dir, NO_RATE_LIMIT);
    let keys = support::gateway_keys(&dir);
    let mut pairs = Vec::new();
    for k in 0..CONSULTATIONS {
        let patient = mint(&keys, &format!("p{k}"), Role::Patient);
        let doctor = mint(&keys, &format!("d{k}"), Role::Doctor);
        let r = gw.request(
            "POST",
            "/v1/consultations",
            &[
                ("Authorization", &bearer(&patient)),
                ("Content-Type", "application/json"),
            ],
            json!({"doctor": format!("d{k}")}).to_string().as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["id"].as_str().expect("id").to_owned();
        pairs.push((id, patient, doctor));
    }
    let mut gw = Some(gw);
    // Everything acked in any round, per consultation.
    let mut all_acked: Vec<Vec<Acked>> = vec![Vec::new(); CONSULTATIONS];

    for round in 0..ROUNDS {
        let mut live = gw
            .take()
            .unwrap_or_else(|| Gateway::start_in(&dir, NO_RATE_LIMIT));
        // The previous kill left history that must already be intact before we add to it.
        for (k, (id, patient, _)) in pairs.iter().enumerate() {
            check_history(&live, id, patient, &all_acked[k], round, seed);
        }
        let delay = Duration::from_millis(rng.between(MIN_KILL_MS, MAX_KILL_MS));
        let acked: Vec<Rc<RefCell<Vec<Acked>>>> = (0..CONSULTATIONS)
            .map(|_| Rc::new(RefCell::new(Vec::new())))
            .collect();
        let ex = smol::LocalExecutor::new();
        smol::block_on(ex.run(async {
            let mut tasks = Vec::new();
            for (k, (id, patient, doctor)) in pairs.iter().enumerate() {
                for (who, token) in [("p", patient), ("d", doctor)] {
                    let (c, _) = connect_ready(live.addr, token).await;
                    let prefix = format!("r{round}{who}{k}");
                    tasks.push(ex.spawn(stream_sends(c, id.clone(), prefix, acked[k].clone())));
                }
            }
            async_io::Timer::after(delay).await;
            live.signal(rustix::process::Signal::KILL);
            for t in tasks {
                t.await;
            }
        }));
        live.kill9();
        for (k, a) in acked.iter().enumerate() {
            all_acked[k].extend(a.borrow().iter().cloned());
        }
    }

    let last = Gateway::start_in(&dir, NO_RATE_LIMIT);
    for (k, (id, patient, _)) in pairs.iter().enumerate() {
        check_history(&last, id, patient, &all_acked[k], ROUNDS, seed);
    }
    let total: usize = all_acked.iter().map(Vec::len).sum();
    assert!(
        total >= ROUNDS as usize,
        "the senders got too few acks ({total}) for the kills to have landed mid-stream"
    );
    eprintln!("crash_loop: seed={seed} rounds={ROUNDS} acked={total}");
}
