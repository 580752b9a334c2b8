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
use clap::{CommandFactory, Parser, ValueEnum};

pub mod memory;

/// The documented defaults, for code that needs them outside flag parsing.
pub mod defaults {
    use std::time::Duration;

    pub const PORT: u16 = 8080;
    pub const MAX_BODY_BYTES: usize = 16 * 1024;
    pub const MAX_NAME_CHARS: usize = 256;
    pub const MAX_CONNECTIONS: usize = super::memory::MAX_CONNECTIONS;
    /// The largest request head (request line and headers): above it, 431.
    pub const MAX_HEAD_BYTES: usize = 64 * 1024;
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
}

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

    /// TCP port to listen on; 0 picks a free one (the bound address is logged).
    #[arg(long, env = "PORT", default_value_t = defaults::PORT)]
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
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = nonzero(defaults::MAX_BODY_BYTES), value_parser = parse_nonzero)]
    pub max_body_bytes: NonZeroUsize,

    /// Longest accepted name, in Unicode scalar values after trimming.
    #[arg(long, env = "MAX_NAME_CHARS", default_value_t = nonzero(defaults::MAX_NAME_CHARS), value_parser = parse_nonzero)]
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

    /// OTLP/HTTP base URL (`/v1/traces` is appended); span export is off unless
    /// this or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. http:// only.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_endpoint)]
    pub otel_endpoint: Option<String>,

    /// OTLP/HTTP URL for traces, used as given (wins over OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_parser = parse_endpoint)]
    pub otel_traces_endpoint: Option<String>,

    /// The `service.name` resource attribute of exported spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = env!("CARGO_PKG_NAME"))]
    pub otel_service_name: String,

    /// Sampler: always_on, always_off, traceidratio, parentbased_always_on,
    /// parentbased_always_off or parentbased_traceidratio.
    #[arg(long, env = "OTEL_TRACES_SAMPLER", value_enum, default_value_t = SamplerKind::ParentbasedAlwaysOn)]
    pub otel_traces_sampler: SamplerKind,

    /// The sampler's ratio, 0 to 1, for the `traceidratio` samplers.
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", default_value = "1", value_parser = parse_ratio)]
    pub otel_traces_sampler_arg: f64,

    /// More resource attributes: `key=value,key2=value2` (values percent-encoded).
    #[arg(long, env = "OTEL_RESOURCE_ATTRIBUTES", value_parser = parse_resource_attributes)]
    pub otel_resource_attributes: Option<ResourceAttributes>,

    /// PEM certificate chain; with TLS_KEY enables HTTPS.
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key; with TLS_CERT enables HTTPS.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// The OpenTelemetry samplers the standard `OTEL_TRACES_SAMPLER` values name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SamplerKind {
    AlwaysOn,
    AlwaysOff,
    Traceidratio,
    ParentbasedAlwaysOn,
    ParentbasedAlwaysOff,
    ParentbasedTraceidratio,
}

/// `OTEL_RESOURCE_ATTRIBUTES`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceAttributes(pub Vec<(String, String)>);

fn parse_resource_attributes(s: &str) -> Result<ResourceAttributes, String> {
    let mut out = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("{pair:?} has an empty key"));
        }
        out.push((key.to_owned(), percent_decode(value.trim())?));
    }
    Ok(ResourceAttributes(out))
}

/// `%XX` escapes, as the OpenTelemetry specification allows in attribute values.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let ratio: f64 = s
        .trim()
        .parse()
        .map_err(|_| "expected a number from 0 to 1".to_owned())?;
    if !(0.0..=1.0).contains(&ratio) {
        return Err("must be from 0 to 1".to_owned());
    }
    Ok(ratio)
}

/// OTLP endpoints: http:// URLs (the exporter's client speaks plain HTTP; use a
/// collector on the host or in the pod for TLS).
fn parse_endpoint(s: &str) -> Result<String, String> {
    let s = s.trim();
    let uri: http::Uri = s.parse().map_err(|_| "not a URL".to_owned())?;
    match uri.scheme_str() {
        Some("http") if uri.authority().is_some() => Ok(s.to_owned()),
        Some("https") => {
            Err("https is not supported; send to a local collector over http".to_owned())
        }
        _ => Err("expected http://host:port".to_owned()),
    }
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

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
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
    /// The memory plan: the budget and what follows from it.
    pub fn memory_plan(&self) -> memory::Plan {
        let cgroup = match self.memory_budget {
            Some(_) => None,
            None => memory::own_cgroup_limit(),
        };
        memory::Plan::resolve(self.memory_budget, cgroup)
    }

    /// The connection cap: the setting, else what the memory plan allows.
    pub fn max_connections(&self, plan: &memory::Plan) -> usize {
        self.max_connections
            .map_or(plan.max_connections, NonZeroUsize::get)
    }

    /// The OTLP traces URL, if span export is on: the traces endpoint as given, or
    /// `/v1/traces` under the base endpoint.
    pub fn otlp_traces_url(&self) -> Option<String> {
        match (&self.otel_traces_endpoint, &self.otel_endpoint) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(base)) => Some(format!("{}/v1/traces", base.trim_end_matches('/'))),
            (None, None) => None,
        }
    }

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
        use clap::FromArgMatches as _;
        // OpenTelemetry's rule for its variables: an empty value means unset, so
        // `OTEL_EXPORTER_OTLP_ENDPOINT=` (as compose writes an unset `${VAR:-}`)
        // leaves export off instead of failing as an invalid URL.
        let cmd = Self::command().mut_args(|arg| match arg.get_env() {
            Some(name) if is_empty_otel_variable(name) => arg.env(None),
            _ => arg,
        });
        let matches = cmd.try_get_matches_from(args).map_err(ConfigError::Clap)?;
        let config = Self::from_arg_matches(&matches).map_err(ConfigError::Clap)?;
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
/// names the variable, the flag and the value, built from the error's kind and
/// context (not from its text).
fn one_line(e: &clap::Error) -> String {
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    };
    let args = context(ContextKind::InvalidArg);
    let named: Vec<String> = args.iter().map(|a| setting_name(a)).collect();
    match e.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let value = context(ContextKind::InvalidValue).join(" ");
            let reason = match std::error::Error::source(e) {
                Some(source) => source.to_string(),
                None => format!(
                    "expected one of: {}",
                    context(ContextKind::ValidValue).join(", ")
                ),
            };
            format!("invalid value {value:?} for {}: {reason}", named.join(", "))
        }
        ErrorKind::MissingRequiredArgument => {
            format!("{} must be set as well", named.join(" and "))
        }
        kind => {
            let what = kind.as_str().unwrap_or("invalid configuration");
            match named.is_empty() {
                true => what.to_owned(),
                false => format!("{what}: {}", named.join(", ")),
            }
        }
    }
}

/// An `OTEL_*` variable that is set but empty, which OpenTelemetry's environment
/// specification says to treat as unset.
fn is_empty_otel_variable(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with("OTEL_"))
        && std::env::var_os(name).is_some_and(|v| v.is_empty())
}

/// `--port <PORT>` becomes `PORT (--port)`, from the argument's own definition.
fn setting_name(arg: &str) -> String {
    let flag = arg.split_whitespace().next().unwrap_or(arg);
    let env = Config::command()
        .get_arguments()
        .find(|a| a.get_long().is_some_and(|l| flag == format!("--{l}")))
        .and_then(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned());
    match env {
        Some(env) => format!("{env} ({flag})"),
        None => flag.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses flags only: the command's variables are removed first, so what the
    /// test process has in its environment cannot change the outcome.
    fn parse(args: &[&str]) -> Result<Config, String> {
        use clap::FromArgMatches;
        let cmd = Config::command().mut_args(|a| a.env(None));
        let matches = cmd
            .try_get_matches_from(std::iter::once("greeting-service").chain(args.iter().copied()))
            .map_err(|e| ConfigError::Clap(e).to_string())?;
        Config::from_arg_matches(&matches).map_err(|e| ConfigError::Clap(e).to_string())
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
        // The constants other modules use agree with what clap declares.
        for (id, constant) in [
            ("header_timeout", defaults::HEADER_TIMEOUT),
            ("idle_timeout", defaults::IDLE_TIMEOUT),
            ("shutdown_timeout", defaults::SHUTDOWN_TIMEOUT),
        ] {
            assert_eq!(parse_duration(&declared_default(id)), Ok(constant), "{id}");
        }
    }

    #[test]
    fn durations_take_units() {
        let c = parse(&["--header-timeout", "250ms", "--idle-timeout", "2m"]).unwrap();
        assert_eq!(c.header_timeout, Duration::from_millis(250));
        assert_eq!(c.idle_timeout, Duration::from_secs(120));
        // Zero disables a guard, so timeouts refuse it; a delay of zero is none.
        assert!(parse(&["--header-timeout", "0s"]).is_err());
        assert_eq!(
            parse(&["--shutdown-delay", "0s"]).unwrap().shutdown_delay,
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
        assert_eq!(c.otel_traces_sampler, SamplerKind::ParentbasedTraceidratio);
        assert_eq!(c.otel_traces_sampler_arg, 0.01);
        assert_eq!(
            c.otel_resource_attributes.unwrap().0,
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
        assert!(parse(&["--access-log"]).unwrap().access_log);
        assert!(parse(&["--access-log", "true"]).unwrap().access_log);
        assert!(!parse(&["--access-log", "no"]).unwrap().access_log);
    }
}
