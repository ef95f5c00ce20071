//! Black-box tests of `consult-edge loadgen`: the real binary, real sockets on 127.0.0.1.
//!
//! Grouped by area: usage (exit 2 before anything is opened), failures reported in the JSON
//! line (exit 1), runs against a minimal relay speaking the peers' protocol subset (the
//! counting end to end), and a full run against the real gateway (exit 0).

mod support;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use async_tungstenite::tungstenite::Message;
use smol::stream::StreamExt;
use support::Gateway;

/// Writes a 0600 HS256 secret of 40 ASCII bytes into `dir` and returns its path.
fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("secret");
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .expect("create secret");
    file.write_all(b"loadgen-test-secret-0123456789abcdefghij")
        .expect("write secret");
    path
}

/// A loopback port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Runs the loadgen; returns (exit code, the parsed JSON line if stdout held exactly one).
fn loadgen(args: &[&str]) -> (i32, Option<serde_json::Value>, String) {
    let mut all = vec!["loadgen"];
    all.extend_from_slice(args);
    let (status, stdout, stderr) = support::run(&all);
    let lines: Vec<&str> = stdout.lines().collect();
    let json = match lines.as_slice() {
        [line] => Some(serde_json::from_str(line).expect("the stdout line is JSON")),
        _ => None,
    };
    (status.code().unwrap_or(-1), json, stderr)
}

// ---- usage: refused before anything is opened ----

#[test]
fn usage_remote_target_refused_exit_2_no_report() {
    let (code, json, stderr) = loadgen(&[
        "--url",
        "ws://192.0.2.1:80",
        "--connections",
        "2",
        "--rate",
        "1",
        "--duration",
        "1",
    ]);
    assert_eq!(code, 2);
    assert!(json.is_none());
    assert!(stderr.contains("only targets this machine"), "{stderr}");
}

#[test]
fn usage_odd_connections_refused_exit_2() {
    let (code, json, _) = loadgen(&[
        "--url",
        "ws://127.0.0.1:1",
        "--connections",
        "3",
        "--rate",
        "1",
        "--duration",
        "1",
    ]);
    assert_eq!((code, json.is_some()), (2, false));
}

#[test]
fn usage_missing_default_key_refused_exit_2_and_not_created() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8 path");
    let (code, json, stderr) = loadgen(&[
        "--url",
        "ws://127.0.0.1:1",
        "--connections",
        "2",
        "--rate",
        "1",
        "--duration",
        "1",
        "--data-dir",
        dir,
    ]);
    assert_eq!((code, json.is_some()), (2, false));
    assert!(stderr.contains("jwt-secret"), "{stderr}");
    assert!(!tmp.path().join("jwt-secret").exists());
}

// ---- failures: reported in the one JSON line, exit 1 ----

#[test]
fn failure_nothing_listening_reports_connect_refused_exit_1() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let secret = secret_file(tmp.path());
    let url = format!("ws://127.0.0.1:{}", closed_port());
    let (code, json, _) = loadgen(&[
        "--url",
        &url,
        "--connections",
        "4",
        "--rate",
        "10",
        "--duration",
        "1",
        "--peer-mode",
        "--json-only",
        "--jwt-secret-file",
        secret.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 1);
    let json = json.expect("one JSON line");
    assert_eq!(json["connections_target"], 4);
    assert_eq!(json["connections_held"], 0);
    assert_eq!(json["errors"]["connect_refused"], 4);
    assert_eq!(json["sent"], 0);
    assert!(json["latency_us"]["p99"].is_null());
}

#[test]
fn failure_wrong_key_reports_upgrade_401_exit_1() {
    let gw = Gateway::start(&[]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let secret = secret_file(tmp.path());
    let url = format!("ws://{}", gw.addr);
    let (code, json, _) = loadgen(&[
        "--url",
        &url,
        "--connections",
        "2",
        "--rate",
        "1",
        "--duration",
        "1",
        "--peer-mode",
        "--json-only",
        "--jwt-secret-file",
        secret.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 1);
    let json = json.expect("one JSON line");
    assert_eq!(json["connections_held"], 0);
    assert_eq!(json["errors"]["upgrade_http_401"], 2, "{json}");
}

// ---- against a minimal relay: the peers' subset, on a thread of this test ----

/// Consultation id → the command queues of the sockets that joined it.
type Rooms = Rc<RefCell<HashMap<String, Vec<async_channel::Sender<String>>>>>;

/// Starts a relay that speaks the peers' subset (`ready`; `join` → `joined`; `send` → `ack`
/// and `message` to the other joined sockets) and drops every `drop_every`-th relayed message.
fn start_relay(drop_every: Option<u64>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let ex = smol::LocalExecutor::new();
        let rooms = Rooms::default();
        let sends = Rc::new(Cell::new(0u64));
        smol::block_on(ex.run(async {
            let listener = smol::Async::new(listener).expect("async listener");
            while let Ok((stream, _)) = listener.accept().await {
                let conn = relay_conn(stream, rooms.clone(), sends.clone(), drop_every);
                ex.spawn(conn).detach();
            }
        }));
    });
    addr
}

enum RelayEvent {
    Frame(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
    Out(Option<String>),
}

async fn relay_conn(
    stream: smol::Async<std::net::TcpStream>,
    rooms: Rooms,
    sends: Rc<Cell<u64>>,
    drop_every: Option<u64>,
) {
    let Ok(mut ws) = async_tungstenite::accept_async(stream).await else {
        return;
    };
    let (tx, rx) = async_channel::unbounded::<String>();
    if ws.send(Message::text(r#"{"type":"ready"}"#)).await.is_err() {
        return;
    }
    loop {
        let event = smol::future::or(async { RelayEvent::Frame(ws.next().await) }, async {
            RelayEvent::Out(rx.recv().await.ok())
        })
        .await;
        let reply = match event {
            RelayEvent::Frame(Some(Ok(Message::Text(text)))) => {
                let v: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
                let room = v["consultation"].as_str().unwrap_or_default().to_string();
                match v["type"].as_str() {
                    Some("join") => {
                        rooms
                            .borrow_mut()
                            .entry(room.clone())
                            .or_default()
                            .push(tx.clone());
                        serde_json::json!({"type": "joined", "consultation": room})
                    }
                    Some("send") => {
                        sends.set(sends.get() + 1);
                        let dropped = drop_every.is_some_and(|k| sends.get().is_multiple_of(k));
                        let message = serde_json::json!({"type": "message", "consultation": room,
                            "body": v["body"], "client_id": v["client_id"]});
                        for other in rooms.borrow().get(&room).into_iter().flatten() {
                            if !dropped && !other.same_channel(&tx) {
                                let _ = other.try_send(message.to_string());
                            }
                        }
                        serde_json::json!({"type": "ack", "client_id": v["client_id"]})
                    }
                    _ => continue,
                }
            }
            RelayEvent::Frame(Some(Ok(_))) => continue,
            RelayEvent::Out(Some(text)) => {
                if ws.send(Message::text(text)).await.is_err() {
                    break;
                }
                continue;
            }
            RelayEvent::Frame(_) | RelayEvent::Out(None) => break,
        };
        if ws.send(Message::text(reply.to_string())).await.is_err() {
            break;
        }
    }
}

fn run_against(addr: SocketAddr) -> (i32, serde_json::Value) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let secret = secret_file(tmp.path());
    let url = format!("ws://{addr}");
    let (code, json, stderr) = loadgen(&[
        "--url",
        &url,
        "--connections",
        "20",
        "--rate",
        "50",
        "--duration",
        "2",
        "--ramp-batch",
        "8",
        "--peer-mode",
        "--json-only",
        "--jwt-secret-file",
        secret.to_str().expect("utf-8 path"),
    ]);
    (
        code,
        json.unwrap_or_else(|| panic!("no JSON line; stderr: {stderr}")),
    )
}

#[test]
fn relay_twenty_sockets_all_delivered_exit_0() {
    let (code, json) = run_against(start_relay(None));
    assert_eq!(json["connections_held"], 20, "{json}");
    assert_eq!(json["sent"], 100, "{json}");
    assert_eq!(json["acked"], 100, "{json}");
    assert_eq!(json["received"], 100, "{json}");
    assert_eq!(json["lost"], 0, "{json}");
    assert_eq!(json["errors"], serde_json::json!({}), "{json}");
    let p50 = json["latency_us"]["p50"].as_u64().expect("p50");
    let p99 = json["latency_us"]["p99"].as_u64().expect("p99");
    let max = json["latency_us"]["max"].as_u64().expect("max");
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{json}");
    assert!(json["rss"].is_null(), "{json}");
    assert_eq!(code, 0, "{json}");
}

#[test]
fn relay_dropping_every_tenth_reports_lost_exit_1() {
    let (code, json) = run_against(start_relay(Some(10)));
    assert_eq!(json["connections_held"], 20, "{json}");
    assert_eq!(json["sent"], 100, "{json}");
    assert_eq!(json["acked"], 100, "{json}");
    assert_eq!(json["received"], 90, "{json}");
    assert_eq!(json["lost"], 10, "{json}");
    assert_eq!(code, 1, "{json}");
}

// ---- a full run against the real gateway ----

#[test]
fn gateway_twenty_sockets_all_held_nothing_lost_exit_0() {
    let gw = Gateway::start(&[]);
    let url = format!("ws://{}", gw.addr);
    let pid = gw.pid().to_string();
    let (code, json, stderr) = loadgen(&[
        "--url",
        &url,
        "--connections",
        "20",
        "--rate",
        "50",
        "--duration",
        "2",
        "--json-only",
        "--data-dir",
        gw.data_dir.to_str().expect("utf-8 path"),
        "--pid",
        &pid,
    ]);
    let json = json.unwrap_or_else(|| panic!("no JSON line; stderr: {stderr}"));
    assert_eq!(json["connections_target"], 20, "{json}");
    assert_eq!(json["connections_held"], 20, "{json}");
    assert_eq!(json["sent"], 100, "{json}");
    assert_eq!(json["acked"], 100, "{json}");
    assert_eq!(json["received"], 100, "{json}");
    assert_eq!(json["lost"], 0, "{json}");
    assert_eq!(json["errors"], serde_json::json!({}), "{json}");
    assert_eq!(json["closes"], serde_json::json!({}), "{json}");
    assert!(json["latency_us"]["p99"].as_u64().is_some(), "{json}");
    assert!(json["rss"]["kib_per_socket"].as_f64().is_some(), "{json}");
    assert_eq!(code, 0, "{json}");
}
