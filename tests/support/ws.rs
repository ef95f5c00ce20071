//! A real WebSocket client (async-tungstenite over async-io) for the black-box tests.
#![allow(dead_code)]

use async_io::Async;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use serde_json::{json, Value};
use smol::future::FutureExt;
use smol::stream::StreamExt;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Upper bound for waiting on one frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Client {
    pub ws: WebSocketStream<Async<TcpStream>>,
}

/// How an upgrade attempt ended.
#[derive(Debug)]
pub enum Upgrade {
    Ok(Box<Client>),
    /// Refused with an HTTP status.
    Refused(u16),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Client")
    }
}

pub async fn try_connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Upgrade {
    let stream = Async::<TcpStream>::connect(addr)
        .await
        .expect("tcp connect");
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    for (k, v) in headers {
        request.headers_mut().insert(
            async_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match async_tungstenite::client_async(request, stream).await {
        Ok((ws, _)) => Upgrade::Ok(Box::new(Client { ws })),
        Err(async_tungstenite::tungstenite::Error::Http(response)) => {
            Upgrade::Refused(response.status().as_u16())
        }
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

/// Connects with `Authorization: Bearer <token>` and reads `ready`.
pub async fn connect_ready(addr: SocketAddr, token: &str) -> (Client, Value) {
    let auth = format!("Bearer {token}");
    match try_connect(addr, "/v1/ws", &[("Authorization", &auth)]).await {
        Upgrade::Ok(mut c) => {
            let ready = c.recv_type("ready").await;
            (*c, ready)
        }
        Upgrade::Refused(status) => panic!("upgrade refused: {status}"),
    }
}

/// Connects without a header and authenticates with the first frame.
pub async fn connect_first_frame(addr: SocketAddr, token: &str) -> (Client, Value) {
    match try_connect(addr, "/v1/ws", &[]).await {
        Upgrade::Ok(mut c) => {
            c.send(json!({"type": "auth", "token": token})).await;
            let ready = c.recv_type("ready").await;
            (*c, ready)
        }
        Upgrade::Refused(status) => panic!("upgrade refused: {status}"),
    }
}

/// What the next event on the socket was.
#[derive(Debug)]
pub enum Event {
    Json(Value),
    Closed(Option<u16>),
}

impl Client {
    pub async fn send(&mut self, value: Value) {
        self.ws
            .send(Message::text(value.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        let _ = self.ws.send(message).await;
    }

    /// The next JSON frame or the close (with its code); pings are answered by tungstenite.
    pub async fn next_event(&mut self) -> Event {
        let next = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        return Event::Json(
                            serde_json::from_str(t.as_str()).expect("server sent JSON"),
                        )
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Event::Closed(frame.map(|f| u16::from(f.code)))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Event::Closed(None),
                }
            }
        };
        next.or(async {
            async_io::Timer::after(FRAME_TIMEOUT).await;
            panic!("no frame within {FRAME_TIMEOUT:?}")
        })
        .await
    }

    /// The next JSON frame (panics on close).
    pub async fn recv(&mut self) -> Value {
        match self.next_event().await {
            Event::Json(v) => v,
            Event::Closed(code) => panic!("closed ({code:?}) while a frame was expected"),
        }
    }

    /// Skips frames until one of type `kind` arrives.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
            if v["type"] == "error" && kind != "error" {
                panic!("error frame while waiting for {kind}: {v}");
            }
        }
    }

    /// Reads until the server closes; returns the close code (skipping frames before it).
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            if let Event::Closed(code) = self.next_event().await {
                return code;
            }
        }
    }

    pub async fn join(&mut self, consultation: &str, after: u64) -> (Vec<Value>, Value) {
        self.send(json!({"type": "join", "consultation": consultation, "after": after}))
            .await;
        let mut replay = Vec::new();
        loop {
            let v = self.recv().await;
            match v["type"].as_str() {
                Some("message") => replay.push(v),
                Some("joined") => return (replay, v),
                Some("presence") => continue,
                _ => panic!("unexpected frame during join: {v}"),
            }
        }
    }

    /// Sends and waits for the ack (other frames before it are skipped).
    pub async fn send_message(&mut self, consultation: &str, client_id: &str, body: &str) -> Value {
        self.send(json!({"type": "send", "consultation": consultation, "client_id": client_id, "body": body}))
            .await;
        loop {
            let v = self.recv().await;
            if v["type"] == "ack" && v["client_id"] == client_id {
                return v;
            }
            if v["type"] == "error" {
                return v;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(async_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
        while let Some(Ok(_)) = self.ws.next().await {}
    }
}
