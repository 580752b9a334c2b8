//! What one connection is doing, as far as its deadlines are concerned: the
//! [`Activity`] record its service and its byte stream ([`Watched`]) update and
//! the [`Watchdog`] reads, and the alarms the watchdog raises in it.
//!
//! [`Watched`] is the connection's byte stream as hyper sees it: it reports
//! received bytes to the connection's [`Activity`], replays bytes hyper had read
//! but not used before a park, and keeps the socket open when hyper ends a
//! connection to park it.
//!
//! - **head**: from accept, or from the first byte after an idle period, the request
//!   head must arrive within `HEADER_TIMEOUT`; otherwise the connection is dropped.
//!   This covers slowloris clients that trickle bytes.
//! - **idle**: with no request in flight and no bytes received, the connection is
//!   closed gracefully after `IDLE_TIMEOUT` (HTTP/2: GOAWAY).
//! - **busy**: while a request is in flight no connection deadline applies; the
//!   handler bounds its own body read (`routes::Limits::body_timeout`).
//! - **closing**: a graceful close (drain or idle) that the peer has not completed
//!   within `HEADER_TIMEOUT` is cut.
//! - **park**: a plain HTTP/1 connection idle for a second gives its hyper state
//!   back ([`super::parking`]).
//!
//! On HTTP/2 received bytes do not start a head deadline (pings and window updates
//! are not requests); an h2 connection with no open stream is closed after
//! `IDLE_TIMEOUT`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::parking;
use super::watchdog::{Timeouts, Watchdog};

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

/// What the watchdog (or the drain) asks of a connection; bits of
/// [`Activity::take_alarm`], taken by the connection when it next runs.
pub mod alarm {
    /// The head did not arrive in time: drop the connection.
    pub const HEAD_EXPIRED: u8 = 1;
    /// Idle for `IDLE_TIMEOUT`: close gracefully.
    pub const IDLE_EXPIRED: u8 = 2;
    /// The server is draining: close gracefully.
    pub const DRAIN: u8 = 4;
    /// A graceful close took longer than `HEADER_TIMEOUT`: drop the connection.
    pub const CUT: u8 = 8;
    /// Idle for [`super::super::parking::PARK_AFTER`]: give hyper's state back.
    pub const PARK: u8 = 16;
}

/// Monotonic nanoseconds since a process-wide epoch; fits the atomics below.
pub(super) fn nanos_at(t: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| t.checked_sub(Duration::from_secs(1)).unwrap_or(t));
    t.saturating_duration_since(epoch).as_nanos() as u64
}

/// What a connection is doing, shared by its I/O wrapper, its service, its task and
/// the watchdog. Relaxed atomics: the connection's own task writes the phase, the
/// watchdog only reads it and sets alarm bits (its wake-up orders the rest).
#[derive(Debug)]
pub struct Activity {
    pub(super) phase: AtomicU8,
    /// When the phase began, on the watchdog's clock (nanoseconds).
    pub(super) since: AtomicU64,
    pub(super) in_flight: AtomicU32,
    pub(super) http2: AtomicBool,
    /// Plain HTTP/1 only, and not once the peer has closed its side.
    pub(super) parkable: AtomicBool,
    pub(super) park: AtomicU8,
    /// Set when a graceful close began (nanoseconds, 0: none).
    pub(super) closing_since: AtomicU64,
    pub(super) alarm: AtomicU8,
    pub(super) waker: Mutex<Option<Waker>>,
    pub(super) watchdog: Arc<Watchdog>,
}

impl Activity {
    /// A connection accepted at `accepted`, watched by `watchdog`. `parkable` says
    /// whether its protocol and stream allow parking (plain HTTP/1).
    pub(super) fn new(accepted: Instant, watchdog: &Arc<Watchdog>, parkable: bool) -> Arc<Self> {
        let activity = Arc::new(Self {
            phase: AtomicU8::new(Phase::Head as u8),
            since: AtomicU64::new(nanos_at(accepted)),
            in_flight: AtomicU32::new(0),
            http2: AtomicBool::new(false),
            parkable: AtomicBool::new(parkable),
            park: AtomicU8::new(parking::NO),
            closing_since: AtomicU64::new(0),
            alarm: AtomicU8::new(0),
            waker: Mutex::new(None),
            watchdog: watchdog.clone(),
        });
        watchdog.register(&activity);
        activity
    }

    pub(super) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    pub(super) fn enter(&self, phase: Phase) {
        self.since.store(self.watchdog.stamp(), Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Called by the I/O wrapper when bytes arrive.
    pub(super) fn on_bytes_received(&self) {
        if self.phase() == Phase::Idle && !self.http2.load(Ordering::Relaxed) {
            self.park.store(parking::NO, Ordering::Relaxed);
            self.enter(Phase::Head);
        }
    }

    pub(super) fn request_started(&self, http2: bool) {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.park.store(parking::NO, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.phase.store(Phase::Busy as u8, Ordering::Relaxed);
    }

    pub(super) fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.enter(Phase::Idle);
        }
    }

    /// Marks the start of a graceful close, for the `CUT` deadline.
    pub(super) fn closing(&self) {
        let _ = self.closing_since.compare_exchange(
            0,
            self.watchdog.stamp(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The task to wake for alarms. Tokio passes a task the same waker on every
    /// poll, so this is needed once per wait, not per poll.
    pub(super) fn set_waker(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// The alarms raised since the last call: one load when there are none.
    pub(super) fn take_alarm(&self) -> u8 {
        if self.alarm.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.alarm.swap(0, Ordering::Acquire)
    }

    /// Raises `bits` and wakes the connection if one of them is new.
    pub(super) fn raise(&self, bits: u8) {
        if self.alarm.fetch_or(bits, Ordering::Release) & bits != bits {
            let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// What the watchdog should raise at `now`, if anything.
    pub(super) fn due(&self, t: &Timeouts, now: u64) -> u8 {
        let expired =
            |since: u64, limit: Duration| now >= since.saturating_add(limit.as_nanos() as u64);
        let closing = self.closing_since.load(Ordering::Relaxed);
        if closing != 0 {
            return if expired(closing, t.header) {
                alarm::CUT
            } else {
                0
            };
        }
        let since = self.since.load(Ordering::Relaxed);
        match self.phase() {
            Phase::Head if expired(since, t.header) => alarm::HEAD_EXPIRED,
            Phase::Idle if expired(since, t.idle) => alarm::IDLE_EXPIRED,
            Phase::Idle if self.park_due(t, since, now) => alarm::PARK,
            _ => 0,
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

/// An I/O stream wrapped for the connection's deadlines and parking.
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
    /// Bytes read from `inner` before hyper was given the stream; served first.
    prefix: Bytes,
}

impl<T> Watched<T> {
    pub(super) fn new(inner: T, activity: Arc<Activity>, prefix: Bytes) -> Self {
        Self {
            inner,
            activity,
            prefix,
        }
    }

    /// The stream, and any bytes read from it that nobody consumed.
    pub(super) fn into_parts(self) -> (T, Bytes) {
        (self.inner, self.prefix)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            self.activity.on_bytes_received();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.on_bytes_received();
        } else if polled.is_ready() {
            // The peer's own end of input (or an error): no parking, close.
            self.activity.cancel_park();
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
        if self.activity.park_requested() {
            // Parking: hyper closes its side of an ended connection; the socket
            // itself stays open for the next request.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::connection::watchdog::tests::{watched, S, T};

    #[test]
    fn head_then_idle_then_head_again() {
        let (_w, a) = watched(false);
        let t0 = a.since.load(Ordering::Relaxed);
        assert_eq!(a.due(&T, t0 + 4 * S), 0);
        assert_eq!(a.due(&T, t0 + 5 * S), alarm::HEAD_EXPIRED);

        a.request_started(false);
        assert_eq!(a.due(&T, t0 + 100 * S), 0, "busy: no deadline");
        a.request_finished();
        assert_eq!(a.phase(), Phase::Idle);
        let idle_since = a.since.load(Ordering::Relaxed);
        // Idle: the header deadline no longer applies, the idle one does.
        assert_eq!(a.due(&T, idle_since + 10 * S), 0);
        assert_eq!(a.due(&T, idle_since + 60 * S), alarm::IDLE_EXPIRED);

        a.on_bytes_received();
        assert_eq!(a.phase(), Phase::Head);
        let head_since = a.since.load(Ordering::Relaxed);
        assert_eq!(a.due(&T, head_since + 5 * S), alarm::HEAD_EXPIRED);
    }

    #[test]
    fn http2_bytes_do_not_start_a_head_deadline() {
        let (_w, a) = watched(false);
        a.request_started(true);
        a.request_finished();
        a.on_bytes_received();
        assert_eq!(a.phase(), Phase::Idle);
        let since = a.since.load(Ordering::Relaxed);
        assert_eq!(a.due(&T, since + 10 * S), 0);
        assert_eq!(a.due(&T, since + 60 * S), alarm::IDLE_EXPIRED);
    }

    #[test]
    fn overlapping_requests_stay_busy_until_the_last_ends() {
        let (_w, a) = watched(false);
        a.request_started(true);
        a.request_started(true);
        a.request_finished();
        assert_eq!(a.phase(), Phase::Busy);
        a.request_finished();
        assert_eq!(a.phase(), Phase::Idle);
    }

    #[test]
    fn a_graceful_close_is_cut_after_the_header_timeout() {
        let (_w, a) = watched(false);
        a.closing();
        let since = a.closing_since.load(Ordering::Relaxed);
        assert_eq!(a.due(&T, since + 4 * S), 0);
        assert_eq!(a.due(&T, since + 5 * S), alarm::CUT);
    }

    #[test]
    fn phases_round_trip_through_their_byte() {
        for p in [Phase::Head, Phase::Idle, Phase::Busy] {
            assert_eq!(Phase::from_u8(p as u8), p);
        }
    }
}
