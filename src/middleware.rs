//! [`Middleware`]: what the server does around every request, whatever the handler:
//! the request id, trace context, the headers every response carries, panic
//! recovery, metrics and the access log.
//!
//! A panic in a handler (in its routing or in its future) is caught here and
//! answered with a 500 problem; the connection and the process carry on. This
//! needs `panic = "unwind"` (see `Cargo.toml`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{
    HeaderName, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER as RETRY_AFTER_NAME,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Method, Request, Version};
use http_body::Body as HttpBody;

use crate::domain::problem::Problem;
use crate::handler::{Answer, Body, Extra, Handler, Kind, Response, Route};
use crate::ids::{self, random};
use crate::telemetry::metrics::{self, MethodLabel, Metrics};
use crate::telemetry::spans::{self, Outcome, Spans};
use crate::telemetry::trace::TraceParent;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
static NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// A handler as the server exposes it: plus everything the server adds to and
/// records about each request.
#[derive(Debug, Clone)]
pub struct Middleware<H> {
    pub handler: H,
    pub metrics: Metrics,
    pub access_log: bool,
    /// Span export, when an OTLP endpoint is configured.
    pub spans: Option<Spans>,
}

/// Longest request path written to the access log.
const MAX_LOGGED_PATH: usize = 256;

impl<H: Handler> Middleware<H> {
    pub fn new(handler: H, metrics: Metrics, access_log: bool) -> Self {
        Self {
            handler,
            metrics,
            access_log,
            spans: None,
        }
    }

    /// The same middleware around `wrap(handler)`.
    pub fn map_handler<H2: Handler>(self, wrap: impl FnOnce(H) -> H2) -> Middleware<H2> {
        Middleware {
            handler: wrap(self.handler),
            metrics: self.metrics,
            access_log: self.access_log,
            spans: self.spans,
        }
    }

    /// Exports a span for every sampled request through `spans`.
    pub fn with_spans(mut self, spans: Option<Spans>) -> Self {
        self.spans = spans;
        self
    }

    /// Starts handling `req`: everything that needs only the request head happens
    /// here (request id, trace context, route); the returned [`Exchange`] runs the
    /// handler's future and finishes the response. `guard` is dropped once the
    /// response is ready (the connection tracks requests in flight with it).
    pub fn call<B, G>(
        self: &Arc<Self>,
        req: Request<B>,
        peer: Option<SocketAddr>,
        guard: G,
    ) -> Exchange<impl Future<Output = Answer> + Send + Unpin + 'static + use<H, B, G>, H, G>
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let started = Instant::now();
        let route = Route::of(req.uri().path());
        let method = MethodLabel::of(req.method());
        let (given_id, traceparent) = scan(req.headers());
        let request_id = match given_id {
            Some(id) if ids::is_valid_request_id(id.as_bytes()) => id.clone(),
            _ => ids::fresh_request_id(),
        };
        // Untraced requests pay nothing for tracing when export is off.
        let parent = traceparent.and_then(TraceParent::parse);
        let traced = match (&self.spans, parent) {
            (None, None) => None,
            (None, Some(parent)) => Some(Traced::new(
                parent.child(),
                parent.trace_id().to_owned(),
                None,
            )),
            (Some(spans), parent) => {
                let span_id = random::next_u64();
                let exported = spans
                    .start(parent.as_ref(), span_id, req.method())
                    .map(|s| Exported {
                        started: s,
                        path: truncate(req.uri().path(), MAX_LOGGED_PATH).to_owned(),
                        version: req.version(),
                        peer,
                    });
                match (parent, exported) {
                    (Some(parent), exported) => Some(Traced::new(
                        parent.child_with(span_id),
                        parent.trace_id().to_owned(),
                        exported,
                    )),
                    // A new trace, sampled: the response names it.
                    (None, Some(exported)) => Some(Traced::new(
                        HeaderValue::from_str(&exported.started.traceparent())
                            .unwrap_or_else(|_| HeaderValue::from_static("00")),
                        exported.started.trace_id(),
                        Some(exported),
                    )),
                    (None, None) => None,
                }
            }
        };
        // Only the access log needs these after the handler has the request.
        let logged = self.access_log.then(|| {
            Box::new(Logged {
                method: req.method().clone(),
                path: truncate(req.uri().path(), MAX_LOGGED_PATH).to_owned(),
                version: req.version(),
                peer,
            })
        });
        let handling = {
            let _entered = traced.as_ref().map(|t| t.span.enter());
            // Routing runs here, so a panic in it is caught like one in the future.
            std::panic::catch_unwind(AssertUnwindSafe(|| self.handler.handle(route, req))).ok()
        };
        Exchange {
            handling,
            finish: Some(Finish {
                middleware: self.clone(),
                started,
                route,
                method,
                request_id,
                traced,
                logged,
                guard,
            }),
        }
    }
}

/// One request on its way through the server: the handler's future, then the
/// headers, metrics and access log every response gets. A plain struct (not an
/// `async` block) whose size is its fields: hyper moves it into place once per
/// request.
pub struct Exchange<F, H, G> {
    /// `None` once it has answered, or if it panicked before it could start.
    handling: Option<F>,
    finish: Option<Finish<H, G>>,
}

/// What the middleware needs after the handler has answered.
struct Finish<H, G> {
    middleware: Arc<Middleware<H>>,
    started: Instant,
    route: Route,
    method: MethodLabel,
    request_id: HeaderValue,
    traced: Option<Box<Traced>>,
    logged: Option<Box<Logged>>,
    guard: G,
}

/// A request that came with a valid `traceparent`, or whose new trace is sampled
/// for export.
struct Traced {
    /// Our hop's `traceparent`, for the response.
    child: HeaderValue,
    trace_id: String,
    /// The log span: every line written while handling the request carries the
    /// trace id.
    span: tracing::Span,
    exported: Option<Exported>,
}

impl Traced {
    fn new(child: HeaderValue, trace_id: String, exported: Option<Exported>) -> Box<Self> {
        let span = tracing::info_span!(
            "request",
            trace_id = trace_id.as_str(),
            span_id = span_id_of(&child)
        );
        Box::new(Self {
            child,
            trace_id,
            span,
            exported,
        })
    }
}

/// A request whose span is exported: what the span needs at its end.
struct Exported {
    started: spans::Started,
    path: String,
    version: Version,
    peer: Option<SocketAddr>,
}

/// What the access log line needs from the request.
struct Logged {
    method: Method,
    path: String,
    version: Version,
    peer: Option<SocketAddr>,
}

impl<F, H, G> Future for Exchange<F, H, G>
where
    F: Future<Output = Answer> + Unpin,
    G: Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let outcome = match &mut this.handling {
            Some(handling) => {
                let span = this.finish.as_ref().and_then(|f| f.traced.as_ref());
                let _entered = span.map(|t| t.span.enter());
                match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(handling).poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(response)) => Some(response),
                    Err(_) => None,
                }
            }
            None => None,
        };
        this.handling = None;
        // The panic hook has logged a panic; the client learns nothing about internals.
        let answer = outcome.unwrap_or_else(|| Problem::internal().into_answer());
        Poll::Ready(Ok(match this.finish.take() {
            Some(finish) => finish.finish(answer),
            // Polled again after it answered: the answer without the bookkeeping.
            None => respond(answer, ids::fresh_request_id(), None),
        }))
    }
}

impl<H, G> Finish<H, G> {
    /// Records the metrics, the span and the access log line, and writes the
    /// response.
    fn finish(mut self, answer: Answer) -> Response {
        let took = self.started.elapsed();
        let middleware = &self.middleware;
        middleware
            .metrics
            .record(self.route, self.method, answer.status, took);
        if let (Some(spans), Some(exported)) = (
            &middleware.spans,
            self.traced.as_mut().and_then(|t| t.exported.take()),
        ) {
            let outcome = Outcome {
                status: answer.status.as_u16(),
                route: (self.route != Route::Unmatched).then(|| self.route.as_str()),
                version: exported.version,
                peer: exported.peer,
                path: &exported.path,
            };
            spans.end(exported.started, outcome);
        }
        if let Some(logged) = self.logged {
            tracing::info!(
                target: "access",
                method = %logged.method,
                path = logged.path,
                status = answer.status.as_u16(),
                duration_us = took.as_micros() as u64,
                bytes = answer.body.len(),
                request_id = self.request_id.to_str().unwrap_or(""),
                peer = logged.peer.map(|p| p.to_string()),
                version = ?logged.version,
                trace_id = self.traced.as_ref().map(|t| t.trace_id.as_str()),
                span_id = self.traced.as_ref().map(|t| span_id_of(&t.child)),
                "request"
            );
        }
        drop(self.guard);
        respond(answer, self.request_id, self.traced.map(|t| t.child))
    }
}

static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
static PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");
static METRICS_TEXT: HeaderValue = HeaderValue::from_static(metrics::CONTENT_TYPE);
static ALLOW_POST: HeaderValue = HeaderValue::from_static("POST");
static ALLOW_GET: HeaderValue = HeaderValue::from_static("GET, HEAD");
static CLOSE: HeaderValue = HeaderValue::from_static("close");
static RETRY_AFTER: HeaderValue = HeaderValue::from_static("1");

/// The HTTP response for `answer`: the one place where response headers are
/// written. Every response carries `X-Request-Id`, `Content-Type`,
/// `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`, and
/// `traceparent` when the request is traced; hyper adds `Content-Length` and
/// `Date`.
///
/// The headers every response carries come from a template per body kind, cloned
/// (two allocations and four bucket copies, no hashing) rather than inserted one
/// by one (each insert hashes the name and probes the table); the request id,
/// the template's first entry, is then set in place. Measured with callgrind:
/// see the README's Performance section (instructions per request).
fn respond(answer: Answer, request_id: HeaderValue, traceparent: Option<HeaderValue>) -> Response {
    let plain = traceparent.is_none() && answer.extra == Extra::None;
    // A clone's entries have no spare room, so an answer with more headers builds
    // its map afresh rather than clone and then grow it (one allocation more).
    let mut headers = match plain {
        true => Templates::get().for_kind(answer.kind).clone(),
        false => Templates::build(Templates::content_type(answer.kind)),
    };
    if let Some(slot) = headers.values_mut().next() {
        *slot = unique(request_id);
    }
    if let Some(traceparent) = traceparent {
        headers.insert(TRACEPARENT.clone(), unique(traceparent));
    }
    match answer.extra {
        Extra::None => {}
        Extra::AllowPost => drop(headers.insert(ALLOW, ALLOW_POST.clone())),
        Extra::AllowGet => drop(headers.insert(ALLOW, ALLOW_GET.clone())),
        Extra::Close => drop(headers.insert(CONNECTION, CLOSE.clone())),
        Extra::RetryLater => {
            headers.insert(RETRY_AFTER_NAME, RETRY_AFTER.clone());
            headers.insert(CONNECTION, CLOSE.clone());
        }
    }
    let mut response = Response::new(Body::new(answer.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = headers;
    response
}

/// The headers every response carries, one map per body kind, built once.
struct Templates {
    json: HeaderMap,
    problem: HeaderMap,
    metrics: HeaderMap,
}

impl Templates {
    fn get() -> &'static Self {
        static TEMPLATES: OnceLock<Templates> = OnceLock::new();
        TEMPLATES.get_or_init(|| Self {
            json: Self::build(Self::content_type(Kind::Json)),
            problem: Self::build(Self::content_type(Kind::Problem)),
            metrics: Self::build(Self::content_type(Kind::Metrics)),
        })
    }

    /// The request id first (a placeholder, replaced per response), with room
    /// for the headers a response may add.
    fn build(content_type: &HeaderValue) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(6);
        headers.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("-"));
        headers.insert(CONTENT_TYPE, content_type.clone());
        headers.insert(CACHE_CONTROL, NO_STORE.clone());
        headers.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF.clone());
        headers
    }

    fn content_type(kind: Kind) -> &'static HeaderValue {
        match kind {
            Kind::Json => &APPLICATION_JSON,
            Kind::Problem => &PROBLEM_JSON,
            Kind::Metrics => &METRICS_TEXT,
        }
    }

    fn for_kind(&self, kind: Kind) -> &HeaderMap {
        match kind {
            Kind::Json => &self.json,
            Kind::Problem => &self.problem,
            Kind::Metrics => &self.metrics,
        }
    }
}

/// Marks a header value that is different on every response (request id, our
/// `traceparent`) so that HTTP/2's HPACK encoder sends it as a never-indexed
/// literal (RFC 7541 section 6.2.3) instead of adding it to the connection's
/// dynamic table. Indexed, each one would evict a useful entry and lengthen the
/// chain of same-name entries the h2 crate compares every later value against
/// (about 60 comparisons per response in a 4 KiB table); nothing could ever refer
/// to it again. HTTP/1 ignores the mark.
fn unique(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// Our hop's span id: the third field of the `traceparent` we answer with
/// (`00-<32 hex trace id>-<16 hex span id>-<flags>`), the span id an exported span
/// carries too.
fn span_id_of(child: &HeaderValue) -> &str {
    child
        .to_str()
        .ok()
        .and_then(|tp| tp.get(36..52))
        .unwrap_or("")
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The request's first `X-Request-Id` and `traceparent`, in one pass over its few
/// headers: two lookups by name would hash both names (neither is a standard
/// header), which costs more than comparing them with each header's.
fn scan(headers: &HeaderMap) -> (Option<&HeaderValue>, Option<&HeaderValue>) {
    let (mut id, mut trace) = (None, None);
    for (name, value) in headers {
        if *name == X_REQUEST_ID {
            id = id.or(Some(value));
        } else if *name == TRACEPARENT {
            trace = trace.or(Some(value));
        }
    }
    (id, trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_response_gets_the_common_headers_and_its_own_request_id() {
        for kind in [Kind::Json, Kind::Problem, Kind::Metrics] {
            let id = HeaderValue::from_static("abc");
            let answer = Answer::new(http::StatusCode::OK, kind, Bytes::new());
            let response = respond(answer, id, None);
            let h = response.headers();
            assert_eq!(h.len(), 4, "{h:?}");
            assert_eq!(h[&X_REQUEST_ID], "abc");
            assert!(h[&X_REQUEST_ID].is_sensitive());
            assert_eq!(h[CACHE_CONTROL], "no-store");
            assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert!(h.contains_key(CONTENT_TYPE));
        }
        let answer = Answer::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            Kind::Problem,
            Bytes::new(),
        )
        .with(Extra::RetryLater);
        let tp =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let response = respond(answer, HeaderValue::from_static("x"), Some(tp));
        let h = response.headers();
        assert_eq!(h[&X_REQUEST_ID], "x");
        assert_eq!(h[CONNECTION], "close");
        assert_eq!(h[RETRY_AFTER_NAME], "1");
        assert!(h[&TRACEPARENT].is_sensitive());
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("éé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
