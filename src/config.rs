//! Configuration: every setting is a flag and an environment variable (the flag wins),
//! parsed and validated once at start-up.
//!
//! A bad value ends the process before it binds, with exit status 2 and one line on
//! stderr that names the setting and the value ([`Config::parse_or_exit`]).

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Parser, ValueEnum};

use crate::server::Mode;

/// A JSON greeting service on hyper: `POST /greet {"name":"John"}`.
#[derive(Debug, Clone, Parser)]
#[command(name = "greeting-service", version, about, max_term_width = 100)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// TCP port to listen on; 0 picks a free one (the bound address is logged).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address to bind (`::` for IPv6).
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Worker threads [default: CPUs available to the process, cgroup quota aware].
    #[arg(long, env = "WORKERS", value_parser = parse_nonzero)]
    pub workers: Option<NonZeroUsize>,

    /// How connections are spread over the worker threads: `per-core` (one
    /// single-threaded runtime and SO_REUSEPORT listener per worker) or
    /// `multi-thread` (one work-stealing runtime, one listener).
    #[arg(long, env = "RUNTIME", value_enum, default_value_t = Mode::PerCore)]
    pub runtime: Mode,

    /// Request body limit in bytes; larger bodies get 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value = "16384", value_parser = parse_nonzero)]
    pub max_body_bytes: NonZeroUsize,

    /// Longest accepted name, in Unicode scalar values after trimming.
    #[arg(long, env = "MAX_NAME_CHARS", default_value = "256", value_parser = parse_nonzero)]
    pub max_name_chars: NonZeroUsize,

    /// Open connections; past it the server stops accepting until one closes.
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "10000", value_parser = parse_nonzero)]
    pub max_connections: NonZeroUsize,

    /// A client must send its request head (and then its body) within this.
    #[arg(long, env = "HEADER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// An idle keep-alive connection is closed after this.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// How long a graceful shutdown may drain before connections are cut.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log level.
    #[arg(long, env = "LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// One log line per request.
    #[arg(
        long,
        env = "ACCESS_LOG",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub access_log: bool,

    /// PEM certificate chain; with TLS_KEY enables HTTPS.
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key; with TLS_CERT enables HTTPS.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// What to do instead of serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Ask the local server's /healthz (same PORT and HOST); exit 0 if it answers
    /// 200, 1 otherwise. For container health checks without curl.
    Healthcheck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

fn parse_nonzero(s: &str) -> Result<NonZeroUsize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| "expected a whole number".to_owned())?;
    NonZeroUsize::new(n).ok_or_else(|| "must be at least 1".to_owned())
}

/// Durations take units: `250ms`, `5s`, `2m`. Zero is refused: it would disable a
/// guard rather than tighten it.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration such as 250ms, 5s or 2m"))?;
    if d.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(d)
}

impl Config {
    /// The number of worker threads to run.
    pub fn workers(&self) -> usize {
        self.workers.map(NonZeroUsize::get).unwrap_or_else(|| {
            // std reads the cgroup v1/v2 CPU quota and the affinity mask.
            std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
        })
    }

    /// Parses flags and environment, exiting with status 2 and one stderr line on
    /// a bad value (and 0 after `--help` or `--version`).
    pub fn parse_or_exit() -> Self {
        Self::try_parse_from(std::env::args_os()).unwrap_or_else(|e| exit_on_error(&e))
    }

    /// Like [`Config::parse_or_exit`] but returns the error line, for tests.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let config = <Self as Parser>::try_parse_from(args).map_err(ConfigError::Clap)?;
        config.check_files()?;
        Ok(config)
    }

    /// A missing TLS file stops the program like any other bad value.
    fn check_files(&self) -> Result<(), ConfigError> {
        for (name, path) in [("TLS_CERT", &self.tls_cert), ("TLS_KEY", &self.tls_key)] {
            if let Some(path) = path {
                if let Err(e) = std::fs::metadata(path) {
                    return Err(ConfigError::Invalid(format!(
                        "invalid value {:?} for {name}: {e}",
                        path.display().to_string()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A configuration error ready to be printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", one_line(.0))]
    Clap(clap::Error),
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    /// `--help` and `--version` come through clap's error path but are not errors.
    fn is_display(&self) -> bool {
        matches!(
            self,
            Self::Clap(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        )
    }
}

fn exit_on_error(e: &ConfigError) -> ! {
    if let (true, ConfigError::Clap(e)) = (e.is_display(), e) {
        // Help and version go to stdout with exit 0.
        let _ = e.print();
        std::process::exit(0);
    }
    eprintln!("greeting-service: {e}");
    std::process::exit(2);
}

/// clap's message is several lines with usage hints; operators get one line that
/// names the variable, the flag and the value.
fn one_line(e: &clap::Error) -> String {
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    match (arg, value) {
        (Some(arg), Some(value)) => {
            let flag = arg.split_whitespace().next().unwrap_or(&arg).to_owned();
            let var = flag
                .trim_start_matches('-')
                .replace('-', "_")
                .to_uppercase();
            let reason = e
                .to_string()
                .lines()
                .next()
                .and_then(|l| l.rsplit_once(": ").map(|(_, r)| r.to_owned()))
                .unwrap_or_default();
            format!("invalid value {value:?} for {var} ({flag}): {reason}")
        }
        _ => e
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid configuration")
            .trim_start_matches("error: ")
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        Config::try_parse_from(std::iter::once("greeting-service").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.max_body_bytes.get(), 16384);
        assert_eq!(c.max_name_chars.get(), 256);
        assert_eq!(c.max_connections.get(), 10000);
        assert_eq!(c.header_timeout, Duration::from_secs(5));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_level, LogLevel::Info);
        assert!(!c.access_log);
        assert!(c.workers() >= 1);
        assert_eq!(c.runtime, Mode::PerCore);
    }

    #[test]
    fn durations_take_units() {
        let c = parse(&["--header-timeout", "250ms", "--idle-timeout", "2m"]).unwrap();
        assert_eq!(c.header_timeout, Duration::from_millis(250));
        assert_eq!(c.idle_timeout, Duration::from_secs(120));
    }

    #[test]
    fn bad_values_give_one_line_naming_the_setting() {
        for (args, var, value) in [
            (&["--port", "abc"][..], "PORT", "abc"),
            (&["--port", "70000"][..], "PORT", "70000"),
            (&["--workers", "0"][..], "WORKERS", "0"),
            (&["--header-timeout", "soon"][..], "HEADER_TIMEOUT", "soon"),
            (&["--log-format", "xml"][..], "LOG_FORMAT", "xml"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
            assert!(e.contains(var) && e.contains(value), "{e}");
        }
    }

    #[test]
    fn access_log_accepts_bare_flag_and_booleans() {
        assert!(parse(&["--access-log"]).unwrap().access_log);
        assert!(parse(&["--access-log", "true"]).unwrap().access_log);
        assert!(!parse(&["--access-log", "no"]).unwrap().access_log);
    }
}
