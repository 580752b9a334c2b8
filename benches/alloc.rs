//! The handler with the global allocator this build selects: mimalloc (default
//! features) or the system allocator (`--no-default-features`). Run both and compare:
//!
//!     cargo bench --bench alloc
//!     cargo bench --bench alloc --no-default-features
//!
//! The benchmark id names the allocator, so criterion keeps the two apart.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "system"
};

fn bench(c: &mut Criterion) {
    let runtime = common::runtime();
    let middleware = common::middleware();
    let mut group = c.benchmark_group("alloc");
    for (label, request, _) in common::request_classes()
        .into_iter()
        .filter(|(label, _, _)| label.starts_with("200 greet") || label.starts_with("400 bad"))
    {
        group.bench_function(BenchmarkId::new(ALLOCATOR, label), |b| {
            b.to_async(&runtime)
                .iter(|| middleware.call(request.clone(), None, ()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
