//! The binary: configuration, logging, then the service as [`App`] wires it.
//! Everything else is in the library, so tests and benches run the same code.

use std::process::ExitCode;

use greeting_service::app::{App, StartError};
use greeting_service::config::{Command, Config};
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
    telemetry::init(config.logging.log_format, config.logging.log_level);
    // Each connection is a file descriptor: use all the kernel allows.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open file limit");
    }
    let started = App::build(&config).and_then(|app| {
        let signals = app.signals().map_err(StartError::Runtime)?;
        Ok((app, signals))
    });
    let (app, signals) = match started {
        Ok(started) => started,
        Err(e) => {
            if !matches!(e, StartError::Config(_)) {
                tracing::error!(error = %e, "cannot start");
            }
            eprintln!("greeting-service: {e}");
            return ExitCode::from(e.exit_status());
        }
    };
    match app.run(signals) {
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
