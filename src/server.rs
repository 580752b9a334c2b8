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
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use tokio_rustls::TlsAcceptor;

use crate::connection::{self, Timeouts};
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

/// A bound listener, ready to serve.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
}

impl Server {
    /// Binds `addr` with `SO_REUSEADDR` and a deep accept backlog. Must be called
    /// inside a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            // `::` serves IPv4 too, as people expect from "bind everything".
            let _ = socket.set_only_v6(false);
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(4096)?;
        let listener = TcpListener::from_std(socket.into())?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
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

    /// Serves `service` until `shutdown` resolves, then drains.
    pub async fn run<H: Handler>(
        self,
        service: Arc<Service<H>>,
        settings: Settings,
        readiness: Readiness,
        connections: Arc<Connections>,
        shutdown: impl Future<Output = ()>,
    ) -> ShutdownReport {
        let (stop_tx, stop_rx) = watch::channel(false);
        let accepting = accept_loop(
            self.listener,
            self.tls,
            service,
            settings,
            connections.clone(),
            stop_rx,
        );
        tokio::select! {
            () = accepting => {}
            () = shutdown => {}
        }
        // The accept loop (and with it the listener) is dropped here.
        readiness.set_not_ready();
        let open_at_start = connections.open();
        tracing::info!(
            open_connections = open_at_start,
            "shutdown started; draining connections"
        );
        let _ = stop_tx.send(true);
        let drained_in_time =
            tokio::time::timeout(settings.shutdown_timeout, connections.all_closed())
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
}

async fn accept_loop<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: Arc<Service<H>>,
    settings: Settings,
    connections: Arc<Connections>,
    stop: watch::Receiver<bool>,
) {
    let builder = Arc::new(connection::builder());
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    let mut backoff = Duration::from_millis(5);
    loop {
        // At the cap, wait for a connection to close instead of accepting (and
        // without spinning): the kernel backlog holds new clients meanwhile.
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
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
        let _ = stream.set_nodelay(true);
        let guard = connections.opened(permit);
        let service = service.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        let timeouts = settings.timeouts;
        tokio::spawn(async move {
            let peer = Some(peer);
            match tls {
                None => {
                    connection::serve(stream, peer, service, &builder, timeouts, stop).await;
                }
                Some(tls) => {
                    // The handshake is part of the head: same deadline.
                    match tokio::time::timeout(timeouts.header, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            connection::serve(stream, peer, service, &builder, timeouts, stop)
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
