//! The gateway end to end in one pass — health, an authenticated upgrade, a consultation with
//! messages both ways, logout closing the socket, SIGTERM. This is the set `make
//! test-aarch64` runs against the static ARM64 binary under qemu (see `mk/aarch64.mk`), so it
//! asserts outcomes only, never timings.

mod support;

use serde_json::json;
use support::ws::connect_ready;
use support::Gateway;

#[test]
fn smoke_health_chat_logout_and_sigterm() {
    let mut gw = Gateway::start(&[]);
    assert_eq!(gw.get("/healthz").json(), json!({"status": "ok"}));

    let patient = gw.token(&["--sub", "p1", "--role", "patient"]);
    let doctor = gw.token(&["--sub", "d1", "--role", "doctor"]);
    let auth = format!("Bearer {patient}");
    let r = gw.request(
        "POST",
        "/v1/consultations",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"doctor":"d1"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().expect("id").to_owned();

    smol::block_on(async {
        let (mut pc, ready) = connect_ready(gw.addr, &patient).await;
        assert_eq!(ready["user"], "p1");
        let (mut dc, _) = connect_ready(gw.addr, &doctor).await;
        pc.join(&id, 0).await;
        dc.join(&id, 0).await;
        assert_eq!(pc.send_message(&id, "p-1", "头疼两天了").await["seq"], 1);
        assert_eq!(dc.recv_type("message").await["body"], "头疼两天了");
        assert_eq!(dc.send_message(&id, "d-1", "发烧吗?").await["seq"], 2);
        assert_eq!(pc.recv_type("message").await["body"], "发烧吗?");

        let r = gw.request("POST", "/v1/auth/logout", &[("Authorization", &auth)], b"");
        assert_eq!(r.status, 204);
        assert_eq!(pc.expect_close().await, Some(4503));
        gw.signal(rustix::process::Signal::TERM);
        assert_eq!(dc.expect_close().await, Some(1001));
    });
    let status = gw
        .wait_exit(support::IO_TIMEOUT)
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}
