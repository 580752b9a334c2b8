//! The deadlines hyper does not enforce on its own, one timer per connection.
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
//!   handler bounds its own body read (`routes::Limits::body_timeout`).
//!
//! On HTTP/2 received bytes do not start a head deadline (pings and window updates
//! are not requests); an h2 connection with no open stream is closed after
//! `IDLE_TIMEOUT`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The connection deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// What a connection is doing, as far as its deadlines are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Waiting for (the rest of) a request head: the head deadline runs.
    Head = 0,
    /// No request in flight and nothing received since: the idle deadline runs.
    Idle = 1,
    /// At least one request in flight: no connection deadline.
    Busy = 2,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Head,
            1 => Self::Idle,
            _ => Self::Busy,
        }
    }
}

/// Monotonic nanoseconds since a process-wide epoch; fits the atomics below.
fn nanos_at(t: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| t.checked_sub(Duration::from_secs(1)).unwrap_or(t));
    t.saturating_duration_since(epoch).as_nanos() as u64
}

pub(super) fn now_nanos() -> u64 {
    nanos_at(Instant::now())
}

/// What a connection is doing, shared by its I/O wrapper, its service and its timer.
/// Only the connection's own task touches it, so relaxed atomics suffice (atomics
/// rather than `Cell`s only because the task must be `Send`).
#[derive(Debug)]
pub struct Activity {
    phase: AtomicU8,
    since: AtomicU64,
    in_flight: AtomicU32,
    http2: AtomicBool,
}

/// What the connection timer should do next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    HeadTimedOut,
    IdleTimedOut,
    WaitUntil(u64),
}

impl Activity {
    pub(super) fn new(accepted: Instant) -> Self {
        Self {
            phase: AtomicU8::new(Phase::Head as u8),
            since: AtomicU64::new(nanos_at(accepted)),
            in_flight: AtomicU32::new(0),
            http2: AtomicBool::new(false),
        }
    }

    pub(super) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    fn enter(&self, phase: Phase) {
        self.since.store(now_nanos(), Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn on_bytes_received(&self) {
        if self.phase() == Phase::Idle && !self.http2.load(Ordering::Relaxed) {
            self.enter(Phase::Head);
        }
    }

    pub(super) fn request_started(&self, http2: bool) {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.phase.store(Phase::Busy as u8, Ordering::Relaxed);
    }

    fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.enter(Phase::Idle);
        }
    }

    pub(super) fn verdict(&self, t: &Timeouts, now: u64) -> Verdict {
        let since = self.since.load(Ordering::Relaxed);
        let (limit, expired) = match self.phase() {
            Phase::Head => (t.header, Verdict::HeadTimedOut),
            Phase::Idle => (t.idle, Verdict::IdleTimedOut),
            // Busy: look again later; the handler bounds its own work.
            Phase::Busy => return Verdict::WaitUntil(now + t.header.as_nanos() as u64),
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
pub(super) struct InFlight(pub(super) Arc<Activity>);

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

impl<T> Watched<T> {
    pub(super) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
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
        assert_eq!(a.phase(), Phase::Idle);
        let idle_since = a.since.load(Ordering::Relaxed);
        // Idle: the header deadline no longer applies, the idle one does.
        assert_eq!(
            a.verdict(&T, idle_since + 10 * S),
            Verdict::WaitUntil(idle_since + 60 * S)
        );
        assert_eq!(a.verdict(&T, idle_since + 60 * S), Verdict::IdleTimedOut);

        a.on_bytes_received();
        assert_eq!(a.phase(), Phase::Head);
        let head_since = a.since.load(Ordering::Relaxed);
        assert_eq!(a.verdict(&T, head_since + 5 * S), Verdict::HeadTimedOut);
    }

    #[test]
    fn http2_bytes_do_not_start_a_head_deadline() {
        let a = Activity::new(Instant::now());
        a.request_started(true);
        a.request_finished();
        a.on_bytes_received();
        assert_eq!(a.phase(), Phase::Idle);
        let since = a.since.load(Ordering::Relaxed);
        assert_eq!(
            a.verdict(&T, since + 10 * S),
            Verdict::WaitUntil(since + 60 * S)
        );
        assert_eq!(a.verdict(&T, since + 60 * S), Verdict::IdleTimedOut);
    }

    #[test]
    fn overlapping_requests_stay_busy_until_the_last_ends() {
        let a = Activity::new(Instant::now());
        a.request_started(true);
        a.request_started(true);
        a.request_finished();
        assert_eq!(a.phase(), Phase::Busy);
        a.request_finished();
        assert_eq!(a.phase(), Phase::Idle);
    }

    #[test]
    fn phases_round_trip_through_their_byte() {
        for p in [Phase::Head, Phase::Idle, Phase::Busy] {
            assert_eq!(Phase::from_u8(p as u8), p);
        }
    }
}
