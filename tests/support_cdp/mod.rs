//! A small Chrome DevTools Protocol driver for the browser tests: headless Chromium over CDP.
//!
//! # Invariants
//!
//! 1. Every wait is bounded: each CDP call by [`CALL_TIMEOUT`], each page condition by the
//!    timeout its caller passes. Nothing waits on wall-clock sleeps; conditions are polled
//!    inside the page on its own DOM state.
//! 2. The browser process and its profile directory live exactly as long as [`Browser`]:
//!    dropping it kills the process and removes the profile.
//! 3. Every CDP event received while waiting for a reply is kept (per session), so console
//!    errors, CSP reports and exceptions can be checked after the fact.
//!
//! # Implementation
//!
//! One WebSocket to the browser endpoint printed on Chromium's stderr. Pages are attached with
//! `Target.attachToTarget {flatten: true}`, so every command carries a `sessionId` and one
//! socket serves all pages. Calls are strictly request/response: `call` sends one command and
//! reads frames until its reply, storing the events in between.
#![allow(dead_code)] // each test binary uses a different part of the driver

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use async_io::Async;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use serde_json::{json, Value};
use smol::stream::StreamExt;

/// Where Debian's `chromium` package installs the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// How long Chromium may take to print its DevTools endpoint (cold start on a busy 2-core box).
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound of one CDP round trip (a full-page screenshot is the slowest).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval of the in-page poll loop in [`Browser::wait_for`]: short against human-scale UI.
const POLL_MS: u64 = 25;

/// What the driver failed at, with enough text to debug from a CI log.
pub type CdpResult<T> = Result<T, String>;

/// A page (tab) attached over the browser connection.
#[derive(Debug, Clone)]
pub struct Page {
    /// CDP target id of the tab.
    pub target: String,
    /// Flattened session id; every command for this page carries it.
    pub session: String,
}

/// A running headless Chromium and the DevTools connection to it.
pub struct Browser {
    /// The browser process; killed on drop.
    child: Child,
    /// The throwaway profile (`--user-data-dir`); removed on drop, after the process dies.
    _profile: tempfile::TempDir,
    /// The browser-level DevTools WebSocket.
    ws: WebSocketStream<Async<TcpStream>>,
    /// Id of the next command (CDP matches replies by id).
    next_id: u64,
    /// Events received so far, in order: `(sessionId or "", message)`.
    events: Vec<(String, Value)>,
}

/// Whether the browser is installed; the reason to print when it is not.
pub fn chromium_missing() -> Option<String> {
    if Path::new(CHROMIUM).exists() {
        None
    } else {
        Some(format!(
            "{CHROMIUM} not found (install with `make browser-deps`)"
        ))
    }
}

/// Skip (return true) when Chromium is missing, except under `CI=true` where that is a failure.
pub fn skip_without_chromium(test: &str) -> bool {
    match chromium_missing() {
        None => false,
        Some(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: {reason}; CI=true requires the browser")
        }
        Some(reason) => {
            eprintln!("skipping {test}: {reason}");
            true
        }
    }
}

impl Browser {
    /// Start headless Chromium with a fresh profile and connect to its DevTools endpoint.
    pub async fn launch() -> CdpResult<Browser> {
        let profile = tempfile::tempdir().map_err(|e| format!("profile dir: {e}"))?;
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // Two pages talk to each other in the e2e test: neither may be throttled as a
                // background tab, or its timers (reconnect, polling) would run at 1 Hz.
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {CHROMIUM}: {e}"))?;
        let stderr = child.stderr.take().ok_or("chromium stderr not piped")?;
        let (tx, rx) = mpsc::channel();
        // Reads stderr for the whole life of the process, so the pipe never fills and blocks it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = match rx.recv_timeout(LAUNCH_TIMEOUT) {
            Ok(url) => url,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no DevTools endpoint from chromium: {e}"));
            }
        };
        let host = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| format!("unexpected DevTools url {url}"))?
            .to_string();
        let connect = async {
            let tcp = Async::<TcpStream>::connect(
                host.parse::<std::net::SocketAddr>()
                    .map_err(|e| format!("DevTools address {host}: {e}"))?,
            )
            .await
            .map_err(|e| format!("connect {host}: {e}"))?;
            async_tungstenite::client_async(url.as_str(), tcp)
                .await
                .map_err(|e| format!("DevTools handshake: {e}"))
        };
        let (ws, _) = match with_timeout(CALL_TIMEOUT, "DevTools connect", connect).await {
            Ok(pair) => pair,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Browser {
            child,
            _profile: profile,
            ws,
            next_id: 1,
            events: Vec::new(),
        })
    }

    /// Send one command (to the browser, or to a page's session) and return its `result`.
    pub async fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> CdpResult<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut cmd = json!({"id": id, "method": method, "params": params});
        if let (Some(s), Some(obj)) = (session, cmd.as_object_mut()) {
            obj.insert("sessionId".into(), Value::String(s.to_string()));
        }
        let what = format!("CDP {method}");
        let Browser { ws, events, .. } = self;
        with_timeout(CALL_TIMEOUT, &what, async {
            ws.send(Message::text(cmd.to_string()))
                .await
                .map_err(|e| format!("{method}: send: {e}"))?;
            loop {
                let frame = match ws.next().await {
                    Some(Ok(f)) => f,
                    Some(Err(e)) => return Err(format!("{method}: DevTools socket: {e}")),
                    None => return Err(format!("{method}: DevTools socket closed")),
                };
                let Message::Text(text) = frame else { continue };
                let msg: Value = serde_json::from_str(text.as_str())
                    .map_err(|e| format!("{method}: bad CDP JSON: {e}"))?;
                if msg.get("id").and_then(Value::as_u64) == Some(id) {
                    if let Some(err) = msg.get("error") {
                        return Err(format!("{method}: {err}"));
                    }
                    return Ok(msg.get("result").cloned().unwrap_or(Value::Null));
                }
                if msg.get("method").is_some() {
                    let sid = msg.get("sessionId").and_then(Value::as_str).unwrap_or("");
                    events.push((sid.to_string(), msg));
                }
            }
        })
        .await
    }

    /// Open a new tab, attach to it, enable the domains the tests watch, record CSP violations
    /// from the first script on, and navigate to `url`.
    pub async fn open(&mut self, url: &str) -> CdpResult<Page> {
        let created = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let target = str_field(&created, "targetId")?;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await?;
        let page = Page {
            session: str_field(&attached, "sessionId")?,
            target,
        };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            self.call(Some(&page.session), domain, json!({})).await?;
        }
        // Runs before the page's own scripts in every document of this tab; CDP-injected code is
        // not subject to the page's CSP, so it can watch for violations.
        self.call(
            Some(&page.session),
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.__cspViolations = []; document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"}),
        )
        .await?;
        self.navigate(&page, url).await?;
        Ok(page)
    }

    /// Navigate and wait until the document has loaded.
    pub async fn navigate(&mut self, page: &Page, url: &str) -> CdpResult<()> {
        let r = self
            .call(Some(&page.session), "Page.navigate", json!({"url": url}))
            .await?;
        if let Some(err) = r.get("errorText") {
            return Err(format!("navigate {url}: {err}"));
        }
        self.wait_for(
            page,
            "document.readyState === 'complete'",
            Duration::from_secs(15),
        )
        .await
    }

    /// Reload the page and wait until the new document has loaded.
    pub async fn reload(&mut self, page: &Page) -> CdpResult<()> {
        self.eval(page, "window.__beforeReload = true").await?;
        self.call(Some(&page.session), "Page.reload", json!({}))
            .await?;
        self.wait_for(
            page,
            "!window.__beforeReload && document.readyState === 'complete'",
            Duration::from_secs(15),
        )
        .await
    }

    /// Evaluate `expr` in the page (awaiting a promise result) and return its JSON value.
    pub async fn eval(&mut self, page: &Page, expr: &str) -> CdpResult<Value> {
        let r = self
            .call(
                Some(&page.session),
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(format!("evaluate `{expr}` threw: {ex}"));
        }
        Ok(r.get("result")
            .and_then(|v| v.get("value"))
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Wait until the JavaScript condition `cond` is truthy in the page, polling in the page
    /// itself, for at most `timeout`. On timeout the error shows the page's visible text.
    pub async fn wait_for(&mut self, page: &Page, cond: &str, timeout: Duration) -> CdpResult<()> {
        let ms = timeout.as_millis();
        let expr = format!(
            "new Promise((resolve) => {{ const end = Date.now() + {ms}; const tick = () => {{ \
             let ok = false; try {{ ok = !!(() => ({cond}))(); }} catch (_) {{ ok = false; }} \
             if (ok) resolve(true); else if (Date.now() > end) resolve(false); \
             else setTimeout(tick, {POLL_MS}); }}; tick(); }})"
        );
        if self.eval(page, &expr).await? == Value::Bool(true) {
            return Ok(());
        }
        let text = self
            .eval(page, "document.body ? document.body.innerText : ''")
            .await
            .unwrap_or(Value::Null);
        Err(format!(
            "timed out after {ms} ms waiting for `{cond}`; page text: {text}"
        ))
    }

    /// Emulate a screen of `width`×`height` CSS pixels.
    pub async fn set_viewport(&mut self, page: &Page, width: u32, height: u32) -> CdpResult<()> {
        self.call(
            Some(&page.session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await
        .map(|_| ())
    }

    /// Make `navigator.language` report `lang` for later documents of this page.
    pub async fn set_language(&mut self, page: &Page, lang: &str) -> CdpResult<()> {
        let version = self.call(None, "Browser.getVersion", json!({})).await?;
        let ua = str_field(&version, "userAgent")?;
        self.call(
            Some(&page.session),
            "Emulation.setUserAgentOverride",
            json!({"userAgent": ua, "acceptLanguage": lang}),
        )
        .await
        .map(|_| ())
    }

    /// Capture the page as PNG into `path`. The tab is brought to the front first: with two
    /// tabs open, the compositor may never produce a frame for a background tab and the
    /// capture would wait for one until [`CALL_TIMEOUT`].
    pub async fn screenshot(&mut self, page: &Page, path: &Path) -> CdpResult<()> {
        self.call(Some(&page.session), "Page.bringToFront", json!({}))
            .await?;
        let r = self
            .call(
                Some(&page.session),
                "Page.captureScreenshot",
                json!({"format": "png"}),
            )
            .await?;
        let png = base64_decode(&str_field(&r, "data")?)?;
        if !png.starts_with(b"\x89PNG") {
            return Err("screenshot is not a PNG".into());
        }
        std::fs::write(path, png).map_err(|e| format!("write {}: {e}", path.display()))
    }

    /// Problems reported by one page so far: uncaught exceptions, and console/log entries of
    /// level `error` (CSP violations among them). `allow` filters out expected entries by text.
    pub fn problems(&self, page: &Page, allow: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for (sid, ev) in &self.events {
            if *sid != page.session {
                continue;
            }
            let method = ev.get("method").and_then(Value::as_str).unwrap_or("");
            let params = ev.get("params").cloned().unwrap_or(Value::Null);
            let text = match method {
                "Runtime.exceptionThrown" => params["exceptionDetails"].to_string(),
                "Log.entryAdded" if params["entry"]["level"] == "error" => {
                    params["entry"]["text"].as_str().unwrap_or("").to_string()
                }
                "Runtime.consoleAPICalled" if params["type"] == "error" => {
                    params["args"].to_string()
                }
                _ => continue,
            };
            if !allow.iter().any(|a| text.contains(a)) {
                out.push(format!("{method}: {text}"));
            }
        }
        out
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `fut` for at most `limit`, else fail naming `what`.
pub async fn with_timeout<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = CdpResult<T>>,
) -> CdpResult<T> {
    let what = what.to_string();
    smol::future::or(fut, async move {
        async_io::Timer::after(limit).await;
        Err(format!("{what}: no answer within {limit:?}"))
    })
    .await
}

fn str_field(v: &Value, key: &str) -> CdpResult<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("CDP reply without {key}: {v}"))
}

/// Standard base64 (RFC 4648 §4) as CDP sends binary data; padding optional.
fn base64_decode(text: &str) -> CdpResult<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return Err(format!("bad base64 byte {c}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// Where screenshots go: `target/kiosk-<name>.png` of this crate.
pub fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("kiosk-{name}.png"))
}

#[test]
fn base64_decode_matches_rfc4648_vectors() {
    for (enc, dec) in [
        ("", ""),
        ("Zg==", "f"),
        ("Zm8=", "fo"),
        ("Zm9v", "foo"),
        ("Zm9vYmFy", "foobar"),
    ] {
        assert_eq!(
            base64_decode(enc).as_deref(),
            Ok(dec.as_bytes()),
            "enc={enc}"
        );
    }
    assert!(base64_decode("Zm9v!").is_err());
}
