//! Shutdown, as the process and every connection see it: requests to stop
//! ([`StopRequests`]; in the binary [`Signals`]: SIGTERM or SIGINT), readiness ([`Readiness`]: `/readyz` answers 503
//! from the moment shutdown begins) and the drain signal to every connection
//! ([`Drain`]).
//!
//! Signals are handled explicitly because a process running as PID 1 in a container
//! has no default signal dispositions: without this, `docker stop` would wait and
//! kill. The handlers are installed before the "listening" log line, so a signal sent
//! as soon as the service says it is up is never fatal.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Where requests to stop come from: SIGTERM and SIGINT in the binary, a channel in
/// tests. The first request starts the shutdown; another one during the shutdown
/// delay skips the rest of it, and one during the drain cuts what is left.
pub trait StopRequests {
    /// Resolves at the next request to stop.
    fn next(&mut self) -> impl Future<Output = ()>;
}

/// A channel as a source of stop requests: each message is one; a closed channel
/// counts as a standing request.
impl StopRequests for tokio::sync::mpsc::UnboundedReceiver<()> {
    async fn next(&mut self) {
        let _ = self.recv().await;
    }
}

/// Installed signal handlers.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers. Must be called within a tokio runtime context
    /// (`Runtime::enter`); the runtime must be running when the signal arrives.
    pub fn install() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }
}

impl StopRequests for Signals {
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
            _ = self.int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(signal = "ctrl-c", "shutdown requested");
        }
    }
}

/// Whether the process accepts traffic: true until shutdown begins (`/readyz`).
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set_not_ready(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// The "start draining" signal from the server to every connection.
///
/// A connection polls its [`Draining`] future on every wake-up, so that poll must
/// cost next to nothing: an atomic load, plus a waker comparison. (tokio's `watch`
/// and `Notify` take a lock on each poll of a registered waiter, which showed up at
/// a few hundred instructions per request.) Wakers are registered once per
/// connection under a mutex and removed when the connection ends.
#[derive(Debug, Clone, Default)]
pub struct Drain(Arc<DrainState>);

#[derive(Debug, Default)]
struct DrainState {
    started: AtomicBool,
    waiters: Mutex<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    next_id: u64,
    wakers: HashMap<u64, Waker>,
}

impl Drain {
    /// Tells every connection to drain, once.
    pub fn start(&self) {
        self.0.started.store(true, Ordering::Release);
        let wakers: Vec<Waker> = {
            let mut waiters = self.0.waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters.wakers.drain().map(|(_, w)| w).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    pub fn is_started(&self) -> bool {
        self.0.started.load(Ordering::Acquire)
    }

    /// A future that resolves once [`Drain::start`] has been called.
    pub fn draining(&self) -> Draining {
        Draining {
            drain: self.clone(),
            registered: None,
        }
    }
}

/// Resolves when draining starts; see [`Drain`].
#[derive(Debug)]
pub struct Draining {
    drain: Drain,
    registered: Option<(u64, Waker)>,
}

impl Future for Draining {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.is_started() {
            return Poll::Ready(());
        }
        let current = self
            .registered
            .as_ref()
            .is_some_and(|(_, w)| w.will_wake(cx.waker()));
        if !current {
            let state = self.drain.0.clone();
            let mut waiters = state.waiters.lock().unwrap_or_else(|e| e.into_inner());
            let id = match &self.registered {
                Some((id, _)) => *id,
                None => {
                    waiters.next_id += 1;
                    waiters.next_id
                }
            };
            waiters.wakers.insert(id, cx.waker().clone());
            drop(waiters);
            self.registered = Some((id, cx.waker().clone()));
            // `start` may have run between the check above and the registration.
            if self.drain.is_started() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        if let Some((id, _)) = self.registered.take() {
            let mut waiters = self
                .drain
                .0
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            waiters.wakers.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_every_waiter_and_later_ones_resolve_at_once() {
        let drain = Drain::default();
        let waiters: Vec<_> = (0..3).map(|_| tokio::spawn(drain.draining())).collect();
        tokio::task::yield_now().await;
        assert_eq!(drain.0.waiters.lock().unwrap().wakers.len(), 3);
        drain.start();
        for w in waiters {
            w.await.unwrap();
        }
        drain.draining().await;
        assert!(drain.0.waiters.lock().unwrap().wakers.is_empty());
    }

    #[tokio::test]
    async fn dropped_waiters_unregister() {
        let drain = Drain::default();
        let mut d = Box::pin(drain.draining());
        let polled = std::future::poll_fn(|cx| Poll::Ready(d.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
        assert_eq!(drain.0.waiters.lock().unwrap().wakers.len(), 1);
        drop(d);
        assert!(drain.0.waiters.lock().unwrap().wakers.is_empty());
    }
}
