//! [`Endpoint`]: what the server does around every request, whatever the handler:
//! the request id, trace context, the headers every response carries, panic
//! recovery, metrics and the access log.
//!
//! A panic in a handler is caught here and answered with a 500 problem; the
//! connection and the process carry on. This needs `panic = "unwind"` (see
//! `Cargo.toml`).

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::header::{HeaderName, CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderMap, HeaderValue, Request};
use http_body::Body as HttpBody;
use tracing::Instrument as _;

use crate::base::arena::{self, Sink};
use crate::base::metrics::Metrics;
use crate::base::route::Route;
use crate::base::trace::TraceParent;
use crate::base::types::{Handler, Response};
use crate::base::{hex, random};
use crate::domain::problem::Problem;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
static NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// A handler as the server exposes it: plus everything the server adds to and
/// records about each request.
#[derive(Debug, Clone)]
pub struct Endpoint<H> {
    pub handler: H,
    pub metrics: Metrics,
    pub access_log: bool,
}

/// Longest request path written to the access log.
const MAX_LOGGED_PATH: usize = 256;

impl<H: Handler> Endpoint<H> {
    pub fn new(handler: H, metrics: Metrics, access_log: bool) -> Self {
        Self {
            handler,
            metrics,
            access_log,
        }
    }

    /// Runs the handler on `req` and finishes the response. `guard` is dropped once
    /// the response is ready (the connection uses it to track requests in flight).
    ///
    /// Takes `Arc<Self>` so the future owns what it needs and can go to hyper as
    /// is, without another async block around it: each such layer moves the whole
    /// request future once more.
    pub async fn call<B>(
        self: Arc<Self>,
        req: Request<B>,
        peer: Option<SocketAddr>,
        _guard: impl Send,
    ) -> Response
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let started = Instant::now();
        let route = Route::of(req.uri().path());
        let method = req.method().clone();
        let request_id = request_id(req.headers());
        let trace_header = req.headers().get(&TRACEPARENT).cloned();
        let trace = trace_header.as_ref().and_then(TraceParent::parse);
        // Only the access log needs these after the handler has the request.
        let logged = self.access_log.then(|| {
            (
                truncate(req.uri().path(), MAX_LOGGED_PATH).to_owned(),
                req.version(),
            )
        });

        let handled = AssertUnwindSafe(self.handler.handle(req)).catch_unwind();
        let outcome = match trace {
            // A span only for traced requests: untraced ones pay nothing for it.
            Some(t) => {
                let span = tracing::info_span!("request", trace_id = t.trace_id());
                handled.instrument(span).await
            }
            None => handled.await,
        };
        // The panic hook has logged a panic; the client learns nothing about internals.
        let mut response = outcome.unwrap_or_else(|_| Problem::internal().into_response());

        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, NO_STORE.clone());
        headers.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF.clone());
        if let Some(t) = &trace {
            headers.insert(TRACEPARENT.clone(), t.child());
        }
        let took = started.elapsed();
        self.metrics.record(route, &method, response.status(), took);
        if let Some((path, version)) = logged {
            tracing::info!(
                target: "access",
                method = %method,
                path,
                status = response.status().as_u16(),
                duration_us = took.as_micros() as u64,
                bytes = response.body().size_hint().exact().unwrap_or(0),
                request_id = request_id.to_str().unwrap_or(""),
                peer = peer.map(|p| p.to_string()),
                version = ?version,
                trace_id = trace.map(|t| t.trace_id()),
                "request"
            );
        }
        response
            .headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id);
        response
    }
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

/// The client's `X-Request-Id` when it is 1-128 visible ASCII characters, else a
/// fresh one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(v) if is_valid_request_id(v.as_bytes()) => v.clone(),
        _ => fresh_request_id(),
    }
}

fn is_valid_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// 16 hex digits: a random per-process start plus a counter, so ids are unique
/// within the process (the counter would take centuries to wrap) and unlikely to
/// repeat across replicas.
pub fn fresh_request_id() -> HeaderValue {
    static START: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(random::os_seed);
    let n = start.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed));
    let digits = hex::u64_digits(n);
    // Cut from the per-thread output buffer: no allocation per id.
    let id = arena::write(digits.len(), |out| out.put(&digits));
    HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(is_valid_request_id(b"abc-123"));
        assert!(is_valid_request_id(&[b'x'; 128]));
        assert!(!is_valid_request_id(&[b'x'; 129]));
        assert!(!is_valid_request_id(b""));
        assert!(!is_valid_request_id(b"has space"));
        assert!(!is_valid_request_id("é".as_bytes()));
        let a = fresh_request_id();
        let b = fresh_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("éé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
