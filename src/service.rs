//! What the server does around every request, whatever the handler:
//! the request id, the headers every response carries, and panic recovery.
//!
//! A panic in a handler is caught here and answered with a 500 problem; the
//! connection and the process carry on. This needs `panic = "unwind"` (see
//! `Cargo.toml`).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::header::{HeaderName, CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderMap, HeaderValue, Request};
use http_body::Body as HttpBody;

use crate::problem::Problem;
use crate::routes::{Handler, Response};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
static NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// Runs `handler` on `req` and finishes the response.
pub async fn call<H, B>(handler: &H, req: Request<B>) -> Response
where
    H: Handler,
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    let request_id = request_id(req.headers());
    let mut response = match AssertUnwindSafe(handler.handle(req)).catch_unwind().await {
        Ok(response) => response,
        // The panic hook has logged it; the client learns nothing about internals.
        Err(_) => Problem::internal().into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(X_REQUEST_ID.clone(), request_id);
    headers.insert(CACHE_CONTROL, NO_STORE.clone());
    headers.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF.clone());
    response
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
    let start = *START.get_or_init(random_u64);
    let n = start.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut buf = [0u8; 16];
    for (i, slot) in buf.iter_mut().enumerate() {
        *slot = b"0123456789abcdef"[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&buf))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// std's `RandomState` is seeded from the OS; hashing nothing with it gives a
/// random number without another dependency.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
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
}
