//! Heap allocations per request, counted by a global allocator that wraps the
//! system one, in two places:
//!
//! - the whole server: the real server (one per-core worker) on a thread of this
//!   process, a keep-alive loopback connection, and only that thread's allocations
//!   counted (hyper's parsing and encoding, the connection, the middleware, the
//!   routes), request by request for every class of answer;
//! - the middleware alone (`Middleware::call` in process), which is what the service
//!   adds to hyper.
//!
//! The README quotes these numbers; a change that allocates more on the request
//! path fails here.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use greeting_service::config::Mode;
use greeting_service::server;
use http_body_util::Full;

struct Counting;

/// Counting is on (a window of the test) ...
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// ... and this thread is one whose allocations count.
    static COUNTED_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.load(Ordering::Relaxed) && COUNTED_THREAD.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Every class of answer, with the most allocations each may make through the
/// whole server, and through the middleware alone.
///
/// Through the middleware: the response's header map (its index table and its
/// entries) is the only allocation of a greeting or an error answered from the
/// head; the body and a fresh request id come from the per-thread output buffer,
/// one 64 KiB chunk per few hundred responses. A name with escapes is copied out
/// of simd-json's scratch buffer (one more). Malformed JSON takes serde_json's
/// error (boxed).
///
/// Through the server, hyper adds its own: one per request (the request's
/// extensions and parts), three more for a body (its channel); a 413 closes the
/// connection, so each one also pays for a new connection (its task, state and
/// buffers).
const CLASSES: [(&str, &str, &str, &str, f64, f64); 9] = [
    (
        "200 greet",
        "POST",
        "/greet",
        r#"{"name":"John"}"#,
        2.05,
        6.05,
    ),
    // An escape sends the body to simd-json, which unescapes into its scratch
    // buffer: the name is copied out, one allocation more.
    (
        "200 greet, escaped name",
        "POST",
        "/greet",
        r#"{"name":"J\u00f6rg"}"#,
        3.05,
        7.05,
    ),
    ("404 path", "GET", "/nope", "", 2.05, 3.05),
    ("405 method", "GET", "/greet", "", 2.05, 3.05),
    (
        "415 media type",
        "POST",
        "/greet?ct=text",
        r#"{"name":"John"}"#,
        2.05,
        5.05,
    ),
    ("413 declared", "POST", "/greet", "LARGE", 2.05, 17.05),
    (
        "400 empty name",
        "POST",
        "/greet",
        r#"{"name":"  "}"#,
        2.05,
        6.05,
    ),
    ("400 name too long", "POST", "/greet", "LONG", 2.05, 6.05),
    ("400 bad JSON", "POST", "/greet", r#"{"name":"#, 4.05, 8.05),
];

/// A body for a class: the literal, or the generated large/long ones.
fn body_of(spec: &str) -> String {
    match spec {
        "LARGE" => "x".repeat(20 * 1024),
        "LONG" => format!(r#"{{"name":"{}"}}"#, "a".repeat(300)),
        other => other.to_owned(),
    }
}

fn content_type_of(path: &str) -> &'static str {
    if path.ends_with("?ct=text") {
        "text/plain"
    } else {
        "application/json"
    }
}

/// The raw HTTP/1.1 request for a class.
fn raw_request(method: &str, path: &str, body: &str) -> Vec<u8> {
    let target = path.trim_end_matches("?ct=text");
    format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{body}",
        content_type_of(path),
        body.len()
    )
    .into_bytes()
}

/// Reads one response with a `Content-Length` body from `conn`.
fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> u16 {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])
                .unwrap()
                .to_ascii_lowercase();
            let len: usize = head
                .split("\r\n")
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.parse().unwrap());
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                buf.drain(..end + 4 + len);
                return status;
            }
        }
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Allocations on the server's thread per request of one class, over `n`
/// requests on one keep-alive connection after a warm-up. 413 closes the
/// connection, so each of its requests opens a new one (counted too: accept and
/// connection set-up are part of what such a request costs).
fn through_the_server(method: &str, path: &str, body: &str, status: u16, n: usize) -> f64 {
    let server = common::InProcess::start(common::app(1), || {
        COUNTED_THREAD.with(|c| c.set(true));
    });
    let addr = server.addr;
    let request = raw_request(method, path, body);
    let closes = status == 413;
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let once = |conn: &mut TcpStream, buf: &mut Vec<u8>| {
        if closes {
            *conn = TcpStream::connect(addr).unwrap();
            buf.clear();
        }
        conn.write_all(&request).unwrap();
        assert_eq!(read_response(conn, buf), status, "{method} {path}");
    };
    for _ in 0..200 {
        once(&mut conn, &mut buf);
    }
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..n {
        once(&mut conn, &mut buf);
    }
    COUNTING.store(false, Ordering::Relaxed);
    let total = ALLOCATIONS.load(Ordering::Relaxed);
    drop(conn);
    server.stop();
    total as f64 / n as f64
}

/// Allocations per request through `Middleware::call` alone, in process.
fn through_the_middleware(method: &str, path: &str, body: &str, n: usize) -> f64 {
    let runtime = server::runtime(Mode::PerCore, 1).unwrap();
    let middleware = common::middleware();
    let request = || {
        http::Request::builder()
            .method(method)
            .uri(path.trim_end_matches("?ct=text"))
            .header("content-type", content_type_of(path))
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    };
    COUNTED_THREAD.with(|c| c.set(true));
    runtime.block_on(async {
        for _ in 0..100 {
            let _ = middleware.call(request(), None, ()).await;
        }
        let mut total = 0;
        for _ in 0..n {
            let req = request();
            ALLOCATIONS.store(0, Ordering::Relaxed);
            COUNTING.store(true, Ordering::Relaxed);
            let response = middleware.call(req, None, ()).await;
            COUNTING.store(false, Ordering::Relaxed);
            total += ALLOCATIONS.load(Ordering::Relaxed);
            drop(response);
        }
        total as f64 / n as f64
    })
}

#[test]
fn allocations_per_request_stay_within_budget() {
    let mut report = Vec::new();
    for (label, method, path, spec, middleware_budget, server_budget) in CLASSES {
        let body = body_of(spec);
        let status: u16 = label[..3].parse().unwrap();
        let middleware = through_the_middleware(method, path, &body, 1000);
        let server = through_the_server(method, path, &body, status, 1000);
        report.push(format!(
            "{label}: middleware {middleware:.2}, whole server {server:.2}"
        ));
        assert!(
            middleware <= middleware_budget,
            "{label}: {middleware:.2} allocations in the middleware (budget {middleware_budget})"
        );
        assert!(
            server <= server_budget,
            "{label}: {server:.2} allocations through the server (budget {server_budget})"
        );
    }
    println!("allocations per request:\n{}", report.join("\n"));
}
