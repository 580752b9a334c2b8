//! Which HTTP a connection speaks, and hyper's connection builders for each.
//!
//! The protocol is told apart by peeking at the first bytes (`MSG_PEEK`, so nothing
//! is consumed and no rewind buffer sits under every later read): the HTTP/2
//! preface goes to hyper's HTTP/2 connection, anything else to HTTP/1. Over TLS,
//! ALPN decides. When the first bytes are a strict prefix of the preface (a client
//! that sent `P` or `PRI` and paused), the peek is repeated until they settle it;
//! the head deadline bounds that wait like any other.

use std::io;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::defaults::MAX_HEAD_BYTES;

/// HTTP/2 receive windows (connection and each stream): what a client may send
/// before the service reads it. The spec's 64 KiB rather than hyper's 1 MiB, so a
/// connection's worst case fits the memory plan's per-connection share
/// (`config::memory::PER_CONNECTION`); bodies are at most `MAX_BODY_BYTES` anyway.
const H2_WINDOW: u32 = 65_535;

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which hyper connection serves a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    /// Classifies a connection by its first bytes; `None` while they are a strict
    /// prefix of the HTTP/2 preface (more bytes will tell).
    pub fn from_first_bytes(first: &[u8]) -> Option<Self> {
        if first.is_empty() || first != &PREFACE[..first.len().min(PREFACE.len())] {
            Some(Self::Http1)
        } else if first.len() >= PREFACE.len() {
            Some(Self::Http2)
        } else {
            None
        }
    }

    /// Peeks at a TCP connection's first bytes without consuming them. A peek that
    /// finds data leaves the socket readable, so waiting for "more" is a short
    /// sleep between peeks (1 ms doubling to 50 ms): only a client that stops in
    /// the middle of the 24-byte preface ever takes that path.
    pub async fn sniff(stream: &tokio::net::TcpStream) -> io::Result<Self> {
        let mut first = [0u8; PREFACE.len()];
        let mut pause = Duration::from_millis(1);
        loop {
            let n = stream.peek(&mut first).await?;
            if let Some(protocol) = Self::from_first_bytes(&first[..n]) {
                return Ok(protocol);
            }
            tracing::debug!(
                bytes = n,
                "first bytes are a prefix of the HTTP/2 preface; waiting for more"
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
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
}

impl Default for Builders {
    /// The builders with the protocol limits the service documents.
    fn default() -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            // Our own head/idle deadlines replace hyper's (see `deadline`).
            .header_read_timeout(None)
            .keep_alive(true)
            // Request heads over 64 KiB get 431 (the documented head limit), exactly:
            // `max_header_size` checks the parsed head, `max_buf_size` the buffer of
            // one that is still incomplete. Either alone lets some sizes through.
            .max_header_size(MAX_HEAD_BYTES)
            .max_buf_size(MAX_HEAD_BYTES)
            // Not `pipeline_flush(true)`: it holds a response back while more request
            // bytes are buffered, and when those bytes are a second framing error the
            // connection ends before the first 400 is flushed (RFC 9112 section 6.3
            // wants that 400 sent, then the connection closed).
            .pipeline_flush(false)
            // Copy each small response into one buffer and `write` it, rather than
            // `writev` the head and body (what `pipeline_flush(true)` also chose):
            // ~500 fewer instructions per request (callgrind, scripts/perf-gate).
            .writev(false);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(MAX_HEAD_BYTES as u32)
            .initial_connection_window_size(H2_WINDOW)
            .initial_stream_window_size(H2_WINDOW)
            // Rapid reset (CVE-2023-44487) and error-reset floods: bounded explicitly.
            .max_pending_accept_reset_streams(Some(50))
            .max_local_error_reset_streams(Some(256))
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        Self { http1, http2 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_from_first_bytes() {
        let of = Protocol::from_first_bytes;
        assert_eq!(of(b"GET / HTTP/1.1"), Some(Protocol::Http1));
        assert_eq!(of(b"POST /greet"), Some(Protocol::Http1));
        assert_eq!(of(b"PRIX"), Some(Protocol::Http1));
        assert_eq!(of(b""), Some(Protocol::Http1));
        assert_eq!(of(b"P"), None);
        assert_eq!(of(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(of(PREFACE), Some(Protocol::Http2));
        assert_eq!(Protocol::from_alpn(Some(b"h2")), Protocol::Http2);
        assert_eq!(Protocol::from_alpn(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(Protocol::from_alpn(None), Protocol::Http1);
    }
}
