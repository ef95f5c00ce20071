//! Black-box tests of the cap on open consultations per patient (README "Decisions where the
//! contract is silent"): at `max_open_consultations_per_patient` open, `POST /v1/consultations`
//! is 429 `rate_limited` and changes nothing; closed ones do not count; concurrent creates
//! cannot pass the cap together; the count is rebuilt after a restart; a cap below 1 exits 2.

mod support;

use serde_json::{json, Value};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use support::{Gateway, Response};

/// The cap the tests run with: small, so reaching it is quick.
const CAP: usize = 3;

fn cap_args() -> [String; 2] {
    [
        "--max-open-consultations-per-patient".to_owned(),
        CAP.to_string(),
    ]
}

fn start(dir: &std::path::Path) -> Gateway {
    let args = cap_args();
    Gateway::start_in(dir, &[args[0].as_str(), args[1].as_str()])
}

fn post(gw: &Gateway, path: &str, token: &str, body: &[u8]) -> Response {
    let auth = format!("Bearer {token}");
    gw.request(
        "POST",
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// `POST /v1/consultations` of `token`'s patient with doctor d1.
fn try_create(gw: &Gateway, token: &str) -> Response {
    let body = json!({ "doctor": "d1" }).to_string();
    post(gw, "/v1/consultations", token, body.as_bytes())
}

/// Writes `POST /v1/consultations` of `token`'s patient with doctor d1 on `s`, for tests that
/// need the connection itself (to time the request, or to hang up before the answer).
fn write_create(s: &mut TcpStream, token: &str) {
    let body = json!({ "doctor": "d1" }).to_string();
    let auth = format!("Bearer {token}");
    support::write_request(
        s,
        "POST",
        "/v1/consultations",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
}

fn assert_refused(r: &Response) {
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "rate_limited", "{}", r.text());
    assert_eq!(
        r.json()["error"]["message"],
        "too many open consultations",
        "{}",
        r.text()
    );
}

/// The caller's consultations as (id, state).
fn listed(gw: &Gateway, token: &str) -> Vec<(String, String)> {
    let list: Value = gw.get_json_as("/v1/consultations", token);
    list["consultations"]
        .as_array()
        .expect("consultations")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or("").to_owned(),
                c["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn open_count(gw: &Gateway, token: &str) -> usize {
    listed(gw, token)
        .iter()
        .filter(|(_, state)| state == "open")
        .count()
}

#[test]
fn cap_create_beyond_is_429_and_nothing_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(dir.path());
    let p1 = gw.token(&["--sub", "p1", "--role", "patient"]);
    let p2 = gw.token(&["--sub", "p2", "--role", "patient"]);
    for _ in 0..CAP {
        gw.create_consultation(&p1, "d1");
    }
    assert_refused(&try_create(&gw, &p1));
    let line = gw.wait_log("event=consultation_refused");
    assert!(
        line.contains("reason=too_many_open") && line.contains("user=p1"),
        "{line}"
    );
    assert_eq!(listed(&gw, &p1).len(), CAP);
    // The cap is per patient: another one still opens.
    gw.create_consultation(&p2, "d1");
}

#[test]
fn cap_closed_consultation_frees_a_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(dir.path());
    let p1 = gw.token(&["--sub", "p1", "--role", "patient"]);
    let first = gw.create_consultation(&p1, "d1");
    for _ in 1..CAP {
        gw.create_consultation(&p1, "d1");
    }
    assert_refused(&try_create(&gw, &p1));
    let closed = post(&gw, &format!("/v1/consultations/{first}/close"), &p1, b"");
    assert_eq!(closed.status, 200, "{}", closed.text());
    gw.create_consultation(&p1, "d1");
    assert_eq!(listed(&gw, &p1).len(), CAP + 1);
    assert_eq!(open_count(&gw, &p1), CAP);
    assert_refused(&try_create(&gw, &p1));
}

#[test]
fn cap_parallel_creates_end_with_exactly_cap_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(dir.path());
    let p1 = gw.token(&["--sub", "p1", "--role", "patient"]);
    let tries = 2 * CAP;
    // Every thread has its connection open before any sends, so the requests reach the
    // gateway together and interleave at the store's await.
    let ready = Arc::new(Barrier::new(tries));
    let threads: Vec<_> = (0..tries)
        .map(|_| {
            let (addr, p1, ready) = (gw.addr, p1.clone(), ready.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(support::IO_TIMEOUT))
                    .expect("timeout");
                ready.wait();
                write_create(&mut s, &p1);
                support::read_response(&mut s).expect("a response").status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    statuses.sort_unstable();
    let mut expected = vec![201; CAP];
    expected.extend(vec![429; tries - CAP]);
    assert_eq!(statuses, expected);
    assert_eq!(open_count(&gw, &p1), CAP);
    // Every refusal is counted, and nothing else is.
    assert_eq!(
        gw.metric("consult_edge_consultations_refused_total", None),
        (tries - CAP) as f64
    );
}

#[test]
fn cap_count_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (p1, kept);
    {
        let mut gw = start(dir.path());
        p1 = gw.token(&["--sub", "p1", "--role", "patient"]);
        kept = gw.create_consultation(&p1, "d1");
        for _ in 1..CAP {
            gw.create_consultation(&p1, "d1");
        }
        assert!(gw.terminate().success());
    }
    let gw = start(dir.path());
    assert_refused(&try_create(&gw, &p1));
    assert_eq!(listed(&gw, &p1).len(), CAP);
    // Closing one of the restored consultations gives its slot back.
    let closed = post(&gw, &format!("/v1/consultations/{kept}/close"), &p1, b"");
    assert_eq!(closed.status, 200, "{}", closed.text());
    gw.create_consultation(&p1, "d1");
}

#[test]
fn cap_below_one_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_string_lossy().into_owned();
    let (status, _, err) = support::run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--max-open-consultations-per-patient",
        "0",
    ]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("max-open-consultations-per-patient"), "{err}");
}

/// A create whose client hangs up while the store holds its op still opens the consultation's
/// room once the store commits it (consult invariant 6): its scope (with `consult_idle` and
/// `consult_limit`) is live, and the cap counts it. Before, the room was opened by the
/// request's own future, which the hang-up dropped: the consultation was open in the store with
/// no room, no deadlines and no count until the next start.
#[test]
fn cap_create_cancelled_by_its_client_still_opens_its_room_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = cap_args();
    let gw = Gateway::start_in(dir.path(), &["--dev", args[0].as_str(), args[1].as_str()]);
    let p0 = gw.token(&["--sub", "p0", "--role", "patient"]);
    let p1 = gw.token(&["--sub", "p1", "--role", "patient"]);
    gw.hold_store_writer(true);
    // p0's create is the op the held writer has taken; p1's queues behind it, seen as depth 1.
    let mut streams = Vec::new();
    for token in [&p0, &p1] {
        let mut s: TcpStream = gw.connect();
        write_create(&mut s, token);
        streams.push(s);
    }
    let start = std::time::Instant::now();
    while gw.queued_ops() != 1 {
        assert!(
            start.elapsed() < support::IO_TIMEOUT,
            "p1's create never queued"
        );
    }
    // p1 hangs up: its request is cancelled while its op waits in the store's queue.
    drop(streams.pop());
    gw.wait_log("event=request_cancelled reason=peer_closed");
    gw.hold_store_writer(false);
    let mut p0_stream = streams.pop().expect("p0's connection");
    let p0_created = support::read_response(&mut p0_stream).expect("p0's answer");
    assert_eq!(p0_created.status, 201, "{}", p0_created.text());
    // p1's consultation is committed (after p0's: the writer is FIFO) and its room is live.
    let start = std::time::Instant::now();
    let id = loop {
        if let Some((id, _)) = listed(&gw, &p1).into_iter().next() {
            break id;
        }
        assert!(
            start.elapsed() < support::IO_TIMEOUT,
            "p1's create never committed"
        );
    };
    let start = std::time::Instant::now();
    while !gw.get("/debug/scopes").text().contains(&id) {
        assert!(
            start.elapsed() < support::IO_TIMEOUT,
            "no live scope for consultation {id}: it is open in the store without its room"
        );
    }
    // And it counts toward the cap: CAP - 1 more, then 429.
    for _ in 1..CAP {
        gw.create_consultation(&p1, "d1");
    }
    assert_refused(&try_create(&gw, &p1));
}
