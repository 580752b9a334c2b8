//! Telemetry: [`metrics`] (Prometheus), [`spans`] and [`trace`] (OpenTelemetry
//! trace context and export), and the logs.
//!
//! Logging: JSON lines on stdout by default (`timestamp`, `level`, `message` and the
//! event's fields at the top level), or human-readable text with `LOG_FORMAT=text`.
//!
//! Inside a traced request's span (see [`crate::middleware`]) each JSON line carries the
//! span and its `trace_id`.
//!
//! Panics are logged through the same pipeline (as one JSON line, without the panic
//! payload reaching a client), because a default panic message on stderr would be
//! invisible to a log shipper that reads stdout.

use tracing_subscriber::EnvFilter;

#[cfg(feature = "otlp")]
pub mod export;
pub mod metrics;
pub mod spans;
pub mod trace;

use crate::config::{LogFormat, LogLevel};

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat, level: LogLevel) {
    let filter = filter(level, std::env::var("RUST_LOG").ok().as_deref());
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

/// `LOG_LEVEL` is the base level; `RUST_LOG`, when set, adds its directives after
/// it, so `RUST_LOG=h2=debug` refines the base level for one crate instead of
/// replacing it (which would silence every other line), and a level of its own
/// (`RUST_LOG=debug`) overrides it. Invalid directives are skipped.
fn filter(level: LogLevel, rust_log: Option<&str>) -> EnvFilter {
    let directives = match rust_log {
        Some(more) if !more.trim().is_empty() => format!("{},{more}", level.as_str()),
        _ => level.as_str().to_owned(),
    };
    EnvFilter::builder().parse_lossy(directives)
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

#[cfg(test)]
mod tests {
    use tracing::level_filters::LevelFilter;

    use super::*;

    #[test]
    fn rust_log_refines_the_base_level() {
        let plain = filter(LogLevel::Warn, None);
        assert_eq!(plain.max_level_hint(), Some(LevelFilter::WARN));
        assert_eq!(
            filter(LogLevel::Warn, Some("  ")).max_level_hint(),
            Some(LevelFilter::WARN)
        );
        // One crate louder: the base level still applies to everything else.
        let refined = filter(LogLevel::Info, Some("h2=debug")).to_string();
        let directives: Vec<&str> = refined.split(',').collect();
        assert!(directives.contains(&"info"), "{refined}");
        assert!(directives.contains(&"h2=debug"), "{refined}");
        // A level of its own overrides the base level.
        assert_eq!(
            filter(LogLevel::Info, Some("debug")).max_level_hint(),
            Some(LevelFilter::DEBUG)
        );
        // Invalid directives are skipped, not fatal.
        assert_eq!(
            filter(LogLevel::Error, Some("=??")).max_level_hint(),
            Some(LevelFilter::ERROR)
        );
    }
}
