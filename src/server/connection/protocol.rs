//! Which HTTP a connection speaks, and hyper's connection builders for each.
//!
//! The protocol is told apart by peeking at the first bytes (`MSG_PEEK`, so nothing
//! is consumed and no rewind buffer sits under every later read): the HTTP/2
//! preface goes to hyper's HTTP/2 connection, anything else to HTTP/1. Over TLS,
//! ALPN decides. When the first bytes are a strict prefix of the preface (a client
//! that sent `P` or `PRI` and paused), the peek is repeated until they settle it;
//! the head deadline bounds that wait like any other. First bytes that are not
//! HTTP are refused without an answer, normally with an orderly close (FIN, not
//! RST; see `close_not_http` for when a reset is still sent).

use std::io;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::MAX_HEAD_BYTES;

/// HTTP/2 receive windows (connection and each stream): what a client may send
/// before the service reads it. The spec's 64 KiB rather than hyper's 1 MiB, so a
/// connection's worst case fits the memory plan's per-connection share
/// (`config::memory::PER_CONNECTION`); bodies are at most `MAX_BODY_BYTES` anyway.
const H2_WINDOW: u32 = 65_535;

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How many bytes the first peek looks at: the preface, or a short HTTP/1
/// request line whole (`POST /greet HTTP/1.1` is 20).
pub const SNIFF_BYTES: usize = 64;

/// Which hyper connection serves a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// What a cleartext connection's first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    Speaks(Protocol),
    /// A strict prefix of the HTTP/2 preface: more bytes will tell.
    Undecided,
    /// A whole first line that is neither an HTTP/1.x request line nor the
    /// preface (h2spec 3.5/2 sends `INVALID CONNECTION PREFACE`). RFC 9113
    /// section 3.4 makes an invalid preface a connection error, and an HTTP/1
    /// answer would be bytes an HTTP/2 client reads as frames: the connection is
    /// closed unanswered.
    NotHttp,
}

impl Protocol {
    /// Classifies a connection by its first bytes. A first line the peek did not
    /// see whole goes to HTTP/1, whose parser judges it (400, 431).
    pub fn from_first_bytes(first: &[u8]) -> FirstBytes {
        let head = &first[..first.len().min(PREFACE.len())];
        if !head.is_empty() && head == &PREFACE[..head.len()] {
            return if head.len() == PREFACE.len() {
                FirstBytes::Speaks(Self::Http2)
            } else {
                FirstBytes::Undecided
            };
        }
        // The preface's first line, then something else: an HTTP/2 client's
        // invalid preface, not an HTTP/1 request.
        if first.starts_with(&PREFACE[..16]) {
            return FirstBytes::NotHttp;
        }
        // RFC 9112 section 2.2: empty lines before the request line are ignored.
        let start = first
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(first.len());
        let rest = &first[start..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return FirstBytes::Speaks(Self::Http1);
        };
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        if is_http1_request_line(line) {
            FirstBytes::Speaks(Self::Http1)
        } else {
            FirstBytes::NotHttp
        }
    }

    /// Peeks at a TCP connection's first bytes without consuming them. A peek that
    /// finds data leaves the socket readable, so waiting for "more" is a short
    /// sleep between peeks (1 ms doubling to 50 ms): only a client that stops in
    /// the middle of the 24-byte preface ever takes that path. Bytes that are not
    /// HTTP end the connection in order (`close_not_http`) and with an
    /// `InvalidData` error. Neither wait has a deadline of its own: the caller
    /// bounds the whole call (`Started::serve`: the head deadline and the drain).
    pub async fn sniff(stream: TcpStream) -> io::Result<(Self, TcpStream)> {
        let mut first = [0u8; SNIFF_BYTES];
        let mut pause = Duration::from_millis(1);
        loop {
            let n = stream.peek(&mut first).await?;
            match Self::from_first_bytes(&first[..n]) {
                FirstBytes::Speaks(protocol) => return Ok((protocol, stream)),
                FirstBytes::NotHttp => {
                    // Boxed: its read buffer would otherwise be part of every
                    // connection's task, for a path only refused clients take.
                    Box::pin(close_not_http(stream)).await;
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "neither an HTTP/1 request line nor the HTTP/2 preface",
                    ));
                }
                FirstBytes::Undecided => {}
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

/// At most this much of what a refused client still sends is read and dropped
/// before the socket is closed anyway.
const LINGER_BYTES: usize = 64 * 1024;

/// Ends a connection whose first bytes are not HTTP without an answer, but in
/// order: the write side is shut first (the client reads a FIN, an orderly end),
/// then what the client sent or still sends is read and dropped until it closes,
/// at most `LINGER_BYTES`. Closing a socket with unread bytes in its receive
/// buffer sends a reset instead (RST), and a client may then see "connection
/// reset by peer" before it reads the end: h2spec 3.5/2 reports exactly that as
/// a failure. The caller's head deadline bounds the wait for the client's close.
/// A reset is still sent when the client sends more than `LINGER_BYTES`, is still
/// sending when the deadline or a drain drops this future, or the shutdown fails.
async fn close_not_http(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut left = LINGER_BYTES;
    while left > 0 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Whether `line` (without its line end) ends like an HTTP/1 request line,
/// `... HTTP/d.d`: which version hyper then accepts is hyper's to say.
fn is_http1_request_line(line: &[u8]) -> bool {
    match line {
        [.., b' ', b'H', b'T', b'T', b'P', b'/', major, b'.', minor] => {
            major.is_ascii_digit() && minor.is_ascii_digit()
        }
        _ => false,
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
        let http1 = FirstBytes::Speaks(Protocol::Http1);
        assert_eq!(of(b"GET / HTTP/1.1"), http1);
        assert_eq!(of(b"GET / HTTP/1.1\r\nHost: x\r\n"), http1);
        assert_eq!(of(b"\r\nGET / HTTP/1.0\n"), http1);
        assert_eq!(of(b"FROB /greet HTTP/1.1\r\n"), http1);
        // Versions hyper refuses are hyper's to answer (400, 505).
        assert_eq!(of(b"GET / HTTP/9.9\r\n"), http1);
        assert_eq!(of(b"POST /greet"), http1);
        assert_eq!(of(b"PRIX"), http1);
        assert_eq!(of(b""), http1);
        assert_eq!(of(b"\r\n"), http1);
        assert_eq!(of(b"P"), FirstBytes::Undecided);
        assert_eq!(of(b"PRI * HTTP/2.0\r\n"), FirstBytes::Undecided);
        assert_eq!(of(PREFACE), FirstBytes::Speaks(Protocol::Http2));
        // A whole first line that is neither.
        assert_eq!(
            of(b"INVALID CONNECTION PREFACE\r\n\r\n"),
            FirstBytes::NotHttp
        );
        assert_eq!(of(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"), FirstBytes::NotHttp);
        assert_eq!(of(b"GET / HTTP/1\r\n"), FirstBytes::NotHttp);
        assert_eq!(of(b"\x16\x03\x01\x02\x00\x01\n"), FirstBytes::NotHttp);
        assert_eq!(Protocol::from_alpn(Some(b"h2")), Protocol::Http2);
        assert_eq!(Protocol::from_alpn(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(Protocol::from_alpn(None), Protocol::Http1);
    }
}
