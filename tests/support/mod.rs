//! Shared harness of the black-box tests: the real `consult-edge` binary on 127.0.0.1 with a
//! temp data dir, and small blocking HTTP helpers over real TCP.
//!
//! `CONSULT_EDGE_BIN` (path) and `CONSULT_EDGE_RUNNER` (a command prefix such as
//! `qemu-aarch64-static`) point the tests at another build of the binary (the emulated ARM64
//! run); by default they use the one cargo built.
#![allow(dead_code)]

pub mod ws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a gateway may take to print its listening line (generous for emulated runs).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for any single wait in a test; a hang becomes a failure, not a stuck CI.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

fn command() -> Command {
    let bin = std::env::var("CONSULT_EDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_consult-edge")));
    match std::env::var("CONSULT_EDGE_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut parts = runner.split_whitespace();
            let mut cmd = Command::new(parts.next().unwrap_or("env"));
            cmd.args(parts).arg(bin);
            cmd
        }
        _ => Command::new(bin),
    }
}

/// Runs `consult-edge <args>` to completion; returns (status, stdout, stderr).
pub fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let out = command()
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run consult-edge");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An access token with a fresh `sid`, minted in-process with `keys` (no process per token, for
/// tests that need thousands).
pub fn mint_with(
    keys: &consult_edge::auth::Keys,
    sub: &str,
    role: consult_edge::auth::Role,
) -> String {
    keys.mint(consult_edge::auth::MintRequest {
        sub: sub.into(),
        role,
        sid: None,
        typ: consult_edge::auth::TokenType::Access,
        ttl_s: consult_edge::auth::ACCESS_TTL_S,
        now_unix: unix_now(),
    })
    .expect("mint")
}

/// The key a gateway started with `Gateway::start` uses (its data dir's default secret).
pub fn gateway_keys(data_dir: &Path) -> consult_edge::auth::Keys {
    consult_edge::auth::Keys::load(&consult_edge::auth::KeySettings::default(), data_dir)
        .expect("gateway key")
}

/// Wall-clock unix seconds (token times).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct Gateway {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// The server's stderr (its log), collected by a thread.
    log: mpsc::Receiver<String>,
}

impl Gateway {
    /// Starts `serve` on a free port with a fresh temp data dir and `extra` options.
    pub fn start(extra: &[&str]) -> Gateway {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut gw = Gateway::start_in(&dir, extra);
        gw._tmp = Some(tmp);
        gw
    }

    /// Starts `serve` with the given data dir (restarts keep their state there).
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Gateway {
        Gateway::start_wrapped(data_dir, &[], extra)
    }

    /// Starts `serve` under a wrapper command (e.g. `prlimit --nofile=40:40`).
    pub fn start_wrapped(data_dir: &Path, wrapper: &[&str], extra: &[&str]) -> Gateway {
        let mut cmd = match wrapper.split_first() {
            None => command(),
            Some((program, args)) => {
                let inner = command();
                let mut cmd = Command::new(program);
                cmd.args(args)
                    .arg(inner.get_program())
                    .args(inner.get_args());
                cmd
            }
        };
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn consult-edge serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = line_tx.send(line);
            }
            for _ in lines {}
        });
        let (log_tx, log_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var("TEST_SHOW_LOG").is_ok() {
                    eprintln!("[gw] {line}");
                }
                if log_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = match line_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let log: Vec<String> = log_rx.try_iter().collect();
                panic!(
                    "gateway did not print its listening line; log:\n{}",
                    log.join("\n")
                );
            }
        };
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no address in listening line: {line:?}"));
        Gateway {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
            log: log_rx,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends `signal` to the gateway.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("pid");
        rustix::process::kill_process(pid, signal).expect("kill");
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        self.wait_exit(IO_TIMEOUT)
            .expect("gateway exits after SIGTERM")
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// Waits until a log line contains `needle` (bounded); returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        let start = Instant::now();
        while start.elapsed() < IO_TIMEOUT {
            match self.log.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains(needle) => return line,
                _ => {}
            }
        }
        panic!("no log line containing {needle:?}");
    }

    /// `consult-edge token` with this gateway's data dir.
    pub fn token(&self, args: &[&str]) -> String {
        let dir = self.data_dir.to_string_lossy().into_owned();
        let mut all = vec!["token", "--data-dir", dir.as_str()];
        all.extend_from_slice(args);
        let (status, out, err) = run(&all);
        assert!(status.success(), "token failed: {err}");
        out.trim().to_owned()
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s.set_nodelay(true).ok();
        s
    }

    /// One request on a fresh connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut s = self.connect();
        write_request(&mut s, method, path, headers, body);
        read_response(&mut s).expect("a response")
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    /// One metric's value from the real `/metrics`: the sum of its samples whose `label`
    /// matches (0 when absent).
    pub fn metric(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200);
        let samples =
            consult_edge::observe::parse_prometheus_text(&r.text()).expect("prometheus text");
        samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| label.is_none_or(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.value)
            .sum()
    }

    /// `GET path` with `Authorization: Bearer token`, expecting 200; its JSON body.
    pub fn get_json_as(&self, path: &str, token: &str) -> serde_json::Value {
        let r = self.request(
            "GET",
            path,
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        );
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }

    /// Creates a consultation of `patient_token`'s user with `doctor` (201); its id.
    pub fn create_consultation(&self, patient_token: &str, doctor: &str) -> String {
        let r = self.request(
            "POST",
            "/v1/consultations",
            &[
                ("Authorization", &format!("Bearer {patient_token}")),
                ("Content-Type", "application/json"),
            ],
            serde_json::json!({ "doctor": doctor })
                .to_string()
                .as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_str().expect("id").to_owned()
    }

    /// The stored history of consultation `id` (at most 1,000 messages), as `token` reads it.
    pub fn history(&self, id: &str, token: &str) -> Vec<serde_json::Value> {
        let page = self.get_json_as(
            &format!("/v1/consultations/{id}/messages?limit=1000"),
            token,
        );
        page["messages"].as_array().expect("messages").clone()
    }

    /// `POST /debug/store-faults {"hold": on}` (`serve --dev`): while on, the store writer keeps
    /// the op it has taken and takes no other. The answer, checked to say `hold` is `on`.
    pub fn hold_store_writer(&self, on: bool) -> serde_json::Value {
        let body = serde_json::json!({ "hold": on }).to_string();
        let r = self.request(
            "POST",
            "/debug/store-faults",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let answer = r.json();
        assert_eq!(answer["hold"], on, "{answer}");
        answer
    }

    /// `GET /debug/store-faults` (`serve --dev`): how many ops wait in the store's queue now.
    pub fn queued_ops(&self) -> usize {
        let r = self.get("/debug/store-faults");
        assert_eq!(r.status, 200, "{}", r.text());
        let depth = r.json()["queued_ops"].as_u64().expect("queued_ops");
        usize::try_from(depth).expect("queue depth fits usize")
    }

    /// Consultation `id`'s `last_seq`, as `token` reads it.
    pub fn last_seq(&self, id: &str, token: &str) -> u64 {
        let c = self.get_json_as(&format!("/v1/consultations/{id}"), token);
        c["last_seq"].as_u64().expect("last_seq")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn write_request(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).expect("write request");
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (Content-Length framed). `None` on a clean close before any byte.
///
/// Reads the head byte by byte and then exactly the body, so bytes of a following (pipelined)
/// response stay in the socket for the next call.
pub fn read_response(s: &mut TcpStream) -> Option<Response> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(0) => {
                    assert!(
                        head.is_empty(),
                        "closed inside a head: {:?}",
                        String::from_utf8_lossy(&head)
                    );
                    return None;
                }
                Ok(_) => head.push(byte[0]),
                // A signal (a child gateway exiting: SIGCHLD) may interrupt a blocking read.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("read failed: {e}"),
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            other => panic!(
                "bad response head {other:?}: {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
        let status = parsed.code.unwrap_or(0);
        if status == 100 {
            head.clear();
            continue;
        }
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).expect("read body");
        return Some(Response {
            status,
            headers,
            body,
        });
    }
}

/// True when the server closed the connection (EOF) without sending anything more.
pub fn is_closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return matches!(other, Ok(0)),
        }
    }
}
