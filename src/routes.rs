//! Routing on method and path, and the handlers behind each route: the greeting,
//! the probes and the metrics exposition.
//!
//! [`Routes`] is the service's [`Handler`]. Routing, header checks and every answer
//! that needs no body happen before the returned future is first polled; the future
//! itself only holds the body while it is read.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;

use crate::base::metrics::{self, Metrics};
use crate::base::route::Route;
use crate::base::shutdown::Readiness;
use crate::base::types::{self, Handler, Response};
use crate::config::defaults;
use crate::domain::greet;
use crate::domain::problem::Problem;

static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
static METRICS_TYPE: HeaderValue = HeaderValue::from_static(metrics::CONTENT_TYPE);
static ALLOW_POST: HeaderValue = HeaderValue::from_static("POST");
static ALLOW_GET: HeaderValue = HeaderValue::from_static("GET, HEAD");
static CLOSE: HeaderValue = HeaderValue::from_static("close");

/// Limits applied to `POST /greet`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_name_chars: usize,
    /// The whole body must arrive within this after the head (stalled-body guard).
    pub body_timeout: Duration,
}

impl Default for Limits {
    /// The documented defaults (`MAX_BODY_BYTES`, `MAX_NAME_CHARS`, `HEADER_TIMEOUT`).
    fn default() -> Self {
        Self {
            max_body_bytes: defaults::MAX_BODY_BYTES,
            max_name_chars: defaults::MAX_NAME_CHARS,
            body_timeout: defaults::HEADER_TIMEOUT,
        }
    }
}

/// The greeting service's routes.
#[derive(Debug, Clone)]
pub struct Routes {
    limits: Limits,
    readiness: Readiness,
    metrics: Metrics,
}

/// What routing decided before any body byte was read.
enum Routed<B> {
    /// The answer is known from the head alone.
    Answered(Response),
    /// A `POST /greet` that passed the header checks: its body is to be read.
    Greet(B),
}

impl Routes {
    pub fn new(limits: Limits, readiness: Readiness, metrics: Metrics) -> Self {
        Self {
            limits,
            readiness,
            metrics,
        }
    }

    /// Answers everything that needs no body; hands back the body of a `POST
    /// /greet` that passed the header checks.
    fn route<B>(&self, req: Request<B>) -> Routed<B>
    where
        B: HttpBody<Data = Bytes>,
    {
        let get = matches!(*req.method(), Method::GET | Method::HEAD);
        Routed::Answered(match (Route::of(req.uri().path()), get) {
            (Route::Greet, _) if req.method() == Method::POST => {
                if !content_type_is_json(req.headers().get(header::CONTENT_TYPE)) {
                    return Routed::Answered(Problem::unsupported_media_type().into_response());
                }
                let body = req.into_body();
                let limit = self.limits.max_body_bytes;
                // A declared length over the limit is refused before a byte is read.
                if body.size_hint().lower() > limit as u64 {
                    return Routed::Answered(problem_closing_unread_body(
                        Problem::payload_too_large(limit),
                    ));
                }
                return Routed::Greet(body);
            }
            (Route::Greet, _) => with_allow(Problem::post_only(), &ALLOW_POST),
            (Route::Healthz, true) => json(StatusCode::OK, br#"{"status":"ok"}"#),
            (Route::Readyz, true) if self.readiness.is_ready() => {
                json(StatusCode::OK, br#"{"status":"ready"}"#)
            }
            (Route::Readyz, true) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                br#"{"status":"shutting down"}"#,
            ),
            (Route::Metrics, true) => types::response(
                StatusCode::OK,
                &METRICS_TYPE,
                Bytes::from(self.metrics.render()),
            ),
            (Route::Healthz | Route::Readyz | Route::Metrics, false) => {
                with_allow(Problem::get_only(), &ALLOW_GET)
            }
            (Route::Unmatched, _) => Problem::not_found().into_response(),
        })
    }

    /// Reads, parses, validates and answers a `POST /greet` body.
    async fn greet<B>(&self, body: B) -> Result<Response, Problem>
    where
        B: HttpBody<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let limit = self.limits.max_body_bytes;
        let mut reading = std::pin::pin!(read_body(body, limit));
        // Usually the whole body came with the head: then no timer is armed at all.
        let first_poll = std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await;
        let collected = match first_poll {
            Poll::Ready(collected) => collected?,
            // Boxed: the timer only takes space in requests that need it.
            Poll::Pending => Box::pin(tokio::time::timeout(self.limits.body_timeout, reading))
                .await
                .map_err(|_| Problem::body_timeout())??,
        };
        let rendered = greet::greet(collected.as_slice(), self.limits.max_name_chars)?;
        Ok(types::response(StatusCode::OK, &APPLICATION_JSON, rendered))
    }
}

impl Handler for Routes {
    fn handle<B>(&self, req: Request<B>) -> impl Future<Output = Response> + Send
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let routed = self.route(req);
        async move {
            match routed {
                Routed::Answered(response) => response,
                Routed::Greet(body) => self
                    .greet(body)
                    .await
                    .unwrap_or_else(problem_closing_unread_body),
            }
        }
    }
}

/// An error response; when the body was refused before it was read in full, the
/// connection is closed instead of reading (and discarding) the rest. hyper drops
/// this header on HTTP/2, where the stream is reset instead.
fn problem_closing_unread_body(problem: Problem) -> Response {
    let unread_body = matches!(
        problem.status(),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    );
    let mut response = problem.into_response();
    if unread_body {
        response
            .headers_mut()
            .insert(header::CONNECTION, CLOSE.clone());
    }
    response
}

/// `application/json` (any parameters) or `application/*+json`, case-insensitive;
/// an absent header is accepted too.
pub fn content_type_is_json(value: Option<&HeaderValue>) -> bool {
    let Some(value) = value else { return true };
    if value.as_bytes().eq_ignore_ascii_case(b"application/json") {
        return true; // the common case, without parsing
    }
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    if !kind.eq_ignore_ascii_case("application") {
        return false;
    }
    subtype.eq_ignore_ascii_case("json")
        || (subtype.len() > 5
            && subtype.is_char_boundary(subtype.len() - 5)
            && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

fn json(status: StatusCode, body: &'static [u8]) -> Response {
    types::response(status, &APPLICATION_JSON, Bytes::from_static(body))
}

fn with_allow(problem: Problem, allow: &HeaderValue) -> Response {
    let mut response = problem.into_response();
    response.headers_mut().insert(header::ALLOW, allow.clone());
    response
}

/// A body read in full: usually one chunk, kept as is; several are joined.
enum Collected {
    One(Bytes),
    Many(Vec<u8>),
}

impl Collected {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::One(b) => b,
            Self::Many(v) => v,
        }
    }
}

/// Reads the body, refusing it as soon as it passes `limit`: never buffers more.
async fn read_body<B>(mut body: B, limit: usize) -> Result<Collected, Problem>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut collected = Collected::One(Bytes::new());
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            tracing::debug!(error = %e, "request body read failed");
            Problem::bad_body()
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing we need
        };
        let total = collected.as_slice().len() + data.len();
        if total > limit {
            return Err(Problem::payload_too_large(limit));
        }
        collected = match collected {
            Collected::One(first) if first.is_empty() => Collected::One(data),
            Collected::One(first) => {
                let mut joined = Vec::with_capacity(total.max(first.len() * 2).min(limit));
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&data);
                Collected::Many(joined)
            }
            Collected::Many(mut joined) => {
                joined.extend_from_slice(&data);
                Collected::Many(joined)
            }
        };
    }
    Ok(collected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let ok = |s: &str| content_type_is_json(Some(&HeaderValue::from_str(s).unwrap()));
        assert!(content_type_is_json(None));
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(ok("application/merge-patch+json"));
        assert!(ok("application/vnd.api+JSON"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/jsonx"));
        assert!(!ok("application/+json"));
        assert!(!ok("text/json"));
        assert!(!ok("json"));
        assert!(!ok(""));
    }
}
