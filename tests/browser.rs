//! Browser tests of the kiosk web client: headless Chromium driven over the DevTools protocol.
//!
//! `kiosk_page_*` serve the embedded assets from a tiny static server inside the test, with the
//! same security headers the gateway sends. `kiosk_e2e_*` drive the real `consult-edge` binary.
//! Without `/usr/bin/chromium` the tests skip with a printed reason, except under `CI=true`.

#[path = "support_cdp/scripted_gateway.rs"]
mod scripted_gateway;
#[path = "support_cdp/mod.rs"]
mod support_cdp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use consult_edge::kiosk;
use serde_json::Value;
use support_cdp::{screenshot_path, skip_without_chromium, Browser, Page};

/// Generous bound for UI conditions on a shared 2-core machine.
const UI_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest request head the static server reads (browsers send well under 4 KiB).
const STATIC_HEAD_MAX: usize = 16 * 1024;
/// Texts the page shows for the first screen, per language.
const TITLE_EN: &str = "Online consultation";
const TITLE_ZH: &str = "在线问诊";

// ---------------------------------------------------------------------------------------------
// A static server for the page alone
// ---------------------------------------------------------------------------------------------

/// Serve `kiosk::asset` on 127.0.0.1 from a background thread; everything else is 404.
fn serve_assets() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind static server");
    let addr = listener.local_addr().expect("static server address");
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let _ = answer(conn);
        }
    });
    addr
}

fn answer(mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < STATIC_HEAD_MAX {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let line = String::from_utf8_lossy(&head);
    let target = line.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let response = match kiosk::asset(path) {
        Some(a) => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nCache-Control: {}\r\n\
                 Content-Security-Policy: {}\r\nX-Content-Type-Options: nosniff\r\n\
                 Referrer-Policy: no-referrer\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                a.content_type,
                a.cache_control,
                kiosk::CONTENT_SECURITY_POLICY,
                a.body.len()
            )
            .into_bytes();
            r.extend_from_slice(a.body);
            r
        }
        None => {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        }
    };
    conn.write_all(&response)
}

/// A JWT-shaped token whose payload the page decodes for display (the signature is junk: the
/// static server never verifies anything).
fn fake_token(sub: &str, role: &str, jti: &str) -> String {
    fn b64url(s: &str) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in s.as_bytes().chunks(3) {
            let b = [
                chunk.first().copied().unwrap_or(0),
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
    format!(
        "{}.{}.c2ln",
        b64url(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64url(&format!(
            r#"{{"sub":"{sub}","role":"{role}","typ":"access","jti":"{jti}","exp":4102444800}}"#
        ))
    )
}

async fn text(b: &mut Browser, p: &Page, testid: &str) -> String {
    let expr = format!("document.querySelector('[data-testid=\"{testid}\"]').textContent");
    match b.eval(p, &expr).await {
        Ok(Value::String(s)) => s,
        other => panic!("no text for testid={testid}: {other:?}"),
    }
}

async fn click(b: &mut Browser, p: &Page, testid: &str) {
    let expr = format!("document.querySelector('[data-testid=\"{testid}\"]').click()");
    b.eval(p, &expr)
        .await
        .unwrap_or_else(|e| panic!("click {testid}: {e}"));
}

// ---------------------------------------------------------------------------------------------
// The page alone
// ---------------------------------------------------------------------------------------------

#[test]
fn kiosk_page_renders_both_languages_and_sizes_without_csp_violations() {
    if skip_without_chromium("kiosk_page_renders_both_languages_and_sizes_without_csp_violations") {
        return;
    }
    let addr = serve_assets();
    let url = format!("http://{addr}/");
    smol::block_on(async {
        let mut b = Browser::launch().await.expect("launch chromium");
        for (lang, title, other_title) in
            [("en-US", TITLE_EN, TITLE_ZH), ("zh-CN", TITLE_ZH, TITLE_EN)]
        {
            for (w, h) in [(1080, 1920), (1920, 1080)] {
                let page = b.open("about:blank").await.expect("open tab");
                b.set_language(&page, lang).await.expect("language");
                b.set_viewport(&page, w, h).await.expect("viewport");
                b.navigate(&page, &url).await.expect("load page");
                b.wait_for(&page, "document.body.dataset.ready === 'true'", UI_TIMEOUT)
                    .await
                    .expect("app.js ran");
                assert_eq!(text(&mut b, &page, "title").await, title, "lang={lang}");
                let login_visible = b
                    .eval(
                        &page,
                        "!document.querySelector('[data-testid=\"login\"]').hidden",
                    )
                    .await
                    .expect("eval");
                assert_eq!(login_visible, Value::Bool(true), "login shown lang={lang}");
                // Readable and touchable: nothing wider than the screen, buttons at least 48 px.
                let fits = b
                    .eval(
                        &page,
                        "document.documentElement.scrollWidth <= window.innerWidth",
                    )
                    .await
                    .expect("eval");
                assert_eq!(fits, Value::Bool(true), "horizontal overflow at {w}x{h}");
                let button_h = b
                    .eval(&page, "document.querySelector('[data-testid=\"login-button\"]').getBoundingClientRect().height")
                    .await
                    .expect("eval");
                assert!(
                    button_h.as_f64().unwrap_or(0.0) >= 48.0,
                    "button height {button_h} at {w}x{h}"
                );
                let short = lang.get(..2).unwrap_or(lang);
                b.screenshot(&page, &screenshot_path(&format!("{short}-{w}x{h}")))
                    .await
                    .expect("screenshot");
                // The switch flips every label to the other language.
                click(&mut b, &page, "lang-switch").await;
                assert_eq!(
                    text(&mut b, &page, "title").await,
                    other_title,
                    "switch from {lang}"
                );
                let csp = b.eval(&page, "window.__cspViolations").await.expect("eval");
                assert_eq!(
                    csp,
                    serde_json::json!([]),
                    "CSP violations lang={lang} {w}x{h}"
                );
                assert_eq!(
                    b.problems(&page, &[]),
                    Vec::<String>::new(),
                    "lang={lang} {w}x{h}"
                );
            }
        }
        // Control: the policy is really enforced and the detectors really see violations.
        let page = b.open(&url).await.expect("open page");
        b.eval(
            &page,
            "const s = document.createElement('script'); s.textContent = 'window.__ran = 1'; \
             document.body.append(s); true",
        )
        .await
        .expect("inject");
        b.wait_for(&page, "window.__cspViolations.length > 0", UI_TIMEOUT)
            .await
            .expect("inline script reported as a CSP violation");
        assert_eq!(
            b.eval(&page, "window.__ran === undefined").await,
            Ok(Value::Bool(true))
        );
        assert!(
            !b.problems(&page, &[]).is_empty(),
            "Log domain saw the violation"
        );
    });
}

#[test]
fn kiosk_launcher_fragment_is_consumed_and_removed_from_address_bar() {
    if skip_without_chromium("kiosk_launcher_fragment_is_consumed_and_removed_from_address_bar") {
        return;
    }
    let addr = serve_assets();
    let token = fake_token("p-7", "patient", "j-1");
    let url = format!("http://{addr}/#access_token={token}&refresh_token=r&consultation=c-1");
    smol::block_on(async {
        let mut b = Browser::launch().await.expect("launch chromium");
        let page = b.open("about:blank").await.expect("open tab");
        b.set_language(&page, "en-US").await.expect("language");
        b.navigate(&page, &url).await.expect("load page");
        b.wait_for(&page, "document.body.dataset.ready === 'true'", UI_TIMEOUT)
            .await
            .expect("app.js ran");
        assert_eq!(
            b.eval(&page, "location.hash").await,
            Ok(Value::String(String::new()))
        );
        assert_eq!(
            b.eval(&page, "location.href").await,
            Ok(Value::String(format!("http://{addr}/")))
        );
        assert_eq!(text(&mut b, &page, "whoami").await, "Patient p-7");
        // This static server has no /v1/ws: the client reports the broken connection in words
        // and keeps trying (not a final state).
        b.wait_for(
            &page,
            "document.querySelector('[data-testid=\"notice\"]').dataset.final === 'false' && \
             !document.querySelector('[data-testid=\"notice\"]').hidden",
            UI_TIMEOUT,
        )
        .await
        .expect("reconnect notice");
        assert_eq!(
            text(&mut b, &page, "notice").await,
            "The connection was interrupted. Reconnecting…"
        );
        b.wait_for(
            &page,
            "window.consultKiosk.ui.closes.length >= 2",
            UI_TIMEOUT,
        )
        .await
        .expect("retried after the first failure");
        assert_eq!(
            b.eval(&page, "window.__cspViolations").await,
            Ok(serde_json::json!([]))
        );
        // The only errors allowed are the refused socket's own reports.
        let problems = b.problems(&page, &["WebSocket connection to", "/v1/ws"]);
        assert_eq!(problems, Vec::<String>::new());
    });
}

// ---------------------------------------------------------------------------------------------
// The client's protocol logic against a scripted peer
// ---------------------------------------------------------------------------------------------

/// The peer's side of `kiosk_client_*`: each step asserts what the client must send.
fn reconnect_script(
    gw: &scripted_gateway::ScriptedGateway,
    go_idle: &std::sync::mpsc::Receiver<()>,
    a1: &str,
    a2: &str,
) -> Result<(), String> {
    use scripted_gateway::{close, message, ready, recv, send};
    use serde_json::json;
    let expect = |what: &str, got: &Value, want: Value| -> Result<(), String> {
        let matches = want
            .as_object()
            .map(|w| w.iter().all(|(k, v)| got.get(k) == Some(v)))
            .unwrap_or(false);
        if matches {
            Ok(())
        } else {
            Err(format!("{what}: expected {want}, got {got}"))
        }
    };

    // First connection: first-frame auth, join from 0, history, then a send that is never acked.
    let mut ws = gw.accept()?;
    expect(
        "auth",
        &recv(&mut ws)?,
        json!({"type": "auth", "token": a1}),
    )?;
    send(&mut ws, ready("p-7", "patient"))?;
    expect(
        "first join",
        &recv(&mut ws)?,
        json!({"type": "join", "consultation": "c-1", "after": 0}),
    )?;
    send(&mut ws, message("c-1", 1, "d-1", "How are you?", "d-x1"))?;
    send(&mut ws, message("c-1", 2, "d-1", "Any fever?", "d-x2"))?;
    send(
        &mut ws,
        json!({"type": "joined", "consultation": "c-1", "last_seq": 2, "state": "open"}),
    )?;
    send(
        &mut ws,
        json!({"type": "presence", "consultation": "c-1", "user": "d-1", "online": true}),
    )?;
    let first = recv(&mut ws)?;
    expect(
        "send",
        &first,
        json!({"type": "send", "consultation": "c-1", "body": "No fever"}),
    )?;
    let client_id = first
        .get("client_id")
        .cloned()
        .ok_or("send without client_id")?;
    close(&mut ws, 4004)?;

    // Second connection: join after the last seq seen, a duplicate in the replay, the same
    // client_id re-sent, then a renewal on the open socket, then the final idle close.
    let mut ws = gw.accept()?;
    expect(
        "re-auth",
        &recv(&mut ws)?,
        json!({"type": "auth", "token": a1}),
    )?;
    send(&mut ws, ready("p-7", "patient"))?;
    expect(
        "re-join",
        &recv(&mut ws)?,
        json!({"type": "join", "consultation": "c-1", "after": 2}),
    )?;
    send(&mut ws, message("c-1", 2, "d-1", "Any fever?", "d-x2"))?;
    send(
        &mut ws,
        json!({"type": "joined", "consultation": "c-1", "last_seq": 2, "state": "open"}),
    )?;
    expect(
        "re-send",
        &recv(&mut ws)?,
        json!({"type": "send", "client_id": client_id, "body": "No fever"}),
    )?;
    send(
        &mut ws,
        json!({"type": "ack", "client_id": client_id, "consultation": "c-1", "seq": 3}),
    )?;
    send(
        &mut ws,
        json!({"type": "token_expiring", "exp": 4102444800u64}),
    )?;
    let refresh = gw
        .refreshes
        .recv_timeout(scripted_gateway::STEP_TIMEOUT)
        .map_err(|e| format!("no refresh call: {e}"))?;
    expect("refresh body", &refresh, json!({"refresh_token": "R1"}))?;
    expect(
        "renew",
        &recv(&mut ws)?,
        json!({"type": "renew", "token": a2}),
    )?;
    send(&mut ws, json!({"type": "renewed", "exp": 4102444800u64}))?;
    // The test checks the page while the socket is still up, then lets the idle close happen.
    go_idle
        .recv_timeout(scripted_gateway::STEP_TIMEOUT)
        .map_err(|e| format!("test never released the idle close: {e}"))?;
    close(&mut ws, 4508)
}

#[test]
fn kiosk_client_reconnect_resends_dedups_renews_and_stops_on_idle() {
    if skip_without_chromium("kiosk_client_reconnect_resends_dedups_renews_and_stops_on_idle") {
        return;
    }
    let a1 = fake_token("p-7", "patient", "j-1");
    let a2 = fake_token("p-7", "patient", "j-2");
    let gw = scripted_gateway::ScriptedGateway::start(scripted_gateway::Canned {
        consultations: serde_json::json!({"consultations": [{"id": "c-1", "patient": "p-7",
            "doctor": "d-1", "state": "open", "created_at": "2026-11-26T10:00:00Z", "last_seq": 2}]}),
        refresh: serde_json::json!({"access_token": a2, "refresh_token": "R2",
            "token_type": "Bearer", "expires_in": 900}),
    });
    let url = format!(
        "http://{}/#access_token={a1}&refresh_token=R1&consultation=c-1",
        gw.addr
    );
    let (a1s, a2s) = (a1.clone(), a2.clone());
    let (go_idle, idle_rx) = std::sync::mpsc::channel();
    let script = std::thread::spawn(move || reconnect_script(&gw, &idle_rx, &a1s, &a2s));

    smol::block_on(async {
        let mut b = Browser::launch().await.expect("launch chromium");
        let page = b.open("about:blank").await.expect("open tab");
        b.set_language(&page, "en-US").await.expect("language");
        b.set_viewport(&page, 1080, 1920).await.expect("viewport");
        b.navigate(&page, &url).await.expect("load page");
        b.wait_for(
            &page,
            "document.querySelectorAll('[data-testid=\"message\"]').length === 2 && \
            document.querySelector('[data-testid=\"presence\"]').dataset.online === 'true'",
            UI_TIMEOUT,
        )
        .await
        .expect("history and presence shown");
        send(&mut b, &page, "No fever").await;
        b.wait_for(
            &page,
            "window.consultKiosk.ui.renewals === 1 && \
             document.querySelector('[data-seq=\"3\"]')?.dataset.state === 'acked'",
            UI_TIMEOUT,
        )
        .await
        .expect("re-sent message acked and token renewed");
        let expected = [
            ("1", "How are you?"),
            ("2", "Any fever?"),
            ("3", "No fever"),
        ]
        .map(|(s, t)| (s.to_string(), t.to_string()));
        assert_eq!(
            shown(&mut b, &page).await,
            expected.to_vec(),
            "no loss, no repeat"
        );
        // The replayed duplicate of seq 2 never reached the page.
        assert_eq!(
            b.eval(&page, "window.consultKiosk.ui.received").await,
            Ok(serde_json::json!(2))
        );
        assert_eq!(
            b.eval(&page, "window.consultKiosk.ui.closes").await,
            Ok(serde_json::json!([4004]))
        );
        b.screenshot(&page, &screenshot_path("chat-1080x1920"))
            .await
            .expect("screenshot");

        go_idle.send(()).expect("script thread alive");
        b.wait_for(
            &page,
            "!document.querySelector('[data-testid=\"final\"]').hidden",
            UI_TIMEOUT,
        )
        .await
        .expect("final state after 4508");
        assert_eq!(
            text(&mut b, &page, "final-text").await,
            "You were away for a while, so the session ended to protect your privacy."
        );
        assert_eq!(
            b.eval(&page, "window.consultKiosk.ui.closes").await,
            Ok(serde_json::json!([4004, 4508]))
        );
        // Final: no reconnect is scheduled; nothing of the person is left on screen or in the tab.
        assert_eq!(
            b.eval(
                &page,
                "[window.consultKiosk.ui.client.state, window.consultKiosk.ui.client.reconnectTimer, \
                 sessionStorage.length, document.querySelectorAll('[data-testid=\"message\"]').length, \
                 document.querySelector('[data-testid=\"whoami\"]').textContent]"
            )
            .await,
            Ok(serde_json::json!(["closed", null, 0, 0, ""]))
        );
        b.screenshot(&page, &screenshot_path("final-idle-1080x1920"))
            .await
            .expect("screenshot");
        assert_eq!(
            b.eval(&page, "window.__cspViolations").await,
            Ok(serde_json::json!([]))
        );
        assert_eq!(b.problems(&page, &[]), Vec::<String>::new());
    });
    match script.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("scripted gateway: {e}"),
        Err(_) => panic!("scripted gateway thread panicked"),
    }
}

// ---------------------------------------------------------------------------------------------
// End to end against the real binary
// ---------------------------------------------------------------------------------------------

/// The gateway under test: killed on drop.
struct Gateway {
    child: Child,
    addr: String,
    data: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_consult-edge");
/// The kiosk screen the e2e pages are shown at (portrait, as on the ward kiosks).
const KIOSK_W: u32 = 1080;
const KIOSK_H: u32 = 1920;
/// The access token of the renewal check lives this long ...
const SHORT_TTL_S: u64 = 6;
/// ... and the server warns this long before it expires: about 1 s after minting, by which
/// time the page has authenticated (a server that is late by then warns at once).
const RENEW_WINDOW_MS: u64 = 5_000;

/// Start `consult-edge serve` on a free port with a fresh data dir and `extra` options.
fn start_gateway(extra: &[&str]) -> Gateway {
    let data = tempfile::tempdir().expect("data dir");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn consult-edge serve");
    let stdout = child.stdout.take().expect("serve stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next()
        .and_then(Result::ok)
        .expect("serve prints its listening address");
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let addr = line
        .split(|c: char| c.is_whitespace() || c == '/')
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in serve line {line:?}"))
        .to_string();
    Gateway { child, addr, data }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mint(data: &Path, sub: &str, role: &str, sid: &str, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args([
            "token",
            "--sub",
            sub,
            "--role",
            role,
            "--sid",
            sid,
            "--data-dir",
        ])
        .arg(data)
        .args(extra)
        .output()
        .expect("run consult-edge token");
    assert!(
        out.status.success(),
        "token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn launcher_url(g: &Gateway, access: &str, refresh: &str, consultation: Option<&str>) -> String {
    let mut url = format!(
        "http://{}/#access_token={access}&refresh_token={refresh}",
        g.addr
    );
    if let Some(c) = consultation {
        url.push_str(&format!("&consultation={c}"));
    }
    url
}

async fn send(b: &mut Browser, p: &Page, body: &str) {
    let expr = format!(
        "document.querySelector('[data-testid=\"composer\"]').value = {}; \
         document.querySelector('[data-testid=\"send\"]').click(); true",
        serde_json::to_string(body).unwrap_or_default()
    );
    b.eval(p, &expr).await.expect("send");
}

/// Bodies of the messages shown, top to bottom, with their seq attribute.
async fn shown(b: &mut Browser, p: &Page) -> Vec<(String, String)> {
    let v = b
        .eval(
            p,
            "Array.from(document.querySelectorAll('[data-testid=\"message\"]')).map((li) => \
             [li.dataset.seq || '', li.querySelector('[data-testid=\"message-body\"]').textContent])",
        )
        .await
        .expect("list messages");
    serde_json::from_value(v).expect("message list shape")
}

async fn wait_shows(b: &mut Browser, p: &Page, body: &str) {
    let cond = format!(
        "Array.from(document.querySelectorAll('[data-testid=\"message-body\"]')).some((e) => e.textContent === {})",
        serde_json::to_string(body).unwrap_or_default()
    );
    b.wait_for(p, &cond, UI_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("message {body:?} not shown: {e}"));
}

/// JavaScript: the element with this `data-testid`.
fn q(testid: &str) -> String {
    format!("document.querySelector('[data-testid=\"{testid}\"]')")
}

/// Open the patient's page from a launcher link at kiosk size, wait until it is connected and
/// has loaded its list, then start a consultation with doctor `d1` from the page. Returns the
/// page and the new consultation's id.
async fn patient_starts_consultation(
    b: &mut Browser,
    g: &Gateway,
    access: &str,
    refresh: &str,
) -> (Page, String) {
    let patient = b.open("about:blank").await.expect("patient tab");
    b.set_language(&patient, "en-US").await.expect("language");
    b.set_viewport(&patient, KIOSK_W, KIOSK_H)
        .await
        .expect("viewport");
    b.navigate(&patient, &launcher_url(g, access, refresh, None))
        .await
        .expect("patient page");
    // The form is shown once `ready` arrived and the list was fetched for the patient's role.
    b.wait_for(
        &patient,
        &format!(
            "window.consultKiosk.ui.client.state === 'ready' && !{}.hidden",
            q("new-form")
        ),
        UI_TIMEOUT,
    )
    .await
    .expect("patient connected and list loaded");
    b.eval(&patient, &format!("{}.value = 'd1'; true", q("new-doctor")))
        .await
        .expect("doctor id");
    click(b, &patient, "new-consultation").await;
    b.wait_for(&patient, &format!("!{}.hidden", q("chat")), UI_TIMEOUT)
        .await
        .expect("chat opened");
    let id = b
        .eval(&patient, "window.consultKiosk.ui.open.id")
        .await
        .expect("consultation id");
    let id = id.as_str().expect("id is a string").to_string();
    (patient, id)
}

/// No CSP violation and no console error or exception on any of `pages`.
async fn assert_clean(b: &mut Browser, pages: &[(&Page, &str)]) {
    for (page, who) in pages {
        assert_eq!(
            b.eval(page, "window.__cspViolations").await,
            Ok(serde_json::json!([])),
            "{who}"
        );
        assert_eq!(b.problems(page, &[]), Vec::<String>::new(), "{who}");
    }
}

#[test]
fn kiosk_e2e_chat_reload_logout_behave_as_specified() {
    if skip_without_chromium("kiosk_e2e_chat_reload_logout_behave_as_specified") {
        return;
    }
    // Default lifetimes (900 s tokens, warning 60 s before exp): no renewal is due during this
    // test; `kiosk_e2e_short_token_renews_without_socket_close` covers renewal.
    let g = start_gateway(&[]);
    let p_access = mint(g.data.path(), "p1", "patient", "sid-p1", &[]);
    let p_refresh = mint(g.data.path(), "p1", "patient", "sid-p1", &["--refresh"]);
    let d_access = mint(g.data.path(), "d1", "doctor", "sid-d1", &[]);
    let d_refresh = mint(g.data.path(), "d1", "doctor", "sid-d1", &["--refresh"]);

    smol::block_on(async {
        let mut b = Browser::launch().await.expect("launch chromium");
        let (patient, id) = patient_starts_consultation(&mut b, &g, &p_access, &p_refresh).await;

        // The doctor opens the same consultation from a launcher link, in Chinese.
        let doctor = b.open("about:blank").await.expect("doctor tab");
        b.set_language(&doctor, "zh-CN").await.expect("language");
        b.set_viewport(&doctor, KIOSK_W, KIOSK_H)
            .await
            .expect("viewport");
        b.navigate(&doctor, &launcher_url(&g, &d_access, &d_refresh, Some(&id)))
            .await
            .expect("doctor page");
        b.wait_for(&doctor, &format!("!{}.hidden", q("chat")), UI_TIMEOUT)
            .await
            .expect("doctor opened the consultation from the launcher");
        b.wait_for(
            &patient,
            &format!("{}.dataset.online === 'true'", q("presence")),
            UI_TIMEOUT,
        )
        .await
        .expect("patient sees the doctor online");

        // Messages both ways, each shown to the other side.
        let script = [
            (&patient, "Hello doctor, I have a headache."),
            (&doctor, "您好，头痛多久了？"),
            (&patient, "Since yesterday <b>evening</b>."),
            (&doctor, "Any fever?"),
        ];
        for (from, body) in script {
            send(&mut b, from, body).await;
            let to = if std::ptr::eq(from, &patient) {
                &doctor
            } else {
                &patient
            };
            wait_shows(&mut b, to, body).await;
        }
        // Each sender sees its own two messages delivered (acked with a seq).
        let mine_acked = "(() => { const mine = Array.from(document.querySelectorAll(\
             '[data-testid=\"message\"][data-mine=\"true\"]')); \
             return mine.length === 2 && mine.every((li) => li.dataset.state === 'acked'); })()";
        for (page, who) in [(&patient, "patient"), (&doctor, "doctor")] {
            b.wait_for(page, mine_acked, UI_TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("{who}'s messages acked: {e}"));
        }
        // Markup in a body is shown as text, never parsed.
        assert_eq!(
            b.eval(
                &doctor,
                &format!("{}.querySelector('b') === null", q("messages"))
            )
            .await,
            Ok(Value::Bool(true))
        );

        // The doctor's page reloads mid-conversation: full history once, in order.
        b.reload(&doctor).await.expect("reload doctor");
        b.wait_for(
            &doctor,
            "document.querySelectorAll('[data-testid=\"message\"]').length >= 4",
            UI_TIMEOUT,
        )
        .await
        .expect("history after reload");
        send(&mut b, &patient, "No fever.").await;
        wait_shows(&mut b, &doctor, "No fever.").await;
        let expected: Vec<(String, String)> = script
            .iter()
            .map(|(_, body)| *body)
            .chain(["No fever."])
            .enumerate()
            .map(|(i, body)| ((i + 1).to_string(), body.to_string()))
            .collect();
        assert_eq!(
            shown(&mut b, &doctor).await,
            expected,
            "doctor history after reload"
        );
        assert_eq!(
            b.eval(&patient, "window.consultKiosk.ui.closes").await,
            Ok(serde_json::json!([])),
            "the patient's socket stayed up through the doctor's reload"
        );
        b.wait_for(
            &patient,
            "document.querySelectorAll('[data-testid=\"message\"][data-state=\"acked\"]').length === 5",
            UI_TIMEOUT,
        )
        .await
        .expect("patient sees all five delivered");
        b.screenshot(&patient, &screenshot_path("e2e-patient-1080x1920"))
            .await
            .expect("screenshot patient");
        b.screenshot(&doctor, &screenshot_path("e2e-doctor-1080x1920"))
            .await
            .expect("screenshot doctor");

        // Logout: the page shows the final signed-out message for 4503 and does not reconnect.
        click(&mut b, &patient, "logout").await;
        b.wait_for(&patient, &format!("!{}.hidden", q("final")), UI_TIMEOUT)
            .await
            .expect("final state after logout");
        assert_eq!(
            text(&mut b, &patient, "final-text").await,
            "You have been signed out. To continue, please ask staff to sign you in again."
        );
        b.wait_for(
            &doctor,
            &format!("window.consultKiosk.ui.presence.get('{id}/p1') === false"),
            UI_TIMEOUT,
        )
        .await
        .expect("doctor sees the patient leave");
        // Reported once, final: no reconnect is scheduled, nothing of the person is left.
        assert_eq!(
            b.eval(
                &patient,
                "[window.consultKiosk.ui.closes, window.consultKiosk.ui.client.state, \
                 window.consultKiosk.ui.client.reconnectTimer, sessionStorage.length, \
                 document.querySelectorAll('[data-testid=\"message\"]').length]"
            )
            .await,
            Ok(serde_json::json!([[4503], "closed", null, 0, 0]))
        );
        b.screenshot(
            &patient,
            &screenshot_path("e2e-patient-signed-out-1080x1920"),
        )
        .await
        .expect("screenshot signed out");
        assert_clean(&mut b, &[(&patient, "patient"), (&doctor, "doctor")]).await;
    });
}

#[test]
fn kiosk_e2e_short_token_renews_without_socket_close() {
    if skip_without_chromium("kiosk_e2e_short_token_renews_without_socket_close") {
        return;
    }
    let renew_window = RENEW_WINDOW_MS.to_string();
    let g = start_gateway(&["--renew-window-ms", &renew_window]);
    let p_refresh = mint(g.data.path(), "p1", "patient", "sid-p1", &["--refresh"]);

    smol::block_on(async {
        let mut b = Browser::launch().await.expect("launch chromium");
        // Minted just before use: it must still be valid when the page authenticates.
        let ttl = SHORT_TTL_S.to_string();
        let p_access = mint(g.data.path(), "p1", "patient", "sid-p1", &["--ttl", &ttl]);
        let first_exp = unix_now() + SHORT_TTL_S;
        // The server warns about 1 s from now: the page refreshes over HTTP (which must still
        // be served) and renews on the open socket, while the patient starts a consultation.
        let (patient, _id) = patient_starts_consultation(&mut b, &g, &p_access, &p_refresh).await;
        b.wait_for(&patient, "window.consultKiosk.ui.renewals >= 1", UI_TIMEOUT)
            .await
            .expect("token renewed");

        // The renewed socket outlives the first token's exp without closing.
        b.wait_for(
            &patient,
            &format!("Date.now() / 1000 > {}", first_exp + 1),
            Duration::from_secs(SHORT_TTL_S + 10),
        )
        .await
        .expect("first token expired");
        send(&mut b, &patient, "Still here after the renewal.").await;
        b.wait_for(
            &patient,
            "document.querySelector('[data-testid=\"message\"][data-mine=\"true\"]')?.dataset.state === 'acked'",
            UI_TIMEOUT,
        )
        .await
        .expect("message acked on the renewed socket");
        // One warning, one refresh, one renewal; the socket never closed.
        assert_eq!(
            b.eval(
                &patient,
                "[window.consultKiosk.ui.closes, window.consultKiosk.ui.renewals, \
                 window.consultKiosk.ui.client.state]"
            )
            .await,
            Ok(serde_json::json!([[], 1, "ready"]))
        );
        assert_clean(&mut b, &[(&patient, "patient")]).await;
    });
}
