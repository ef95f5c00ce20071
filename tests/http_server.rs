//! The HTTP/1.1 server over real TCP against the real binary: keep-alive, pipelining, chunked
//! bodies, every limit, smuggling attempts, slowloris, panics, peer-gone cancellation, graceful
//! shutdown, metrics and the scope dump.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};
use support::{is_closed, read_response, write_request, Gateway};

/// Polls `/debug/scopes` until `pred` holds (bounded), returns the last dump.
fn wait_scopes(gw: &Gateway, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let dump = gw.get("/debug/scopes").json();
        if pred(&dump) {
            return dump;
        }
        assert!(
            start.elapsed() < support::IO_TIMEOUT,
            "scope condition never held: {dump}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Scopes under the server root, except the one serving the `/debug/scopes` request itself.
fn server_children(dump: &serde_json::Value) -> Vec<serde_json::Value> {
    dump["scopes"][0]["children"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| {
            !(c["kind"] == "conn"
                && c["children"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|q| q["label"] == "/debug/scopes")))
        })
        .collect()
}

// ------------------------------------------------------------------ keep-alive and pipelining

#[test]
fn keepalive_many_requests_share_one_connection() {
    let gw = Gateway::start(&[]);
    let mut s = gw.connect();
    for _ in 0..20 {
        write_request(&mut s, "GET", "/healthz", &[], b"");
        let r = read_response(&mut s).expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["status"], "ok");
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn pipelined_requests_answered_in_order() {
    let gw = Gateway::start(&["--dev"]);
    let mut s = gw.connect();
    // The slow one first: its answer must still come first.
    s.write_all(
        b"GET /debug/sleep?ms=150 HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /nope HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .unwrap();
    let a = read_response(&mut s).unwrap();
    let b = read_response(&mut s).unwrap();
    let c = read_response(&mut s).unwrap();
    assert_eq!((a.status, b.status, c.status), (200, 200, 404));
    assert_eq!(a.json()["slept_ms"], 150);
    assert_eq!(c.json()["error"]["code"], "not_found");
}

#[test]
fn keepalive_request_after_an_awaiting_handler_parses_cleanly() {
    // Regression: the peer watch that runs beside a handler used to leave a half-done read's
    // zero bytes in the buffer when the handler finished first: the next request got a 400.
    let gw = Gateway::start(&["--dev"]);
    let mut s = gw.connect();
    for _ in 0..3 {
        write_request(&mut s, "GET", "/debug/sleep?ms=20", &[], b"");
        assert_eq!(read_response(&mut s).unwrap().status, 200);
        write_request(&mut s, "POST", "/healthz", &[], b"{}");
        assert_eq!(read_response(&mut s).unwrap().status, 405);
    }
}

#[test]
fn connection_close_is_honoured() {
    let gw = Gateway::start(&[]);
    let mut s = gw.connect();
    write_request(&mut s, "GET", "/healthz", &[("Connection", "close")], b"");
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(is_closed(&mut s));
}

#[test]
fn chunked_body_is_consumed_exactly() {
    let gw = Gateway::start(&[]);
    let mut s = gw.connect();
    // A chunked POST to a GET-only route: 405 after its body is read, then the pipelined GET.
    s.write_all(
        b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .unwrap();
    let a = read_response(&mut s).unwrap();
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("GET, HEAD"));
    let b = read_response(&mut s).unwrap();
    assert_eq!(b.status, 200);
}

#[test]
fn expect_continue_gets_100_before_body() {
    let gw = Gateway::start(&[]);
    let mut s = gw.connect();
    s.write_all(
        b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(b"abc").unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 405);
}

// ------------------------------------------------------------------ limits and smuggling

#[test]
fn head_over_16k_is_431_and_closes() {
    let gw = Gateway::start(&[]);
    let mut s = gw.connect();
    let big = "x".repeat(17 * 1024);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 431);
    assert_eq!(r.json()["error"]["code"], "headers_too_large");
    assert!(is_closed(&mut s));
}

#[test]
fn head_just_under_16k_is_served() {
    let gw = Gateway::start(&[]);
    let mut s = gw.connect();
    let prefix = "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: ";
    let pad = 16 * 1024 - prefix.len() - 4;
    let req = format!("{prefix}{}\r\n\r\n", "x".repeat(pad));
    assert_eq!(req.len(), 16 * 1024);
    s.write_all(req.as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
}

#[test]
fn body_over_64k_is_413_and_closes() {
    let gw = Gateway::start(&[]);
    let mut s = gw.connect();
    s.write_all(b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "too_large");
    assert!(is_closed(&mut s));
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_closes() {
    let gw = Gateway::start(&[]);
    let mut s = gw.connect();
    s.write_all(
        b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 400);
    assert!(
        is_closed(&mut s),
        "nothing after a smuggling attempt is served"
    );
}

#[test]
fn unequal_duplicate_content_length_is_400_and_closes() {
    let gw = Gateway::start(&[]);
    let mut s = gw.connect();
    s.write_all(
        b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    )
    .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 400);
    assert!(is_closed(&mut s));
}

#[test]
fn malformed_chunk_is_400_and_closes() {
    let gw = Gateway::start(&[]);
    let mut s = gw.connect();
    s.write_all(
        b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 400);
    assert!(is_closed(&mut s));
}

#[test]
fn unknown_route_404_and_wrong_method_405_use_json_errors() {
    let gw = Gateway::start(&[]);
    let r = gw.get("/v1/nothing-here");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    let r = gw.request("DELETE", "/healthz", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

// ------------------------------------------------------------------ deadlines

#[test]
fn slowloris_is_cut_after_head_deadline() {
    let gw = Gateway::start(&["--head-timeout-ms", "300"]);
    let mut s = gw.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .unwrap();
    // The server answers 408 and closes when the deadline fires; we just wait for that event.
    let r = read_response(&mut s).expect("408");
    assert_eq!(r.status, 408);
    assert!(is_closed(&mut s));
    let line = gw.wait_log("deadline=head");
    assert!(line.contains("scope=server:"), "{line}");
}

#[test]
fn keepalive_idle_connection_is_closed() {
    let gw = Gateway::start(&["--keepalive-idle-ms", "300"]);
    let mut s = gw.connect();
    write_request(&mut s, "GET", "/healthz", &[], b"");
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    assert!(
        is_closed(&mut s),
        "idle keep-alive connection closed by the server"
    );
    gw.wait_log("deadline=keepalive_idle");
}

// ------------------------------------------------------------------ scopes

#[test]
fn handler_panic_is_500_and_other_connections_go_on() {
    let gw = Gateway::start(&["--dev"]);
    let mut other = gw.connect();
    write_request(&mut other, "GET", "/healthz", &[], b"");
    assert_eq!(read_response(&mut other).unwrap().status, 200);
    let r = gw.get("/debug/panic");
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["code"], "internal");
    gw.wait_log("event=panic");
    write_request(&mut other, "GET", "/healthz", &[], b"");
    assert_eq!(
        read_response(&mut other).unwrap().status,
        200,
        "a concurrent connection is untouched"
    );
    assert_eq!(gw.get("/healthz").status, 200);
}

#[test]
fn peer_gone_mid_request_cancels_its_scope() {
    let gw = Gateway::start(&["--dev"]);
    let mut s = gw.connect();
    write_request(&mut s, "GET", "/debug/sleep?ms=10000", &[], b"");
    wait_scopes(&gw, |d| {
        d.to_string().contains("/debug/sleep?") || d.to_string().contains("\"/debug/sleep\"")
    });
    drop(s);
    let line = gw.wait_log("event=request_cancelled");
    assert!(line.contains("reason=peer_closed"), "{line}");
    wait_scopes(&gw, |d| server_children(d).is_empty());
}

#[test]
fn debug_scopes_returns_to_server_only_after_clients_leave() {
    let gw = Gateway::start(&[]);
    let conns: Vec<_> = (0..5)
        .map(|_| {
            let mut s = gw.connect();
            write_request(&mut s, "GET", "/healthz", &[], b"");
            read_response(&mut s).unwrap();
            s
        })
        .collect();
    let dump = wait_scopes(&gw, |d| server_children(d).len() == 5);
    assert!(server_children(&dump).iter().all(|c| c["kind"] == "conn"));
    drop(conns);
    let dump = wait_scopes(&gw, |d| server_children(d).is_empty());
    assert_eq!(
        dump["scopes"].as_array().map(|a| a.len()),
        Some(1),
        "one root: the server"
    );
    assert_eq!(dump["scopes"][0]["kind"], "server");
}

// ------------------------------------------------------------------ operations

#[test]
fn metrics_parse_as_prometheus_text() {
    let gw = Gateway::start(&[]);
    gw.get("/healthz");
    gw.get("/missing");
    let r = gw.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain; version=0.0.4"));
    let samples =
        consult_edge::observe::parse_prometheus_text(&r.text()).expect("valid exposition");
    let value = |name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .find(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.value)
    };
    assert!(value("consult_edge_http_requests_total", Some(("code", "200"))).unwrap_or(0.0) >= 1.0);
    assert!(value("consult_edge_http_requests_total", Some(("code", "404"))).unwrap_or(0.0) >= 1.0);
    assert!(value("consult_edge_live_scopes", None).unwrap_or(0.0) >= 1.0);
    assert!(value("consult_edge_pending_timers", None).is_some());
    assert!(value("consult_edge_connections_open", None).unwrap_or(0.0) >= 1.0);
}

#[test]
fn max_connections_refuses_the_extra_one() {
    let gw = Gateway::start(&["--max-connections", "2"]);
    let mut a = gw.connect();
    let mut b = gw.connect();
    write_request(&mut a, "GET", "/healthz", &[], b"");
    write_request(&mut b, "GET", "/healthz", &[], b"");
    assert_eq!(read_response(&mut a).unwrap().status, 200);
    assert_eq!(read_response(&mut b).unwrap().status, 200);
    let mut c = gw.connect();
    assert!(is_closed(&mut c), "the third connection is closed at once");
    write_request(&mut a, "GET", "/metrics", &[], b"");
    let text = read_response(&mut a).unwrap().text();
    let samples = consult_edge::observe::parse_prometheus_text(&text).unwrap();
    let rejected = samples
        .iter()
        .find(|s| s.name == "consult_edge_connections_rejected_total")
        .map(|s| s.value);
    assert_eq!(rejected, Some(1.0));
}

#[test]
fn kiosk_page_is_served_with_security_headers() {
    let gw = Gateway::start(&[]);
    let r = gw.get("/");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/html"));
    assert!(r
        .header("content-security-policy")
        .unwrap_or("")
        .contains("default-src 'none'"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("cache-control").is_some());
    let js = gw.get("/consult-client.js");
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .unwrap_or("")
        .contains("javascript"));
}

// ------------------------------------------------------------------ shutdown

#[test]
fn sigterm_answers_in_flight_requests_and_exits_zero() {
    let mut gw = Gateway::start(&["--dev"]);
    let mut s = gw.connect();
    write_request(&mut s, "GET", "/debug/sleep?ms=400", &[], b"");
    wait_scopes(&gw, |d| d.to_string().contains("/debug/sleep"));
    let mut idle = gw.connect();
    let started = Instant::now();
    gw.signal(rustix::process::Signal::TERM);
    let r = read_response(&mut s).expect("in-flight request answered");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        is_closed(&mut idle),
        "idle connections are closed on shutdown"
    );
    let status = gw.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn serve_with_bad_option_exits_2() {
    let (status, _, err) = support::run(&["serve", "--no-such-option"]);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("no-such-option"), "{err}");
    let (status, out, _) = support::run(&["serve", "--help"]);
    assert_eq!(status.code(), Some(0));
    assert!(out.contains("--listen"));
}
