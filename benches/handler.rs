//! One whole request in process, bytes in to response out, no sockets: the service
//! the server runs (request id, headers, metrics, routing, parse, validate, render)
//! for success and each error class.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn bench(c: &mut Criterion) {
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

criterion_group!(benches, bench);
criterion_main!(benches);
