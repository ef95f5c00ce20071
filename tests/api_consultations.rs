//! Black-box tests of the consultation HTTP API (SPEC §4, issue 4) against the real binary:
//! create, list, get, history paging, close, and the refusals (400, 401, 403, 404, 409, 415).
//!
//! Decisions these tests pin down: non-members get 404 `not_found` on every consultation
//! endpoint (existence must not leak); admins read any consultation but get 403 on close and
//! send; only patients create; the list is for patients and doctors (admin 403); `limit` on
//! messages defaults to 100 and is at most 1000.

mod support;

use serde_json::{json, Value};
use support::ws::{connect_ready, Client};
use support::{Gateway, Response};

// ------------------------------------------------------------------ helpers

/// The three people of most tests: patient p1, doctor d1, admin a1, plus two outsiders.
struct People {
    p1: String,
    d1: String,
    admin: String,
    /// A patient who is not a member of p1's consultations.
    p2: String,
    /// A doctor who is not a member of p1's consultations.
    d2: String,
}

fn people(gw: &Gateway) -> People {
    let mint = |sub: &str, role: &str| gw.token(&["--sub", sub, "--role", role]);
    People {
        p1: mint("p1", "patient"),
        d1: mint("d1", "doctor"),
        admin: mint("a1", "admin"),
        p2: mint("p2", "patient"),
        d2: mint("d2", "doctor"),
    }
}

fn call(gw: &Gateway, method: &str, path: &str, token: &str, body: &[u8]) -> Response {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if method == "POST" {
        headers.push(("Content-Type", "application/json"));
    }
    gw.request(method, path, &headers, body)
}

fn get(gw: &Gateway, path: &str, token: &str) -> Response {
    call(gw, "GET", path, token, b"")
}

/// Opens a consultation of `patient` with `doctor`; returns its id.
fn create(gw: &Gateway, patient: &str, doctor: &str) -> String {
    let body = json!({ "doctor": doctor }).to_string();
    let r = call(gw, "POST", "/v1/consultations", patient, body.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().expect("id is a string").to_owned()
}

/// Asserts a JSON error response with `status` and `code`.
fn assert_error(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], code, "{}", r.text());
    assert!(
        r.json()["error"]["message"].is_string(),
        "error without message: {}",
        r.text()
    );
}

fn ids(list: &Value) -> Vec<String> {
    list["consultations"]
        .as_array()
        .expect("consultations is an array")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` with plausible field ranges (RFC 3339 in UTC).
fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let num =
        |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u32>().ok()).unwrap_or(99);
    let head = digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b'T')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19);
    let ranges = (1..=12).contains(&num(5..7))
        && (1..=31).contains(&num(8..10))
        && num(11..13) < 24
        && num(14..16) < 60
        && num(17..19) < 61;
    let tail = match s.get(19..) {
        Some("Z") => true,
        Some(t) => {
            t.len() >= 3 && t.starts_with('.') && t.ends_with('Z') && digits(20..s.len() - 1)
        }
        None => false,
    };
    head && ranges && tail
}

/// The patient and the doctor join `id` over WebSocket.
async fn join_both(gw: &Gateway, p: &People, id: &str) -> (Client, Client) {
    let (mut pc, _) = connect_ready(gw.addr, &p.p1).await;
    let (mut dc, _) = connect_ready(gw.addr, &p.d1).await;
    pc.join(id, 0).await;
    dc.join(id, 0).await;
    (pc, dc)
}

fn seqs(history: &Response) -> Vec<u64> {
    assert_eq!(history.status, 200, "{}", history.text());
    history.json()["messages"]
        .as_array()
        .expect("messages is an array")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

// ------------------------------------------------------------------ create

#[test]
fn create_by_patient_returns_201_open_consultation() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let r = call(
        &gw,
        "POST",
        "/v1/consultations",
        &p.p1,
        br#"{"doctor":"d1"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    let c = r.json();
    assert!(c["id"].as_str().is_some_and(|id| !id.is_empty()), "{c}");
    assert_eq!(c["patient"], "p1");
    assert_eq!(c["doctor"], "d1");
    assert_eq!(c["state"], "open");
    assert_eq!(c["last_seq"], 0);
    let created = c["created_at"].as_str().expect("created_at is a string");
    assert!(
        is_rfc3339_utc(created),
        "created_at not RFC 3339: {created}"
    );
    // The record is what GET returns afterwards.
    let id = c["id"].as_str().unwrap_or_default();
    let again = get(&gw, &format!("/v1/consultations/{id}"), &p.p1);
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json(), c);
}

#[test]
fn create_by_doctor_or_admin_is_403() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    for token in [&p.d1, &p.admin] {
        let r = call(
            &gw,
            "POST",
            "/v1/consultations",
            token,
            br#"{"doctor":"d2"}"#,
        );
        assert_error(&r, 403, "forbidden");
    }
    // Nothing was created.
    let list = get(&gw, "/v1/consultations", &p.d2);
    assert_eq!(ids(&list.json()), Vec::<String>::new());
}

#[test]
fn create_bad_json_body_is_400() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let bodies: [&[u8]; 9] = [
        b"",
        b"{",
        b"not json",
        b"[]",
        b"{}",
        br#"{"doctor":5}"#,
        br#"{"doctor":null}"#,
        br#"{"doctor":""}"#,
        br#"{"doctor":"p1"}"#, // oneself
    ];
    for body in bodies {
        let r = call(&gw, "POST", "/v1/consultations", &p.p1, body);
        assert_eq!(
            r.status,
            400,
            "body {:?}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        assert_eq!(r.json()["error"]["code"], "bad_request");
    }
}

#[test]
fn create_wrong_content_type_is_415() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let auth = format!("Bearer {}", p.p1);
    for kind in ["text/plain", "application/x-www-form-urlencoded"] {
        let r = gw.request(
            "POST",
            "/v1/consultations",
            &[("Authorization", &auth), ("Content-Type", kind)],
            br#"{"doctor":"d1"}"#,
        );
        assert_error(&r, 415, "unsupported_media_type");
    }
}

#[test]
fn create_json_content_type_with_parameters_is_accepted() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let auth = format!("Bearer {}", p.p1);
    for kind in ["application/json; charset=utf-8", "Application/JSON"] {
        let r = gw.request(
            "POST",
            "/v1/consultations",
            &[("Authorization", &auth), ("Content-Type", kind)],
            br#"{"doctor":"d1"}"#,
        );
        assert_eq!(r.status, 201, "{kind}: {}", r.text());
    }
}

#[test]
fn create_lookalike_content_type_is_415() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let auth = format!("Bearer {}", p.p1);
    for kind in ["application/json-seq", "application/jsonfoo"] {
        let r = gw.request(
            "POST",
            "/v1/consultations",
            &[("Authorization", &auth), ("Content-Type", kind)],
            br#"{"doctor":"d1"}"#,
        );
        assert_error(&r, 415, "unsupported_media_type");
    }
    let list = get(&gw, "/v1/consultations", &p.p1).json();
    assert_eq!(ids(&list), Vec::<String>::new(), "{list}");
}

#[test]
fn consultation_route_with_other_method_is_405_with_allow() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let id = create(&gw, &p.p1, "d1");
    let r = call(
        &gw,
        "DELETE",
        &format!("/v1/consultations/{id}"),
        &p.p1,
        b"",
    );
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(
        r.header("allow").is_some_and(|a| a.contains("GET")),
        "{:?}",
        r.headers
    );
    assert_eq!(
        get(&gw, &format!("/v1/consultations/{id}"), &p.p1).json()["state"],
        "open"
    );
}

// ------------------------------------------------------------------ authentication

#[test]
fn auth_missing_or_invalid_bearer_is_401_with_www_authenticate() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let id = create(&gw, &p.p1, "d1");
    let refresh = gw.token(&["--sub", "p1", "--role", "patient", "--refresh"]);
    let endpoints = [
        ("POST", "/v1/consultations".to_owned()),
        ("GET", "/v1/consultations".to_owned()),
        ("GET", format!("/v1/consultations/{id}")),
        ("GET", format!("/v1/consultations/{id}/messages")),
        ("POST", format!("/v1/consultations/{id}/close")),
    ];
    let bad_auth = [
        None,
        Some("Bearer".to_owned()),
        Some("Bearer not.a.token".to_owned()),
        Some(format!("Basic {}", p.p1)),
        Some(format!("Bearer {refresh}")), // a refresh token is not an access token
    ];
    for (method, path) in &endpoints {
        for auth in &bad_auth {
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(auth) = auth {
                headers.push(("Authorization", auth.as_str()));
            }
            let r = gw.request(method, path, &headers, br#"{"doctor":"d1"}"#);
            assert_error(&r, 401, "unauthorized");
            let challenge = r.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer"),
                "{method} {path} with {auth:?}: WWW-Authenticate = {challenge:?}"
            );
        }
    }
    // None of those closed the consultation.
    let c = get(&gw, &format!("/v1/consultations/{id}"), &p.p1).json();
    assert_eq!(c["state"], "open");
}

// ------------------------------------------------------------------ list

#[test]
fn list_returns_callers_consultations_newest_first_for_both_members() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let first = create(&gw, &p.p1, "d1");
    let second = create(&gw, &p.p1, "d2");
    let third = create(&gw, &p.p1, "d1");

    let mine = get(&gw, "/v1/consultations", &p.p1);
    assert_eq!(mine.status, 200, "{}", mine.text());
    let mine = mine.json();
    let created: Vec<&str> = mine["consultations"]
        .as_array()
        .map(|l| l.iter().filter_map(|c| c["created_at"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(created.len(), 3, "{mine}");
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {mine}"
    );
    if created.windows(2).all(|w| w[0] > w[1]) {
        assert_eq!(
            ids(&mine),
            [third.as_str(), second.as_str(), first.as_str()]
        );
    }
    let d1 = get(&gw, "/v1/consultations", &p.d1).json();
    let mut d1_ids = ids(&d1);
    assert_eq!(d1_ids.len(), 2, "{d1}");
    d1_ids.sort();
    let mut expected = vec![third.clone(), first.clone()];
    expected.sort();
    assert_eq!(d1_ids, expected);
    assert_eq!(
        ids(&get(&gw, "/v1/consultations", &p.d2).json()),
        [second.as_str()]
    );
    // Outsiders see none of them.
    assert_eq!(
        ids(&get(&gw, "/v1/consultations", &p.p2).json()),
        Vec::<String>::new()
    );
}

#[test]
fn list_by_admin_is_403() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    create(&gw, &p.p1, "d1");
    assert_error(&get(&gw, "/v1/consultations", &p.admin), 403, "forbidden");
}

// ------------------------------------------------------------------ get

#[test]
fn get_by_member_or_admin_is_200_by_other_is_404_like_unknown_id() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let id = create(&gw, &p.p1, "d1");
    let path = format!("/v1/consultations/{id}");
    for token in [&p.p1, &p.d1, &p.admin] {
        let r = get(&gw, &path, token);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["id"], id.as_str());
    }
    let unknown = get(&gw, "/v1/consultations/no-such-id", &p.p1);
    assert_error(&unknown, 404, "not_found");
    for token in [&p.p2, &p.d2] {
        let r = get(&gw, &path, token);
        assert_error(&r, 404, "not_found");
        // Existence must not leak: the refusal is the one an unknown id gets.
        assert_eq!(r.json(), unknown.json());
    }
}

// ------------------------------------------------------------------ messages

#[test]
fn messages_paging_with_after_and_limit_returns_ascending_pages() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let id = create(&gw, &p.p1, "d1");
    smol::block_on(async {
        let (mut pc, mut dc) = join_both(&gw, &p, &id).await;
        for i in 1..=3 {
            let ack = pc
                .send_message(&id, &format!("p{i}"), &format!("from patient {i}"))
                .await;
            assert_eq!(ack["seq"], i, "{ack}");
        }
        for i in 4..=5 {
            let ack = dc
                .send_message(&id, &format!("d{i}"), &format!("from doctor {i}"))
                .await;
            assert_eq!(ack["seq"], i, "{ack}");
        }
    });
    let base = format!("/v1/consultations/{id}/messages");
    let all = get(&gw, &base, &p.d1);
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
    let all = all.json();
    let m1 = &all["messages"][0];
    assert_eq!(m1["consultation"], id.as_str());
    assert_eq!(m1["from"], "p1");
    assert_eq!(m1["role"], "patient");
    assert_eq!(m1["body"], "from patient 1");
    assert_eq!(m1["client_id"], "p1");
    assert!(m1["ts"].as_str().is_some_and(is_rfc3339_utc), "{m1}");
    assert!(m1["traceparent"].is_string(), "{m1}");
    assert_eq!(all["messages"][4]["from"], "d1");
    assert_eq!(all["messages"][4]["role"], "doctor");

    assert_eq!(
        seqs(&get(&gw, &format!("{base}?after=2"), &p.p1)),
        [3, 4, 5]
    );
    assert_eq!(
        seqs(&get(&gw, &format!("{base}?after=2&limit=2"), &p.p1)),
        [3, 4]
    );
    assert_eq!(seqs(&get(&gw, &format!("{base}?limit=1"), &p.p1)), [1]);
    assert_eq!(
        seqs(&get(&gw, &format!("{base}?after=5"), &p.p1)),
        Vec::<u64>::new()
    );
    assert_eq!(
        seqs(&get(&gw, &format!("{base}?limit=1000"), &p.p1)),
        [1, 2, 3, 4, 5]
    );
    // Admins read; outsiders are told it does not exist.
    assert_eq!(seqs(&get(&gw, &base, &p.admin)), [1, 2, 3, 4, 5]);
    assert_error(&get(&gw, &base, &p.p2), 404, "not_found");
    assert_error(&get(&gw, &base, &p.d2), 404, "not_found");
    // The consultation's last_seq follows the history.
    assert_eq!(
        get(&gw, &format!("/v1/consultations/{id}"), &p.p1).json()["last_seq"],
        5
    );
}

#[test]
fn messages_without_limit_returns_first_100() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let id = create(&gw, &p.p1, "d1");
    // 101 messages from two sockets, so neither reaches the per-socket burst of 100.
    smol::block_on(async {
        let (mut pc, mut dc) = join_both(&gw, &p, &id).await;
        for i in 0..101u64 {
            let (client, who) = if i % 2 == 0 {
                (&mut pc, "p")
            } else {
                (&mut dc, "d")
            };
            let ack = client
                .send_message(&id, &format!("{who}{i}"), "hello")
                .await;
            assert_eq!(ack["seq"], i + 1, "{ack}");
        }
    });
    let base = format!("/v1/consultations/{id}/messages");
    let page = seqs(&get(&gw, &base, &p.p1));
    assert_eq!(page, (1..=100).collect::<Vec<u64>>());
    assert_eq!(seqs(&get(&gw, &format!("{base}?after=100"), &p.p1)), [101]);
}

#[test]
fn messages_bad_query_params_are_400() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let id = create(&gw, &p.p1, "d1");
    let base = format!("/v1/consultations/{id}/messages");
    for query in [
        "limit=1001",
        "limit=-1",
        "limit=abc",
        "limit=",
        "limit=1.5",
        "after=x",
        "after=-3",
        "after=1&after=2",
        "limit=99999999999999999999999",
    ] {
        let r = get(&gw, &format!("{base}?{query}"), &p.p1);
        assert_eq!(r.status, 400, "?{query}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "bad_request", "?{query}");
    }
    let r = get(&gw, "/v1/consultations?limit=nope", &p.p1);
    assert_error(&r, 400, "bad_request");
}

// ------------------------------------------------------------------ close

#[test]
fn close_by_member_tells_joined_members_then_sends_are_refused_and_history_stays() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let id = create(&gw, &p.p1, "d1");
    smol::block_on(async {
        let (mut pc, mut dc) = join_both(&gw, &p, &id).await;
        let ack = pc.send_message(&id, "k1", "before close").await;
        assert_eq!(ack["seq"], 1, "{ack}");

        let r = call(
            &gw,
            "POST",
            &format!("/v1/consultations/{id}/close"),
            &p.p1,
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["id"], id.as_str());
        assert_eq!(r.json()["state"], "closed");

        // The other member's joined socket is told (and so is the closer's own socket).
        for socket in [&mut dc, &mut pc] {
            let closed = socket.recv_type("consultation_closed").await;
            assert_eq!(closed["consultation"], id.as_str(), "{closed}");
            assert_eq!(closed["reason"], "closed_by_member", "{closed}");
        }
        let refused = dc.send_message(&id, "k2", "after close").await;
        assert_eq!(refused["type"], "error", "{refused}");
        assert_eq!(refused["code"], "closed", "{refused}");
    });
    let c = get(&gw, &format!("/v1/consultations/{id}"), &p.d1);
    assert_eq!(c.status, 200, "{}", c.text());
    assert_eq!(c.json()["state"], "closed");
    assert_eq!(c.json()["last_seq"], 1);
    let history = get(&gw, &format!("/v1/consultations/{id}/messages"), &p.d1);
    assert_eq!(seqs(&history), [1]);
    assert_eq!(history.json()["messages"][0]["body"], "before close");
    let listed = get(&gw, "/v1/consultations", &p.p1).json();
    assert_eq!(listed["consultations"][0]["state"], "closed", "{listed}");
}

#[test]
fn close_of_closed_consultation_is_409() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let id = create(&gw, &p.p1, "d1");
    let path = format!("/v1/consultations/{id}/close");
    assert_eq!(call(&gw, "POST", &path, &p.d1, b"").status, 200);
    for token in [&p.d1, &p.p1] {
        assert_error(&call(&gw, "POST", &path, token, b""), 409, "conflict");
    }
}

#[test]
fn close_by_admin_is_403_and_by_outsider_is_404() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let id = create(&gw, &p.p1, "d1");
    let path = format!("/v1/consultations/{id}/close");
    assert_error(&call(&gw, "POST", &path, &p.admin, b""), 403, "forbidden");
    for token in [&p.p2, &p.d2] {
        assert_error(&call(&gw, "POST", &path, token, b""), 404, "not_found");
    }
    assert_error(
        &call(
            &gw,
            "POST",
            "/v1/consultations/no-such-id/close",
            &p.p1,
            b"",
        ),
        404,
        "not_found",
    );
    // Still open: none of the refusals closed it.
    assert_eq!(
        get(&gw, &format!("/v1/consultations/{id}"), &p.p1).json()["state"],
        "open"
    );
}

#[test]
fn send_by_admin_is_forbidden_and_by_outsider_not_found() {
    let gw = Gateway::start(&[]);
    let p = people(&gw);
    let id = create(&gw, &p.p1, "d1");
    smol::block_on(async {
        let (mut admin, _) = connect_ready(gw.addr, &p.admin).await;
        let refused = admin.send_message(&id, "a1", "admin writes").await;
        assert_eq!(refused["code"], "forbidden", "{refused}");
        let (mut outsider, _) = connect_ready(gw.addr, &p.p2).await;
        let refused = outsider.send_message(&id, "o1", "outsider writes").await;
        assert_eq!(refused["code"], "not_found", "{refused}");
    });
    assert_eq!(
        seqs(&get(
            &gw,
            &format!("/v1/consultations/{id}/messages"),
            &p.p1
        )),
        Vec::<u64>::new()
    );
}
