//! README, Lifecycle and logs (logs, shutdown, panics), and the connection deadlines.

use std::time::Duration;

use bytes::Bytes;
use greeting_service::base::types::{Handler, Response};
use greeting_service::routes::{Limits, Routes};
use http::Request;

use crate::common::{parts, InProcess};

use crate::helpers::{Conn, RawResponse, TestServer};

#[test]
fn logs_are_json_lines_with_startup_facts() {
    let app = TestServer::spawn();
    let line = app.wait_for_log("\"listening\"");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    for key in [
        "timestamp",
        "level",
        "message",
        "version",
        "addr",
        "workers",
    ] {
        assert!(v.get(key).is_some(), "{key} missing from {line}");
    }
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["addr"], app.addr.to_string());
    assert_eq!(v["workers"], 2);
    assert_eq!(v["max_body_bytes"], 16384);
    for line in app.logs() {
        serde_json::from_str::<serde_json::Value>(&line).expect("every line is JSON");
    }
}

#[test]
fn text_logs_for_people() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut child = std::process::Command::new(crate::helpers::BIN)
        .env_clear()
        .env("LOG_FORMAT", "text")
        .env("PORT", &port)
        .env("HOST", "127.0.0.1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let line = lines.next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err(),
        "{line}"
    );
    assert!(
        line.contains("INFO") && line.contains("listening"),
        "{line}"
    );
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let mut app = TestServer::spawn();
    let mut raw = app.raw();
    // Head and half the body: the request is in flight.
    raw.send(b"POST /greet HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n{\"name\":");
    std::thread::sleep(Duration::from_millis(200));
    let idle = app.raw(); // an idle keep-alive connection is closed by the drain
    app.signal("TERM");
    app.wait_for_log("shutdown started");
    raw.send(b"\"John\"}");
    let r = raw.read_responses(1);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, br#"{"message":"Hello, John!"}"#);
    let status = app.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let last = app.logs().last().cloned().unwrap();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["message"], "shutdown complete");
    assert_eq!(v["cut"], 0);
    drop(idle);
    // The listener is closed.
    assert!(std::net::TcpStream::connect(app.addr).is_err());
}

#[test]
fn sigint_also_drains_and_exits_0() {
    let mut app = TestServer::spawn();
    app.signal("INT");
    assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(app.logs().iter().any(|l| l.contains("SIGINT")));
}

#[test]
fn stuck_connections_are_cut_at_the_shutdown_deadline_and_counted() {
    let mut app =
        TestServer::spawn_with(&[("SHUTDOWN_TIMEOUT", "300ms"), ("HEADER_TIMEOUT", "60s")]);
    let mut raw = app.raw();
    // A body that never completes keeps its request in flight.
    raw.send(b"POST /greet HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n{");
    std::thread::sleep(Duration::from_millis(200));
    app.signal("TERM");
    assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let last = app.logs().last().cloned().unwrap();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["message"], "shutdown complete", "{last}");
    assert_eq!(v["cut"], 1, "{last}");
}

/// The real server with a handler that panics on `/panic`.
#[derive(Clone)]
struct Panicky(Routes);

impl Handler for Panicky {
    async fn handle<B>(&self, req: Request<B>) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        if req.uri().path() == "/panic" {
            panic!("boom at /secret/path.rs");
        }
        self.0.handle(req).await
    }
}

#[tokio::test]
async fn a_panicking_handler_gets_500_and_the_next_request_is_served() {
    let p = parts(Limits::default());
    let metrics = p.metrics.clone();
    let server = InProcess::start(Panicky(p.routes), p.metrics, p.connections, p.readiness, 1);
    for mut c in [Conn::h1(server.addr).await, Conn::h2(server.addr).await] {
        let r = c.get("/panic").await;
        let p = r.assert_problem(500);
        assert!(!p["detail"].as_str().unwrap().contains("secret"));
        assert!(r.header("x-request-id").is_some());
        // Same connection, next request.
        assert_eq!(c.greet(r#"{"name":"John"}"#).await.status, 200);
    }
    // Panics are counted like any other 500.
    let text = metrics.render();
    assert!(
        text.contains(r#"http_requests_total{route="unmatched",method="GET",status="500"} 2"#),
        "{text}"
    );
    let report = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    assert_eq!(report.cut, 0);
}

#[test]
fn a_silent_client_is_cut_at_the_header_timeout() {
    let app = TestServer::spawn_with(&[("HEADER_TIMEOUT", "300ms")]);
    let mut raw = app.raw();
    let (bytes, closed) = raw.read_to_close();
    assert!(closed && bytes.is_empty());
}

#[test]
fn a_slowloris_head_is_cut_at_the_header_timeout() {
    let app = TestServer::spawn_with(&[("HEADER_TIMEOUT", "300ms")]);
    let mut raw = app.raw();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for b in head.iter() {
        if std::io::Write::write_all(&mut raw.0, &[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !cut {
        let (bytes, closed) = raw.read_to_close();
        assert!(closed);
        assert!(RawResponse::parse_all(&bytes).is_empty());
    }
}

#[test]
fn idle_keep_alive_is_not_cut_at_the_header_timeout_but_at_the_idle_timeout() {
    let app = TestServer::spawn_with(&[("HEADER_TIMEOUT", "200ms"), ("IDLE_TIMEOUT", "1500ms")]);
    let mut raw = app.raw();
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(raw.read_responses(1)[0].status, 200);
    // Idle for longer than HEADER_TIMEOUT: still open.
    std::thread::sleep(Duration::from_millis(600));
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(raw.read_responses(1)[0].status, 200);
    // Then idle past IDLE_TIMEOUT: closed by the server.
    let (bytes, closed) = raw.read_to_close();
    assert!(closed && bytes.is_empty());
}

#[test]
fn a_stalled_body_gets_408() {
    let app = TestServer::spawn_with(&[("HEADER_TIMEOUT", "300ms")]);
    let mut raw = app.raw();
    raw.send(b"POST /greet HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n{\"na");
    let (bytes, _) = raw.read_to_close();
    let r = RawResponse::parse_all(&bytes);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 408);
}
