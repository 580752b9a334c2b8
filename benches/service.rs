//! The whole service, two ways (one bench binary, so CI links it once):
//!
//! - `handler`: one whole request in process, bytes in to response out, no sockets:
//!   the service the server runs (request id, headers, metrics, routing, parse,
//!   validate, render) for success and each error class; then `metrics/record`
//!   (its own group);
//! - `e2e`: a real server on loopback driven by an in-process hyper client over
//!   keep-alive connections: 1 and 64 concurrent connections, HTTP/1.1 and h2c. The
//!   server runs on its own thread (one current-thread runtime, like one per-core
//!   worker); the client on another. Each iteration sends one request on every
//!   connection. Its server and connections are started even when a filter
//!   leaves the group out.
//!
//! Run:
//!
//!     cargo bench --bench service               # both groups
//!     cargo bench --bench service -- handler    # one group (a criterion filter)

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn connect(addr: SocketAddr, h2: bool) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let io = TokioIo::new(stream);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Self::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Self::H1(send)
        }
    }

    async fn greet(&mut self) {
        let req = http::Request::post("http://localhost/greet")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(common::TINY.as_bytes())))
            .unwrap();
        let resp = match self {
            Self::H1(s) => {
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
            Self::H2(s) => {
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
        };
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 26);
    }
}

fn handler(c: &mut Criterion) {
    let runtime = common::runtime();
    let middleware = common::middleware();
    let mut group = c.benchmark_group("handler");
    for (label, request, status) in common::request_classes() {
        // Check once, outside the measurement, that the class is what it says.
        let Ok(response) = runtime.block_on(middleware.call(request.clone(), None, ()));
        assert_eq!(response.status().as_u16(), status, "{label}");
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.to_async(&runtime)
                .iter(|| middleware.call(request.clone(), None, ()))
        });
    }
    group.finish();

    // What recording a request in the metrics costs on its own (part of every
    // handler figure above): three relaxed atomic adds and a bucket search.
    let metrics = greeting_service::telemetry::metrics::Metrics::new(std::sync::Arc::new(
        greeting_service::telemetry::metrics::Connections::default(),
    ));
    c.bench_function("metrics/record", |b| {
        b.iter(|| {
            metrics.record(
                greeting_service::handler::Route::Greet,
                greeting_service::telemetry::metrics::MethodLabel::of(&http::Method::POST),
                http::StatusCode::OK,
                std::time::Duration::from_micros(7),
            )
        })
    });
}

fn e2e(c: &mut Criterion) {
    // The real server on its own thread (one per-core worker), for the whole run.
    let server = common::InProcess::routes(1);
    let addr = server.addr;
    let client = common::runtime();
    let mut group = c.benchmark_group("e2e");
    group.sample_size(30);
    for h2 in [false, true] {
        for connections in [1usize, 64] {
            let protocol = if h2 { "h2c" } else { "http1.1" };
            let mut senders: Vec<Sender> = client.block_on(async {
                let mut v = Vec::new();
                for _ in 0..connections {
                    v.push(Sender::connect(addr, h2).await);
                }
                v
            });
            group.throughput(Throughput::Elements(connections as u64));
            group.bench_function(
                BenchmarkId::new(protocol, format!("{connections} conns")),
                |b| {
                    b.iter(|| {
                        client.block_on(futures_util::future::join_all(
                            senders.iter_mut().map(Sender::greet),
                        ))
                    })
                },
            );
        }
    }
    group.finish();
    server.stop();
}

criterion_group!(benches, handler, e2e);
criterion_main!(benches);
