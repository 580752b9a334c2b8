//! Which HTTP a connection speaks, and hyper's connection builders for each.
//!
//! The protocol is told apart by peeking at the first bytes (`MSG_PEEK`, so nothing
//! is consumed and no rewind buffer sits under every later read): the HTTP/2
//! preface goes to hyper's HTTP/2 connection, anything else to HTTP/1. Over TLS,
//! ALPN decides. Only when the first bytes are a strict prefix of the preface (a
//! client that sent `PRI` and paused) does hyper-util's auto builder read on.

use std::io;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which hyper connection serves a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    /// The first bytes are a strict prefix of the HTTP/2 preface: undecided.
    Undecided,
}

impl Protocol {
    /// Classifies a connection by its first bytes.
    pub fn from_first_bytes(first: &[u8]) -> Self {
        if first.is_empty() || first != &PREFACE[..first.len().min(PREFACE.len())] {
            Self::Http1
        } else if first.len() >= PREFACE.len() {
            Self::Http2
        } else {
            Self::Undecided
        }
    }

    /// Peeks at a TCP connection's first bytes without consuming them.
    pub async fn sniff(stream: &tokio::net::TcpStream) -> io::Result<Self> {
        let mut first = [0u8; PREFACE.len()];
        let n = stream.peek(&mut first).await?;
        Ok(Self::from_first_bytes(&first[..n]))
    }

    /// The protocol a TLS handshake agreed on through ALPN.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Self {
        match alpn {
            Some(b"h2") => Self::Http2,
            _ => Self::Http1,
        }
    }
}

/// hyper's connection builders, configured once per worker.
pub struct Builders {
    pub(super) http1: http1::Builder,
    pub(super) http2: http2::Builder<TokioExecutor>,
    /// For the rare connection whose first bytes do not settle the protocol.
    pub(super) auto: auto::Builder<TokioExecutor>,
}

/// HTTP/1 options, applied to hyper's builder and to hyper-util's auto builder's
/// (same methods, no common trait).
macro_rules! http1_options {
    ($builder:expr) => {
        $builder
            .timer(TokioTimer::new())
            // Our own head/idle deadlines replace hyper's (see `deadline`).
            .header_read_timeout(None)
            .keep_alive(true)
            // Request heads over 64 KiB get 431 (the documented head limit).
            .max_buf_size(64 * 1024)
            .pipeline_flush(true)
    };
}

/// HTTP/2 options, likewise.
macro_rules! http2_options {
    ($builder:expr) => {
        $builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(64 * 1024)
            // Rapid reset (CVE-2023-44487) and error-reset floods: bounded explicitly.
            .max_pending_accept_reset_streams(Some(50))
            .max_local_error_reset_streams(Some(256))
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20))
    };
}

impl Default for Builders {
    /// The builders with the protocol limits the service documents.
    fn default() -> Self {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        http1_options!(auto.http1());
        http2_options!(auto.http2());
        let mut http1 = http1::Builder::new();
        http1_options!(http1);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2_options!(http2);
        Self { http1, http2, auto }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_from_first_bytes() {
        assert_eq!(
            Protocol::from_first_bytes(b"GET / HTTP/1.1"),
            Protocol::Http1
        );
        assert_eq!(Protocol::from_first_bytes(b"POST /greet"), Protocol::Http1);
        assert_eq!(Protocol::from_first_bytes(b""), Protocol::Http1);
        assert_eq!(Protocol::from_first_bytes(b"P"), Protocol::Undecided);
        assert_eq!(
            Protocol::from_first_bytes(b"PRI * HTTP/2.0\r\n"),
            Protocol::Undecided
        );
        assert_eq!(Protocol::from_first_bytes(PREFACE), Protocol::Http2);
        assert_eq!(Protocol::from_alpn(Some(b"h2")), Protocol::Http2);
        assert_eq!(Protocol::from_alpn(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(Protocol::from_alpn(None), Protocol::Http1);
    }
}
