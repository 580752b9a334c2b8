//! The listener, the accept loop, the connection cap and graceful shutdown.
//!
//! [`Server::bind`] binds (port 0 allowed) and exposes the real address;
//! [`Server::run`] serves until the `shutdown` future completes, then drains:
//! `/readyz` turns 503, the listener closes, in-flight requests finish, idle
//! connections close (HTTP/2: GOAWAY), and whatever is still open at
//! `SHUTDOWN_TIMEOUT` is cut and counted in the returned [`ShutdownReport`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::shutdown::Drain;

use tokio_rustls::TlsAcceptor;

use crate::connection::{self, Protocol, Protocols, Timeouts};
use crate::routes::{Handler, Readiness};
use crate::service::Service;

/// Server-level settings (the handler has its own limits).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_connections: usize,
    pub timeouts: Timeouts,
    pub shutdown_timeout: Duration,
}

/// Connections counted as they open and close, so shutdown can wait for zero
/// without polling.
#[derive(Debug, Default)]
pub struct Connections {
    open: AtomicUsize,
    total: AtomicU64,
    all_closed: Notify,
}

impl Connections {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn opened(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            connections: self.clone(),
            _permit: permit,
        }
    }

    /// Resolves once no connection is open.
    async fn all_closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Held by each connection task: releases its slot under the cap when it ends.
struct ConnectionGuard {
    connections: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.connections.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.connections.all_closed.notify_waiters();
        }
    }
}

/// What a graceful shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when shutdown began that closed within the deadline.
    pub drained: usize,
    /// Connections still open at the deadline, cut when the runtime stops.
    pub cut: usize,
}

/// How connections are spread over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One current-thread runtime per worker thread, each with its own
    /// `SO_REUSEPORT` listener: no work stealing, no cross-thread wake-ups; the
    /// kernel spreads connections over the listeners.
    PerCore,
    /// One tokio multi-thread (work-stealing) runtime with `WORKERS` threads and
    /// one listener: balances uneven connections, costs more per request.
    MultiThread,
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
    /// Binds `addr` once, for one runtime (tests, [`Mode::MultiThread`]).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::bind_many(addr, 1)
    }

    /// Binds `count` listeners on `addr`; more than one share the port through
    /// `SO_REUSEPORT` ([`Mode::PerCore`]). Port 0 picks one free port for all.
    pub fn bind_many(addr: SocketAddr, count: usize) -> io::Result<Self> {
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

    /// Serves `service` on the current tokio runtime until `shutdown` resolves,
    /// then drains. Uses the first listener only.
    pub async fn run<H: Handler>(
        self,
        service: Arc<Service<H>>,
        settings: Settings,
        readiness: Readiness,
        connections: Arc<Connections>,
        shutdown: impl Future<Output = ()>,
    ) -> ShutdownReport {
        let drain = Drain::default();
        let accepting = async {
            match self.listeners.into_iter().next().map(TcpListener::from_std) {
                Some(Ok(listener)) => {
                    let limit = Arc::new(Semaphore::new(settings.max_connections));
                    let worker =
                        Worker::new(listener, limit, self.tls, service, settings, &connections);
                    worker.accept_loop(&drain).await;
                }
                Some(Err(e)) => tracing::error!(error = %e, "cannot register the listener"),
                None => {}
            }
        };
        tokio::select! {
            () = accepting => {}
            () = shutdown => {}
        }
        // The accept loop (and with it the listener) is dropped here.
        drain_connections(&readiness, &connections, &drain, settings.shutdown_timeout).await
    }

    /// Serves with one current-thread runtime per listener: the calling thread runs
    /// the first on `runtime` (a current-thread runtime, see
    /// [`current_thread_runtime`]) and watches `shutdown`; one thread is started for
    /// each other. Returns when all have drained or the deadline cut them.
    pub fn run_per_core<H: Handler>(
        self,
        runtime: tokio::runtime::Runtime,
        service: Arc<Service<H>>,
        settings: Settings,
        readiness: Readiness,
        connections: Arc<Connections>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<ShutdownReport> {
        let drain = Drain::default();
        let (cut_tx, cut_rx) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(settings.max_connections));
        let mut listeners = self.listeners.into_iter();
        let first = listeners.next();
        let mut threads = Vec::new();
        for (i, listener) in listeners.enumerate() {
            let (service, connections, tls) =
                (service.clone(), connections.clone(), self.tls.clone());
            let limit = limit.clone();
            let (drain, mut cut_rx) = (drain.clone(), cut_rx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("worker-{}", i + 1))
                .spawn(move || -> io::Result<()> {
                    let runtime = current_thread_runtime()?;
                    runtime.block_on(async {
                        let listener = TcpListener::from_std(listener)?;
                        let worker =
                            Worker::new(listener, limit, tls, service, settings, &connections);
                        worker.serve_until(&drain).await;
                        // Keep driving this runtime's connections while they drain.
                        tokio::select! {
                            () = connections.all_closed() => {}
                            _ = cut_rx.changed() => {}
                        }
                        Ok(())
                    })
                    // Dropping the runtime cuts whatever is still open.
                })?;
            threads.push(thread);
        }
        let report = runtime.block_on(async {
            let accepting = async {
                if let Some(listener) = first {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            Worker::new(listener, limit, self.tls, service, settings, &connections)
                                .accept_loop(&drain)
                                .await;
                        }
                        Err(e) => tracing::error!(error = %e, "cannot register the listener"),
                    }
                }
            };
            tokio::select! {
                () = accepting => {}
                () = shutdown => {}
            }
            drain_connections(&readiness, &connections, &drain, settings.shutdown_timeout).await
        });
        let _ = cut_tx.send(true);
        for thread in threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "worker failed"),
                Err(_) => tracing::error!("worker thread panicked"),
            }
        }
        Ok(report)
    }
}

/// A runtime for one per-core worker.
pub fn current_thread_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Shutdown after the listeners have closed: readiness off, connections told to
/// finish, wait for them up to `deadline`, count what is left.
async fn drain_connections(
    readiness: &Readiness,
    connections: &Connections,
    drain: &Drain,
    deadline: Duration,
) -> ShutdownReport {
    readiness.set_not_ready();
    let open_at_start = connections.open();
    tracing::info!(
        open_connections = open_at_start,
        "shutdown started; draining connections"
    );
    drain.start();
    let drained_in_time = tokio::time::timeout(deadline, connections.all_closed())
        .await
        .is_ok();
    let cut = if drained_in_time {
        0
    } else {
        connections.open()
    };
    ShutdownReport {
        drained: open_at_start.saturating_sub(cut),
        cut,
    }
}

/// One accept loop and what its connections share.
struct Worker<H> {
    listener: TcpListener,
    /// Shared by every worker: the cap is for the process.
    limit: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
    service: Arc<Service<H>>,
    settings: Settings,
    connections: Arc<Connections>,
    protocols: Arc<Protocols>,
}

impl<H: Handler> Worker<H> {
    fn new(
        listener: TcpListener,
        limit: Arc<Semaphore>,
        tls: Option<TlsAcceptor>,
        service: Arc<Service<H>>,
        settings: Settings,
        connections: &Arc<Connections>,
    ) -> Self {
        Self {
            listener,
            limit,
            tls,
            service,
            settings,
            connections: connections.clone(),
            protocols: Arc::new(Protocols::new()),
        }
    }

    /// Accepts until `stop` says so, then drops the listener.
    async fn serve_until(self, drain: &Drain) {
        tokio::select! {
            () = self.accept_loop(drain) => {}
            () = drain.draining() => {}
        }
    }
    async fn accept_loop(&self, drain: &Drain) {
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
            let permit = match self.limit.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => match self.limit.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let accepted = Instant::now();
            let _ = stream.set_nodelay(true);
            let guard = self.connections.opened(permit);
            let service = self.service.clone();
            let protocols = self.protocols.clone();
            let stop = drain.clone();
            let tls = self.tls.clone();
            let timeouts = self.settings.timeouts;
            tokio::spawn(async move {
                let peer = Some(peer);
                // The protocol must be known within the head deadline too.
                let deadline = tokio::time::Instant::from_std(accepted + timeouts.header);
                match tls {
                    None => match tokio::time::timeout_at(deadline, Protocol::sniff(&stream)).await
                    {
                        Ok(Ok(protocol)) => {
                            connection::serve(
                                stream, protocol, accepted, peer, service, &protocols, timeouts,
                                stop,
                            )
                            .await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "connection failed before a request")
                        }
                        Err(_) => tracing::debug!("no request bytes in time; closing"),
                    },
                    Some(tls) => {
                        match tokio::time::timeout_at(deadline, tls.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let protocol =
                                    Protocol::from_alpn(stream.get_ref().1.alpn_protocol());
                                connection::serve(
                                    stream, protocol, accepted, peer, service, &protocols,
                                    timeouts, stop,
                                )
                                .await;
                            }
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    }
                }
                drop(guard);
            });
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
