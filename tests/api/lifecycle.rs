//! README, Lifecycle and logs (logs, shutdown, panics), and the connection deadlines.

use std::time::{Duration, Instant};

use bytes::Bytes;
use greeting_service::handler::{Answer, Handler, Route};
use greeting_service::routes::Routes;
use http::Request;

use crate::common::{app, InProcess};

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
    let app = TestServer::spawn_with(&[("LOG_FORMAT", "text")]);
    let line = app.wait_for_log("listening");
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err(),
        "{line}"
    );
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains(&app.addr.to_string()), "{line}");
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_closes_idle_connections_then_exits_0() {
    let mut app = TestServer::spawn();
    let mut busy = app.raw();
    crate::helpers::start_request_in_flight(&mut busy, 15);
    // An idle keep-alive connection that has served a request.
    let mut idle = app.raw();
    idle.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(idle.read_responses(1)[0].status, 200);

    app.signal("TERM");
    app.wait_for_log("shutdown started");
    // The drain closes the idle connection (no response, end of stream)...
    let (bytes, closed) = idle.read_to_close();
    assert!(closed && bytes.is_empty(), "{bytes:?}");
    // ...while the request in flight completes, its connection closed after it.
    busy.send(br#"{"name":"John"}"#);
    let (bytes, closed) = busy.read_to_close();
    let r = RawResponse::parse_all(&bytes);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, br#"{"message":"Hello, John!"}"#);
    assert!(closed);

    assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let last = app.last_log();
    assert_eq!(last["message"], "shutdown complete", "{last}");
    assert_eq!(last["cut"], 0, "{last}");
    assert_eq!(last["drained"], 2, "{last}");
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
    crate::helpers::start_request_in_flight(&mut raw, 15);
    raw.send(b"{");
    app.signal("TERM");
    assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let last = app.last_log();
    assert_eq!(last["message"], "shutdown complete", "{last}");
    assert_eq!(last["cut"], 1, "{last}");
}

#[test]
fn shutdown_order_readyz_503_first_then_still_serving_until_the_drain() {
    // A long delay; a second SIGTERM ends it, so the test never waits on a clock.
    let mut app = TestServer::spawn_with(&[("SHUTDOWN_DELAY", "10m"), ("WORKERS", "1")]);
    app.signal("TERM");
    app.wait_for_log("still serving during the shutdown delay");
    // New connections are still accepted and served; readiness says 503.
    let r = app
        .raw()
        .send(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .read_responses(1);
    assert_eq!(r[0].status, 503);
    assert_eq!(r[0].body, br#"{"status":"shutting down"}"#);
    let r = app
        .raw()
        .send(b"POST /greet HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"name\":\"D\"}")
        .read_responses(1);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, br#"{"message":"Hello, D!"}"#);
    // Asked again: the delay ends, the listener closes, the process exits.
    app.signal("TERM");
    app.wait_for_log("the shutdown delay ends now");
    assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(std::net::TcpStream::connect(app.addr).is_err());
    let messages: Vec<String> = app
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["message"].as_str().map(str::to_owned))
        .collect();
    let at = |m: &str| messages.iter().position(|x| x.contains(m)).unwrap();
    assert!(at("shutdown requested") < at("still serving during the shutdown delay"));
    assert!(at("still serving during the shutdown delay") < at("shutdown started"));
    assert!(at("shutdown started") < at("shutdown complete"));
}

#[test]
fn connections_that_never_showed_a_protocol_end_with_the_drain() {
    // A silent client and one stuck mid TLS handshake would each hold the shutdown
    // until HEADER_TIMEOUT (a minute here) or be cut at SHUTDOWN_TIMEOUT; they end
    // at once instead, so the drain counts them drained, not cut.
    let dir = crate::ops::temp_dir("drain-tls");
    let (cert, key, der) = crate::ops::certificate(&dir);
    for tls in [false, true] {
        let mut env = vec![("HEADER_TIMEOUT", "60s"), ("SHUTDOWN_TIMEOUT", "30s")];
        if tls {
            env.push(("TLS_CERT", cert.to_str().unwrap()));
            env.push(("TLS_KEY", key.to_str().unwrap()));
        }
        let mut app = TestServer::spawn_with(&env);
        let mut silent = app.raw();
        if tls {
            // The start of a TLS record, never finished.
            silent.send(&[0x16, 0x03, 0x01, 0x00, 0x40]);
        }
        // Accepted before the signal (the gauge counts it), not just queued.
        crate::ops::wait_for_open_connections(&app, 1, tls.then_some(&der[..]));
        app.signal("TERM");
        assert_eq!(app.wait_exit(Duration::from_secs(20)).code(), Some(0));
        let last = app.last_log();
        assert_eq!(last["message"], "shutdown complete", "{last}");
        assert_eq!(last["cut"], 0, "tls={tls}: {last}");
        assert!(last["drained"].as_u64() >= Some(1), "tls={tls}: {last}");
        let (_, closed) = silent.read_to_close();
        assert!(closed);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The real server with a handler that panics on `/panic`.
#[derive(Clone)]
struct Panicky(Routes);

impl Handler for Panicky {
    fn handle<B>(
        &self,
        route: Route,
        req: Request<B>,
    ) -> impl std::future::Future<Output = Answer> + Send + Unpin + 'static + use<B>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        // One panic while routing, one while the future is polled.
        if req.uri().path() == "/panic" {
            panic!("boom at /secret/path.rs");
        }
        let inner = self.0.handle(route, req);
        Box::pin(async move {
            let answer = inner.await;
            if answer.status == 404 {
                panic!("boom later at /secret/other.rs");
            }
            answer
        })
    }
}

#[tokio::test]
async fn a_panicking_handler_gets_500_and_the_next_request_is_served() {
    let app = app(1).map_handler(Panicky);
    let metrics = app.metrics().clone();
    let server = InProcess::start(app, || {});
    for mut c in [Conn::h1(server.addr).await, Conn::h2(server.addr).await] {
        for path in ["/panic", "/nope"] {
            let r = c.get(path).await;
            let p = r.assert_problem(500);
            assert!(!p["detail"].as_str().unwrap().contains("secret"));
            assert!(r.header("x-request-id").is_some());
            // Same connection, next request.
            assert_eq!(c.greet(r#"{"name":"John"}"#).await.status, 200);
        }
    }
    // Panics are counted like any other 500.
    let text = metrics.render();
    assert!(
        text.contains(r#"http_requests_total{route="unmatched",method="GET",status="500"} 4"#),
        "{text}"
    );
    let report = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    assert_eq!(report.cut, 0);
}

/// Asserts that a deadline of `configured` fired when it should: never before it
/// (a lower bound that cannot flake), and not long after (a generous upper bound
/// that only a missing or wrong timer exceeds).
fn assert_fired_at(elapsed: Duration, configured: Duration) {
    assert!(
        elapsed >= configured,
        "closed after {elapsed:?}, before the configured {configured:?}"
    );
    assert!(
        elapsed < configured + Duration::from_secs(5),
        "closed after {elapsed:?}, long after the configured {configured:?}"
    );
}

#[test]
fn a_silent_client_is_cut_at_the_header_timeout() {
    let app = TestServer::spawn_with(&[("HEADER_TIMEOUT", "300ms")]);
    let started = Instant::now();
    let mut raw = app.raw();
    let (bytes, closed) = raw.read_to_close();
    assert!(closed && bytes.is_empty());
    assert_fired_at(started.elapsed(), Duration::from_millis(300));
}

#[test]
fn a_slowloris_head_is_cut_at_the_header_timeout() {
    let app = TestServer::spawn_with(&[("HEADER_TIMEOUT", "400ms")]);
    let started = Instant::now();
    let mut raw = app.raw();
    // One byte every 50 ms: the head keeps arriving, but not in time.
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for b in head.iter() {
        if std::io::Write::write_all(&mut raw.0, &[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if started.elapsed() > Duration::from_millis(700) {
            break;
        }
    }
    let (bytes, closed) = raw.read_to_close();
    let elapsed = started.elapsed();
    assert!(closed);
    assert!(RawResponse::parse_all(&bytes).is_empty());
    // Cut while bytes were still arriving: the deadline counts from the first byte,
    // not from the last one.
    assert!(elapsed < Duration::from_millis(400) + Duration::from_secs(5));
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
}

#[test]
fn idle_keep_alive_is_not_cut_at_the_header_timeout_but_at_the_idle_timeout() {
    let app = TestServer::spawn_with(&[("HEADER_TIMEOUT", "200ms"), ("IDLE_TIMEOUT", "1500ms")]);
    let mut raw = app.raw();
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(raw.read_responses(1)[0].status, 200);
    // Idle for longer than HEADER_TIMEOUT: still open.
    std::thread::sleep(Duration::from_millis(600));
    // The server's idle period starts after it answers this request, so the close
    // comes at least IDLE_TIMEOUT after the request was sent.
    let sent = Instant::now();
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(raw.read_responses(1)[0].status, 200);
    let (bytes, closed) = raw.read_to_close();
    assert!(closed && bytes.is_empty());
    assert_fired_at(sent.elapsed(), Duration::from_millis(1500));
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
