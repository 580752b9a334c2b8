//! Prototype of the fix proposed in tests/h2spec/README.md: a hyper 1.12 / h2 0.4.20
//! HTTP/2 server with the service's routing shape (POST /greet reads the body; the
//! probe, 404 and 405 answer from the head), with the two changes behind switches:
//!
//!   DRAIN=1      an HTTP/2 request body the handler dropped without polling is read
//!                to its end in a detached task (bounded by LIMIT and BODY_TIMEOUT), so
//!                h2 keeps validating the stream instead of resetting it with NO_ERROR.
//!   PATHCHECK=1  a request without :path (h2 lets one through when :authority is
//!                absent too) is refused with RST_STREAM(PROTOCOL_ERROR).
//!
//! Not part of the build. Compiled once, outside cargo, against the crates the
//! service already built (one rustc invocation, no cargo build):
//!   rustc --edition 2021 -O -L dependency=DEPS --extern bytes=... --extern http=...
//!     --extern http_body=... --extern http_body_util=... --extern hyper=...
//!     --extern hyper_util=... --extern tokio=... --extern h2=... early-answer-prototype.rs
//! then: DRAIN=1 PATHCHECK=1 tests/h2spec/malformed.py --bin ./early-answer-prototype
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

const LIMIT: usize = 16 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP/2 request body that, dropped before its end, is read to its end in a
/// detached task so h2 keeps the stream open and validates what follows.
struct Drained {
    inner: Option<Incoming>,
    polled: bool,
}

impl Drained {
    fn new(inner: Incoming) -> Self {
        Self { inner: Some(inner), polled: false }
    }
}

impl Body for Drained {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        this.polled = true;
        Pin::new(this.inner.as_mut().expect("polled after drop")).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().map_or(true, |b| b.is_end_stream())
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(SizeHint::default, |b| b.size_hint())
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else { return };
        // A handler that read the body (to its end, or gave up on it: 413, 408) decided;
        // a declared length over the limit is refused unread (413).
        if self.polled || body.size_hint().lower() > LIMIT as u64 || body.is_end_stream() {
            return;
        }
        tokio::spawn(drain(body, LIMIT));
    }
}

async fn drain(mut body: Incoming, budget: usize) {
    let mut seen = 0usize;
    let _ = tokio::time::timeout(BODY_TIMEOUT, async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    seen += f.data_ref().map_or(0, |d| d.len());
                    if seen > budget {
                        break;
                    }
                }
                Err(_) => break, // h2 has reset the stream (e.g. PROTOCOL_ERROR)
            }
        }
    })
    .await;
    eprintln!("drain ended after {seen} bytes");
}

fn answer(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

async fn handle<B: Body<Data = Bytes> + Unpin>(req: Request<B>) -> Response<Full<Bytes>>
where
    B::Error: std::fmt::Display,
{
    match (req.method().clone(), req.uri().path()) {
        (Method::POST, "/greet") => match req.into_body().collect().await.map(|b| b.to_bytes()) {
            Ok(b) if b.starts_with(b"{") => answer(StatusCode::OK, "{\"message\":\"hi\"}"),
            Ok(_) => answer(StatusCode::BAD_REQUEST, "bad json"),
            Err(e) => {
                eprintln!("body error: {e}");
                answer(StatusCode::BAD_REQUEST, "bad body")
            }
        },
        (_, "/greet") => answer(StatusCode::METHOD_NOT_ALLOWED, "405"),
        (Method::GET, "/healthz") => answer(StatusCode::OK, "{\"status\":\"ok\"}"),
        (_, "/healthz") => answer(StatusCode::METHOD_NOT_ALLOWED, "405"),
        _ => answer(StatusCode::NOT_FOUND, "404"),
    }
}

fn main() {
    let drain_on = std::env::var("DRAIN").as_deref() == Ok("1");
    let path_check = std::env::var("PATHCHECK").as_deref() == Ok("1");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{{\"addr\":\"{}\"}}", listener.local_addr().unwrap());
        loop {
            let (io, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    if path_check && req.method() != Method::CONNECT && req.uri().path().is_empty() {
                        return Err(h2::Error::from(h2::Reason::PROTOCOL_ERROR));
                    }
                    Ok::<_, h2::Error>(if drain_on {
                        handle(req.map(Drained::new)).await
                    } else {
                        handle(req).await
                    })
                });
                let mut b = http2::Builder::new(TokioExecutor::new());
                b.timer(TokioTimer::new()).max_concurrent_streams(256);
                let _ = b.serve_connection(TokioIo::new(io), svc).await;
            });
        }
    });
}
