//! The load generator's command line: flags, their limits, and the loopback-only target.
//!
//! # Invariants
//!
//! - A parsed [`Args`] is within every limit below: the run is bounded in sockets, time, rate
//!   and body size before anything is opened.
//! - The target is loopback only (`127.0.0.1`, `localhost`, `[::1]`): a load generator aimed at
//!   someone else's server is a denial of service, so anything else is a usage error.
//! - `connections` is even: socket `2k` (patient) and `2k+1` (doctor) form pair `k`.
//!
//! # Implementation
//!
//! A hand-written scan of `--flag value` / `--flag=value` / bare boolean flags; every error is a
//! [`UsageError`] (exit 2). Key options mirror `consult-edge token`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use crate::auth::{KeySettings, KeySource};

/// Most sockets one run may open: far above what one loopback address pair can carry
/// (~28,000 ephemeral ports), so the limit is the kernel's, not ours, yet a typo cannot ask
/// for millions.
pub const MAX_CONNECTIONS: usize = 50_000;

/// Longest send phase: one hour. A load run longer than that is a soak test, not a benchmark.
pub const MAX_DURATION_S: u64 = 3600;

/// Highest total send rate: far above what two cores can push, so a typo is refused.
pub const MAX_RATE: u64 = 1_000_000;

/// Largest message body: the protocol's own limit (SPEC §5: body ≤ 16 KiB of UTF-8).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Longest client ping interval the flag accepts (0 disables client pings).
pub const MAX_HEARTBEAT_S: u64 = 3600;

/// The WebSocket path used when the URL names none (SPEC §4).
const DEFAULT_WS_PATH: &str = "/v1/ws";

/// The data dir `token` uses by default (SPEC §2); its `jwt-secret` is the default key.
const DEFAULT_DATA_DIR: &str = "./data";

/// The usage text, printed with every usage error.
pub const USAGE: &str = "usage: consult-edge loadgen --url ws://127.0.0.1:PORT --connections N \
[--heartbeat SECS] --rate MSGS_PER_S --duration SECS [--ramp-batch N] [--body-bytes N] \
[--pid PID] [--peer-mode] [--json-only] [--data-dir DIR] [--jwt-secret-file FILE | \
--jwt-private-key FILE] [--jwt-issuer ISS] [--jwt-audience AUD]";

/// A parsed, validated command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Where the gateway listens (always a loopback address).
    pub addr: SocketAddr,
    /// The `Host` header value, as written in the URL (`127.0.0.1:PORT`, `localhost:PORT`).
    pub host: String,
    /// The WebSocket path (`/v1/ws` unless the URL names another).
    pub ws_path: String,
    /// Sockets to open: even, 2 ..= [`MAX_CONNECTIONS`].
    pub connections: usize,
    /// Seconds between the client's own Pings on each socket; 0 = only answer the server's.
    pub heartbeat_s: u64,
    /// Messages per second, in total over all sockets.
    pub rate: u64,
    /// Seconds of sending, 1 ..= [`MAX_DURATION_S`].
    pub duration_s: u64,
    /// Sockets upgraded concurrently; each batch completes before the next starts.
    pub ramp_batch: usize,
    /// Bytes of each message body (at least the timestamp it carries).
    pub body_bytes: usize,
    /// The gateway's process id, to sample its RSS from `/proc/PID/status`.
    pub pid: Option<u32>,
    /// Peers have no HTTP API: use `c<k>` as consultation ids instead of creating them.
    pub peer_mode: bool,
    /// Nothing on stderr, only the JSON line on stdout.
    pub json_only: bool,
    /// The data dir whose `jwt-secret` is the default key.
    pub data_dir: PathBuf,
    /// The key options, as for `token`.
    pub keys: KeySettings,
}

/// A bad command line (the operator's fault): exit 2 with the message and [`USAGE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Parses the arguments after `loadgen`.
pub fn parse(raw: &[String]) -> Result<Args, UsageError> {
    let mut url = None;
    let (mut connections, mut rate, mut duration_s) = (None, None, None);
    let (mut heartbeat_s, mut ramp_batch, mut body_bytes) = (15, 500, 20);
    let (mut pid, mut peer_mode, mut json_only) = (None, false, false);
    let mut data_dir = PathBuf::from(DEFAULT_DATA_DIR);
    let mut keys = KeySettings::default();
    let mut iter = raw.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "--peer-mode" | "--json-only" => {
                if inline.is_some() {
                    return Err(usage(format!("{flag} takes no value")));
                }
                if flag == "--peer-mode" {
                    peer_mode = true;
                } else {
                    json_only = true;
                }
                continue;
            }
            "--help" | "-h" => return Err(usage("help requested")),
            _ => {}
        }
        let value = match inline {
            Some(v) => v,
            None => iter
                .next()
                .cloned()
                .ok_or_else(|| usage(format!("{flag} needs a value")))?,
        };
        match flag {
            "--url" => url = Some(value),
            "--connections" => connections = Some(number(flag, &value, 2, MAX_CONNECTIONS)?),
            "--heartbeat" => heartbeat_s = number(flag, &value, 0, MAX_HEARTBEAT_S)?,
            "--rate" => rate = Some(number(flag, &value, 1, MAX_RATE)?),
            "--duration" => duration_s = Some(number(flag, &value, 1, MAX_DURATION_S)?),
            "--ramp-batch" => ramp_batch = number(flag, &value, 1, MAX_CONNECTIONS)?,
            "--body-bytes" => body_bytes = number(flag, &value, 1, MAX_BODY_BYTES)?,
            "--pid" => pid = Some(number(flag, &value, 1, u32::MAX)?),
            "--data-dir" => data_dir = PathBuf::from(non_empty(flag, value)?),
            "--jwt-secret-file" => {
                keys.source = KeySource::HsSecretFile(non_empty(flag, value)?.into())
            }
            "--jwt-private-key" => {
                keys.source = KeySource::EdPrivateKey(non_empty(flag, value)?.into())
            }
            "--jwt-issuer" => keys.issuer = Some(non_empty(flag, value)?),
            "--jwt-audience" => keys.audience = Some(non_empty(flag, value)?),
            other => return Err(usage(format!("unknown option {other:?}"))),
        }
    }
    let url = url.ok_or_else(|| usage("--url is required"))?;
    let (addr, host, ws_path) = parse_url(&url)?;
    let connections = connections.ok_or_else(|| usage("--connections is required"))?;
    if !connections.is_multiple_of(2) {
        return Err(usage(format!(
            "--connections {connections} must be even: sockets are paired patient/doctor"
        )));
    }
    Ok(Args {
        addr,
        host,
        ws_path,
        connections,
        heartbeat_s,
        rate: rate.ok_or_else(|| usage("--rate is required"))?,
        duration_s: duration_s.ok_or_else(|| usage("--duration is required"))?,
        ramp_batch: ramp_batch.min(connections),
        body_bytes,
        pid,
        peer_mode,
        json_only,
        data_dir,
        keys,
    })
}

fn number<T>(flag: &str, value: &str, min: T, max: T) -> Result<T, UsageError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match value.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(usage(format!(
            "{flag} {value:?}: expected a whole number in {min}..={max}"
        ))),
    }
}

fn non_empty(flag: &str, value: String) -> Result<String, UsageError> {
    if value.is_empty() {
        Err(usage(format!("{flag} must not be empty")))
    } else {
        Ok(value)
    }
}

/// Splits `ws://HOST:PORT[/path]` into the loopback address, the Host header and the path.
fn parse_url(url: &str) -> Result<(SocketAddr, String, String), UsageError> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| usage(format!("--url {url:?}: only ws:// URLs are supported")))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let path = if path.is_empty() || path == "/" {
        DEFAULT_WS_PATH
    } else {
        path
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| usage(format!("--url {url:?}: the port is required")))?;
    let port: u16 = match port.parse() {
        Ok(p) if p != 0 => p,
        _ => return Err(usage(format!("--url {url:?}: bad port {port:?}"))),
    };
    let ip = match host {
        "localhost" => Ipv4Addr::LOCALHOST.into(),
        "[::1]" => Ipv6Addr::LOCALHOST.into(),
        _ => match host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_loopback() => ip,
            _ => {
                return Err(usage(format!(
                    "--url {url:?}: the load generator only targets this machine \
                     (127.0.0.1, localhost or [::1]); refusing host {host:?}"
                )))
            }
        },
    };
    Ok((
        SocketAddr::new(ip, port),
        authority.to_string(),
        path.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Args, UsageError> {
        let raw: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&raw)
    }

    const BASE: &str = "--connections 4 --rate 10 --duration 2";

    #[test]
    fn url_loopback_forms_accepted() {
        for (url, host) in [
            ("ws://127.0.0.1:9201", "127.0.0.1:9201"),
            ("ws://localhost:9201/", "localhost:9201"),
            ("ws://[::1]:9201/v1/ws", "[::1]:9201"),
            ("ws://127.1.2.3:9201", "127.1.2.3:9201"),
        ] {
            let a = args(&format!("--url {url} {BASE}")).unwrap();
            assert!(a.addr.ip().is_loopback(), "{url}");
            assert_eq!(a.addr.port(), 9201);
            assert_eq!(a.host, host);
            assert_eq!(a.ws_path, "/v1/ws");
        }
    }

    #[test]
    fn url_remote_host_refused() {
        for url in [
            "ws://10.0.0.1:80",
            "ws://example.com:80",
            "ws://0.0.0.0:80",
            "wss://127.0.0.1:443",
            "ws://127.0.0.1",
            "ws://127.0.0.1:0",
            "ws://127.0.0.1.evil.com:80",
        ] {
            assert!(args(&format!("--url {url} {BASE}")).is_err(), "{url}");
        }
    }

    #[test]
    fn url_custom_path_kept() {
        let a = args(&format!("--url ws://127.0.0.1:1/ws {BASE}")).unwrap();
        assert_eq!(a.ws_path, "/ws");
    }

    #[test]
    fn flags_defaults_and_inline_values_parsed() {
        let a = args("--url=ws://127.0.0.1:9 --connections=6 --rate 5 --duration=3 --peer-mode")
            .unwrap();
        assert_eq!(
            (a.connections, a.rate, a.duration_s, a.heartbeat_s),
            (6, 5, 3, 15)
        );
        assert_eq!((a.ramp_batch, a.body_bytes, a.peer_mode), (6, 20, true));
        assert_eq!(a.keys.source, KeySource::Default);
        assert_eq!(a.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn flags_out_of_bounds_refused() {
        for extra in [
            "--connections 50002",
            "--connections 3",
            "--duration 3601",
            "--duration 0",
            "--rate 0",
            "--body-bytes 16385",
            "--ramp-batch 0",
            "--frobnicate 1",
            "--peer-mode=yes",
            "--rate",
        ] {
            let line = format!("--url ws://127.0.0.1:9 {BASE} {extra}");
            assert!(args(&line).is_err(), "{extra}");
        }
    }

    #[test]
    fn flags_key_options_map_to_key_settings() {
        let a = args(&format!(
            "--url ws://127.0.0.1:9 {BASE} --jwt-secret-file /s --jwt-issuer i --jwt-audience a"
        ))
        .unwrap();
        assert_eq!(a.keys.source, KeySource::HsSecretFile("/s".into()));
        assert_eq!(a.keys.issuer.as_deref(), Some("i"));
        assert_eq!(a.keys.audience.as_deref(), Some("a"));
    }
}
