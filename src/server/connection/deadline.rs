//! The deadlines hyper does not enforce on its own, and when an idle connection is
//! parked: one [`Watchdog`] per worker looks at every connection of the worker a
//! few times a second, instead of one timer per connection.
//!
//! hyper's HTTP/1 `header_read_timeout` is also armed while a keep-alive connection
//! sits idle, so it cannot express both `HEADER_TIMEOUT` and `IDLE_TIMEOUT`. So
//! each connection carries an [`Activity`] record, updated by its I/O wrapper and
//! its service, and the watchdog enforces:
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
//! - **park**: a plain HTTP/1 connection idle for [`PARK_AFTER`] gives its hyper
//!   state back and waits as a bare socket (see the connection module).
//!
//! Why a sweep rather than a timer each: a tokio timer is polled on every wake-up
//! of its connection (a few hundred instructions per request, measured) and takes
//! space in every connection; the sweep costs the request path one atomic load per
//! wake-up, and deadlines fire within one tick (at most 100 ms) of their time,
//! never before it. Phase changes are stamped with the watchdog's clock, read at
//! each tick, so the request path reads no clock for its deadlines either.
//!
//! On HTTP/2 received bytes do not start a head deadline (pings and window updates
//! are not requests); an h2 connection with no open stream is closed after
//! `IDLE_TIMEOUT`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::server::drain::Drain;
use crate::telemetry::metrics::Connections;

/// The connection deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// How long a plain HTTP/1 connection stays idle inside hyper before it is parked:
/// long enough that a client sending a request every few hundred milliseconds
/// never pays the (small) cost of waking a parked connection, short enough that
/// idle connections soon cost almost nothing.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

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
/// [`Activity::alarm`], taken by the connection when it next runs.
pub mod alarm {
    /// The head did not arrive in time: drop the connection.
    pub const HEAD_EXPIRED: u8 = 1;
    /// Idle for `IDLE_TIMEOUT`: close gracefully.
    pub const IDLE_EXPIRED: u8 = 2;
    /// The server is draining: close gracefully.
    pub const DRAIN: u8 = 4;
    /// A graceful close took longer than `HEADER_TIMEOUT`: drop the connection.
    pub const CUT: u8 = 8;
    /// Idle for [`super::PARK_AFTER`]: give hyper's state back.
    pub const PARK: u8 = 16;
}

/// Where a connection is in parking.
mod park {
    /// Not parkable now (or already serving again).
    pub const NO: u8 = 0;
    /// The watchdog asked; the connection's reads now report end of input.
    pub const REQUESTED: u8 = 1;
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
    phase: AtomicU8,
    /// When the phase began, on the watchdog's clock (nanoseconds).
    since: AtomicU64,
    in_flight: AtomicU32,
    http2: AtomicBool,
    /// Plain HTTP/1 only, and not once the peer has closed its side.
    parkable: AtomicBool,
    park: AtomicU8,
    /// Set when a graceful close began (nanoseconds, 0: none).
    closing_since: AtomicU64,
    alarm: AtomicU8,
    waker: Mutex<Option<Waker>>,
    watchdog: Arc<Watchdog>,
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
            park: AtomicU8::new(park::NO),
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

    fn enter(&self, phase: Phase) {
        self.since.store(self.watchdog.stamp(), Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Called by the I/O wrapper when bytes arrive.
    pub(super) fn on_bytes_received(&self) {
        if self.phase() == Phase::Idle && !self.http2.load(Ordering::Relaxed) {
            self.park.store(park::NO, Ordering::Relaxed);
            self.enter(Phase::Head);
        }
    }

    pub(super) fn request_started(&self, http2: bool) {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.park.store(park::NO, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.phase.store(Phase::Busy as u8, Ordering::Relaxed);
    }

    fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.enter(Phase::Idle);
        }
    }

    /// True once parking was asked for and nothing has happened since.
    pub(super) fn park_requested(&self) -> bool {
        self.park.load(Ordering::Relaxed) == park::REQUESTED
    }

    /// The peer closed: parking would keep a dead socket.
    pub(super) fn cancel_park(&self) {
        self.park.store(park::NO, Ordering::Relaxed);
        self.parkable.store(false, Ordering::Relaxed);
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
    fn raise(&self, bits: u8) {
        if self.alarm.fetch_or(bits, Ordering::Release) & bits != bits {
            let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// What the watchdog should raise at `now`, if anything.
    fn due(&self, t: &Timeouts, now: u64) -> u8 {
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
            Phase::Idle
                if self.parkable.load(Ordering::Relaxed)
                    && PARK_AFTER < t.idle
                    && expired(since, PARK_AFTER)
                    && self
                        .park
                        .compare_exchange(
                            park::NO,
                            park::REQUESTED,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        )
                        .is_ok() =>
            {
                alarm::PARK
            }
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

/// One worker's connections, and the periodic look at their deadlines.
#[derive(Debug)]
pub struct Watchdog {
    timeouts: Timeouts,
    /// For the parked-connections gauge.
    pub(super) connections: Arc<Connections>,
    tick: Duration,
    /// Nanoseconds on the [`nanos_at`] clock at the last tick.
    clock: AtomicU64,
    registry: Mutex<Registry>,
}

/// The connections a watchdog looks after (weak: a connection that ends is
/// forgotten at the next sweep).
#[derive(Debug, Default)]
struct Registry {
    live: Vec<std::sync::Weak<Activity>>,
}

impl Watchdog {
    /// A watchdog for connections with these deadlines; [`Watchdog::run`] drives it.
    pub fn new(timeouts: Timeouts, connections: Arc<Connections>) -> Arc<Self> {
        // At most 100 ms between looks, and at least four per shortest deadline.
        let shortest = timeouts.header.min(timeouts.idle);
        let tick = (shortest / 4).clamp(Duration::from_millis(1), Duration::from_millis(100));
        Arc::new(Self {
            timeouts,
            connections,
            tick,
            clock: AtomicU64::new(nanos_at(Instant::now())),
            registry: Mutex::new(Registry::default()),
        })
    }

    /// The time to stamp a phase change with: the last tick's clock plus one tick,
    /// so a deadline measured from it never fires early.
    fn stamp(&self) -> u64 {
        self.clock.load(Ordering::Relaxed) + self.tick.as_nanos() as u64
    }

    fn register(&self, activity: &Arc<Activity>) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .push(Arc::downgrade(activity));
    }

    /// Looks at every connection each tick, raising the alarms that are due; when
    /// the drain starts, asks every connection to close. Runs until the runtime
    /// stops.
    pub async fn run(self: Arc<Self>, drain: Drain) {
        let mut draining = std::pin::pin!(drain.draining());
        let mut drained = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.tick) => {}
                () = &mut draining, if !drained => drained = true,
            }
            let now = nanos_at(Instant::now());
            self.clock.store(now, Ordering::Relaxed);
            self.sweep(now, drained);
        }
    }

    fn sweep(&self, now: u64, draining: bool) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.live.retain(|weak| {
            let Some(activity) = weak.upgrade() else {
                return false;
            };
            let mut bits = activity.due(&self.timeouts, now);
            if draining {
                bits |= alarm::DRAIN;
            }
            if bits != 0 {
                activity.raise(bits);
            }
            true
        });
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

    fn watched(parkable: bool) -> (Arc<Watchdog>, Arc<Activity>) {
        let watchdog = Watchdog::new(T, Arc::default());
        let activity = Activity::new(Instant::now(), &watchdog, parkable);
        (watchdog, activity)
    }

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
    fn idle_parkable_connections_are_parked_once_then_closed_at_the_idle_deadline() {
        let (_w, a) = watched(true);
        a.request_started(false);
        a.request_finished();
        let since = a.since.load(Ordering::Relaxed);
        assert_eq!(a.due(&T, since), 0);
        assert_eq!(a.due(&T, since + S), alarm::PARK);
        assert!(a.park_requested());
        // Asked once, not at every tick.
        assert_eq!(a.due(&T, since + 2 * S), 0);
        assert_eq!(a.due(&T, since + 60 * S), alarm::IDLE_EXPIRED);
        // Bytes wake it: a head deadline again, and parkable afresh later.
        a.on_bytes_received();
        assert!(!a.park_requested());
    }

    #[test]
    fn a_new_request_withdraws_a_park_request() {
        let (_w, a) = watched(true);
        a.request_started(false);
        a.request_finished();
        let since = a.since.load(Ordering::Relaxed);
        assert_eq!(a.due(&T, since + 2 * S), alarm::PARK);
        a.request_started(false);
        assert!(!a.park_requested());
    }

    #[test]
    fn a_peer_that_closed_is_never_parked() {
        let (_w, a) = watched(true);
        a.cancel_park();
        a.request_started(false);
        a.request_finished();
        let since = a.since.load(Ordering::Relaxed);
        assert_eq!(a.due(&T, since + 2 * S), 0);
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
    fn the_sweep_raises_alarms_and_forgets_ended_connections() {
        let (w, a) = watched(false);
        let t0 = a.since.load(Ordering::Relaxed);
        w.sweep(t0 + 6 * S, false);
        assert_eq!(a.take_alarm(), alarm::HEAD_EXPIRED);
        assert_eq!(a.take_alarm(), 0);
        w.sweep(t0, true);
        assert_eq!(a.take_alarm(), alarm::DRAIN);
        drop(a);
        w.sweep(t0, false);
        assert!(w.registry.lock().unwrap().live.is_empty());
    }

    #[test]
    fn phases_round_trip_through_their_byte() {
        for p in [Phase::Head, Phase::Idle, Phase::Busy] {
            assert_eq!(Phase::from_u8(p as u8), p);
        }
    }
}
