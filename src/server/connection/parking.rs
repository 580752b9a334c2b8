//! Parking: hyper keeps an 8 KiB read buffer, a write buffer and its connection
//! state for every HTTP/1 connection, also while it sits idle. A plain HTTP/1
//! connection idle for [`PARK_AFTER`] gives all of that back: asked to close
//! while idle, hyper ends the connection at the request boundary (the socket
//! stays open: its shutdown is skipped), `into_parts()` hands back the socket and
//! any bytes hyper had read but not used (the start of a pipelined request), and
//! the task waits on the bare socket ([`readable`]) until it is readable, then
//! serves it, those bytes first, with a fresh hyper connection. Busy connections
//! never park (the grace period keeps them inside hyper). HTTP/2 and TLS
//! connections keep their state (theirs cannot be handed back).

use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use super::activity::{alarm, Activity};
use super::watchdog::Timeouts;

/// How long a plain HTTP/1 connection stays idle inside hyper before it is parked:
/// long enough that a client sending a request every few hundred milliseconds
/// never pays the (small) cost of waking a parked connection, short enough that
/// idle connections soon cost almost nothing.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// Where a connection is in parking ([`Activity`]'s `park`): not parkable now
/// (or already serving again).
pub(super) const NO: u8 = 0;
/// The watchdog asked; the connection's reads now report end of input.
pub(super) const REQUESTED: u8 = 1;

impl Activity {
    /// True once parking was asked for and nothing has happened since.
    pub(super) fn park_requested(&self) -> bool {
        self.park.load(Ordering::Relaxed) == REQUESTED
    }

    /// The peer closed: parking would keep a dead socket.
    pub(super) fn cancel_park(&self) {
        self.park.store(NO, Ordering::Relaxed);
        self.parkable.store(false, Ordering::Relaxed);
    }

    /// Whether an idle connection, idle since `since`, is due to park at `now`
    /// (and marks it asked, so it is asked once).
    pub(super) fn park_due(&self, t: &Timeouts, since: u64, now: u64) -> bool {
        self.parkable.load(Ordering::Relaxed)
            && PARK_AFTER < t.idle
            && now >= since.saturating_add(PARK_AFTER.as_nanos() as u64)
            && self
                .park
                .compare_exchange(NO, REQUESTED, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// hyper's unread bytes and what was left in its read buffer, as one prefix for
/// the next hyper connection.
pub(super) fn join(a: Bytes, b: Bytes) -> Bytes {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a,
        (true, false) => b,
        (false, false) => {
            let mut joined = BytesMut::with_capacity(a.len() + b.len());
            joined.extend_from_slice(&a);
            joined.extend_from_slice(&b);
            joined.freeze()
        }
    }
}

/// Waits, parked, until the socket has bytes (true) or the connection is to close:
/// idle deadline or drain (false).
pub(super) async fn readable(stream: &TcpStream, activity: &Activity) -> bool {
    let mut waiting = false;
    poll_fn(|cx| {
        if !waiting {
            activity.set_waker(cx.waker());
            waiting = true;
        }
        if activity.take_alarm() & !alarm::PARK != 0 {
            return Poll::Ready(false);
        }
        stream.poll_read_ready(cx).map(|ready| ready.is_ok())
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use crate::server::connection::activity::alarm;
    use crate::server::connection::watchdog::tests::{watched, S, T};

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
}
