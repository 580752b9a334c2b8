//! One client connection: HTTP/1.1 or h2c, with the deadlines hyper does not enforce
//! on its own.
//!
//! The protocol is told apart by peeking at the first bytes (`MSG_PEEK`, so nothing
//! is consumed and no rewind buffer sits under every later read): the HTTP/2
//! preface goes to hyper's HTTP/2 connection, anything else to HTTP/1. Over TLS,
//! ALPN decides. Only when the first bytes are a strict prefix of the preface (a
//! client that sent `PRI` and paused) does hyper-util's auto builder read on.
//!
//! hyper's HTTP/1 `header_read_timeout` is also armed while a keep-alive connection
//! sits idle, so it cannot express both `HEADER_TIMEOUT` and `IDLE_TIMEOUT`; and the
//! auto builder reads the protocol preface with no deadline at all (hyper issue 3962).
//! So each connection carries an [`Activity`] record, updated by the I/O wrapper
//! ([`Watched`]) and by the service, and a single timer per connection enforces:
//!
//! - **head**: from accept, or from the first byte after an idle period, the request
//!   head must arrive within `HEADER_TIMEOUT`; otherwise the connection is dropped.
//!   This covers the preface phase and slowloris clients that trickle bytes.
//! - **idle**: with no request in flight and no bytes received, the connection is
//!   closed gracefully after `IDLE_TIMEOUT` (HTTP/2: GOAWAY).
//! - **busy**: while a request is in flight no connection deadline applies; the
//!   handler bounds its own body read (see [`crate::routes::Limits::body_timeout`]).
//!
//! On HTTP/2 received bytes do not start a head deadline (pings and window updates
//! are not requests); an h2 connection with no open stream is closed after
//! `IDLE_TIMEOUT`.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::future::Future;

use futures_util::FutureExt as _;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::routes::Handler;
use crate::service::Service;
use crate::shutdown::Drain;

/// Deadlines and protocol limits for each connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// hyper's connection builders, configured once per worker.
pub struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// For the rare connection whose first bytes do not settle the protocol.
    auto: auto::Builder<TokioExecutor>,
}

impl Default for Protocols {
    fn default() -> Self {
        Self::new()
    }
}

/// HTTP/1 options, applied to hyper's builder and to hyper-util's auto builder's
/// (same methods, no common trait).
macro_rules! http1_options {
    ($builder:expr) => {
        $builder
            .timer(TokioTimer::new())
            // Our own head/idle deadlines replace hyper's (see the module docs).
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

impl Protocols {
    /// The builders with the protocol limits we rely on.
    pub fn new() -> Self {
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

const HEAD: u8 = 0;
const IDLE: u8 = 1;
const BUSY: u8 = 2;

/// Monotonic nanoseconds since a process-wide epoch; fits the atomics below.
fn nanos_at(t: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| t.checked_sub(Duration::from_secs(1)).unwrap_or(t));
    t.saturating_duration_since(epoch).as_nanos() as u64
}

fn now_nanos() -> u64 {
    nanos_at(Instant::now())
}

/// What a connection is doing, shared by its I/O wrapper, its service and its timer.
/// Only the connection's own task touches it, so relaxed atomics suffice.
#[derive(Debug)]
pub struct Activity {
    phase: AtomicU8,
    since: AtomicU64,
    in_flight: AtomicU32,
    http2: AtomicBool,
}

/// What the connection timer should do next.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    HeadTimedOut,
    IdleTimedOut,
    WaitUntil(u64),
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Self {
            phase: AtomicU8::new(HEAD),
            since: AtomicU64::new(nanos_at(accepted)),
            in_flight: AtomicU32::new(0),
            http2: AtomicBool::new(false),
        }
    }

    fn enter(&self, phase: u8) {
        self.since.store(now_nanos(), Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    fn on_bytes_received(&self) {
        if self.phase.load(Ordering::Relaxed) == IDLE && !self.http2.load(Ordering::Relaxed) {
            self.enter(HEAD);
        }
    }

    fn request_started(&self, http2: bool) {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.phase.store(BUSY, Ordering::Relaxed);
    }

    fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.enter(IDLE);
        }
    }

    fn verdict(&self, t: &Timeouts, now: u64) -> Verdict {
        let since = self.since.load(Ordering::Relaxed);
        let (limit, expired) = match self.phase.load(Ordering::Relaxed) {
            HEAD => (t.header, Verdict::HeadTimedOut),
            IDLE => (t.idle, Verdict::IdleTimedOut),
            // Busy: look again later; the handler bounds its own work.
            _ => return Verdict::WaitUntil(now + t.header.as_nanos() as u64),
        };
        let deadline = since.saturating_add(limit.as_nanos() as u64);
        if now >= deadline {
            expired
        } else {
            Verdict::WaitUntil(deadline)
        }
    }
}

/// Marks a request finished even when its future is dropped mid-way.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// An I/O stream that reports received bytes to its connection's [`Activity`].
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.on_bytes_received();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

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

/// A hyper connection future that can be asked to finish gracefully.
trait Graceful: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

type Incoming = hyper::body::Incoming;

impl<I, S, B> Graceful for http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self);
    }
}

impl<I, S, B> Graceful for http2::Connection<I, S, TokioExecutor>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

impl<I, S, B> Graceful for auto::Connection<'_, I, S, TokioExecutor>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::Connection::graceful_shutdown(self);
    }
}

/// Serves one connection until it closes, times out, or drains after `shutdown`.
/// `accepted` is when the connection was accepted: the first head's deadline
/// counts from there.
#[allow(clippy::too_many_arguments)]
pub async fn serve<I, H>(
    io: I,
    protocol: Protocol,
    accepted: Instant,
    peer: Option<std::net::SocketAddr>,
    service: Arc<Service<H>>,
    protocols: &Protocols,
    timeouts: Timeouts,
    shutdown: Drain,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let activity = Arc::new(Activity::new(accepted));
    let io = TokioIo::new(Watched {
        inner: io,
        activity: activity.clone(),
    });
    let svc_activity = activity.clone();
    let svc = service_fn(move |req: http::Request<Incoming>| {
        svc_activity.request_started(req.version() == http::Version::HTTP_2);
        let in_flight = InFlight(svc_activity.clone());
        service
            .clone()
            .call(req, peer, in_flight)
            .map(Ok::<_, Infallible>)
    });
    // The HTTP/1 connection lives inline in the task; the HTTP/2 and undecided ones
    // are boxed, so their (larger) state does not make every connection's task as
    // large as theirs: a task is as big as its largest branch, and memory per idle
    // connection is mostly the task and hyper's buffers.
    match protocol {
        Protocol::Http1 => {
            let conn = protocols.http1.serve_connection(io, svc);
            drive(conn, &activity, timeouts, shutdown).await
        }
        Protocol::Http2 => {
            let conn = protocols.http2.serve_connection(io, svc);
            Box::pin(drive(conn, &activity, timeouts, shutdown)).await
        }
        Protocol::Undecided => {
            let conn = protocols.auto.serve_connection(io, svc);
            Box::pin(drive(conn, &activity, timeouts, shutdown)).await
        }
    }
}

/// Polls `conn` to completion while enforcing the connection deadlines and the
/// shutdown signal.
async fn drive<C, E>(conn: C, activity: &Activity, timeouts: Timeouts, shutdown: Drain)
where
    C: Graceful + Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let first = activity.verdict(&timeouts, now_nanos());
    let timer = tokio::time::sleep(match first {
        Verdict::WaitUntil(at) => Duration::from_nanos(at.saturating_sub(now_nanos())),
        _ => Duration::ZERO,
    });
    tokio::pin!(timer);
    let stop = shutdown.draining();
    tokio::pin!(stop);
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.as_mut(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = timer.as_mut() => {
                if draining {
                    // A graceful close that the peer did not complete in time.
                    return;
                }
                match activity.verdict(&timeouts, now_nanos()) {
                    Verdict::HeadTimedOut => {
                        tracing::debug!("request head not received in time; closing");
                        return;
                    }
                    Verdict::IdleTimedOut => {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                        timer.as_mut().reset(tokio::time::Instant::now() + timeouts.header);
                    }
                    Verdict::WaitUntil(at) => {
                        let wait = Duration::from_nanos(at.saturating_sub(now_nanos()));
                        timer.as_mut().reset(tokio::time::Instant::now() + wait);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(5),
        idle: Duration::from_secs(60),
    };
    const S: u64 = 1_000_000_000;

    #[test]
    fn head_then_idle_then_head_again() {
        let a = Activity::new(Instant::now());
        let t0 = a.since.load(Ordering::Relaxed);
        assert_eq!(a.verdict(&T, t0 + 4 * S), Verdict::WaitUntil(t0 + 5 * S));
        assert_eq!(a.verdict(&T, t0 + 5 * S), Verdict::HeadTimedOut);

        a.request_started(false);
        assert!(matches!(a.verdict(&T, t0 + 100 * S), Verdict::WaitUntil(_)));
        a.request_finished();
        let idle_since = a.since.load(Ordering::Relaxed);
        // Idle: the header deadline no longer applies, the idle one does.
        assert!(matches!(
            a.verdict(&T, idle_since + 10 * S),
            Verdict::WaitUntil(_)
        ));
        assert_eq!(a.verdict(&T, idle_since + 60 * S), Verdict::IdleTimedOut);

        a.on_bytes_received();
        let head_since = a.since.load(Ordering::Relaxed);
        assert_eq!(a.verdict(&T, head_since + 5 * S), Verdict::HeadTimedOut);
    }

    #[test]
    fn http2_bytes_do_not_start_a_head_deadline() {
        let a = Activity::new(Instant::now());
        a.request_started(true);
        a.request_finished();
        a.on_bytes_received();
        let since = a.since.load(Ordering::Relaxed);
        assert!(matches!(
            a.verdict(&T, since + 10 * S),
            Verdict::WaitUntil(_)
        ));
        assert_eq!(a.verdict(&T, since + 60 * S), Verdict::IdleTimedOut);
    }

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

    #[test]
    fn overlapping_requests_stay_busy_until_the_last_ends() {
        let a = Activity::new(Instant::now());
        a.request_started(true);
        a.request_started(true);
        a.request_finished();
        assert_eq!(a.phase.load(Ordering::Relaxed), BUSY);
        a.request_finished();
        assert_eq!(a.phase.load(Ordering::Relaxed), IDLE);
    }
}
