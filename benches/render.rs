//! Writing the response body: plain ASCII, names that need escaping, CJK and emoji.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use greeting_service::domain::greet;

fn bench(c: &mut Criterion) {
    let names = [
        ("ascii", "John".to_owned()),
        ("ascii 256", "a".repeat(256)),
        ("escapes", r#"<script>"x" & 'y' \ </script>"#.to_owned()),
        ("line separators", "a\u{2028}b\u{2029}c".repeat(8)),
        ("cjk emoji", "日本語の名前😀🎉".to_owned()),
    ];
    let mut group = c.benchmark_group("render");
    for (label, name) in &names {
        group.bench_with_input(BenchmarkId::from_parameter(label), name, |b, name| {
            b.iter(|| greet::render_str(name))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
