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
/// every response carries and panic recovery around it ([`crate::endpoint`]).
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
