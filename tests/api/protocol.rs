//! README, Protocols and connection rules: HTTP/1.0, keep-alive, pipelining, h2c,
//! framing and smuggling.

use crate::helpers::{body_with_name, Conn, RawResponse, TestServer};

const GREET: &[u8] = br#"{"name":"John"}"#;

fn post(extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /greet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra_headers}\r\n"
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

#[test]
fn http_1_0_is_served_and_closed() {
    let app = TestServer::spawn();
    let (bytes, closed) = app
        .raw()
        .send(b"POST /greet HTTP/1.0\r\nContent-Length: 15\r\n\r\n")
        .send(GREET)
        .read_to_close();
    assert!(closed, "HTTP/1.0 without keep-alive closes");
    let r = RawResponse::parse_all(&bytes);
    assert_eq!(r.len(), 1);
    assert!(
        r[0].status_line.starts_with("HTTP/1.0 200"),
        "{}",
        r[0].status_line
    );
    assert_eq!(r[0].body, br#"{"message":"Hello, John!"}"#);
}

#[tokio::test]
async fn hundred_requests_on_one_keep_alive_connection() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    for i in 0..100 {
        let r = c.greet(&body_with_name(&format!("n{i}"))).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!(r#"{{"message":"Hello, n{i}!"}}"#));
    }
}

#[test]
fn fifty_pipelined_requests_are_answered_in_order() {
    let app = TestServer::spawn();
    let mut all = Vec::new();
    for i in 0..50 {
        let body = body_with_name(&format!("p{i}"));
        all.extend(post(
            &format!("Content-Length: {}\r\n", body.len()),
            body.as_bytes(),
        ));
    }
    let mut raw = app.raw();
    raw.send(&all);
    let responses = raw.read_responses(50);
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            format!(r#"{{"message":"Hello, p{i}!"}}"#).into_bytes()
        );
    }
}

#[tokio::test]
async fn h2c_with_prior_knowledge() {
    let app = TestServer::spawn();
    let mut c = Conn::h2(app.addr).await;
    for i in 0..20 {
        let r = c.greet(&body_with_name(&format!("h{i}"))).await;
        assert_eq!(r.version, http::Version::HTTP_2);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!(r#"{{"message":"Hello, h{i}!"}}"#));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(r.header("x-request-id").is_some());
    }
    c.get("/nope").await.assert_problem(404);
    let r = c.request("GET", "/greet").await;
    r.assert_problem(405);
    assert_eq!(r.header("allow"), Some("POST"));
}

#[test]
fn chunked_bodies_are_read_and_limited_while_streaming() {
    let app = TestServer::spawn();
    let ok = app
        .raw()
        .send(&post(
            "Transfer-Encoding: chunked\r\n",
            b"5\r\n{\"nam\r\na\r\ne\":\"John\"}\r\n0\r\n\r\n",
        ))
        .read_responses(1);
    assert_eq!(ok[0].body, br#"{"message":"Hello, John!"}"#);

    // 20 KiB in 4 KiB chunks, never declared: refused once it passes 16 KiB, and the
    // connection is closed rather than reading the rest as a new request.
    let mut body = Vec::new();
    for _ in 0..5 {
        body.extend_from_slice(b"1000\r\n");
        body.extend_from_slice(&[b' '; 4096]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (bytes, closed) = app
        .raw()
        .send(&post("Transfer-Encoding: chunked\r\n", &body))
        .read_to_close();
    let r = RawResponse::parse_all(&bytes);
    assert_eq!(r.len(), 1, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(r[0].status, 413);
    assert!(closed);
}

#[test]
fn huge_declared_length_is_refused_without_waiting_for_the_body() {
    let app = TestServer::spawn();
    let mut raw = app.raw();
    // The body is never sent: the answer must not wait for it.
    raw.send(&post("Content-Length: 10000000000\r\n", b""));
    let r = raw.read_responses(1);
    assert_eq!(r[0].status, 413);
    assert_eq!(
        r[0].header("content-type"),
        Some("application/problem+json")
    );
}

/// Every smuggling shape: at most one response, never a 200 for the smuggled
/// request, and the connection is closed afterwards.
fn assert_not_smuggled(app: &TestServer, request: &[u8]) -> Vec<RawResponse> {
    let mut raw = app.raw();
    raw.send(request);
    let (bytes, closed) = raw.read_to_close();
    assert!(closed, "connection must be closed after an ambiguous frame");
    let responses = RawResponse::parse_all(&bytes);
    assert!(responses.len() <= 1, "{}", String::from_utf8_lossy(&bytes));
    for r in &responses {
        assert!(r.status == 400 || r.status == 200, "{}", r.status_line);
    }
    responses
}

#[test]
fn content_length_with_transfer_encoding_is_not_read_as_two_requests() {
    let app = TestServer::spawn();
    // The chunked body hides a second request if Content-Length were used.
    let smuggled = b"f\r\n{\"name\":\"John\"}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    for headers in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
    ] {
        let responses = assert_not_smuggled(&app, &post(headers, smuggled));
        // Either refused (400) or framed by Transfer-Encoding alone (200 for John).
        for r in responses.iter().filter(|r| r.status == 200) {
            assert_eq!(r.body, br#"{"message":"Hello, John!"}"#);
        }
    }
}

#[test]
fn conflicting_or_malformed_content_lengths_are_refused() {
    let app = TestServer::spawn();
    for headers in [
        "Content-Length: 15\r\nContent-Length: 16\r\n",
        "Content-Length: 15, 16\r\n",
        "Content-Length: +15\r\n",
        "Content-Length: 0x0f\r\n",
        "Content-Length: 15abc\r\n",
    ] {
        let mut req = post(headers, GREET);
        req.extend_from_slice(b" GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let responses = assert_not_smuggled(&app, &req);
        for r in &responses {
            assert_eq!(r.status, 400, "{headers:?}");
        }
        // Without a trailing body hyper's 400 is always observable.
        let responses = assert_not_smuggled(&app, &post(headers, b""));
        assert_eq!(responses.len(), 1, "{headers:?}");
        assert_eq!(responses[0].status, 400, "{headers:?}");
    }
}

#[test]
fn oversized_heads_get_431_or_a_closed_connection() {
    let app = TestServer::spawn();
    let big = format!("X-Big: {}\r\n", "a".repeat(70 * 1024));
    let mut raw = app.raw();
    raw.send(&post(&big, GREET));
    let (bytes, closed) = raw.read_to_close();
    let responses = RawResponse::parse_all(&bytes);
    assert!(closed);
    assert!(responses.iter().all(|r| r.status == 431));
    // The server is still healthy.
    let ok = app
        .raw()
        .send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .read_responses(1);
    assert_eq!(ok[0].status, 200);
}

#[test]
fn a_request_whose_first_packet_is_a_prefix_of_the_http2_preface_is_still_served() {
    let app = TestServer::spawn();
    let mut raw = app.raw();
    // "P" could begin "PRI * HTTP/2.0": the server cannot decide from it and lets
    // hyper-util's auto builder read on.
    raw.send(b"P");
    std::thread::sleep(std::time::Duration::from_millis(100));
    raw.send(b"OST /greet HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n")
        .send(GREET);
    let r = raw.read_responses(1);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, br#"{"message":"Hello, John!"}"#);
}
