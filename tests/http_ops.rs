//! Operating the gateway: configuration reload on SIGHUP, and accept-loop hygiene when the
//! process runs out of file descriptors.

mod support;

use std::time::{Duration, Instant};
use support::{is_closed, read_response, write_request, Gateway};

// ------------------------------------------------------------------ reload

#[test]
fn sighup_reload_applies_new_limits_to_new_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("gateway.conf");
    std::fs::write(&config, "keepalive_idle_ms = 60000\n").unwrap();
    let data = tmp.path().join("data");
    let cfg = config.to_string_lossy().into_owned();
    let gw = Gateway::start_in(&data, &["--config", &cfg]);
    // Before the reload: an idle connection is kept (a request on it still works later).
    let mut old = gw.connect();
    write_request(&mut old, "GET", "/healthz", &[], b"");
    assert_eq!(read_response(&mut old).unwrap().status, 200);

    std::fs::write(&config, "# shorter idle\nkeepalive_idle_ms = 200\n").unwrap();
    gw.signal(rustix::process::Signal::HUP);
    gw.wait_log("event=config_reloaded");

    let mut new = gw.connect();
    write_request(&mut new, "GET", "/healthz", &[], b"");
    assert_eq!(read_response(&mut new).unwrap().status, 200);
    assert!(
        is_closed(&mut new),
        "a new connection gets the reloaded 200 ms idle limit"
    );
    write_request(&mut old, "GET", "/healthz", &[], b"");
    assert_eq!(
        read_response(&mut old).map(|r| r.status),
        Some(200),
        "a connection from before the reload keeps its limits"
    );
}

#[test]
fn sighup_with_bad_file_keeps_running_config() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("gateway.conf");
    std::fs::write(&config, "keepalive_idle_ms = 200\n").unwrap();
    let data = tmp.path().join("data");
    let cfg = config.to_string_lossy().into_owned();
    let gw = Gateway::start_in(&data, &["--config", &cfg]);
    std::fs::write(&config, "keepalive_idle_ms = soon\nno equals sign here\n").unwrap();
    gw.signal(rustix::process::Signal::HUP);
    let line = gw.wait_log("event=config_reload_failed");
    assert!(line.contains("kept=running"), "{line}");
    let mut s = gw.connect();
    write_request(&mut s, "GET", "/healthz", &[], b"");
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    assert!(is_closed(&mut s), "the running 200 ms limit still applies");
}

// ------------------------------------------------------------------ file descriptors

#[test]
fn emfile_on_accept_backs_off_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let gw = Gateway::start_wrapped(tmp.path(), &["prlimit", "--nofile=48:48"], &[]);
    // More connections than descriptors: the kernel queues them, accept fails with EMFILE.
    let started = Instant::now();
    let clients: Vec<_> = (0..80).map(|_| gw.connect()).collect();
    gw.wait_log("event=accept_backoff");
    drop(clients);
    // Once descriptors are free again, the gateway serves.
    let deadline = Instant::now() + support::IO_TIMEOUT;
    loop {
        let mut s = gw.connect();
        write_request(&mut s, "GET", "/healthz", &[], b"");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 12];
        if std::io::Read::read_exact(&mut s, &mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never recovered from EMFILE"
        );
    }
    // Backing off means at most one log line per second, not a spin.
    let backoffs = gw
        .log_lines()
        .iter()
        .filter(|l| l.contains("event=accept_backoff"))
        .count() as u64;
    assert!(
        backoffs <= started.elapsed().as_secs() + 2,
        "{backoffs} backoff lines"
    );
}
