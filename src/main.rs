//! The binary: configuration, logging, runtime, server. Everything else is in the
//! library so tests and benches use the same code.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use greeting_service::config::Config;
use greeting_service::connection::Timeouts;
use greeting_service::metrics::Metrics;
use greeting_service::routes::{App, Limits, Readiness};
use greeting_service::server::{Connections, Server, Settings};
use greeting_service::service::Service;
use greeting_service::{shutdown, telemetry, tls};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse_or_exit();
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(config, workers, tls));
    // Connections still open after the drain deadline are cut here.
    runtime.shutdown_timeout(std::time::Duration::ZERO);
    code
}

async fn serve(config: Config, workers: usize, tls: Option<tokio_rustls::TlsAcceptor>) -> ExitCode {
    let addr = SocketAddr::new(config.host, config.port);
    let server = match Server::bind(addr) {
        Ok(server) => match tls {
            Some(acceptor) => server.with_tls(acceptor),
            None => server,
        },
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot bind");
            eprintln!("greeting-service: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
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
    let settings = Settings {
        max_connections: config.max_connections.get(),
        timeouts: Timeouts {
            header: config.header_timeout,
            idle: config.idle_timeout,
        },
        shutdown_timeout: config.shutdown_timeout,
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        addr = %server.local_addr(),
        workers,
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
    let report = server
        .run(
            Arc::new(Service::new(app, metrics, config.access_log)),
            settings,
            readiness,
            connections,
            shutdown::signal(),
        )
        .await;
    tracing::info!(
        drained = report.drained,
        cut = report.cut,
        "shutdown complete"
    );
    ExitCode::SUCCESS
}
