//! Black-box tests of the token lifecycle (SPEC §3, §6, issue 5) against the real binary:
//! refresh rotation and reuse detection, logout, what survives a restart, and start-up errors.
//!
//! A revoked login session (`sid`) must be refused everywhere: HTTP (401), the upgrade (401),
//! refresh (401), and its live sockets are closed with 4503.

mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use support::ws::{connect_first_frame, connect_ready, try_connect, Client, Event, Upgrade};
use support::{Gateway, Response, IO_TIMEOUT};

/// Close code of a revoked login session (SPEC §5).
const CLOSE_REVOKED: u16 = 4503;
/// Close code of a refused `auth` frame (SPEC §5).
const CLOSE_POLICY: u16 = 1008;

// ------------------------------------------------------------------ helpers

/// `consult-edge token` for user `sub` of `role` in login session `sid`.
fn access(gw: &Gateway, sub: &str, role: &str, sid: &str) -> String {
    gw.token(&["--sub", sub, "--role", role, "--sid", sid])
}

fn refresh_token(gw: &Gateway, sub: &str, role: &str, sid: &str) -> String {
    gw.token(&["--sub", sub, "--role", role, "--sid", sid, "--refresh"])
}

fn post_json(gw: &Gateway, path: &str, auth: Option<&str>, body: &[u8]) -> Response {
    let bearer = auth.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    gw.request("POST", path, &headers, body)
}

fn refresh(gw: &Gateway, token: &str) -> Response {
    let body = json!({ "refresh_token": token }).to_string();
    post_json(gw, "/v1/auth/refresh", None, body.as_bytes())
}

fn logout(gw: &Gateway, token: &str) -> Response {
    post_json(gw, "/v1/auth/logout", Some(token), b"")
}

/// Status of an authenticated `GET /v1/consultations` (200 for a live patient token).
fn http_status(gw: &Gateway, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    gw.request("GET", "/v1/consultations", &[("Authorization", &auth)], b"")
        .status
}

/// Status of an upgrade with `Authorization: Bearer <token>` (101 when it was upgraded).
async fn upgrade_status(gw: &Gateway, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    match try_connect(gw.addr, "/v1/ws", &[("Authorization", &auth)]).await {
        Upgrade::Ok(_) => 101,
        Upgrade::Refused(status) => status,
    }
}

fn assert_unauthorized(r: &Response) {
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "unauthorized", "{}", r.text());
    assert!(
        r.header("www-authenticate").is_some(),
        "401 without WWW-Authenticate"
    );
}

/// The (access, refresh) pair of a 200 refresh response, checked for its documented shape.
fn pair(r: &Response) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = r.json();
    assert_eq!(v["token_type"], "Bearer", "{v}");
    assert_eq!(v["expires_in"], 900, "{v}");
    let field = |name: &str| {
        v[name]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    (
        field("access_token").unwrap_or_else(|| panic!("no access_token: {v}")),
        field("refresh_token").unwrap_or_else(|| panic!("no refresh_token: {v}")),
    )
}

/// A socket that is still served answers a well-formed request (here a refused join).
async fn assert_alive(client: &mut Client) {
    client
        .send(json!({"type": "join", "consultation": "no-such-consultation"}))
        .await;
    let answer = client.recv_type("error").await;
    assert_eq!(answer["code"], "not_found", "{answer}");
}

/// Runs `serve` on `data_dir` with `extra` options, expecting it to exit by itself (bounded).
/// Returns (status, stderr). Uses the same binary selection as the shared harness.
fn serve_until_exit(data_dir: &Path, extra: &[&str]) -> (ExitStatus, String) {
    let bin = std::env::var("CONSULT_EDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_consult-edge")));
    let runner = std::env::var("CONSULT_EDGE_RUNNER").unwrap_or_default();
    let mut parts = runner.split_whitespace();
    let mut cmd = match parts.next() {
        Some(first) => {
            let mut cmd = Command::new(first);
            cmd.args(parts).arg(bin);
            cmd
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn consult-edge serve");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > IO_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve kept running although it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("read stderr");
    }
    (status, stderr)
}

/// `serve` refused to start: a non-zero exit (not a signal, not a panic) and a stderr line that
/// contains every word of `must_say`.
fn assert_refused_to_start(status: ExitStatus, stderr: &str, must_say: &[&str]) {
    assert!(!status.success(), "serve exited 0; stderr:\n{stderr}");
    assert!(
        status.code().is_some(),
        "serve died by a signal: {status:?}\n{stderr}"
    );
    assert!(!stderr.contains("panicked at"), "serve panicked:\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|line| must_say.iter().all(|word| line.contains(word))),
        "no stderr line says {must_say:?}:\n{stderr}"
    );
}

// ------------------------------------------------------------------ refresh

#[test]
fn refresh_valid_token_returns_new_pair_that_works_in_same_sid() {
    let gw = Gateway::start(&[]);
    let old_access = access(&gw, "p1", "patient", "s1");
    let (new_access, new_refresh) = pair(&refresh(&gw, &refresh_token(&gw, "p1", "patient", "s1")));
    assert_eq!(http_status(&gw, &new_access), 200);
    smol::block_on(async {
        let (client, ready) = connect_ready(gw.addr, &new_access).await;
        assert_eq!(ready["user"], "p1", "{ready}");
        assert_eq!(ready["role"], "patient", "{ready}");
        client.close().await;
    });
    // The new refresh token rotates once more.
    let (third_access, _) = pair(&refresh(&gw, &new_refresh));
    assert_eq!(http_status(&gw, &third_access), 200);
    // Same login session: logging out with the newest token revokes the first one too.
    assert_eq!(logout(&gw, &third_access).status, 204);
    assert_eq!(http_status(&gw, &old_access), 401);
    assert_eq!(http_status(&gw, &new_access), 401);
}

#[test]
fn refresh_with_access_token_is_401() {
    let gw = Gateway::start(&[]);
    let token = access(&gw, "p1", "patient", "s1");
    assert_unauthorized(&refresh(&gw, &token));
    assert_unauthorized(&refresh(&gw, "not.a.token"));
    // Refusing it revoked nothing.
    assert_eq!(http_status(&gw, &token), 200);
}

#[test]
fn refresh_bad_body_is_400_and_wrong_type_415() {
    let gw = Gateway::start(&[]);
    for body in [&b"{"[..], b"{}", br#"{"refresh_token":5}"#, b""] {
        let r = post_json(&gw, "/v1/auth/refresh", None, body);
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
    }
    let token = refresh_token(&gw, "p1", "patient", "s1");
    let body = json!({ "refresh_token": token }).to_string();
    let r = gw.request(
        "POST",
        "/v1/auth/refresh",
        &[("Content-Type", "text/plain")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 415, "{}", r.text());
    // The refused request did not use up the token.
    pair(&refresh(&gw, &token));
}

#[test]
fn refresh_reused_token_is_401_and_revokes_the_whole_sid() {
    let gw = Gateway::start(&[]);
    let first_access = access(&gw, "p1", "patient", "s1");
    let other_sid = access(&gw, "p1", "patient", "s2");
    let used = refresh_token(&gw, "p1", "patient", "s1");
    smol::block_on(async {
        let (mut header_socket, _) = connect_ready(gw.addr, &first_access).await;
        let (mut frame_socket, _) = connect_first_frame(gw.addr, &first_access).await;
        let (mut bystander, _) = connect_ready(gw.addr, &other_sid).await;
        let (rotated_access, rotated_refresh) = pair(&refresh(&gw, &used));
        let (mut rotated_socket, _) = connect_ready(gw.addr, &rotated_access).await;

        assert_unauthorized(&refresh(&gw, &used));

        for socket in [&mut header_socket, &mut frame_socket, &mut rotated_socket] {
            assert_eq!(socket.expect_close().await, Some(CLOSE_REVOKED));
        }
        for token in [&first_access, &rotated_access] {
            assert_eq!(http_status(&gw, token), 401);
            assert_eq!(upgrade_status(&gw, token).await, 401);
        }
        // The rotated refresh token belongs to the revoked sid as well.
        assert_unauthorized(&refresh(&gw, &rotated_refresh));
        // Another login session of the same user is untouched.
        assert_alive(&mut bystander).await;
        assert_eq!(http_status(&gw, &other_sid), 200);
    });
}

#[test]
fn refresh_same_token_concurrently_only_one_wins() {
    let gw = Gateway::start(&[]);
    let token = refresh_token(&gw, "p1", "patient", "s1");
    let body = json!({ "refresh_token": token }).to_string();
    // All requests are written before any response is read: they race inside the gateway.
    let mut conns: Vec<_> = (0..4)
        .map(|_| {
            let mut s = gw.connect();
            support::write_request(
                &mut s,
                "POST",
                "/v1/auth/refresh",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            );
            s
        })
        .collect();
    let mut statuses: Vec<u16> = conns
        .iter_mut()
        .map(|s| support::read_response(s).expect("a response").status)
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 401, 401, 401]);
}

// ------------------------------------------------------------------ logout

#[test]
fn logout_is_204_then_sid_refused_everywhere_and_its_sockets_closed_4503() {
    let gw = Gateway::start(&[]);
    let token = access(&gw, "p1", "patient", "s1");
    let sibling = access(&gw, "p1", "patient", "s1");
    let refresh_of_sid = refresh_token(&gw, "p1", "patient", "s1");
    let other_sid = access(&gw, "p1", "patient", "s2");
    smol::block_on(async {
        let (mut a, _) = connect_ready(gw.addr, &token).await;
        let (mut b, _) = connect_first_frame(gw.addr, &sibling).await;
        let (mut bystander, _) = connect_ready(gw.addr, &other_sid).await;

        let r = logout(&gw, &token);
        assert_eq!(r.status, 204, "{}", r.text());
        assert!(r.body.is_empty(), "204 with a body: {}", r.text());

        assert_eq!(a.expect_close().await, Some(CLOSE_REVOKED));
        assert_eq!(b.expect_close().await, Some(CLOSE_REVOKED));
        for t in [&token, &sibling] {
            assert_eq!(http_status(&gw, t), 401);
            assert_eq!(upgrade_status(&gw, t).await, 401);
        }
        // First-frame auth with a revoked token is refused with a close, never `ready`.
        match try_connect(gw.addr, "/v1/ws", &[]).await {
            Upgrade::Ok(mut c) => {
                c.send(json!({"type": "auth", "token": token})).await;
                match c.next_event().await {
                    Event::Closed(Some(code)) => assert!(
                        code == CLOSE_POLICY || code == CLOSE_REVOKED,
                        "auth frame with a revoked token closed with {code}"
                    ),
                    other => panic!("auth frame with a revoked token got {other:?}"),
                }
            }
            Upgrade::Refused(status) => panic!("header-less upgrade refused: {status}"),
        }
        assert_unauthorized(&refresh(&gw, &refresh_of_sid));
        assert_unauthorized(&logout(&gw, &token));
        assert_alive(&mut bystander).await;
        assert_eq!(http_status(&gw, &other_sid), 200);
    });
}

#[test]
fn logout_without_valid_bearer_is_401() {
    let gw = Gateway::start(&[]);
    assert_unauthorized(&post_json(&gw, "/v1/auth/logout", None, b""));
    assert_unauthorized(&logout(&gw, "not.a.token"));
    let refresh_as_access = refresh_token(&gw, "p1", "patient", "s1");
    assert_unauthorized(&logout(&gw, &refresh_as_access));
    // The refresh token presented as a bearer did not revoke its sid.
    pair(&refresh(&gw, &refresh_as_access));
}

// ------------------------------------------------------------------ restart

/// Opens a consultation of p1 with d1 over HTTP; returns its id.
fn create(gw: &Gateway, patient: &str) -> String {
    let r = post_json(
        gw,
        "/v1/consultations",
        Some(patient),
        br#"{"doctor":"d1"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().expect("id").to_owned()
}

fn get_json(gw: &Gateway, path: &str, token: &str) -> Value {
    let auth = format!("Bearer {token}");
    let r = gw.request("GET", path, &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

fn bodies(history: &Value) -> Vec<(u64, String)> {
    history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap_or(0),
                m["body"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn restart_keeps_consultations_and_messages_with_their_seqs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (open_id, closed_id, patient);
    {
        let mut gw = Gateway::start_in(dir.path(), &[]);
        patient = access(&gw, "p1", "patient", "s1");
        open_id = create(&gw, &patient);
        closed_id = create(&gw, &patient);
        smol::block_on(async {
            let (mut c, _) = connect_ready(gw.addr, &patient).await;
            c.join(&open_id, 0).await;
            for i in 1..=3u64 {
                let ack = c
                    .send_message(&open_id, &format!("k{i}"), &format!("m{i}"))
                    .await;
                assert_eq!(ack["seq"], i, "{ack}");
            }
        });
        let r = post_json(
            &gw,
            &format!("/v1/consultations/{closed_id}/close"),
            Some(&patient),
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(gw.terminate().success());
    }
    let gw = Gateway::start_in(dir.path(), &[]);
    let open = get_json(&gw, &format!("/v1/consultations/{open_id}"), &patient);
    assert_eq!(open["state"], "open", "{open}");
    assert_eq!(open["last_seq"], 3, "{open}");
    let closed = get_json(&gw, &format!("/v1/consultations/{closed_id}"), &patient);
    assert_eq!(closed["state"], "closed", "{closed}");
    let history = get_json(
        &gw,
        &format!("/v1/consultations/{open_id}/messages"),
        &patient,
    );
    let expected: Vec<(u64, String)> = (1..=3).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(bodies(&history), expected);
    let list = get_json(&gw, "/v1/consultations", &patient);
    assert_eq!(
        list["consultations"].as_array().map(Vec::len),
        Some(2),
        "{list}"
    );
    smol::block_on(async {
        let (mut c, _) = connect_ready(gw.addr, &patient).await;
        let (replay, joined) = c.join(&open_id, 1).await;
        let seqs: Vec<u64> = replay.iter().filter_map(|m| m["seq"].as_u64()).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!(joined["last_seq"], 3, "{joined}");
        // Sequence numbers stay dense across the restart; a retried client_id is not re-stored.
        assert_eq!(c.send_message(&open_id, "k4", "m4").await["seq"], 4);
        assert_eq!(c.send_message(&open_id, "k2", "m2").await["seq"], 2);
    });
}

#[test]
fn restart_after_kill9_keeps_every_acked_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (id, patient);
    {
        let mut gw = Gateway::start_in(dir.path(), &[]);
        patient = access(&gw, "p1", "patient", "s1");
        id = create(&gw, &patient);
        smol::block_on(async {
            let (mut c, _) = connect_ready(gw.addr, &patient).await;
            for i in 1..=20u64 {
                let ack = c
                    .send_message(&id, &format!("k{i}"), &format!("m{i}"))
                    .await;
                assert_eq!(ack["seq"], i, "{ack}");
            }
        });
        gw.kill9();
    }
    let gw = Gateway::start_in(dir.path(), &[]);
    let history = get_json(&gw, &format!("/v1/consultations/{id}/messages"), &patient);
    let expected: Vec<(u64, String)> = (1..=20).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(bodies(&history), expected);
}

#[test]
fn restart_keeps_revocations_and_used_refresh_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (logged_out, logged_out_refresh, used, rotated_access, rotated_refresh, control);
    {
        let mut gw = Gateway::start_in(dir.path(), &[]);
        logged_out = access(&gw, "p1", "patient", "s1");
        logged_out_refresh = refresh_token(&gw, "p1", "patient", "s1");
        used = refresh_token(&gw, "p2", "patient", "s2");
        control = access(&gw, "p3", "patient", "s3");
        assert_eq!(logout(&gw, &logged_out).status, 204);
        (rotated_access, rotated_refresh) = pair(&refresh(&gw, &used));
        assert_eq!(http_status(&gw, &rotated_access), 200);
        assert!(gw.terminate().success());
    }
    let gw = Gateway::start_in(dir.path(), &[]);
    assert_eq!(http_status(&gw, &control), 200);
    // The logout survived.
    assert_eq!(http_status(&gw, &logged_out), 401);
    smol::block_on(async { assert_eq!(upgrade_status(&gw, &logged_out).await, 401) });
    assert_unauthorized(&refresh(&gw, &logged_out_refresh));
    // The used refresh token is still known as used: reuse is detected and revokes s2.
    assert_eq!(http_status(&gw, &rotated_access), 200);
    assert_unauthorized(&refresh(&gw, &used));
    assert_eq!(http_status(&gw, &rotated_access), 401);
    assert_unauthorized(&refresh(&gw, &rotated_refresh));
    assert_eq!(http_status(&gw, &control), 200);
}

// ------------------------------------------------------------------ start-up errors

#[test]
fn startup_corrupt_store_exits_nonzero_with_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage: Vec<u8> = (0..16_384u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("consult-edge.redb"), garbage).expect("write garbage");
    let (status, stderr) = serve_until_exit(dir.path(), &[]);
    assert_refused_to_start(status, &stderr, &["store", "corrupt"]);
}

#[test]
fn startup_truncated_store_exits_nonzero_with_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut gw = Gateway::start_in(dir.path(), &[]);
        let patient = access(&gw, "p1", "patient", "s1");
        create(&gw, &patient);
        assert!(gw.terminate().success());
    }
    let path = dir.path().join("consult-edge.redb");
    let len = std::fs::metadata(&path).expect("store file").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open store");
    file.set_len(len / 2).expect("truncate");
    drop(file);
    let (status, stderr) = serve_until_exit(dir.path(), &[]);
    assert_refused_to_start(status, &stderr, &["store", "corrupt"]);
}

#[test]
fn startup_group_readable_secret_file_exits_nonzero_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("shared-secret");
    std::fs::write(&secret, [7u8; 48]).expect("write secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let data = dir.path().join("data");
    let secret_arg = secret.to_string_lossy().into_owned();
    let (status, stderr) = serve_until_exit(&data, &["--jwt-secret-file", &secret_arg]);
    assert_refused_to_start(status, &stderr, &[&secret_arg]);
}

#[test]
fn token_unknown_role_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_string_lossy().into_owned();
    let (status, stdout, stderr) = support::run(&[
        "token",
        "--data-dir",
        &data,
        "--sub",
        "n1",
        "--role",
        "nurse",
    ]);
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stdout.trim().is_empty(), "a token was printed: {stdout}");
    assert!(
        stderr.contains("nurse"),
        "stderr does not say what was wrong: {stderr}"
    );
}
