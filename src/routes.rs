//! The answer behind each route: the greeting, the probes and the metrics
//! exposition.
//!
//! [`Routes`] is the service's [`Handler`]; the middleware has already matched the
//! path to a [`Route`]. The method and header checks and every answer that needs no
//! body happen when the request arrives; the returned future
//! ([`Handling`]) only holds the body while it is read.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body::Body as HttpBody;

use crate::budget::{BodyBuffers, Held};
use crate::config::{Config, MAX_HEAD_BYTES};
use crate::domain::greet;
use crate::domain::problem::Problem;
use crate::handler::{Answer, Extra, Handler, Kind, Route};
use crate::server::drain::Readiness;
use crate::telemetry::metrics::Metrics;

/// Limits applied to `POST /greet`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_name_chars: usize,
    /// The whole body must arrive within this after the head (stalled-body guard).
    pub body_timeout: Duration,
}

impl Limits {
    /// The limits `config` sets: `MAX_BODY_BYTES`, `MAX_NAME_CHARS`, and
    /// `HEADER_TIMEOUT` for the body too.
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_body_bytes: config.capacity.max_body_bytes.get(),
            max_name_chars: config.capacity.max_name_chars.get(),
            body_timeout: config.deadlines.header_timeout,
        }
    }
}

/// The greeting service's routes.
#[derive(Debug, Clone)]
pub struct Routes {
    limits: Limits,
    readiness: Readiness,
    metrics: Metrics,
    buffers: BodyBuffers,
}

/// What routing decided before any body byte was read.
enum Routed<B> {
    /// The answer is known from the head alone.
    Answered(Answer),
    /// A `POST /greet` that passed the header checks: its body is to be read.
    Greet(B),
}

impl Routes {
    /// The routes, with `buffers` the process-wide room for bodies still arriving.
    pub fn new(
        limits: Limits,
        readiness: Readiness,
        metrics: Metrics,
        buffers: BodyBuffers,
    ) -> Self {
        metrics.watch_body_buffers(&buffers);
        Self {
            limits,
            readiness,
            metrics,
            buffers,
        }
    }

    /// Answers everything that needs no body; hands back the body of a `POST
    /// /greet` that passed the header checks.
    fn route<B>(&self, route: Route, req: Request<B>) -> Routed<B>
    where
        B: HttpBody<Data = Bytes>,
    {
        let get = matches!(*req.method(), Method::GET | Method::HEAD);
        Routed::Answered(match (route, get) {
            (Route::Greet, _) if req.method() == Method::POST => {
                if !content_type_is_json(req.headers().get(header::CONTENT_TYPE)) {
                    return Routed::Answered(Problem::unsupported_media_type().into_answer());
                }
                let body = req.into_body();
                let limit = self.limits.max_body_bytes;
                // A declared length over the limit is refused before a byte is read.
                if body.size_hint().lower() > limit as u64 {
                    return Routed::Answered(refused(Problem::payload_too_large(limit)));
                }
                return Routed::Greet(body);
            }
            (Route::Greet, _) => Problem::post_only().into_answer().with(Extra::AllowPost),
            (Route::Healthz, true) => json(StatusCode::OK, br#"{"status":"ok"}"#),
            (Route::Readyz, true) if self.readiness.is_ready() => {
                json(StatusCode::OK, br#"{"status":"ready"}"#)
            }
            (Route::Readyz, true) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                br#"{"status":"shutting down"}"#,
            ),
            (Route::Metrics, true) => Answer::new(
                StatusCode::OK,
                Kind::Metrics,
                Bytes::from(self.metrics.render()),
            ),
            (Route::Healthz | Route::Readyz | Route::Metrics, false) => {
                Problem::get_only().into_answer().with(Extra::AllowGet)
            }
            (Route::Unmatched, _) => Problem::not_found().into_answer(),
        })
    }
}

impl Handler for Routes {
    fn handle<B>(
        &self,
        route: Route,
        req: Request<B>,
    ) -> impl Future<Output = Answer> + Send + Unpin + 'static + use<B>
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        match self.route(route, req) {
            Routed::Answered(answer) => Handling::Answered(Some(answer)),
            Routed::Greet(body) => Handling::Greet(Greeting {
                body,
                collected: Collected::One(Bytes::new()),
                limits: self.limits,
                buffers: self.buffers,
                waiting: None,
            }),
        }
    }
}

/// The future [`Routes::handle`] returns: an answer known from the head alone, or
/// the greeting once its body has been read. Written by hand rather than `async`
/// so it is `Unpin` and only as large as its state.
pub enum Handling<B> {
    Answered(Option<Answer>),
    Greet(Greeting<B>),
}

impl<B> Future for Handling<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        match self.get_mut() {
            Self::Answered(answer) => Poll::Ready(
                answer
                    .take()
                    .unwrap_or_else(|| Problem::internal().into_answer()),
            ),
            Self::Greet(greeting) => Pin::new(greeting).poll(cx),
        }
    }
}

/// Reads a `POST /greet` body, refusing it as soon as it passes the limit (it never
/// buffers more), then parses, validates and answers it.
pub struct Greeting<B> {
    body: B,
    collected: Collected,
    limits: Limits,
    buffers: BodyBuffers,
    /// Only if the body did not come with the head (usually it did, and no timer
    /// is created nor room held at all).
    waiting: Option<Waiting>,
}

/// A request waiting for the rest of its body.
struct Waiting {
    deadline: Pin<Box<tokio::time::Sleep>>,
    _room: Held,
}

impl<B> Greeting<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    /// Reads what the body has ready; `Ready(Ok)` once it has ended.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Problem>> {
        let limit = self.limits.max_body_bytes;
        loop {
            let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "request body read failed");
                    return Poll::Ready(Err(Problem::bad_body()));
                }
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers carry nothing we need
            };
            let total = self.collected.as_slice().len() + data.len();
            if total > limit {
                return Poll::Ready(Err(Problem::payload_too_large(limit)));
            }
            self.collected.push(data, total, limit);
        }
    }
}

impl<B> Future for Greeting<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let this = self.get_mut();
        let read = match this.poll_read(cx) {
            Poll::Ready(read) => read,
            Poll::Pending => {
                if this.waiting.is_none() {
                    // Room for a whole head and body while it arrives, or 503.
                    let room = MAX_HEAD_BYTES + this.limits.max_body_bytes;
                    let Some(held) = this.buffers.try_hold(room) else {
                        return Poll::Ready(refused(Problem::busy()));
                    };
                    this.waiting = Some(Waiting {
                        deadline: Box::pin(tokio::time::sleep(this.limits.body_timeout)),
                        _room: held,
                    });
                }
                match &mut this.waiting {
                    Some(waiting) => {
                        ready!(waiting.deadline.as_mut().poll(cx));
                        Err(Problem::body_timeout())
                    }
                    None => return Poll::Pending,
                }
            }
        };
        let answered = read.and_then(|()| {
            let rendered = greet::greet(this.collected.as_slice(), this.limits.max_name_chars)?;
            Ok(Answer::new(StatusCode::OK, Kind::Json, rendered))
        });
        Poll::Ready(answered.unwrap_or_else(refused))
    }
}

/// An error answer; when the body was refused before it was read in full (too
/// large, too slow, no room for it), the connection is closed instead of reading
/// (and discarding) the rest; at the memory budget the client is told to retry
/// (see `config::memory`).
fn refused(problem: Problem) -> Answer {
    let extra = match problem.status() {
        StatusCode::SERVICE_UNAVAILABLE => Extra::RetryLater,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT => Extra::Close,
        _ => Extra::None,
    };
    problem.into_answer().with(extra)
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
    // Header values are visible ASCII (`to_str` checked), so bytes will do.
    let subtype = subtype.as_bytes();
    subtype.eq_ignore_ascii_case(b"json")
        || (subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

fn json(status: StatusCode, body: &'static [u8]) -> Answer {
    Answer::new(status, Kind::Json, Bytes::from_static(body))
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

    /// Appends `data`; `total` is the length afterwards, at most `limit`.
    fn push(&mut self, data: Bytes, total: usize, limit: usize) {
        match self {
            Self::One(first) if first.is_empty() => *first = data,
            Self::One(first) => {
                let mut joined = Vec::with_capacity(total.max(first.len() * 2).min(limit));
                joined.extend_from_slice(first);
                joined.extend_from_slice(&data);
                *self = Self::Many(joined);
            }
            Self::Many(joined) => joined.extend_from_slice(&data),
        }
    }
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
