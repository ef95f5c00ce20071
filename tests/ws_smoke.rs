mod support;
use support::ws::*;
use support::Gateway;

#[test]
fn smoke_patient_doctor_chat() {
    let gw = Gateway::start(&[]);
    let p = gw.token(&["--sub", "p1", "--role", "patient"]);
    let d = gw.token(&["--sub", "d1", "--role", "doctor"]);
    let r = gw.request(
        "POST",
        "/v1/consultations",
        &[
            ("Authorization", &format!("Bearer {p}")),
            ("Content-Type", "application/json"),
        ],
        br#"{"doctor":"d1"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    smol::block_on(async {
        let (mut pc, ready) = connect_ready(gw.addr, &p).await;
        assert_eq!(ready["user"], "p1");
        let (mut dc, _) = connect_first_frame(gw.addr, &d).await;
        pc.join(&id, 0).await;
        dc.join(&id, 0).await;
        let ack = pc.send_message(&id, "k1", "hello doctor").await;
        assert_eq!(ack["seq"], 1, "{ack}");
        let m = dc.recv_type("message").await;
        assert_eq!(m["body"], "hello doctor");
        println!("{m}");
    });
}
