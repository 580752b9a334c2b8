//! The contract between the middleware and what answers requests: the [`Route`] a
//! request matched (matched once, by the middleware), the [`Handler`] that answers
//! it, and the [`Answer`] it gives: a status, a body and what kind of body it is,
//! and the few headers that depend on the answer. The middleware turns an answer
//! into the HTTP response, with every header, in one place.

use std::future::Future;

use bytes::Bytes;
use http::StatusCode;
use http_body::Body as HttpBody;
use http_body_util::Full;

/// Every response body is one buffer, written in full.
pub type Body = Full<Bytes>;
pub type Response = http::Response<Body>;

/// Something that answers requests; the middleware adds the request id, the
/// headers every response carries, panic recovery, metrics and the access log
/// around it ([`crate::middleware`]).
///
/// Generic over the request body so that benches and tests can drive a handler in
/// process with a `Full<Bytes>` body while the server feeds it hyper's `Incoming`.
///
/// The future owns what it needs (`'static`) and is `Unpin`, so the server can
/// keep it in a plain struct beside its own per-request state: hyper stores that
/// struct once per request, and a small one is cheap to move there.
pub trait Handler: Send + Sync + 'static {
    /// Answers `req`, whose path matched `route`.
    fn handle<B>(
        &self,
        route: Route,
        req: http::Request<B>,
    ) -> impl Future<Output = Answer> + Send + Unpin + 'static + use<Self, B>
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display;
}

/// A handler's answer, before it becomes an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub kind: Kind,
    pub body: Bytes,
    /// Headers this answer needs beyond those every response carries.
    pub extra: Extra,
}

/// What the body is, which is what its `Content-Type` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `application/json`: the greeting, the probes.
    Json,
    /// `application/problem+json`: every error (RFC 9457).
    Problem,
    /// The Prometheus text exposition.
    Metrics,
}

/// The headers an answer may add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    None,
    /// 405: `Allow: POST`.
    AllowPost,
    /// 405: `Allow: GET, HEAD`.
    AllowGet,
    /// The body was refused before it was read in full: `Connection: close`
    /// rather than reading and discarding the rest (hyper drops the header on
    /// HTTP/2, where the stream is reset instead).
    Close,
    /// 503 at the memory budget: `Retry-After: 1` and `Connection: close`.
    RetryLater,
}

impl Answer {
    pub fn new(status: StatusCode, kind: Kind, body: Bytes) -> Self {
        Self {
            status,
            kind,
            body,
            extra: Extra::None,
        }
    }

    /// The same answer with `extra` headers.
    pub fn with(mut self, extra: Extra) -> Self {
        self.extra = extra;
        self
    }
}

/// The route a request matched.
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

    /// The `route` label value.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_bounded_label_set() {
        assert_eq!(Route::of("/greet"), Route::Greet);
        assert_eq!(Route::of("/greet/"), Route::Unmatched);
        assert_eq!(Route::of("/x/y/z").as_str(), "unmatched");
        // Every named route's label is its path.
        for route in Route::ALL.into_iter().filter(|r| *r != Route::Unmatched) {
            assert_eq!(Route::of(route.as_str()), route);
        }
    }
}
