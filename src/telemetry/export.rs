//! Span export over OTLP (HTTP/protobuf): the pipeline behind
//! [`crate::telemetry::spans::Spans`].
//!
//! Spans arrive on a bounded queue (2,048; a full queue drops and counts) and a
//! thread of its own batches them (512, or whatever arrived within a second) and
//! sends each batch with opentelemetry-otlp's exporter over hyper, so a request
//! never waits for the collector. A failed batch is counted, and logged at most
//! once per [`ERROR_LOG_INTERVAL`] (with how many failed meanwhile). At shutdown
//! what is queued is sent within the time the drain left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{Sampler, SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, SamplerKind};
use crate::telemetry::spans::{SpanStats, Spans};

/// Spans waiting for export at most; more are dropped (and counted).
pub const QUEUE: usize = 2048;
/// Spans per batch at most.
pub const BATCH: usize = 512;
/// How long a span waits for its batch to fill at most.
pub const BATCH_WAIT: Duration = Duration::from_secs(1);
/// One batch may take this long to send.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Export errors are logged at most this often.
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// A running export pipeline.
pub struct Export {
    /// The request path's handle.
    pub spans: Spans,
    pub stats: Arc<SpanStats>,
    stop: oneshot::Sender<Instant>,
    thread: std::thread::JoinHandle<()>,
}

/// The sampler `config` names.
fn sampler(config: &Config) -> Sampler {
    let ratio = config.otel.otel_traces_sampler_arg;
    match config.otel.otel_traces_sampler {
        SamplerKind::AlwaysOn => Sampler::AlwaysOn,
        SamplerKind::AlwaysOff => Sampler::AlwaysOff,
        SamplerKind::Traceidratio => Sampler::TraceIdRatioBased(ratio),
        SamplerKind::ParentbasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        SamplerKind::ParentbasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        SamplerKind::ParentbasedTraceidratio => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
    }
}

/// The resource every span carries: `service.name`, `service.version` and the
/// configured attributes.
fn resource(config: &Config) -> Resource {
    let extra = config
        .otel
        .otel_resource_attributes
        .iter()
        .flat_map(|a| a.0.iter())
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()));
    Resource::builder_empty()
        .with_attributes(extra)
        .with_service_name(config.otel.otel_service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Starts the pipeline if an endpoint is configured (`Ok(None)` if not).
pub fn start(config: &Config, scheme: &'static str) -> Result<Option<Export>, String> {
    let Some(url) = config.otlp_traces_url() else {
        return Ok(None);
    };
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter for {url}: {e}"))?;
    exporter.set_resource(&resource(config));
    let (queue, spans_rx) = mpsc::channel(QUEUE);
    let (stop, stop_rx) = oneshot::channel();
    let stats = Arc::new(SpanStats::default());
    let thread_stats = stats.clone();
    let thread = std::thread::Builder::new()
        .name("otlp-export".to_owned())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(run(exporter, spans_rx, stop_rx, thread_stats)),
                Err(e) => tracing::error!(error = %e, "cannot start the OTLP export thread"),
            }
        })
        .map_err(|e| format!("cannot start the OTLP export thread: {e}"))?;
    tracing::info!(
        endpoint = url,
        sampler = ?config.otel.otel_traces_sampler,
        ratio = config.otel.otel_traces_sampler_arg,
        "exporting spans over OTLP"
    );
    Ok(Some(Export {
        spans: Spans::new(queue, sampler(config), stats.clone(), scheme),
        stats,
        stop,
        thread,
    }))
}

impl Export {
    /// Sends what is queued, within `within`, and stops the pipeline.
    pub fn shutdown(self, within: Duration) {
        let deadline = Instant::now() + within;
        let _ = self.stop.send(deadline);
        // The thread ends by the deadline (each export is cut at it).
        let _ = self.thread.join();
    }
}

/// The export thread: batches spans and sends them until asked to stop.
async fn run(
    exporter: opentelemetry_otlp::SpanExporter,
    mut spans: mpsc::Receiver<SpanData>,
    mut stop: oneshot::Receiver<Instant>,
    stats: Arc<SpanStats>,
) {
    let mut sender = Sender {
        exporter,
        stats,
        last_logged: None,
        unlogged: 0,
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut oldest = Instant::now();
    loop {
        let wait = tokio::time::sleep_until((oldest + BATCH_WAIT).into());
        tokio::select! {
            deadline = &mut stop => {
                let deadline = deadline.unwrap_or_else(|_| Instant::now());
                // Whatever is queued now, then nothing more.
                spans.close();
                while let Ok(span) = spans.try_recv() {
                    batch.push(span);
                    if batch.len() == BATCH {
                        sender.send(std::mem::take(&mut batch), deadline).await;
                    }
                }
                sender.send(batch, deadline).await;
                return;
            }
            span = spans.recv() => match span {
                Some(span) => {
                    if batch.is_empty() {
                        oldest = Instant::now();
                    }
                    batch.push(span);
                    if batch.len() < BATCH {
                        continue;
                    }
                }
                None => return,
            },
            () = wait, if !batch.is_empty() => {}
        }
        let deadline = Instant::now() + EXPORT_TIMEOUT;
        sender
            .send(
                std::mem::replace(&mut batch, Vec::with_capacity(BATCH)),
                deadline,
            )
            .await;
    }
}

/// Sends batches and keeps the error log quiet.
struct Sender {
    exporter: opentelemetry_otlp::SpanExporter,
    stats: Arc<SpanStats>,
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Sender {
    async fn send(&mut self, batch: Vec<SpanData>, deadline: Instant) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let outcome = tokio::time::timeout_at(deadline.into(), self.exporter.export(batch)).await;
        let error = match outcome {
            Ok(Ok(())) => {
                self.stats.add_exported(n);
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        self.stats.add_failed(n);
        self.unlogged += 1;
        let quiet = self
            .last_logged
            .is_some_and(|at| at.elapsed() < ERROR_LOG_INTERVAL);
        if !quiet {
            tracing::warn!(
                error,
                failed_batches = self.unlogged,
                "OTLP export failed; spans dropped (logged at most every 30 s)"
            );
            self.last_logged = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}
