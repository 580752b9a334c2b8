//! In-process builders shared by the integration tests and the benches (which
//! include this file by path): the routes and middleware the binary builds, and the
//! real server on a loopback port in a thread of this process.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use greeting_service::budget::BodyBuffers;
use greeting_service::config::Mode;
use greeting_service::handler::Handler;
use greeting_service::middleware::Middleware;
use greeting_service::routes::{Limits, Routes};
use greeting_service::server::connection::Timeouts;
use greeting_service::server::drain::Readiness;
use greeting_service::server::{self, Server, Settings, ShutdownReport};
use greeting_service::telemetry::metrics::{Connections, Metrics};

/// The routes with the documented limits, and what they report to.
pub struct Parts {
    pub routes: Routes,
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub connections: Arc<Connections>,
}

pub fn parts(limits: Limits) -> Parts {
    let readiness = Readiness::default();
    let connections = Arc::new(Connections::default());
    let metrics = Metrics::new(connections.clone());
    let buffers = BodyBuffers::new(256 << 20);
    let routes = Routes::new(limits, readiness.clone(), metrics.clone(), buffers);
    Parts {
        routes,
        metrics,
        readiness,
        connections,
    }
}

/// The middleware the server runs, in process, with the documented defaults.
pub fn middleware() -> Arc<Middleware<Routes>> {
    let p = parts(Limits::default());
    Arc::new(Middleware::new(p.routes, p.metrics, false))
}

/// The documented default settings for the server.
pub fn settings() -> Settings {
    Settings {
        mode: Mode::PerCore,
        max_connections: 10_000,
        max_body_bytes: 16 * 1024,
        timeouts: Timeouts {
            header: Duration::from_secs(5),
            idle: Duration::from_secs(60),
        },
        shutdown_delay: Duration::ZERO,
        shutdown_timeout: Duration::from_secs(1),
    }
}

/// The real server on `127.0.0.1:0`, in threads of this process.
pub struct InProcess {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    thread: Option<std::thread::JoinHandle<ShutdownReport>>,
}

impl InProcess {
    /// Starts `handler` behind the real server with `workers` per-core workers.
    pub fn start<H: Handler + Clone>(
        handler: H,
        metrics: Metrics,
        connections: Arc<Connections>,
        readiness: Readiness,
        workers: usize,
    ) -> Self {
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), workers).unwrap();
        let addr = server.local_addr();
        let (stop, requests) = tokio::sync::mpsc::unbounded_channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = server::runtime(Mode::PerCore, 1).unwrap();
            let middleware = Middleware::new(handler, metrics, false);
            server
                .run(
                    runtime,
                    middleware,
                    settings(),
                    readiness,
                    connections,
                    requests,
                )
                .unwrap()
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The routes with default limits behind the real server.
    pub fn routes(workers: usize) -> Self {
        let p = parts(Limits::default());
        Self::start(p.routes, p.metrics, p.connections, p.readiness, workers)
    }

    /// Shuts the server down and returns its drain report.
    pub fn stop(mut self) -> ShutdownReport {
        self.finish().expect("server thread")
    }

    fn finish(&mut self) -> Option<ShutdownReport> {
        // One request to stop; the sender stays alive until the server has
        // finished, because a closed channel counts as asking again (which would
        // cut the drain).
        if let Some(stop) = &self.stop {
            let _ = stop.send(());
        }
        let report = self.thread.take().and_then(|t| t.join().ok());
        self.stop = None;
        report
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.finish();
    }
}
