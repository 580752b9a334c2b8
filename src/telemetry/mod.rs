//! Logging: JSON lines on stdout by default (`timestamp`, `level`, `message` and the
//! event's fields at the top level), or human-readable text with `LOG_FORMAT=text`.
//!
//! Inside a traced request's span (see [`crate::endpoint`]) each JSON line carries the
//! span and its `trace_id`.
//!
//! Panics are logged through the same pipeline (as one JSON line, without the panic
//! payload reaching a client), because a default panic message on stderr would be
//! invisible to a log shipper that reads stdout.

use tracing_subscriber::EnvFilter;

#[cfg(feature = "otlp")]
pub mod export;

use crate::config::{LogFormat, LogLevel};

/// Installs the global subscriber. Call once, before anything logs.
///
/// `RUST_LOG`, when set, refines the filter (for example `hyper=debug`); `LOG_LEVEL`
/// is the base level.
pub fn init(format: LogFormat, level: LogLevel) {
    let filter = EnvFilter::builder()
        .with_default_directive(
            level
                .as_str()
                .parse()
                .unwrap_or_else(|_| tracing::Level::INFO.into()),
        )
        .from_env_lossy();
    // Colours only for a terminal: piped to a file or a log shipper, escape codes
    // would garble the lines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
    install_panic_hook();
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(non-string panic payload)");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic = payload, location, "panic while handling a request");
    }));
}
