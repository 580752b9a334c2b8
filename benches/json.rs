//! Parsing request bodies: the scan for the simple `{"name":"..."}` shape, our
//! simd-json path (tape API, reused buffers) and serde_json (borrowed strings, the
//! same skip-everything visitor), on the bodies the service sees. The server tries
//! the scan first, then picks serde_json up to `json::SMALL_BODY` bytes without a
//! backslash and simd-json otherwise, from these numbers.
//!
//! And writing the response body (`render`): plain ASCII, names that need
//! escaping, CJK and emoji. One bench binary for JSON in and out, so CI links it once.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greeting_service::domain::greet;
use greeting_service::json::parse::{self as json, NameField};

fn name_len(r: Result<NameField<'_>, json::JsonError>) -> usize {
    match r {
        Ok(NameField::Str(s)) => s.len(),
        _ => 0,
    }
}

fn parse(c: &mut Criterion) {
    let bodies = [
        ("tiny 15 B", common::TINY.to_owned()),
        ("unicode 100 B", common::unicode_100()),
        ("unknown fields 1 KB", common::unknown_1k()),
        ("at limit 16 KB", common::at_limit()),
    ];
    let mut group = c.benchmark_group("json");
    for (label, body) in &bodies {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("simd-json", label), body, |b, body| {
            b.iter(|| name_len(json::name_of_simd(body.as_bytes())))
        });
        group.bench_with_input(BenchmarkId::new("serde_json", label), body, |b, body| {
            b.iter(|| name_len(json::name_of_serde(body.as_bytes())))
        });
        if json::simple_name(body.as_bytes()).is_some() {
            group.bench_with_input(BenchmarkId::new("simple scan", label), body, |b, body| {
                b.iter(|| json::simple_name(body.as_bytes()).map_or(0, str::len))
            });
        }
        group.bench_with_input(BenchmarkId::new("chosen", label), body, |b, body| {
            b.iter(|| name_len(json::name_of(body.as_bytes())))
        });
    }
    group.finish();
}

fn render(c: &mut Criterion) {
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

criterion_group!(benches, parse, render);
criterion_main!(benches);
