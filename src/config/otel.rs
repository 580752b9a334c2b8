//! The OpenTelemetry settings, read the way the OpenTelemetry environment
//! specification says: the standard `OTEL_*` variable names, an empty value
//! treated as unset, the signal-specific traces endpoint winning over the base
//! one, and percent-encoded resource attribute values.

use clap::{Args, ValueEnum};

/// Span export over OTLP/HTTP; off unless an endpoint is set.
#[derive(Debug, Clone, Args)]
pub struct Otel {
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
}

impl Otel {
    /// The OTLP traces URL, if span export is on: the traces endpoint as given, or
    /// `/v1/traces` under the base endpoint.
    pub fn traces_url(&self) -> Option<String> {
        match (&self.otel_traces_endpoint, &self.otel_endpoint) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(base)) => Some(format!("{}/v1/traces", base.trim_end_matches('/'))),
            (None, None) => None,
        }
    }
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

/// An `OTEL_*` variable that is set but empty, which OpenTelemetry's environment
/// specification says to treat as unset.
pub(super) fn is_empty_otel_variable(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with("OTEL_"))
        && std::env::var_os(name).is_some_and(|v| v.is_empty())
}
