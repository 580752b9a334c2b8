//! One server span per request, exported over OTLP when an endpoint is configured
//! (the pipeline itself is set up in `telemetry`).
//!
//! The request path decides sampling with the configured sampler (parent-based
//! ratio by default: a caller's `traceparent` decides, a new trace is sampled by
//! its id), and only a sampled request builds a span: its ids, start time and the
//! HTTP attributes, handed at the end to a bounded queue with `try_send`. A full
//! queue drops the span and counts it; nothing on the request path waits for the
//! exporter. With export off (no endpoint) the middleware holds no [`Spans`] and a
//! request does nothing for it.
//!
//! Built without the `otlp` feature, [`Spans`] has no values, so the code that
//! uses it compiles away.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the export pipeline did, for the `otlp_*` metrics.
#[derive(Debug, Default)]
pub struct SpanStats {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl SpanStats {
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn add_exported(&self, n: u64) {
        self.exported.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_failed(&self, n: u64) {
        self.failed.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a finished request adds to its span.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub status: u16,
    /// The matched route, or `None` for an unknown path.
    pub route: Option<&'static str>,
    pub version: http::Version,
    pub peer: Option<std::net::SocketAddr>,
    pub path: &'a str,
}

#[cfg(feature = "otlp")]
pub use otlp::{Spans, Started};

#[cfg(feature = "otlp")]
mod otlp {
    use std::borrow::Cow;
    use std::sync::Arc;
    use std::time::SystemTime;

    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
        TraceState,
    };
    use opentelemetry::{Context, InstrumentationScope, KeyValue};
    use opentelemetry_sdk::trace::{
        Sampler, SamplingDecision, ShouldSample as _, SpanData, SpanEvents, SpanLinks,
    };
    use tokio::sync::mpsc;

    use super::{Outcome, SpanStats};
    use crate::telemetry::trace::TraceParent;

    /// The request path's handle on the export pipeline; cheap to clone.
    #[derive(Debug, Clone)]
    pub struct Spans {
        queue: mpsc::Sender<SpanData>,
        sampler: Arc<Sampler>,
        stats: Arc<SpanStats>,
        scope: InstrumentationScope,
        scheme: &'static str,
    }

    /// A sampled request's span, from its start.
    #[derive(Debug)]
    pub struct Started {
        context: SpanContext,
        parent: Option<SpanId>,
        method: http::Method,
        start: SystemTime,
    }

    impl Started {
        /// The span's `traceparent`, for the response.
        pub fn traceparent(&self) -> String {
            format!(
                "00-{}-{}-{:02x}",
                self.context.trace_id(),
                self.context.span_id(),
                self.context.trace_flags().to_u8()
            )
        }

        pub fn trace_id(&self) -> String {
            self.context.trace_id().to_string()
        }
    }

    impl Spans {
        /// A handle that queues spans on `queue` and samples with `sampler`;
        /// `scheme` is `http` or `https`.
        pub fn new(
            queue: mpsc::Sender<SpanData>,
            sampler: Sampler,
            stats: Arc<SpanStats>,
            scheme: &'static str,
        ) -> Self {
            let scope = InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
                .with_version(env!("CARGO_PKG_VERSION"))
                .build();
            Self {
                queue,
                sampler: Arc::new(sampler),
                stats,
                scope,
                scheme,
            }
        }

        /// Starts the request's span if the sampler keeps it: a child of `parent`
        /// (the caller's `traceparent`) with `span_id` (the id the response's
        /// `traceparent` carries), or the root of a new trace.
        pub fn start(
            &self,
            parent: Option<&TraceParent<'_>>,
            span_id: u64,
            method: &http::Method,
        ) -> Option<Started> {
            let remote = parent.and_then(|p| {
                let trace_id = TraceId::from_hex(p.trace_id()).ok()?;
                let parent_id = SpanId::from_hex(p.parent_id()).ok()?;
                let flags = TraceFlags::new(u8::from_str_radix(p.flags(), 16).ok()?);
                Some(SpanContext::new(
                    trace_id,
                    parent_id,
                    flags,
                    true,
                    TraceState::NONE,
                ))
            });
            let trace_id = match &remote {
                Some(context) => context.trace_id(),
                None => TraceId::from_bytes(crate::ids::random::trace_id()),
            };
            let parent_cx = remote
                .as_ref()
                .map(|sc| Context::new().with_remote_span_context(sc.clone()));
            let decision = self.sampler.should_sample(
                parent_cx.as_ref(),
                trace_id,
                "",
                &SpanKind::Server,
                &[],
                &[],
            );
            if decision.decision != SamplingDecision::RecordAndSample {
                return None;
            }
            let context = SpanContext::new(
                trace_id,
                SpanId::from_bytes(span_id.to_be_bytes()),
                TraceFlags::SAMPLED,
                false,
                decision.trace_state,
            );
            Some(Started {
                context,
                parent: remote.map(|r| r.span_id()),
                method: method.clone(),
                start: SystemTime::now(),
            })
        }

        /// Ends the span and queues it for export; a full queue drops it.
        pub fn end(&self, started: Started, outcome: Outcome<'_>) {
            let method = started.method.as_str().to_owned();
            let name = match outcome.route {
                Some(route) => format!("{method} {route}"),
                None => method.clone(),
            };
            let mut attributes = vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.response.status_code", i64::from(outcome.status)),
                KeyValue::new("url.path", outcome.path.to_owned()),
                KeyValue::new("url.scheme", self.scheme),
                KeyValue::new("network.protocol.name", "http"),
                KeyValue::new(
                    "network.protocol.version",
                    protocol_version(outcome.version),
                ),
            ];
            if let Some(route) = outcome.route {
                attributes.push(KeyValue::new("http.route", route));
            }
            if let Some(peer) = outcome.peer {
                attributes.push(KeyValue::new("client.address", peer.ip().to_string()));
                attributes.push(KeyValue::new("client.port", i64::from(peer.port())));
            }
            // Server spans: only 5xx is an error (OpenTelemetry HTTP conventions).
            let status = if outcome.status >= 500 {
                Status::error("")
            } else {
                Status::Unset
            };
            let span = SpanData {
                span_context: started.context,
                parent_span_id: started.parent.unwrap_or(SpanId::INVALID),
                parent_span_is_remote: started.parent.is_some(),
                span_kind: SpanKind::Server,
                name: Cow::Owned(name),
                start_time: started.start,
                end_time: SystemTime::now(),
                attributes,
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status,
                instrumentation_scope: self.scope.clone(),
            };
            if self.queue.try_send(span).is_err() {
                self.stats
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    fn protocol_version(v: http::Version) -> &'static str {
        match v {
            http::Version::HTTP_09 => "0.9",
            http::Version::HTTP_10 => "1.0",
            http::Version::HTTP_2 => "2",
            http::Version::HTTP_3 => "3",
            _ => "1.1",
        }
    }
}

/// Without the `otlp` feature there are no spans: the type has no values.
#[cfg(not(feature = "otlp"))]
#[derive(Debug, Clone)]
pub enum Spans {}

/// Without the `otlp` feature no span is ever started.
#[cfg(not(feature = "otlp"))]
#[derive(Debug)]
pub enum Started {}

#[cfg(not(feature = "otlp"))]
impl Spans {
    pub fn start(
        &self,
        _parent: Option<&crate::telemetry::trace::TraceParent<'_>>,
        _span_id: u64,
        _method: &http::Method,
    ) -> Option<Started> {
        match *self {}
    }

    pub fn end(&self, started: Started, _outcome: Outcome<'_>) {
        match started {}
    }
}

#[cfg(not(feature = "otlp"))]
impl Started {
    pub fn traceparent(&self) -> String {
        match *self {}
    }

    pub fn trace_id(&self) -> String {
        match *self {}
    }
}
