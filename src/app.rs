//! The composition root: the one place where the service is wired together from
//! a [`Config`]. The binary, the integration tests and the benches all start the
//! service through it, so what they run is what ships.
//!
//! [`Stack::build`] makes the request path (routes, middleware, metrics) without
//! sockets or threads, for benches and tests that call the middleware in process;
//! [`App::build`] adds what serving needs (span export, TLS, the bound listeners,
//! the runtime) and [`App::run`] serves until stopped, as mini-redis's
//! `server::run(listener, shutdown)` does.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::budget::BodyBuffers;
use crate::config::{memory, Config};
use crate::handler::Handler;
use crate::middleware::Middleware;
use crate::routes::{Limits, Routes};
use crate::server::connection::Timeouts;
use crate::server::drain::{Readiness, Signals, StopRequests};
use crate::server::{self, tls, Server, Settings, ShutdownReport};
use crate::telemetry::metrics::{Connections, Metrics};
use crate::telemetry::spans::Spans;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting that only turned out bad when used (TLS files, the OTLP
    /// endpoint): bad configuration, exit status 2.
    #[error("{0}")]
    Config(String),
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
}

impl StartError {
    /// The process exit status: 2 for configuration, as for a bad flag; 1 else.
    pub fn exit_status(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            Self::Bind { .. } | Self::Runtime(_) => 1,
        }
    }
}

/// The request path: what answers a request, and what it reports to.
pub struct Stack<H = Routes> {
    pub middleware: Middleware<H>,
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub connections: Arc<Connections>,
}

impl Stack {
    /// The routes behind the middleware with `config`'s limits and memory plan;
    /// `spans` exports a span per sampled request.
    pub fn build(config: &Config, plan: &memory::Plan, spans: Option<Spans>) -> Self {
        let readiness = Readiness::default();
        let connections = Arc::new(Connections::default());
        let metrics = Metrics::new(connections.clone());
        let buffers = BodyBuffers::new(plan.body_buffers);
        let routes = Routes::new(
            Limits::from_config(config),
            readiness.clone(),
            metrics.clone(),
            buffers,
        );
        let middleware =
            Middleware::new(routes, metrics.clone(), config.logging.access_log).with_spans(spans);
        Self {
            middleware,
            metrics,
            readiness,
            connections,
        }
    }
}

impl<H: Handler> Stack<H> {
    /// The same stack with the handler replaced by `wrap(handler)` (tests put a
    /// faulty handler around the routes this way).
    pub fn map_handler<H2: Handler>(self, wrap: impl FnOnce(H) -> H2) -> Stack<H2> {
        Stack {
            middleware: self.middleware.map_handler(wrap),
            metrics: self.metrics,
            readiness: self.readiness,
            connections: self.connections,
        }
    }
}

/// The service, bound and ready to run.
pub struct App<H = Routes> {
    config: Config,
    plan: memory::Plan,
    stack: Stack<H>,
    server: Server,
    settings: Settings,
    runtime: tokio::runtime::Runtime,
    export: Option<Export>,
}

impl App {
    /// Wires the service from `config` and binds its listeners. Call after
    /// logging is set up: starting span export logs.
    pub fn build(config: &Config) -> Result<Self, StartError> {
        // Bad TLS files or a bad OTLP endpoint are bad configuration: found
        // before binding.
        let tls = match (&config.tls.tls_cert, &config.tls.tls_key) {
            (Some(cert), Some(key)) => {
                Some(tls::acceptor(cert, key).map_err(|e| StartError::Config(e.to_string()))?)
            }
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let export = start_export(config, scheme).map_err(StartError::Config)?;
        let plan = config.memory_plan();
        let spans = spans_of(export.as_ref());
        let stack = Stack::build(config, &plan, spans);
        watch_export(&stack.metrics, export.as_ref());

        let workers = config.workers();
        let addr = SocketAddr::new(config.listen.host, config.listen.port);
        let listeners = match config.listen.runtime {
            crate::config::Mode::PerCore => workers,
            crate::config::Mode::MultiThread => 1,
        };
        let server =
            Server::bind(addr, listeners).map_err(|source| StartError::Bind { addr, source })?;
        let server = match tls {
            Some(acceptor) => server.with_tls(acceptor),
            None => server,
        };
        let runtime =
            server::runtime(config.listen.runtime, workers).map_err(StartError::Runtime)?;
        let settings = Settings {
            mode: config.listen.runtime,
            max_connections: config.max_connections(&plan),
            max_body_bytes: config.capacity.max_body_bytes.get(),
            timeouts: Timeouts {
                header: config.deadlines.header_timeout,
                idle: config.deadlines.idle_timeout,
            },
            shutdown_delay: config.deadlines.shutdown_delay,
            shutdown_timeout: config.deadlines.shutdown_timeout,
        };
        Ok(Self {
            config: config.clone(),
            plan,
            stack,
            server,
            settings,
            runtime,
            export,
        })
    }
}

impl<H: Handler + Clone> App<H> {
    /// The address the listeners are bound to (the real port when it was 0).
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The metrics the service reports to (what `/metrics` renders).
    pub fn metrics(&self) -> &Metrics {
        &self.stack.metrics
    }

    /// The same app with its handler replaced by `wrap(handler)`.
    pub fn map_handler<H2: Handler + Clone>(self, wrap: impl FnOnce(H) -> H2) -> App<H2> {
        App {
            config: self.config,
            plan: self.plan,
            stack: self.stack.map_handler(wrap),
            server: self.server,
            settings: self.settings,
            runtime: self.runtime,
            export: self.export,
        }
    }

    /// SIGTERM and SIGINT as stop requests, installed in this app's runtime
    /// (before the caller announces that it listens, so none is missed).
    pub fn signals(&self) -> io::Result<Signals> {
        let _context = self.runtime.enter();
        Signals::install()
    }

    /// Serves on the calling thread (and, per core, one thread for each other
    /// worker) until the first of `stop` requests, then shuts down in the
    /// documented order and returns what the drain achieved. Queued spans get
    /// what the drain left of `SHUTDOWN_TIMEOUT` (at least half a second).
    pub fn run(self, stop: impl StopRequests) -> io::Result<ShutdownReport> {
        let config = &self.config;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            addr = %self.server.local_addr(),
            workers = config.workers(),
            runtime = config.listen.runtime.as_str(),
            span_export = config.otlp_traces_url().as_deref().unwrap_or("off"),
            max_body_bytes = config.capacity.max_body_bytes.get(),
            max_name_chars = config.capacity.max_name_chars.get(),
            max_connections = self.settings.max_connections,
            memory_budget = self.plan.budget,
            memory_budget_from = self.plan.source.as_str(),
            body_buffer_limit = self.plan.body_buffers,
            header_timeout = ?config.deadlines.header_timeout,
            idle_timeout = ?config.deadlines.idle_timeout,
            shutdown_timeout = ?config.deadlines.shutdown_timeout,
            shutdown_delay = ?config.deadlines.shutdown_delay,
            log_level = config.logging.log_level.as_str(),
            access_log = config.logging.access_log,
            tls = config.tls.tls_cert.is_some(),
            "listening"
        );
        let shutdown_timeout = config.deadlines.shutdown_timeout;
        let Stack {
            middleware,
            readiness,
            connections,
            ..
        } = self.stack;
        let report = self.server.run(
            self.runtime,
            middleware,
            self.settings,
            readiness,
            connections,
            stop,
        );
        if let Some(export) = self.export {
            let drained = report.as_ref().map_or(Duration::ZERO, |r| r.took);
            let left = shutdown_timeout.saturating_sub(drained);
            export.shutdown(left.max(Duration::from_millis(500)));
        }
        report
    }
}

#[cfg(feature = "otlp")]
use crate::telemetry::export::{self, Export};

/// Starts span export if an endpoint is configured.
#[cfg(feature = "otlp")]
fn start_export(config: &Config, scheme: &'static str) -> Result<Option<Export>, String> {
    export::start(config, scheme)
}

#[cfg(feature = "otlp")]
fn spans_of(export: Option<&Export>) -> Option<Spans> {
    export.map(|e| e.spans.clone())
}

#[cfg(feature = "otlp")]
fn watch_export(metrics: &Metrics, export: Option<&Export>) {
    if let Some(export) = export {
        metrics.watch_spans(export.stats.clone());
    }
}

/// Built without the `otlp` feature: an endpoint is a configuration error.
#[cfg(not(feature = "otlp"))]
fn start_export(config: &Config, _scheme: &'static str) -> Result<Option<Export>, String> {
    match config.otlp_traces_url() {
        Some(_) => Err("span export is not built in (the otlp feature is off)".to_owned()),
        None => Ok(None),
    }
}

/// Without the `otlp` feature there is no export pipeline.
#[cfg(not(feature = "otlp"))]
enum Export {}

#[cfg(not(feature = "otlp"))]
impl Export {
    fn shutdown(self, _within: Duration) {
        match self {}
    }
}

#[cfg(not(feature = "otlp"))]
fn spans_of(export: Option<&Export>) -> Option<Spans> {
    export.map(|e| match *e {})
}

#[cfg(not(feature = "otlp"))]
fn watch_export(_metrics: &Metrics, _export: Option<&Export>) {}
