//! One simulated client socket: connect, upgrade with a bearer token, `ready`, `join`, then
//! read everything and write what the pacer hands it.
//!
//! # Invariants
//!
//! - Opening is bounded by [`OPEN_TIMEOUT`]; it yields either a joined socket or one error key
//!   for the report, never a half-open socket.
//! - After `joined`, one task owns the socket and never stops reading while it is open, so the
//!   server's Pings are answered (tungstenite queues the Pong and flushes it on the next read)
//!   and relayed messages are timed when they arrive, not when we get round to them.
//! - Frames before `joined` (a replay of an earlier run's history in peer mode) are neither
//!   counted nor timed.
//! - Everything the server sends is parsed without panicking: an unparsable frame is counted
//!   as `bad_frame`.
//!
//! # Implementation
//!
//! `async_tungstenite::client_async_with_config` over `Async<TcpStream>` with small buffers
//! (tens of thousands of sockets live in this one process); the task selects between the next
//! frame and the next [`Out`] command from its bounded channel.

use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;

use crate::ws::tcp_socket::TcpSocket;
use serde::Deserialize;
use smol::stream::StreamExt;
use smol::{Async, Timer};

use super::stats::Run;

/// Deadline for connect + upgrade + `ready` + `join` + `joined` of one socket. Covers a
/// server whose listen backlog overflowed (SYN retransmits at 1, 3, 7, 15 s) without letting a
/// dead server hang the run.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Commands queued per socket before the pacer counts `client_backlog`: at the highest sane
/// per-socket rate (the server's 50/s limit) this is over a second of backlog.
pub const OUT_QUEUE: usize = 64;

/// Read buffer per socket: protocol frames are a few hundred bytes; tungstenite's 128 KiB
/// default would cost 6 GiB at 50,000 sockets.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Bytes buffered before a write is flushed; every frame is flushed at once anyway.
const WRITE_BUFFER_BYTES: usize = 0;

/// Largest message accepted from the server: the protocol's frame limit (SPEC §5, 64 KiB).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What the pacer and the teardown ask of a socket task.
#[derive(Debug)]
pub enum Out {
    /// Send this text frame (a `send`).
    Text(String),
    /// Send a client Ping (the `--heartbeat` option).
    Ping,
    /// Close with 1000 and keep reading until the server's echo ends the stream.
    Close,
}

/// Where to connect and how to authenticate one socket.
pub struct Target<'a> {
    /// The gateway's address.
    pub addr: SocketAddr,
    /// `ws://HOST:PORT/path`.
    pub url: &'a str,
    /// The access token for `Authorization: Bearer`.
    pub token: &'a str,
    /// The consultation to join.
    pub consultation: &'a str,
}

/// A socket that is upgraded, ready and joined.
pub type Socket = WebSocketStream<TcpSocket>;

/// The fields of a server frame the load generator looks at.
#[derive(Deserialize)]
struct Incoming {
    /// The frame's `type`.
    #[serde(rename = "type")]
    kind: String,
    /// `error.code`.
    #[serde(default)]
    code: Option<String>,
    /// `message.body`: starts with the send time, µs since the run's epoch.
    #[serde(default)]
    body: Option<String>,
}

/// Opens one socket up to `joined`; `Err` is the report's error key.
pub async fn open(target: Target<'_>) -> Result<Socket, String> {
    let timeout = async {
        Timer::after(OPEN_TIMEOUT).await;
        Err("open_timeout".to_string())
    };
    smol::future::or(open_inner(target), timeout).await
}

async fn open_inner(target: Target<'_>) -> Result<Socket, String> {
    let stream = Async::<TcpStream>::connect(target.addr)
        .await
        .map_err(|e| io_key("connect", &e))?;
    stream
        .get_ref()
        .set_nodelay(true)
        .map_err(|e| io_key("connect", &e))?;
    let mut request = target
        .url
        .into_client_request()
        .map_err(|_| "upgrade_bad_request".to_string())?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", target.token))
        .map_err(|_| "upgrade_bad_request".to_string())?;
    request.headers_mut().insert("authorization", bearer);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let (mut ws, _response) =
        async_tungstenite::client_async_with_config(request, TcpSocket::new(stream), Some(config))
            .await
            .map_err(|e| match e {
                WsError::Http(response) => format!("upgrade_http_{}", response.status().as_u16()),
                WsError::Io(e) => io_key("upgrade", &e),
                _ => "upgrade_failed".to_string(),
            })?;
    expect_frame(&mut ws, "ready").await?;
    let join = serde_json::json!({"type": "join", "consultation": target.consultation});
    ws.send(Message::text(join.to_string()))
        .await
        .map_err(|_| "join_send_failed".to_string())?;
    expect_frame(&mut ws, "joined").await?;
    Ok(ws)
}

/// Reads until a text frame of type `want`; an `error` frame or a close first is a failure.
async fn expect_frame(ws: &mut Socket, want: &str) -> Result<(), String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let Ok(frame) = serde_json::from_str::<Incoming>(text.as_str()) else {
                    return Err(format!("{want}_bad_frame"));
                };
                if frame.kind == want {
                    return Ok(());
                }
                if frame.kind == "error" {
                    let code = frame.code.unwrap_or_default();
                    return Err(format!("{want}_error_{code}"));
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("{want}_closed_{}", close_code(frame.as_ref())));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(format!("{want}_socket_lost")),
        }
    }
}

/// An error key for an I/O failure in `stage`: `connect_refused`, `upgrade_reset`...
fn io_key(stage: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let kind = match e.kind() {
        ConnectionRefused => "refused",
        ConnectionReset => "reset",
        ConnectionAborted => "aborted",
        TimedOut => "timeout",
        AddrNotAvailable => "no_local_port",
        UnexpectedEof => "eof",
        _ if e.raw_os_error() == Some(24) => "too_many_open_files",
        _ => "io",
    };
    format!("{stage}_{kind}")
}

fn close_code(frame: Option<&CloseFrame>) -> u16 {
    frame.map(|f| u16::from(f.code)).unwrap_or(1005)
}

/// What woke the socket task.
enum Event {
    /// The next frame from the server (`None`: the stream ended).
    Frame(Option<Result<Message, WsError>>),
    /// The next command (`None`: every sender is gone, which means close).
    Out(Option<Out>),
}

/// Drives a joined socket until it closes: counts acks, errors, closes and timed messages.
/// Decrements `held` when the socket is lost (while the run is still counting).
pub async fn drive(mut ws: Socket, commands: async_channel::Receiver<Out>, run: Rc<Run>) {
    let mut closing = false;
    loop {
        let event = smol::future::or(async { Event::Frame(ws.next().await) }, async {
            Event::Out(commands.recv().await.ok())
        })
        .await;
        match event {
            Event::Frame(Some(Ok(Message::Text(text)))) => on_text(&run, text.as_str()),
            Event::Frame(Some(Ok(Message::Close(frame)))) => {
                let code = close_code(frame.as_ref());
                run.record(|s| *s.closes.entry(code.to_string()).or_default() += 1);
                closing = true;
            }
            Event::Frame(Some(Ok(Message::Binary(_)))) => run.error("binary_frame"),
            Event::Frame(Some(Ok(_))) => {}
            Event::Frame(Some(Err(_)) | None) => {
                if !closing {
                    run.error("socket_lost");
                }
                break;
            }
            Event::Out(Some(Out::Text(text))) if !closing => {
                if ws.send(Message::text(text)).await.is_err() {
                    run.error("send_failed");
                }
            }
            Event::Out(Some(Out::Ping)) if !closing => {
                let _ = ws.send(Message::Ping(Default::default())).await;
            }
            Event::Out(Some(Out::Close) | None) if !closing => {
                closing = true;
                let normal = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "load run finished".into(),
                };
                let _ = ws.close(Some(normal)).await;
            }
            // Closing: no more writes; wait for the stream to end. Once the command channel
            // is closed too, only the stream can wake us.
            Event::Out(_) => {
                if commands.is_closed() {
                    drain_until_end(&mut ws).await;
                    break;
                }
            }
        }
    }
    run.record(|s| s.held = s.held.saturating_sub(1));
}

/// Reads until the stream ends (after a close, tungstenite answers and then ends it).
async fn drain_until_end(ws: &mut Socket) {
    while let Some(Ok(_)) = ws.next().await {}
}

/// Counts one text frame from the server.
fn on_text(run: &Run, text: &str) {
    let Ok(frame) = serde_json::from_str::<Incoming>(text) else {
        run.error("bad_frame");
        return;
    };
    match frame.kind.as_str() {
        "message" => match frame.body.as_deref().and_then(sent_at_us) {
            Some(sent_us) => run.delivered(sent_us),
            None => run.error("message_without_timestamp"),
        },
        "ack" => run.record(|s| s.acked += 1),
        "error" => run.error(frame.code.as_deref().unwrap_or("error_without_code")),
        _ => {}
    }
}

/// A message body: the send time (µs since the run's epoch) in decimal, padded with `.` to
/// `bytes` (never shorter than the timestamp itself).
pub fn body_at(sent_us: u64, bytes: usize) -> String {
    let mut body = sent_us.to_string();
    let pad = bytes.saturating_sub(body.len());
    body.extend(std::iter::repeat_n('.', pad));
    body
}

/// The send time at the start of a body made by [`body_at`]; `None` if it has none.
pub fn sent_at_us(body: &str) -> Option<u64> {
    let digits = body.split('.').next()?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips_timestamp_and_pads_to_size() {
        let body = body_at(1_234_567, 20);
        assert_eq!(body.len(), 20);
        assert_eq!(sent_at_us(&body), Some(1_234_567));
        let short = body_at(1_234_567, 3);
        assert_eq!(short, "1234567");
        assert_eq!(sent_at_us(&short), Some(1_234_567));
    }

    #[test]
    fn body_foreign_text_has_no_timestamp() {
        for body in ["", "hello", ".123", "12x", "-5"] {
            assert_eq!(sent_at_us(body), None, "{body:?}");
        }
    }

    #[test]
    fn frames_counted_by_type_and_code() {
        let run = Run::new();
        on_text(&run, r#"{"type":"ack","client_id":"a","seq":1}"#);
        on_text(
            &run,
            r#"{"type":"error","code":"rate_limited","message":"x"}"#,
        );
        on_text(&run, r#"{"type":"message","body":"0...."}"#);
        on_text(&run, r#"{"type":"message","body":"hi"}"#);
        on_text(&run, r#"{"type":"presence","online":true}"#);
        on_text(&run, "not json");
        on_text(&run, r#"{"type":7}"#);
        run.read(|s| {
            assert_eq!((s.acked, s.received), (1, 1));
            let errors: Vec<(&str, u64)> = s.errors.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            assert_eq!(
                errors,
                [
                    ("bad_frame", 2),
                    ("message_without_timestamp", 1),
                    ("rate_limited", 1)
                ]
            );
        });
    }
}
