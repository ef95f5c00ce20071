//! The listening socket and the process limits a gateway needs before it accepts.
//!
//! # Implementation
//! std's `TcpListener::bind` fixes the backlog at 128, which drops connections when ten
//! thousand kiosks reconnect at once (the axum peer's measured failure); the socket is built with
//! rustix instead so the backlog is ours.

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use std::io;
use std::net::{SocketAddr, TcpListener};

/// Pending-connection queue: room for a reconnect burst of every kiosk on a gateway (the kernel
/// caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;

pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, LISTEN_BACKLOG)?;
    Ok(TcpListener::from(fd))
}

/// Raises the soft open-files limit to the hard limit: every socket is a descriptor.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        let raised = rustix::process::Rlimit {
            current: Some(max),
            maximum: Some(max),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return max;
        }
    }
    limit.current.unwrap_or(1024)
}
