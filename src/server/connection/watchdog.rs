//! The deadlines hyper does not enforce on its own: one [`Watchdog`] per worker
//! looks at every connection of the worker a few times a second, instead of one
//! timer per connection.
//!
//! hyper's HTTP/1 `header_read_timeout` is also armed while a keep-alive connection
//! sits idle, so it cannot express both `HEADER_TIMEOUT` and `IDLE_TIMEOUT`. So
//! each connection carries an [`Activity`] record (see [`super::activity`] for the
//! deadlines it implies) and the watchdog raises the alarms that fall due.
//!
//! Why a sweep rather than a timer each: a tokio timer is polled on every wake-up
//! of its connection (a few hundred instructions per request, measured) and takes
//! space in every connection; the sweep costs the request path one atomic load per
//! wake-up, and deadlines fire within one tick (at most 100 ms) of their time,
//! never before it. Phase changes are stamped with the watchdog's clock, read at
//! each tick, so the request path reads no clock for its deadlines either.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::activity::{alarm, nanos_at, Activity};
use crate::server::drain::Drain;
use crate::telemetry::metrics::Connections;

/// The connection deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
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
    pub(super) fn stamp(&self) -> u64 {
        self.clock.load(Ordering::Relaxed) + self.tick.as_nanos() as u64
    }

    pub(super) fn register(&self, activity: &Arc<Activity>) {
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
pub(super) mod tests {
    use super::*;

    pub(crate) const T: Timeouts = Timeouts {
        header: Duration::from_secs(5),
        idle: Duration::from_secs(60),
    };
    pub(crate) const S: u64 = 1_000_000_000;

    pub(crate) fn watched(parkable: bool) -> (Arc<Watchdog>, Arc<Activity>) {
        let watchdog = Watchdog::new(T, Arc::default());
        let activity = Activity::new(Instant::now(), &watchdog, parkable);
        (watchdog, activity)
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
}
