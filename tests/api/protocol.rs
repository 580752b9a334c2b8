//! README, Protocols and connection rules: HTTP/1.0, keep-alive, pipelining, h2c,
//! framing and smuggling.

use std::io::Write;
use std::time::Duration;

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

/// Sends `request` on a fresh connection and reads until the server closes it.
fn exchange(app: &TestServer, request: &[u8]) -> (Vec<RawResponse>, bool) {
    let mut raw = app.raw();
    raw.send(request);
    let (bytes, closed) = raw.read_to_close();
    (RawResponse::parse_all(&bytes), closed)
}

/// What a client may hide after a request's framing, to see whether the server
/// reads it as a second request.
const SMUGGLED: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn content_length_with_transfer_encoding_is_framed_by_the_chunks_then_closed() {
    // RFC 9112 section 6.3: the chunked framing wins over Content-Length and the
    // connection is closed after the response, so nothing after it is read, with
    // or without bytes after the body.
    let app = TestServer::spawn();
    let chunked = b"f\r\n{\"name\":\"John\"}\r\n0\r\n\r\n";
    for headers in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        "Content-Length: 50\r\nTransfer-Encoding: chunked\r\n",
    ] {
        for trailing in [&b""[..], SMUGGLED] {
            let mut body = chunked.to_vec();
            body.extend_from_slice(trailing);
            let (responses, closed) = exchange(&app, &post(headers, &body));
            assert!(closed, "{headers:?}: connection left open");
            assert_eq!(responses.len(), 1, "{headers:?} {trailing:?}");
            assert_eq!(responses[0].status, 200);
            assert_eq!(responses[0].body, br#"{"message":"Hello, John!"}"#);
        }
    }
}

#[test]
fn invalid_framing_gets_400_then_close_with_or_without_bytes_after_the_head() {
    let app = TestServer::spawn();
    for headers in [
        "Content-Length: 15\r\nContent-Length: 16\r\n",
        "Content-Length: 15, 16\r\n",
        "Content-Length: +15\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 0x0f\r\n",
        "Content-Length: 15abc\r\n",
        "Content-Length: 1 5\r\n",
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
    ] {
        let mut with_body = post(headers, GREET);
        with_body.extend_from_slice(b" ");
        with_body.extend_from_slice(SMUGGLED);
        for request in [post(headers, b""), post(headers, GREET), with_body] {
            let (responses, closed) = exchange(&app, &request);
            assert!(closed, "{headers:?}: connection left open");
            assert_eq!(
                responses.iter().map(|r| r.status).collect::<Vec<_>>(),
                [400],
                "{headers:?} with {} bytes after the head",
                request.len() - post(headers, b"").len()
            );
        }
    }
}

/// A request whose head (request line, headers and the blank line) is exactly
/// `size` bytes: padded with one `X-Pad` header, or `count` headers of ~1 KB.
fn head_of(size: usize, count: usize) -> Vec<u8> {
    let start = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    let fixed = start.len() + 2; // the final CRLF
    let per_header = (size - fixed) / count;
    let mut head = start;
    for i in 0..count {
        let len = if i + 1 == count {
            size - fixed - per_header * (count - 1)
        } else {
            per_header
        };
        let name = format!("X-Pad-{i:03}: ");
        let value = "a".repeat(len - name.len() - 2);
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    assert_eq!(head.len(), size);
    head
}

#[test]
fn the_head_limit_is_exact_64_kib_whatever_the_packets() {
    let app = TestServer::spawn();
    let limit = 64 * 1024;
    for count in [1, 70, 90] {
        // At the limit: served. One byte over: 431, in one write or in pieces.
        let (ok, _) = {
            let mut raw = app.raw();
            raw.send(&head_of(limit, count));
            (raw.read_responses(1), ())
        };
        assert_eq!(ok[0].status, 200, "{count} headers at the limit");
        let over = head_of(limit + 1, count);
        for piece in [over.len(), 1000] {
            let mut raw = app.raw();
            for chunk in over.chunks(piece) {
                raw.send(chunk);
            }
            let (bytes, closed) = raw.read_to_close();
            let r = RawResponse::parse_all(&bytes);
            assert!(closed);
            assert_eq!(
                r.iter().map(|r| r.status).collect::<Vec<_>>(),
                [431],
                "{count} headers, 1 byte over, written {piece} bytes at a time"
            );
        }
    }
    // The server is still healthy.
    let ok = app
        .raw()
        .send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .read_responses(1);
    assert_eq!(ok[0].status, 200);
}

#[test]
fn more_than_100_headers_get_431() {
    let app = TestServer::spawn();
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..100 {
        head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let (responses, closed) = exchange(&app, &head);
    assert!(closed);
    assert_eq!(
        responses.iter().map(|r| r.status).collect::<Vec<_>>(),
        [431]
    );
}

#[test]
fn a_request_whose_first_packet_is_a_prefix_of_the_http2_preface_is_still_served() {
    let app = TestServer::spawn_with(&[("LOG_LEVEL", "debug")]);
    let mut raw = app.raw();
    // "P" could begin "PRI * HTTP/2.0": the server cannot decide from it, says so,
    // and waits for more bytes. Only then does the rest go out, so this test
    // covers that path whatever the network does with the packets.
    raw.send(b"P");
    app.wait_for_log("first bytes are a prefix of the HTTP/2 preface");
    raw.send(b"OST /greet HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n")
        .send(GREET);
    let r = raw.read_responses(1);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, br#"{"message":"Hello, John!"}"#);
}

#[test]
fn a_refused_client_that_keeps_sending_is_cut_off_after_64_kib_not_at_the_deadline() {
    // The head deadline is far away: only the 64 KiB bound can end this.
    let mut app = TestServer::spawn_with(&[("HEADER_TIMEOUT", "600s")]);
    let mut raw = app.raw();
    raw.0
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    raw.send(b"INVALID CONNECTION PREFACE\r\n\r\n");
    // A server that read and dropped without a bound would take all of it.
    let chunk = [b'x'; 64 * 1024];
    let mut sent = 0usize;
    let ended = loop {
        if sent >= 256 * 1024 * 1024 {
            break None;
        }
        match raw.0.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => break Some(e),
        }
    };
    let e = ended.unwrap_or_else(|| panic!("still accepting bytes after {sent}"));
    assert!(
        !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "the server stopped reading but kept the connection: {e}"
    );
    assert!(app.is_running());
}

#[test]
fn a_first_line_that_is_neither_http1_nor_the_http2_preface_is_closed_unanswered() {
    let mut app = TestServer::spawn();
    // h2spec 3.5/2 sends this; an HTTP/1 answer would be read as frames by an
    // HTTP/2 client, so nothing is sent (RFC 9113 section 3.4).
    for first in [
        &b"INVALID CONNECTION PREFACE\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
        b"GET / HTTP/1\r\nHost: x\r\n\r\n",
    ] {
        // Closed in order (a FIN, not a reset with our bytes unread: h2spec
        // reads "connection reset by peer" as a failure), and unanswered.
        let bytes = app.raw().send(first).read_to_fin();
        assert_eq!(bytes, b"", "{:?}", String::from_utf8_lossy(first));
    }
    // What merely looks odd is still HTTP/1's to answer.
    let (bytes, _) = app
        .raw()
        .send(b"FROB /greet HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .read_to_close();
    assert_eq!(RawResponse::parse_all(&bytes)[0].status, 405);
    assert!(app.is_running());
}
