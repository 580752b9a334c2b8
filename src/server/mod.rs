//! The listeners, the accept loops, the connection cap and the shutdown sequence.
//!
//! [`Server::bind`] binds (port 0 allowed) and exposes the real address;
//! [`Server::run`] serves until the first request from `stop` (signals, or a channel in tests), then shuts down in
//! the documented order:
//!
//! 1. `/readyz` turns 503 at once;
//! 2. for `SHUTDOWN_DELAY` (default none) the listeners stay open and every request
//!    is served as before, so balancers that poll `/readyz` stop sending first;
//! 3. the listeners close and every connection is told to finish: in-flight
//!    requests complete, idle connections close (HTTP/2: GOAWAY), and connections
//!    that have not yet shown their protocol (silent, or mid TLS handshake) end;
//! 4. whatever is still open `SHUTDOWN_TIMEOUT` after step 3 is cut and counted in
//!    the returned [`ShutdownReport`].
//!
//! Both serving modes ([`Mode`]) run the same accept loop ([`Worker`]) and the same
//! shutdown sequence; they differ only in which threads run the loops.

pub mod connection;
pub mod drain;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::Mode;
use crate::handler::Handler;
use crate::middleware::Middleware;
use crate::server::drain::{Drain, Readiness, StopRequests};
use crate::telemetry::metrics::Connections;
use connection::watchdog::Watchdog;
use connection::{Builders, Started, Timeouts};

/// Server-level settings (the handler has its own limits).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Which threads run the accept loops.
    pub mode: Mode,
    pub max_connections: usize,
    /// `MAX_BODY_BYTES`: how much of an HTTP/2 body the handler did not read is
    /// read after the answer (see `connection::unread`).
    pub max_body_bytes: usize,
    pub timeouts: Timeouts,
    /// After the request to stop, how long to keep accepting and serving (with
    /// `/readyz` answering 503) before the drain starts.
    pub shutdown_delay: Duration,
    pub shutdown_timeout: Duration,
}

/// What a graceful shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when the drain began that closed within the deadline.
    pub drained: usize,
    /// Connections still open at the deadline, cut when the runtime stops.
    pub cut: usize,
    /// How long the drain took (at most `SHUTDOWN_TIMEOUT`).
    pub took: Duration,
}

/// The tokio runtime for one thread of `mode`: a current-thread runtime for a
/// per-core worker, or the work-stealing runtime with `workers` threads.
pub fn runtime(mode: Mode, workers: usize) -> io::Result<tokio::runtime::Runtime> {
    match mode {
        Mode::PerCore => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Mode::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build(),
    }
}

/// Bound listeners, ready to serve.
pub struct Server {
    listeners: Vec<std::net::TcpListener>,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
}

/// One listening socket: `SO_REUSEADDR`, optionally `SO_REUSEPORT`, backlog 4096.
fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // `::` serves IPv4 too, as people expect from "bind everything".
        let _ = socket.set_only_v6(false);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

impl Server {
    /// Binds `count` listeners on `addr`; more than one share the port through
    /// `SO_REUSEPORT` ([`Mode::PerCore`]). Port 0 picks one free port for all.
    pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Self> {
        if count <= 1 {
            let listener = listen(addr, false)?;
            let local_addr = listener.local_addr()?;
            return Ok(Self {
                listeners: vec![listener],
                local_addr,
                tls: None,
            });
        }
        // SO_REUSEPORT would silently share a port that another process of the same
        // user holds with it too: probe without it first so "in use" stays an error.
        if addr.port() != 0 {
            drop(listen(addr, false)?);
        }
        let first = listen(addr, true)?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..count {
            listeners.push(listen(local_addr, true)?);
        }
        Ok(Self {
            listeners,
            local_addr,
            tls: None,
        })
    }

    /// Serves HTTPS instead of plain HTTP on the same port.
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `middleware` until the first of `stop` requests, then shuts down in
    /// order (see the module documentation) and returns what the drain achieved.
    ///
    /// `runtime` runs on the calling thread and must be
    /// [`runtime`]`(settings.mode, workers)`.
    /// [`Mode::MultiThread`] runs every listener's accept loop on it;
    /// [`Mode::PerCore`] runs the first listener's there and starts one thread with
    /// a current-thread runtime for each other listener.
    pub fn run<H: Handler + Clone>(
        self,
        runtime: tokio::runtime::Runtime,
        middleware: Middleware<H>,
        settings: Settings,
        readiness: Readiness,
        connections: Arc<Connections>,
        mut stop: impl StopRequests,
    ) -> io::Result<ShutdownReport> {
        let drain = Drain::default();
        let shared = Shared {
            middleware,
            settings,
            tls: self.tls,
            limit: Arc::new(Semaphore::new(settings.max_connections)),
            connections,
            drain: drain.clone(),
        };
        let mut listeners = self.listeners.into_iter();
        let mut threads = Vec::new();
        // `cut` tells per-core threads that the drain deadline passed.
        let cut = Drain::default();
        let local = match settings.mode {
            Mode::MultiThread => listeners.by_ref().collect::<Vec<_>>(),
            Mode::PerCore => listeners.next().into_iter().collect(),
        };
        for (i, listener) in listeners.enumerate() {
            let (shared, cut) = (shared.clone(), cut.clone());
            let thread = std::thread::Builder::new()
                .name(format!("worker-{}", i + 1))
                .spawn(move || -> io::Result<()> {
                    self::runtime(Mode::PerCore, 1)?.block_on(async {
                        shared.worker(listener)?.accept_until_drain().await;
                        // Keep driving this runtime's connections while they drain.
                        tokio::select! {
                            () = shared.connections.all_closed() => {}
                            () = cut.draining() => {}
                        }
                        Ok(())
                    })
                    // Dropping the runtime cuts whatever is still open.
                })?;
            threads.push(thread);
        }
        let report = runtime.block_on(async {
            for listener in local {
                match shared.worker(listener) {
                    Ok(worker) => {
                        tokio::spawn(worker.accept_until_drain());
                    }
                    Err(e) => tracing::error!(error = %e, "cannot register a listener"),
                }
            }
            shut_down(
                &mut stop,
                &readiness,
                &drain,
                &shared.connections,
                &settings,
            )
            .await
        });
        cut.start();
        for thread in threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "worker failed"),
                Err(_) => tracing::error!("worker thread panicked"),
            }
        }
        // Connections still open after the drain deadline are cut here.
        runtime.shutdown_timeout(Duration::ZERO);
        Ok(report)
    }
}

/// The shutdown sequence, in the documented order (see the module documentation).
/// A second request to stop skips the rest of the delay; a third cuts the drain.
async fn shut_down(
    stop: &mut impl StopRequests,
    readiness: &Readiness,
    drain: &Drain,
    connections: &Connections,
    settings: &Settings,
) -> ShutdownReport {
    stop.next().await;
    readiness.set_not_ready();
    if !settings.shutdown_delay.is_zero() {
        tracing::info!(
            delay = ?settings.shutdown_delay,
            "/readyz answers 503; still serving during the shutdown delay"
        );
        tokio::select! {
            () = tokio::time::sleep(settings.shutdown_delay) => {}
            () = stop.next() => tracing::info!("asked again: the shutdown delay ends now"),
        }
    }
    let open_at_start = connections.open();
    tracing::info!(
        open_connections = open_at_start,
        "shutdown started; draining connections"
    );
    drain.start();
    let draining_since = Instant::now();
    let drained_in_time = tokio::select! {
        () = connections.all_closed() => true,
        () = tokio::time::sleep(settings.shutdown_timeout) => false,
        () = stop.next() => {
            tracing::info!("asked again: cutting the connections still open");
            false
        }
    };
    let cut = if drained_in_time {
        0
    } else {
        connections.open()
    };
    ShutdownReport {
        drained: open_at_start.saturating_sub(cut),
        cut,
        took: draining_since.elapsed(),
    }
}

/// What every accept loop of the process shares.
struct Shared<H> {
    middleware: Middleware<H>,
    settings: Settings,
    tls: Option<TlsAcceptor>,
    /// The connection cap is for the process, not per worker.
    limit: Arc<Semaphore>,
    connections: Arc<Connections>,
    drain: Drain,
}

impl<H: Handler + Clone> Clone for Shared<H> {
    fn clone(&self) -> Self {
        Self {
            middleware: self.middleware.clone(),
            settings: self.settings,
            tls: self.tls.clone(),
            limit: self.limit.clone(),
            connections: self.connections.clone(),
            drain: self.drain.clone(),
        }
    }
}

impl<H: Handler + Clone> Shared<H> {
    /// A worker for `listener`, registered with the current runtime, with its
    /// watchdog running there too.
    fn worker(&self, listener: std::net::TcpListener) -> io::Result<Worker<H>> {
        let watchdog = Watchdog::new(self.settings.timeouts, self.connections.clone());
        tokio::spawn(watchdog.clone().run(self.drain.clone()));
        Ok(Worker {
            listener: TcpListener::from_std(listener)?,
            // Each worker has its own middleware (and so its own reference count to
            // bump per request) and its own builders.
            middleware: Arc::new(self.middleware.clone()),
            builders: Arc::new(Builders::default()),
            watchdog,
            shared: self.clone(),
        })
    }
}

/// One accept loop and what its connections share.
struct Worker<H> {
    listener: TcpListener,
    middleware: Arc<Middleware<H>>,
    builders: Arc<Builders>,
    watchdog: Arc<Watchdog>,
    shared: Shared<H>,
}

impl<H: Handler + Clone> Worker<H> {
    /// Accepts until the drain starts, then drops the listener.
    async fn accept_until_drain(self) {
        let drain = self.shared.drain.clone();
        tokio::select! {
            () = self.accept_loop() => {}
            () = drain.draining() => {}
        }
    }

    async fn accept_loop(&self) {
        let mut backoff = Duration::from_millis(5);
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => {
                    backoff = Duration::from_millis(5);
                    accepted
                }
                Err(e) if is_per_connection_error(&e) => continue,
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: back off instead of spinning.
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            // At the cap, this worker holds the connection it just accepted and
            // accepts nothing more until one closes (no spinning; the kernel backlog
            // holds new clients meanwhile). Taking the permit after `accept` rather
            // than before keeps an idle worker from sitting on a permit that another
            // worker's waiting client needs (per-core mode has one listener each).
            let limit = &self.shared.limit;
            let permit = match limit.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    tracing::warn!(
                        max_connections = self.shared.settings.max_connections,
                        "connection limit reached; not accepting until a connection closes"
                    );
                    match limit.clone().acquire_owned().await {
                        Ok(permit) => permit,
                        Err(_) => return,
                    }
                }
            };
            let accepted = Instant::now();
            let _ = stream.set_nodelay(true);
            let started = Started {
                accepted,
                peer,
                timeouts: self.shared.settings.timeouts,
                max_body_bytes: self.shared.settings.max_body_bytes,
                drain: self.shared.drain.clone(),
                middleware: self.middleware.clone(),
                watchdog: self.watchdog.clone(),
                tls: self.shared.tls.clone(),
                builders: self.builders.clone(),
                slot: self.shared.connections.admit(permit),
            };
            self.shared.connections.spawn(started.serve(stream));
        }
    }
}

/// Errors that concern one connection only, not the listener.
fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
