//! The binary: configuration, logging, runtime, server. Everything else is in the
//! library so tests and benches use the same code.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use greeting_service::base::metrics::{Connections, Metrics};
use greeting_service::base::shutdown::{Readiness, Signals};
use greeting_service::config::{Command, Config, Mode};
use greeting_service::endpoint::Endpoint;
use greeting_service::routes::{Limits, Routes};
use greeting_service::server::connection::Timeouts;
use greeting_service::server::{self, tls, Server, Settings};
use greeting_service::{healthcheck, telemetry};

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

    let readiness = Readiness::default();
    let connections = Arc::new(Connections::default());
    let metrics = Metrics::new(connections.clone());
    let limits = Limits {
        max_body_bytes: config.max_body_bytes.get(),
        max_name_chars: config.max_name_chars.get(),
        body_timeout: config.header_timeout,
    };
    let routes = Routes::new(limits, readiness.clone(), metrics.clone());
    let endpoint = Endpoint::new(routes, metrics, config.access_log);
    let settings = Settings {
        mode: config.runtime,
        max_connections: config.max_connections.get(),
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
        runtime = ?config.runtime,
        max_body_bytes = config.max_body_bytes.get(),
        max_name_chars = config.max_name_chars.get(),
        max_connections = config.max_connections.get(),
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
