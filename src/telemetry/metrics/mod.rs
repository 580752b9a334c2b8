//! Prometheus metrics, recorded without locks on the request path.
//!
//! `prometheus-client`'s `Family` looks series up in a map behind a lock and its
//! `Histogram` takes a lock per observation. The request path here only writes
//! counters in fixed arrays indexed by bounded label values (route, method,
//! status), in a shard of its own thread ([`requests`]). On a scrape, [`Collector`]
//! implementations sum the shards and turn them into the text exposition through
//! `prometheus-client`'s encoder, so the output format is the library's, not ours.

use std::sync::{Arc, OnceLock};

use http::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::budget::BodyBuffers;
use crate::handler::Route;
use crate::telemetry::spans::SpanStats;

mod connections;
mod process;
pub mod requests;

pub use connections::{Connections, Slot};
pub use requests::{MethodLabel, BUCKETS};
use requests::{Shards, METHODS, STATUSES};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// All of the service's metrics; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: Arc<Shards>,
    body_buffers: Arc<OnceLock<BodyBuffers>>,
    spans: Arc<OnceLock<Arc<SpanStats>>>,
    registry: Arc<Registry>,
}

impl Metrics {
    pub fn new(connections: Arc<Connections>) -> Self {
        let requests = Arc::new(Shards::new());
        let body_buffers = Arc::new(OnceLock::new());
        let spans = Arc::new(OnceLock::new());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(RequestCollector(requests.clone())));
        registry.register_collector(Box::new(connections::Collector(connections)));
        registry.register_collector(Box::new(BodyBufferCollector(body_buffers.clone())));
        registry.register_collector(Box::new(SpanCollector(spans.clone())));
        registry.register_collector(Box::new(process::Collector));
        Self {
            requests,
            body_buffers,
            spans,
            registry: Arc::new(registry),
        }
    }

    /// Exports the span-export counters (when span export is on).
    pub fn watch_spans(&self, stats: Arc<SpanStats>) {
        let _ = self.spans.set(stats);
    }

    /// Exports the body-buffer limit and what is held (the first set given wins).
    pub fn watch_body_buffers(&self, buffers: &BodyBuffers) {
        let _ = self.body_buffers.set(*buffers);
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
struct RequestCollector(Arc<Shards>);

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.0.totals();
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
                        let n = totals.counts[route as usize][m][s];
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
            let (buckets, count, sum) = totals.durations[route as usize].snapshot();
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

/// Encodes the body-buffer gauges on a scrape, once they are known.
#[derive(Debug)]
struct BodyBufferCollector(Arc<OnceLock<BodyBuffers>>);

impl Collector for BodyBufferCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(buffers) = self.0.get() else {
            return Ok(());
        };
        let gauge = |v: u64| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
        single(
            &mut encoder,
            "http_body_buffer_held_bytes",
            "Room held for request bodies still arriving",
            &gauge(buffers.held()),
        )?;
        single(
            &mut encoder,
            "http_body_buffer_limit_bytes",
            "The most room request bodies still arriving may hold (from MEMORY_BUDGET)",
            &gauge(buffers.limit()),
        )
    }
}

/// Encodes the span-export counters on a scrape, when export is on.
#[derive(Debug)]
struct SpanCollector(Arc<OnceLock<Arc<SpanStats>>>);

impl Collector for SpanCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = self.0.get() else {
            return Ok(());
        };
        let e = &mut encoder;
        single(
            e,
            "otlp_spans_exported",
            "Spans the OTLP endpoint accepted",
            &ConstCounter::new(stats.exported()),
        )?;
        single(
            e,
            "otlp_spans_dropped",
            "Spans dropped because the export queue was full",
            &ConstCounter::new(stats.dropped()),
        )?;
        single(
            e,
            "otlp_spans_failed",
            "Spans in batches the OTLP endpoint did not accept (or in time)",
            &ConstCounter::new(stats.failed()),
        )
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
    use http::Method;
    use std::time::Duration;

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
}
