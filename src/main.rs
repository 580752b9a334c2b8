//! The binary: configuration, logging, runtime, server. Everything else is in the
//! library so tests and benches use the same code.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use greeting_service::budget::BodyBuffers;
use greeting_service::config::{Command, Config, Mode};
use greeting_service::middleware::Middleware;
use greeting_service::routes::{Limits, Routes};
use greeting_service::server::connection::Timeouts;
use greeting_service::server::drain::{Readiness, Signals};
use greeting_service::server::{self, tls, Server, Settings};
use greeting_service::telemetry::metrics::{Connections, Metrics};
use greeting_service::{healthcheck, telemetry};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc returns the pages a program frees to the operating system only after
/// a delay (10 ms), and only when a later allocation or free on that thread gets
/// round to it; a server whose connections have all gone idle does neither, so
/// the memory parked connections gave back stayed resident. Purging at once makes
/// it leave (README, Performance: memory per idle connection and CPU per request
/// with and without it). Set here because the environment variable
/// (`MIMALLOC_PURGE_DELAY`) is one that users forget; a value a user does set
/// wins. The option is read when a purge is scheduled, after `main` starts.
#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
fn configure_allocator() {
    // `mi_option_purge_delay` in mimalloc.h (v2), which libmimalloc-sys does not
    // name: between the two options it does name, checked at compile time.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    const _: () = assert!(
        libmimalloc_sys::mi_option_eager_commit_delay + 1 == PURGE_DELAY
            && libmimalloc_sys::mi_option_use_numa_nodes - 1 == PURGE_DELAY
    );
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores an option value; it takes no pointers and may
    // be called at any time. No other thread exists yet.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

#[cfg(not(feature = "mimalloc"))]
fn configure_allocator() {}

#[cfg(feature = "otlp")]
use telemetry::export::Export;

/// Starts span export if an endpoint is configured.
#[cfg(feature = "otlp")]
fn start_export(config: &Config, scheme: &'static str) -> Result<Option<Export>, String> {
    telemetry::export::start(config, scheme)
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
    fn shutdown(self, _within: std::time::Duration) {
        match self {}
    }
}

fn main() -> ExitCode {
    configure_allocator();
    let config = Config::parse_or_exit();
    if let Some(Command::Healthcheck) = config.command {
        return match healthcheck::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("greeting-service healthcheck: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Bad TLS files are bad configuration: exit 2 before binding.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => match tls::acceptor(cert, key) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => {
                eprintln!("greeting-service: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    telemetry::init(config.log_format, config.log_level);
    // Span export: a bad endpoint is bad configuration, exit 2 before binding.
    let scheme = if tls.is_some() { "https" } else { "http" };
    let export = match start_export(&config, scheme) {
        Ok(export) => export,
        Err(e) => {
            eprintln!("greeting-service: {e}");
            return ExitCode::from(2);
        }
    };
    // Each connection is a file descriptor: use all the kernel allows.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open file limit");
    }
    let workers = config.workers();
    let addr = SocketAddr::new(config.host, config.port);
    let listeners = match config.runtime {
        Mode::PerCore => workers,
        Mode::MultiThread => 1,
    };
    let server = match Server::bind(addr, listeners) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot bind");
            eprintln!("greeting-service: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match tls {
        Some(acceptor) => server.with_tls(acceptor),
        None => server,
    };

    let plan = config.memory_plan();
    let max_connections = config.max_connections(&plan);
    let readiness = Readiness::default();
    let connections = Arc::new(Connections::default());
    let metrics = Metrics::new(connections.clone());
    let limits = Limits {
        max_body_bytes: config.max_body_bytes.get(),
        max_name_chars: config.max_name_chars.get(),
        body_timeout: config.header_timeout,
    };
    let buffers = BodyBuffers::new(plan.body_buffers);
    let routes = Routes::new(limits, readiness.clone(), metrics.clone(), buffers);
    #[cfg(feature = "otlp")]
    if let Some(export) = &export {
        metrics.watch_spans(export.stats.clone());
    }
    #[cfg(feature = "otlp")]
    let spans = export.as_ref().map(|e| e.spans.clone());
    #[cfg(not(feature = "otlp"))]
    let spans = None;
    let endpoint = Middleware::new(routes, metrics, config.access_log).with_spans(spans);
    let settings = Settings {
        mode: config.runtime,
        max_connections,
        max_body_bytes: config.max_body_bytes.get(),
        timeouts: Timeouts {
            header: config.header_timeout,
            idle: config.idle_timeout,
        },
        shutdown_delay: config.shutdown_delay,
        shutdown_timeout: config.shutdown_timeout,
    };
    // The main thread's runtime, and the signal handlers installed in it before we
    // announce that we listen.
    let started = server::runtime(config.runtime, workers).and_then(|runtime| {
        let signals = {
            let _context = runtime.enter();
            Signals::install()?
        };
        Ok((runtime, signals))
    });
    let (runtime, signals) = match started {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        addr = %server.local_addr(),
        workers,
        runtime = config.runtime.as_str(),
        span_export = config.otlp_traces_url().as_deref().unwrap_or("off"),
        max_body_bytes = config.max_body_bytes.get(),
        max_name_chars = config.max_name_chars.get(),
        max_connections,
        memory_budget = plan.budget,
        memory_budget_from = plan.source.as_str(),
        body_buffer_limit = plan.body_buffers,
        header_timeout = ?config.header_timeout,
        idle_timeout = ?config.idle_timeout,
        shutdown_timeout = ?config.shutdown_timeout,
        shutdown_delay = ?config.shutdown_delay,
        log_level = config.log_level.as_str(),
        access_log = config.access_log,
        tls = config.tls_cert.is_some(),
        "listening"
    );

    let report = server.run(runtime, endpoint, settings, readiness, connections, signals);
    if let Some(export) = export {
        // What the drain left of SHUTDOWN_TIMEOUT, for the spans still queued.
        let drained = report.as_ref().map_or(Default::default(), |r| r.took);
        let left = config.shutdown_timeout.saturating_sub(drained);
        export.shutdown(left.max(std::time::Duration::from_millis(500)));
    }
    match report {
        Ok(report) => {
            tracing::info!(
                drained = report.drained,
                cut = report.cut,
                "shutdown complete"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}
