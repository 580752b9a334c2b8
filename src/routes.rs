//! Routing on method and path, and the handlers behind each route.
//!
//! [`App`] is the service's request handler. It is generic over the request body so
//! that benches and tests can drive it in process with a `Full<Bytes>` body, while the
//! server feeds it hyper's `Incoming`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Full};

use crate::greet;
use crate::metrics::{self, Metrics};
use crate::problem::Problem;
use crate::server::Connections;

/// Every response body is one buffer, written in full.
pub type Body = Full<Bytes>;
pub type Response = http::Response<Body>;

static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Something that answers requests; the server adds the headers every response
/// carries, the request id and panic recovery around it ([`crate::service`]).
pub trait Handler: Send + Sync + 'static {
    fn handle<B>(&self, req: Request<B>) -> impl Future<Output = Response> + Send
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display;
}

/// Whether the process accepts traffic: true until shutdown begins (`/readyz`).
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set_not_ready(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Limits applied to `POST /greet`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_name_chars: usize,
    /// The whole body must arrive within this after the head (stalled-body guard).
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024,
            max_name_chars: 256,
            body_timeout: Duration::from_secs(5),
        }
    }
}

/// The greeting service's routes.
#[derive(Debug, Clone)]
pub struct App {
    pub limits: Limits,
    pub readiness: Readiness,
    pub metrics: Metrics,
}

impl Default for App {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            readiness: Readiness::default(),
            metrics: Metrics::new(Arc::new(Connections::default())),
        }
    }
}

/// The route a request matched; also the bounded label set for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Greet,
    Healthz,
    Readyz,
    Metrics,
    Unmatched,
}

impl Route {
    pub const ALL: [Route; 5] = [
        Self::Greet,
        Self::Healthz,
        Self::Readyz,
        Self::Metrics,
        Self::Unmatched,
    ];

    pub fn of(path: &str) -> Self {
        match path {
            "/greet" => Self::Greet,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/metrics" => Self::Metrics,
            _ => Self::Unmatched,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Greet => "/greet",
            Self::Healthz => "/healthz",
            Self::Readyz => "/readyz",
            Self::Metrics => "/metrics",
            Self::Unmatched => "unmatched",
        }
    }
}

impl Handler for App {
    /// Routing, header checks and every answer that needs no body happen before the
    /// returned future is first polled; the future itself only holds the body while
    /// it is read. That keeps the per-request future small (it is moved several times
    /// on its way into hyper) and the common case free of timers.
    fn handle<B>(&self, req: Request<B>) -> impl Future<Output = Response> + Send
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let immediate = self.route(req);
        async move {
            match immediate {
                Ok(response) => response,
                Err(body) => self
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
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

impl App {
    /// Answers everything that needs no body; hands back the body of a `POST
    /// /greet` that passed the header checks.
    fn route<B>(&self, req: Request<B>) -> Result<Response, B>
    where
        B: HttpBody<Data = Bytes>,
    {
        let get = matches!(*req.method(), Method::GET | Method::HEAD);
        Ok(match (Route::of(req.uri().path()), get) {
            (Route::Greet, _) if req.method() == Method::POST => {
                if !content_type_is_json(req.headers().get(header::CONTENT_TYPE)) {
                    return Ok(Problem::unsupported_media_type().into_response());
                }
                let body = req.into_body();
                let limit = self.limits.max_body_bytes;
                // A declared length over the limit is refused before a byte is read.
                if body.size_hint().lower() > limit as u64 {
                    return Ok(problem_closing_unread_body(Problem::payload_too_large(
                        limit,
                    )));
                }
                return Err(body);
            }
            (Route::Greet, _) => method_not_allowed("POST"),
            (Route::Healthz, true) => {
                json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
            }
            (Route::Readyz, true) if self.readiness.is_ready() => {
                json(StatusCode::OK, Bytes::from_static(br#"{"status":"ready"}"#))
            }
            (Route::Readyz, true) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from_static(br#"{"status":"shutting down"}"#),
            ),
            (Route::Metrics, true) => {
                let mut response = Response::new(Body::new(Bytes::from(self.metrics.render())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(metrics::CONTENT_TYPE),
                );
                response
            }
            (Route::Healthz | Route::Readyz | Route::Metrics, false) => {
                method_not_allowed("GET, HEAD")
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
        Ok(json(StatusCode::OK, rendered))
    }
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

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut response = Response::new(Body::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
    response
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = Problem::method_not_allowed(allow).into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
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

    #[test]
    fn routes_are_a_bounded_label_set() {
        assert_eq!(Route::of("/greet"), Route::Greet);
        assert_eq!(Route::of("/greet/"), Route::Unmatched);
        assert_eq!(Route::of("/x/y/z").as_str(), "unmatched");
    }
}
