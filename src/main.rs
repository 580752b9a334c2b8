//! The binary: configuration, logging, runtime, server. Everything else is in the
//! library so tests and benches use the same code.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use greeting_service::config::{Command, Config};
use greeting_service::connection::Timeouts;
use greeting_service::metrics::Metrics;
use greeting_service::routes::{App, Limits, Readiness};
use greeting_service::server::{self, Connections, Mode, Server, Settings};
use greeting_service::service::Service;
use greeting_service::shutdown::Signals;
use greeting_service::{healthcheck, telemetry, tls};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
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
    let server = match Server::bind_many(addr, listeners) {
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

    let readiness = Readiness::default();
    let connections = Arc::new(Connections::default());
    let metrics = Metrics::new(connections.clone());
    let app = App {
        limits: Limits {
            max_body_bytes: config.max_body_bytes.get(),
            max_name_chars: config.max_name_chars.get(),
            body_timeout: config.header_timeout,
        },
        readiness: readiness.clone(),
        metrics: metrics.clone(),
    };
    let service = Arc::new(Service::new(app, metrics, config.access_log));
    let settings = Settings {
        max_connections: config.max_connections.get(),
        timeouts: Timeouts {
            header: config.header_timeout,
            idle: config.idle_timeout,
        },
        shutdown_timeout: config.shutdown_timeout,
    };
    // The main thread's runtime, and the signal handlers installed in it before we
    // announce that we listen.
    let runtime = match config.runtime {
        Mode::PerCore => server::current_thread_runtime(),
        Mode::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build(),
    };
    let (runtime, signals) = match runtime.and_then(|rt| {
        let signals = {
            let _context = rt.enter();
            Signals::install()?
        };
        Ok((rt, signals))
    }) {
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
        runtime = ?config.runtime,
        max_body_bytes = config.max_body_bytes.get(),
        max_name_chars = config.max_name_chars.get(),
        max_connections = config.max_connections.get(),
        header_timeout = ?config.header_timeout,
        idle_timeout = ?config.idle_timeout,
        shutdown_timeout = ?config.shutdown_timeout,
        log_level = config.log_level.as_str(),
        access_log = config.access_log,
        tls = config.tls_cert.is_some(),
        "listening"
    );

    let report = match config.runtime {
        Mode::PerCore => server.run_per_core(
            runtime,
            service,
            settings,
            readiness,
            connections,
            signals.recv(),
        ),
        Mode::MultiThread => {
            // Spawned, so the accept loop runs on a worker thread like the
            // connections, not on this one.
            let run = server.run(service, settings, readiness, connections, signals.recv());
            let report = runtime.block_on(runtime.spawn(run));
            // Connections still open after the drain deadline are cut here.
            runtime.shutdown_timeout(Duration::ZERO);
            report.map_err(std::io::Error::other)
        }
    };
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
