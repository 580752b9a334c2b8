//! The binary: configuration, logging, runtime, server. Everything else is in the
//! library so tests and benches use the same code.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use greeting_service::config::Config;
use greeting_service::connection::Timeouts;
use greeting_service::routes::{App, Limits, Readiness};
use greeting_service::server::{Connections, Server, Settings};
use greeting_service::{shutdown, telemetry};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse_or_exit();
    telemetry::init(config.log_format, config.log_level);
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
    let code = runtime.block_on(serve(config, workers));
    // Connections still open after the drain deadline are cut here.
    runtime.shutdown_timeout(std::time::Duration::ZERO);
    code
}

async fn serve(config: Config, workers: usize) -> ExitCode {
    let addr = SocketAddr::new(config.host, config.port);
    let server = match Server::bind(addr) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot bind");
            eprintln!("greeting-service: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let readiness = Readiness::default();
    let app = App {
        limits: Limits {
            max_body_bytes: config.max_body_bytes.get(),
            max_name_chars: config.max_name_chars.get(),
            body_timeout: config.header_timeout,
        },
        readiness: readiness.clone(),
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
            Arc::new(app),
            settings,
            readiness,
            Arc::new(Connections::default()),
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
