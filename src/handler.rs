//! The HTTP types every layer shares: the response body, the response, and the
//! [`Handler`] that a router implements and the server calls.

use std::future::Future;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::Full;

/// Every response body is one buffer, written in full.
pub type Body = Full<Bytes>;
pub type Response = http::Response<Body>;

/// Something that answers requests; the server adds the request id, the headers
/// every response carries and panic recovery around it ([`crate::middleware`]).
///
/// Generic over the request body so that benches and tests can drive a handler in
/// process with a `Full<Bytes>` body while the server feeds it hyper's `Incoming`.
///
/// The future owns what it needs (`'static`) and is `Unpin`, so the server can
/// keep it in a plain struct beside its own per-request state: hyper stores that
/// struct once per request, and a small one is cheap to move there.
pub trait Handler: Send + Sync + 'static {
    fn handle<B>(
        &self,
        req: http::Request<B>,
    ) -> impl Future<Output = Response> + Send + Unpin + 'static + use<Self, B>
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display;
}

/// A response with `status`, `Content-Type: content_type` and `body`.
pub fn response(status: StatusCode, content_type: &HeaderValue, body: Bytes) -> Response {
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type.clone());
    response
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
