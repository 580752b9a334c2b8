//! Inputs shared by the benches, and the in-process builders the tests use too.

#![allow(dead_code)]

use bytes::Bytes;
use greeting_service::config::Mode;
use http_body_util::Full;

#[path = "../../tests/common/mod.rs"]
mod support;
#[allow(unused_imports)]
pub use support::*;

/// `{"name":"John"}`: the body every load test sends.
pub const TINY: &str = r#"{"name":"John"}"#;

/// About 100 bytes with unicode and escapes.
pub fn unicode_100() -> String {
    let body =
        r#"{"name":"Zoë \"Ω\" <b>日本語</b> \u00e9\u2028 emoji 😀😀 tab\t end","lang":"fr-CA"}"#;
    assert!((90..=110).contains(&body.len()), "{}", body.len());
    body.to_owned()
}

/// About 1 KB of unknown fields around the name.
pub fn unknown_1k() -> String {
    let mut fields = String::new();
    let mut i = 0;
    while fields.len() < 950 {
        fields.push_str(&format!(
            r#""field{i}":{{"id":{i},"tags":["a","b"],"ok":true}},"#
        ));
        i += 1;
    }
    format!(r#"{{{fields}"name":"John"}}"#)
}

/// A body of exactly 16 KiB (the default limit), mostly one long unknown string.
pub fn at_limit() -> String {
    let base = r#"{"pad":"","name":"John"}"#;
    let pad = "x".repeat(16 * 1024 - base.len());
    let body = format!(r#"{{"pad":"{pad}","name":"John"}}"#);
    assert_eq!(body.len(), 16 * 1024);
    body
}

/// A current-thread runtime, like one per-core worker's.
pub fn runtime() -> tokio::runtime::Runtime {
    greeting_service::server::runtime(Mode::PerCore, 1).unwrap()
}

pub fn post(path: &str, content_type: Option<&str>, body: &str) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::post(path).header("host", "localhost");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap()
}

pub fn get(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// One request of each class: success and every error the handler produces.
pub fn request_classes() -> Vec<(&'static str, http::Request<Full<Bytes>>, u16)> {
    vec![
        (
            "200 greet",
            post("/greet", Some("application/json"), TINY),
            200,
        ),
        (
            "400 bad json",
            post("/greet", Some("application/json"), r#"{"name":"#),
            400,
        ),
        (
            "400 empty name",
            post("/greet", Some("application/json"), r#"{"name":"  "}"#),
            400,
        ),
        (
            "413 too large",
            post("/greet", Some("application/json"), &at_limit_plus_one()),
            413,
        ),
        (
            "415 media type",
            post("/greet", Some("text/plain"), TINY),
            415,
        ),
        ("405 method", get("/greet"), 405),
        ("404 path", get("/nope"), 404),
        ("200 healthz", get("/healthz"), 200),
    ]
}

fn at_limit_plus_one() -> String {
    format!("{} ", at_limit())
}
