//! Prometheus metrics, recorded without locks on the request path.
//!
//! `prometheus-client`'s `Family` looks series up in a map behind a lock and its
//! `Histogram` takes a lock per observation. The request path here only does relaxed
//! atomic adds into fixed arrays indexed by enums with bounded label values (route,
//! method, status). On a scrape, [`Collector`] implementations turn those arrays into
//! the text exposition through `prometheus-client`'s encoder, so the output format is
//! the library's, not ours.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::base::route::Route;

mod connections;
mod process;

pub use connections::Connections;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];
const STATUSES: [u16; 11] = [200, 400, 404, 405, 408, 413, 415, 431, 500, 503, 0];

/// Upper bounds of the duration histogram, in seconds: tens of microseconds (a greeting
/// takes a few) up to seconds (a slow client's body).
pub const BUCKETS: [f64; 19] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A request method as the bounded `method` label: the standard methods, or
/// `OTHER`. One byte, so a request can carry it until it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodLabel(u8);

impl MethodLabel {
    pub fn of(m: &Method) -> Self {
        Self(match *m {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::PATCH => 5,
            Method::OPTIONS => 6,
            _ => 7,
        })
    }

    pub fn as_str(self) -> &'static str {
        METHODS[self.0 as usize]
    }
}

fn status_index(s: StatusCode) -> usize {
    let code = s.as_u16();
    STATUSES
        .iter()
        .position(|&c| c == code)
        .unwrap_or(STATUSES.len() - 1)
}

/// A histogram of durations: non-cumulative bucket counts (the last is +Inf), sum
/// in nanoseconds, all relaxed atomics.
#[derive(Debug)]
struct Histogram {
    bounds_ns: [u64; BUCKETS.len()],
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            bounds_ns: BUCKETS.map(|s| (s * 1e9) as u64),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        let i = self
            .bounds_ns
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Per-bucket (not cumulative) counts, total count and sum in seconds: the
    /// shape `prometheus-client`'s encoder takes (it accumulates the buckets).
    fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut count = 0;
        let mut out = Vec::with_capacity(BUCKETS.len() + 1);
        for (i, bucket) in self.buckets.iter().enumerate() {
            let n = bucket.load(Ordering::Relaxed);
            count += n;
            out.push((BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (out, count, sum)
    }
}

/// Request counts and durations.
#[derive(Debug)]
struct Requests {
    counts: [[[AtomicU64; STATUSES.len()]; METHODS.len()]; Route::ALL.len()],
    durations: [Histogram; Route::ALL.len()],
}

/// All of the service's metrics; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: Arc<Requests>,
    registry: Arc<Registry>,
}

impl Metrics {
    pub fn new(connections: Arc<Connections>) -> Self {
        let requests = Arc::new(Requests {
            counts: std::array::from_fn(|_| {
                std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            }),
            durations: std::array::from_fn(|_| Histogram::new()),
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(RequestCollector(requests.clone())));
        registry.register_collector(Box::new(connections::Collector(connections)));
        registry.register_collector(Box::new(process::Collector));
        Self {
            requests,
            registry: Arc::new(registry),
        }
    }

    /// Records one request: three relaxed atomic adds, no lock, no allocation.
    pub fn record(&self, route: Route, method: MethodLabel, status: StatusCode, took: Duration) {
        self.requests.counts[route as usize][method.0 as usize][status_index(status)]
            .fetch_add(1, Ordering::Relaxed);
        self.requests.durations[route as usize].observe(took);
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail; a collector that fails leaves a partial
        // exposition, which Prometheus reports as a scrape error.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}

#[derive(Debug)]
struct RequestCollector(Arc<Requests>);

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut family = encoder.encode_descriptor(
                "http_requests",
                "HTTP requests answered, by route, method and status",
                None,
                MetricType::Counter,
            )?;
            for route in Route::ALL {
                for (m, method) in METHODS.iter().enumerate() {
                    for (s, status) in STATUSES.iter().enumerate() {
                        let n = self.0.counts[route as usize][m][s].load(Ordering::Relaxed);
                        if n == 0 {
                            continue;
                        }
                        let status = match StatusCode::from_u16(*status) {
                            Ok(code) => code.as_str().to_owned(),
                            Err(_) => "other".to_owned(),
                        };
                        let labels = [
                            ("route", route.as_str()),
                            ("method", method),
                            ("status", status.as_str()),
                        ];
                        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "http_request_duration_seconds",
            "Time from request head to response, by route",
            None,
            MetricType::Histogram,
        )?;
        for route in Route::ALL {
            let (buckets, count, sum) = self.0.durations[route as usize].snapshot();
            let labels = [("route", route.as_str())];
            family
                .encode_family(&labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum, count, &buckets, None,
                )?;
        }
        Ok(())
    }
}

/// Encodes one metric without labels.
pub(crate) fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_recorded_requests_and_histograms() {
        let m = Metrics::new(Arc::new(Connections::default()));
        m.record(
            Route::Greet,
            MethodLabel::of(&Method::POST),
            StatusCode::OK,
            Duration::from_micros(20),
        );
        m.record(
            Route::Greet,
            MethodLabel::of(&Method::POST),
            StatusCode::OK,
            Duration::from_millis(3),
        );
        m.record(
            Route::Unmatched,
            MethodLabel::of(&Method::from_bytes(b"BREW").unwrap()),
            StatusCode::IM_A_TEAPOT,
            Duration::ZERO,
        );
        let text = m.render();
        assert!(
            text.contains(r#"http_requests_total{route="/greet",method="POST",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"http_requests_total{route="unmatched",method="OTHER",status="other"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"http_request_duration_seconds_bucket{route="/greet",le="2.5e-05"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_request_duration_seconds_bucket{route="/greet",le="+Inf"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_request_duration_seconds_count{route="/greet"} 2"#),
            "{text}"
        );
        assert!(text.contains("# TYPE http_connections_open gauge"));
        assert!(text.contains("http_connections_total 0"));
        assert!(text.contains("process_resident_memory_bytes"));
        assert!(text.contains("process_cpu_seconds_total"));
        assert!(text.contains("process_open_fds"));
    }

    #[test]
    fn histogram_buckets_count_each_observation_once() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(5));
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_secs(60));
        let (buckets, count, sum) = h.snapshot();
        assert_eq!(count, 3);
        assert_eq!(buckets[0], (0.00001, 1));
        assert_eq!(buckets[2], (0.00005, 1));
        assert_eq!(buckets.last().unwrap().1, 1);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 3);
        assert!(buckets.last().unwrap().0.is_infinite());
        assert!((sum - 60.000035).abs() < 1e-9);
    }
}
