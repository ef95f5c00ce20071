//! A scripted stand-in for the gateway, to test the kiosk client's protocol logic today.
//!
//! # Invariants
//!
//! 1. It is a peer speaking the SPEC's wire protocol from a fixed script, not a model of our
//!    server: every frame it expects from the client is asserted, every frame it sends is one
//!    the SPEC allows. A script step that does not happen fails the test within [`STEP_TIMEOUT`].
//! 2. It serves the kiosk assets with the gateway's security headers, so the page under test is
//!    the embedded one, under its real CSP.
//!
//! # Implementation
//!
//! One listener thread. Each connection's request line is peeked (not consumed): `/v1/ws`
//! connections are handed, un-read, to the script thread through a channel (tungstenite does
//! the handshake there); anything else is answered inline over HTTP/1.1 with `Connection: close`
//! — the kiosk assets, plus canned answers for `GET /v1/consultations` and
//! `POST /v1/auth/refresh`, whose request bodies are passed to the script.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{self, Message, WebSocket};
use serde_json::{json, Value};

/// How long one step of the script may wait for the client (a reconnect backoff is ≤ 1 s here).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest request head read (the page's requests are well under 4 KiB).
const HEAD_MAX: usize = 16 * 1024;

/// The listening stand-in and the script's ends of its channels.
pub struct ScriptedGateway {
    /// Where the page connects (HTTP and WebSocket on one port, like the gateway).
    pub addr: SocketAddr,
    /// Raw TCP streams of `/v1/ws` upgrades, in arrival order, not yet handshaken.
    sockets: Receiver<TcpStream>,
    /// Bodies of `POST /v1/auth/refresh` requests, parsed as JSON.
    pub refreshes: Receiver<Value>,
}

/// Canned replies of the HTTP side.
#[derive(Clone)]
pub struct Canned {
    /// Body of `GET /v1/consultations`.
    pub consultations: Value,
    /// Body of `POST /v1/auth/refresh`.
    pub refresh: Value,
}

impl ScriptedGateway {
    pub fn start(canned: Canned) -> ScriptedGateway {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted gateway");
        let addr = listener.local_addr().expect("scripted gateway address");
        let (ws_tx, sockets) = mpsc::channel();
        let (refresh_tx, refreshes) = mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let _ = route(conn, &canned, &ws_tx, &refresh_tx);
            }
        });
        ScriptedGateway {
            addr,
            sockets,
            refreshes,
        }
    }

    /// Wait for the client's next WebSocket connection and complete the upgrade.
    pub fn accept(&self) -> Result<WebSocket<TcpStream>, String> {
        let tcp = self
            .sockets
            .recv_timeout(STEP_TIMEOUT)
            .map_err(|e| format!("no WebSocket connection from the client: {e}"))?;
        tcp.set_read_timeout(Some(STEP_TIMEOUT))
            .map_err(|e| e.to_string())?;
        tungstenite::accept(tcp).map_err(|e| format!("upgrade: {e}"))
    }
}

fn route(
    conn: TcpStream,
    canned: &Canned,
    ws_tx: &Sender<TcpStream>,
    refresh_tx: &Sender<Value>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(STEP_TIMEOUT))?;
    let mut peeked = [0u8; 64];
    let n = conn.peek(&mut peeked)?;
    if peeked
        .get(..n)
        .unwrap_or_default()
        .starts_with(b"GET /v1/ws")
    {
        let _ = ws_tx.send(conn);
        return Ok(());
    }
    // HTTP requests may be slow or many; answer each on its own thread.
    let canned = canned.clone();
    let refresh_tx = refresh_tx.clone();
    std::thread::spawn(move || answer_http(conn, &canned, &refresh_tx));
    Ok(())
}

fn answer_http(
    mut conn: TcpStream,
    canned: &Canned,
    refresh_tx: &Sender<Value>,
) -> std::io::Result<()> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if data.len() > HEAD_MAX {
            return Ok(());
        }
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        data.extend_from_slice(buf.get(..n).unwrap_or_default());
    };
    let head = String::from_utf8_lossy(data.get(..head_end).unwrap_or_default()).to_string();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let body = data.get(head_end..).unwrap_or_default();
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("");
    let target = words.next().unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let (status, content_type, payload): (&str, &str, Vec<u8>) = match (method, path) {
        ("GET", "/v1/consultations") => (
            "200 OK",
            "application/json",
            canned.consultations.to_string().into_bytes(),
        ),
        ("POST", "/v1/auth/refresh") => {
            let _ = refresh_tx.send(serde_json::from_slice(body).unwrap_or(Value::Null));
            (
                "200 OK",
                "application/json",
                canned.refresh.to_string().into_bytes(),
            )
        }
        ("GET", p) => match consult_edge::kiosk::asset(p) {
            Some(a) => ("200 OK", a.content_type, a.body.to_vec()),
            None => ("404 Not Found", "text/plain", Vec::new()),
        },
        _ => ("405 Method Not Allowed", "text/plain", Vec::new()),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Security-Policy: {}\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        consult_edge::kiosk::CONTENT_SECURITY_POLICY,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(&payload);
    conn.write_all(&out)
}

/// Read the client's next JSON text frame (pings and pongs skipped).
pub fn recv(ws: &mut WebSocket<TcpStream>) -> Result<Value, String> {
    loop {
        match ws.read().map_err(|e| format!("read frame: {e}"))? {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str())
                    .map_err(|e| format!("client sent bad JSON {t}: {e}"))
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return Err(format!("unexpected frame from client: {other:?}")),
        }
    }
}

/// Send one JSON text frame.
pub fn send(ws: &mut WebSocket<TcpStream>, frame: Value) -> Result<(), String> {
    ws.send(Message::text(frame.to_string()))
        .map_err(|e| format!("send {frame}: {e}"))
}

/// Close with `code` and wait for the client's close reply.
pub fn close(ws: &mut WebSocket<TcpStream>, code: u16) -> Result<(), String> {
    ws.close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    }))
    .map_err(|e| format!("close {code}: {e}"))?;
    loop {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(format!("closing handshake after {code}: {e}")),
        }
    }
}

/// The `ready` frame for `user`.
pub fn ready(user: &str, role: &str) -> Value {
    json!({"type": "ready", "session": "s-1", "user": user, "role": role,
           "token_exp": 4102444800u64, "heartbeat_s": 15, "idle_timeout_s": 1800})
}

/// A stored `message` frame.
pub fn message(consultation: &str, seq: u64, from: &str, body: &str, client_id: &str) -> Value {
    json!({"type": "message", "consultation": consultation, "seq": seq, "from": from,
           "role": if from.starts_with('d') { "doctor" } else { "patient" }, "body": body,
           "client_id": client_id, "ts": "2026-11-26T10:00:00.000Z", "traceparent": null})
}
