//! Configuration: every setting is a flag and an environment variable (the flag wins),
//! parsed and validated once at start-up, in groups that say what they are for
//! ([`Listen`], [`Capacity`], [`Deadlines`], [`Logging`], [`otel::Otel`], [`Tls`]).
//! Each default is written once, in its setting's declaration;
//! [`Config::defaults`] reads them for code that needs them outside parsing.
//!
//! A bad value ends the process before it binds, with exit status 2 and one line on
//! stderr that names the setting and the value ([`Config::parse_or_exit`],
//! [`errors`]).

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, ValueEnum};

pub mod errors;
pub mod memory;
pub mod otel;

pub use errors::ConfigError;
pub use otel::{ResourceAttributes, SamplerKind};

/// The largest request head (request line and headers): above it, 431. A limit
/// of the protocol, not a setting.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How connections are spread over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One current-thread runtime per worker thread, each with its own
    /// `SO_REUSEPORT` listener: no work stealing, no cross-thread wake-ups; the
    /// kernel spreads connections over the listeners.
    PerCore,
    /// One tokio multi-thread (work-stealing) runtime with `WORKERS` threads and
    /// one listener: balances uneven connections, costs more per request.
    MultiThread,
}

impl Mode {
    /// The value's name as the setting spells it (`per-core`, `multi-thread`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerCore => "per-core",
            Self::MultiThread => "multi-thread",
        }
    }
}

/// A JSON greeting service on hyper: `POST /greet {"name":"John"}`.
#[derive(Debug, Clone, Parser)]
#[command(name = "greeting-service", version, about, max_term_width = 100)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub listen: Listen,
    #[command(flatten)]
    pub capacity: Capacity,
    #[command(flatten)]
    pub deadlines: Deadlines,
    #[command(flatten)]
    pub logging: Logging,
    #[command(flatten)]
    pub otel: otel::Otel,
    #[command(flatten)]
    pub tls: Tls,
}

/// Where to listen and how many threads serve.
#[derive(Debug, Clone, Args)]
pub struct Listen {
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
}

/// How much the service takes in: per request and in total.
#[derive(Debug, Clone, Args)]
pub struct Capacity {
    /// Request body limit in bytes; larger bodies get 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value = "16384", value_parser = parse_nonzero)]
    pub max_body_bytes: NonZeroUsize,

    /// Longest accepted name, in Unicode scalar values after trimming.
    #[arg(long, env = "MAX_NAME_CHARS", default_value = "256", value_parser = parse_nonzero)]
    pub max_name_chars: NonZeroUsize,

    /// Open connections; past it the server stops accepting until one closes
    /// [default: from MEMORY_BUDGET; 10000 with the default budget].
    #[arg(long, env = "MAX_CONNECTIONS", value_parser = parse_nonzero)]
    pub max_connections: Option<NonZeroUsize>,

    /// Memory the process may use, from which MAX_CONNECTIONS and the limit on
    /// buffered request bodies follow (256MiB, 1GiB, ...) [default: the cgroup's
    /// memory limit, else 1GiB].
    #[arg(long, env = "MEMORY_BUDGET", value_parser = memory::parse_size)]
    pub memory_budget: Option<u64>,
}

/// How long clients and the shutdown may take.
#[derive(Debug, Clone, Args)]
pub struct Deadlines {
    /// A client must send its request head (and then its body) within this.
    #[arg(long, env = "HEADER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// An idle keep-alive connection is closed after this.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// How long a graceful shutdown may drain before connections are cut.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// After SIGTERM, how long to keep accepting and serving (with /readyz 503)
    /// before the drain starts, so balancers stop sending first.
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_delay)]
    pub shutdown_delay: Duration,
}

/// What the service logs.
#[derive(Debug, Clone, Args)]
pub struct Logging {
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log level. Release builds compile trace-level events out (hyper's and h2's
    /// included), so `trace` logs what `debug` does there.
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
}

/// HTTPS, when both files are given.
#[derive(Debug, Clone, Args)]
pub struct Tls {
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

/// A delay may be zero (none).
fn parse_delay(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration such as 0s, 500ms or 5s"))
}

impl Config {
    /// Every setting at its default, whatever the environment holds: what the
    /// tests, benches and fuzzers run with.
    pub fn defaults() -> Self {
        Self::parse_without_environment(["greeting-service"]).expect("the declared defaults parse")
    }

    /// Flags only: the settings' variables are ignored, so the caller's
    /// environment cannot change the outcome (tests, benches).
    pub fn parse_without_environment<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches as _;
        let cmd = Self::command().mut_args(|a| a.env(None));
        let matches = cmd.try_get_matches_from(args).map_err(ConfigError::Clap)?;
        Self::from_arg_matches(&matches).map_err(ConfigError::Clap)
    }

    /// The memory plan: the budget and what follows from it.
    pub fn memory_plan(&self) -> memory::Plan {
        let cgroup = match self.capacity.memory_budget {
            Some(_) => None,
            None => memory::own_cgroup_limit(),
        };
        memory::Plan::resolve(self.capacity.memory_budget, cgroup)
    }

    /// The connection cap: the setting, else what the memory plan allows.
    pub fn max_connections(&self, plan: &memory::Plan) -> usize {
        self.capacity
            .max_connections
            .map_or(plan.max_connections, NonZeroUsize::get)
    }

    /// The OTLP traces URL, if span export is on.
    pub fn otlp_traces_url(&self) -> Option<String> {
        self.otel.traces_url()
    }

    /// The number of worker threads to run.
    pub fn workers(&self) -> usize {
        self.listen
            .workers
            .map(NonZeroUsize::get)
            .unwrap_or_else(|| {
                // std reads the cgroup v1/v2 CPU quota and the affinity mask.
                std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
            })
    }

    /// Parses flags and environment, exiting with status 2 and one stderr line on
    /// a bad value (and 0 after `--help` or `--version`).
    pub fn parse_or_exit() -> Self {
        Self::try_parse_from(std::env::args_os()).unwrap_or_else(|e| errors::exit_on_error(&e))
    }

    /// Like [`Config::parse_or_exit`] but returns the error line, for tests.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches as _;
        // OpenTelemetry's rule for its variables: an empty value means unset, so
        // `OTEL_EXPORTER_OTLP_ENDPOINT=` (as compose writes an unset `${VAR:-}`)
        // leaves export off instead of failing as an invalid URL.
        let cmd = Self::command().mut_args(|arg| match arg.get_env() {
            Some(name) if otel::is_empty_otel_variable(name) => arg.env(None),
            _ => arg,
        });
        let matches = cmd.try_get_matches_from(args).map_err(ConfigError::Clap)?;
        let config = Self::from_arg_matches(&matches).map_err(ConfigError::Clap)?;
        config.check_files()?;
        Ok(config)
    }

    /// A missing TLS file stops the program like any other bad value.
    fn check_files(&self) -> Result<(), ConfigError> {
        let files = [
            ("TLS_CERT", &self.tls.tls_cert),
            ("TLS_KEY", &self.tls.tls_key),
        ];
        for (name, path) in files {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses flags only, so what the test process has in its environment cannot
    /// change the outcome.
    fn parse(args: &[&str]) -> Result<Config, String> {
        Config::parse_without_environment(
            std::iter::once("greeting-service").chain(args.iter().copied()),
        )
        .map_err(|e| e.to_string())
    }

    /// The defaults as declared to clap, read without parsing the environment
    /// (which the test process may have set).
    fn declared_default(id: &str) -> String {
        let cmd = Config::command();
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == id)
            .unwrap_or_else(|| panic!("no argument {id}"));
        let values: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        values.join(",")
    }

    #[test]
    fn declared_defaults_are_the_documented_ones() {
        for (id, expected) in [
            ("port", "8080"),
            ("host", "0.0.0.0"),
            ("runtime", "per-core"),
            ("max_body_bytes", "16384"),
            ("max_name_chars", "256"),
            ("max_connections", ""),
            ("memory_budget", ""),
            ("header_timeout", "5s"),
            ("idle_timeout", "60s"),
            ("shutdown_timeout", "10s"),
            ("shutdown_delay", "0s"),
            ("log_format", "json"),
            ("log_level", "info"),
            ("access_log", "false"),
            ("otel_endpoint", ""),
            ("otel_traces_endpoint", ""),
            ("otel_service_name", "greeting-service"),
            ("otel_traces_sampler", "parentbased_always_on"),
            ("otel_traces_sampler_arg", "1"),
            ("otel_resource_attributes", ""),
        ] {
            assert_eq!(declared_default(id), expected, "{id}");
        }
        assert_eq!(
            declared_default("workers"),
            "",
            "WORKERS defaults to the CPUs"
        );
        // What the rest of the code reads as the defaults is what clap declares.
        let d = Config::defaults();
        assert_eq!(d.deadlines.header_timeout, Duration::from_secs(5));
        assert_eq!(d.deadlines.idle_timeout, Duration::from_secs(60));
        assert_eq!(d.deadlines.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(d.capacity.max_body_bytes.get(), 16 * 1024);
        assert_eq!(d.listen.port, 8080);
    }

    #[test]
    fn durations_take_units() {
        let c = parse(&["--header-timeout", "250ms", "--idle-timeout", "2m"]).unwrap();
        assert_eq!(c.deadlines.header_timeout, Duration::from_millis(250));
        assert_eq!(c.deadlines.idle_timeout, Duration::from_secs(120));
        // Zero disables a guard, so timeouts refuse it; a delay of zero is none.
        assert!(parse(&["--header-timeout", "0s"]).is_err());
        assert_eq!(
            parse(&["--shutdown-delay", "0s"])
                .unwrap()
                .deadlines
                .shutdown_delay,
            Duration::ZERO
        );
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
            assert!(
                e.starts_with(&format!("invalid value {value:?} for {var} (--")),
                "{e}"
            );
        }
    }

    #[test]
    fn otel_settings_parse_the_standard_way() {
        let c = parse(&["--otel-endpoint", "http://collector:4318/"]).unwrap();
        assert_eq!(
            c.otlp_traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        let c = parse(&[
            "--otel-endpoint",
            "http://a:4318",
            "--otel-traces-endpoint",
            "http://b:9999/custom",
        ])
        .unwrap();
        assert_eq!(c.otlp_traces_url().as_deref(), Some("http://b:9999/custom"));
        assert_eq!(parse(&[]).unwrap().otlp_traces_url(), None);
        let c = parse(&[
            "--otel-traces-sampler",
            "parentbased_traceidratio",
            "--otel-traces-sampler-arg",
            "0.01",
            "--otel-resource-attributes",
            "deployment.environment=prod,team=a%2Cb",
        ])
        .unwrap();
        assert_eq!(
            c.otel.otel_traces_sampler,
            SamplerKind::ParentbasedTraceidratio
        );
        assert_eq!(c.otel.otel_traces_sampler_arg, 0.01);
        assert_eq!(
            c.otel.otel_resource_attributes.unwrap().0,
            vec![
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "a,b".to_owned())
            ]
        );
        for bad in [
            &["--otel-endpoint", "https://x:4318"][..],
            &["--otel-endpoint", "collector:4318"],
            &["--otel-traces-sampler-arg", "1.5"],
            &["--otel-traces-sampler", "sometimes"],
            &["--otel-resource-attributes", "novalue"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tls_needs_both_files() {
        let e = parse(&["--tls-cert", "cert.pem"]).unwrap_err();
        assert_eq!(e, "TLS_KEY (--tls-key) must be set as well");
    }

    #[test]
    fn access_log_accepts_bare_flag_and_booleans() {
        assert!(parse(&["--access-log"]).unwrap().logging.access_log);
        assert!(parse(&["--access-log", "true"]).unwrap().logging.access_log);
        assert!(!parse(&["--access-log", "no"]).unwrap().logging.access_log);
    }
}
