//! The span each request hands to the export queue, in process: its name,
//! attributes, ids and status, for matched routes, unknown paths, errors and
//! requests with and without a caller's `traceparent`. (The OTLP stage of
//! `scripts/test` checks the same spans after protobuf encoding, through a real
//! receiver; these run with `cargo test` and guard the rules mutation by mutation.)
#![cfg(feature = "otlp")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use greeting_service::config::Mode;
use greeting_service::middleware::Middleware;
use greeting_service::routes::Routes;
use greeting_service::server;
use greeting_service::telemetry::spans::{SpanStats, Spans};
use http_body_util::Full;
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{Sampler, SpanData};
use tokio::sync::mpsc;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

struct Traced {
    middleware: Arc<Middleware<Routes>>,
    queue: mpsc::Receiver<SpanData>,
    stats: Arc<SpanStats>,
}

fn traced(sampler: Sampler, capacity: usize) -> Traced {
    let (tx, rx) = mpsc::channel(capacity);
    let stats = Arc::new(SpanStats::default());
    let spans = Spans::new(tx, sampler, stats.clone(), "http");
    Traced {
        middleware: Arc::new(common::stack(Some(spans)).middleware),
        queue: rx,
        stats,
    }
}

/// Sends one request through the middleware; returns the status and the
/// `traceparent` the response carries.
fn call(
    t: &Traced,
    method: &str,
    path: &str,
    body: &'static str,
    traceparent: Option<&str>,
) -> (u16, Option<String>) {
    let runtime = server::runtime(Mode::PerCore, 1).unwrap();
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let req = req
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let peer: SocketAddr = "192.0.2.7:40123".parse().unwrap();
    let response = runtime
        .block_on(t.middleware.call(req, Some(peer), ()))
        .unwrap();
    let tp = response
        .headers()
        .get("traceparent")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), tp)
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn string(span: &SpanData, key: &str) -> Option<String> {
    attribute(span, key).map(|v| v.as_str().into_owned())
}

fn int(span: &SpanData, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(Value::I64(n)) => Some(*n),
        other => panic!("{key}: {other:?}"),
    }
}

/// The span id the response's `traceparent` names (`00-trace-span-flags`).
fn span_id_in(traceparent: &str) -> &str {
    traceparent.split('-').nth(2).unwrap()
}

#[test]
fn a_greeting_under_a_callers_trace() {
    let mut t = traced(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)), 8);
    let incoming = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let (status, answered) = call(&t, "POST", "/greet", r#"{"name":"Ada"}"#, Some(&incoming));
    assert_eq!(status, 200);
    let answered = answered.expect("a traceparent in the response");
    let span = t.queue.try_recv().expect("one span queued");
    assert!(t.queue.try_recv().is_err(), "exactly one span per request");

    assert_eq!(span.name, "POST /greet");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.span_context.trace_id().to_string(), CALLER_TRACE);
    assert_eq!(span.parent_span_id.to_string(), CALLER_SPAN);
    assert!(span.parent_span_is_remote);
    assert!(span.span_context.is_sampled());
    // The response and the span agree on our hop's ids.
    assert!(answered.starts_with(&format!("00-{CALLER_TRACE}-")));
    assert_eq!(
        span_id_in(&answered),
        span.span_context.span_id().to_string()
    );
    assert!(span.start_time <= span.end_time);
    assert_eq!(span.status, Status::Unset);

    assert_eq!(
        string(&span, "http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(int(&span, "http.response.status_code"), Some(200));
    assert_eq!(string(&span, "http.route").as_deref(), Some("/greet"));
    assert_eq!(string(&span, "url.path").as_deref(), Some("/greet"));
    assert_eq!(string(&span, "url.scheme").as_deref(), Some("http"));
    assert_eq!(
        string(&span, "network.protocol.name").as_deref(),
        Some("http")
    );
    assert_eq!(
        string(&span, "network.protocol.version").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        string(&span, "client.address").as_deref(),
        Some("192.0.2.7")
    );
    assert_eq!(int(&span, "client.port"), Some(40123));
    assert_eq!(t.stats.dropped(), 0);
}

#[test]
fn an_unknown_path_has_no_route() {
    let mut t = traced(Sampler::AlwaysOn, 8);
    let (status, answered) = call(&t, "GET", "/nowhere", "", None);
    assert_eq!(status, 404);
    let span = t.queue.try_recv().expect("one span queued");
    // Semantic conventions: no `http.route` (and a name without one) when
    // nothing matched, so unknown paths do not each become a span name.
    assert_eq!(span.name, "GET");
    assert_eq!(attribute(&span, "http.route"), None);
    assert_eq!(string(&span, "url.path").as_deref(), Some("/nowhere"));
    assert_eq!(int(&span, "http.response.status_code"), Some(404));
    // A new trace: no parent, and the response names the new span.
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert!(!span.parent_span_is_remote);
    let answered = answered.expect("a sampled new trace is named in the response");
    assert_eq!(
        answered,
        format!(
            "00-{}-{}-01",
            span.span_context.trace_id(),
            span.span_context.span_id()
        )
    );
    // A client error is not a server span error.
    assert_eq!(span.status, Status::Unset);
}

#[test]
fn client_errors_on_a_route_keep_the_route() {
    let mut t = traced(Sampler::AlwaysOn, 8);
    let (status, _) = call(&t, "POST", "/greet", r#"{"name":""}"#, None);
    assert_eq!(status, 400);
    let span = t.queue.try_recv().expect("one span queued");
    assert_eq!(span.name, "POST /greet");
    assert_eq!(string(&span, "http.route").as_deref(), Some("/greet"));
    assert_eq!(int(&span, "http.response.status_code"), Some(400));
    assert_eq!(span.status, Status::Unset);
}

#[test]
fn unsampled_requests_queue_nothing_and_keep_the_callers_flags() {
    let mut t = traced(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), 8);
    let incoming = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00");
    let (status, answered) = call(&t, "GET", "/healthz", "", Some(&incoming));
    assert_eq!(status, 200);
    assert!(t.queue.try_recv().is_err(), "the caller did not sample");
    let answered = answered.expect("propagation goes on without export");
    assert!(answered.starts_with(&format!("00-{CALLER_TRACE}-")));
    assert!(answered.ends_with("-00"));
    assert_ne!(span_id_in(&answered), CALLER_SPAN);
}

#[test]
fn a_full_queue_drops_and_counts_without_waiting() {
    let mut t = traced(Sampler::AlwaysOn, 1);
    for _ in 0..3 {
        let (status, _) = call(&t, "POST", "/greet", r#"{"name":"Ada"}"#, None);
        assert_eq!(status, 200);
    }
    assert!(t.queue.try_recv().is_ok());
    assert!(t.queue.try_recv().is_err());
    assert_eq!(t.stats.dropped(), 2);
}
