//! `greeting-service healthcheck`: asks the local server's `/healthz` and exits 0
//! when it answers 200, 1 otherwise. For container `HEALTHCHECK`s in images that
//! have no shell and no curl.
//!
//! It reads the same `PORT`/`HOST` settings as the server. With TLS configured it
//! only checks that the port accepts connections (speaking TLS here would mean
//! trusting the server's own certificate under a name it may not carry).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;

/// How long the whole check may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The address to ask: the bound address, or loopback when bound to everything.
pub fn target(config: &Config) -> SocketAddr {
    let ip = match config.listen.host {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, config.listen.port)
}

/// Runs the check; `Ok(())` means healthy.
pub fn run(config: &Config) -> Result<(), String> {
    let addr = target(config);
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    if config.tls.tls_cert.is_some() {
        return Ok(());
    }
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut head = [0u8; 64];
    let n = stream
        .read(&mut head)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    if head[..n].starts_with(b"HTTP/1.1 200 ") {
        Ok(())
    } else {
        let line = String::from_utf8_lossy(&head[..n]);
        Err(format!("unhealthy: {}", line.lines().next().unwrap_or("")))
    }
}
