//! Idle HTTP/1 connections park (hyper's state released, the socket kept) and are
//! served again when bytes arrive; the deadlines and the drain still apply to
//! them. `http_connections_parked` shows how many are parked, so the tests know.

use std::time::{Duration, Instant};

use crate::helpers::{Raw, RawResponse, TestServer};
use crate::ops::metric;

const GREET: &[u8] =
    b"POST /greet HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"name\":\"P\"}";

/// The server's parked-connection gauge, asked on a connection of its own (which
/// is busy while it asks, so it is never the one counted).
fn parked(app: &TestServer) -> f64 {
    let (bytes, _) = app
        .raw()
        .send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .read_to_close();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    metric(&text, "http_connections_parked").unwrap_or_else(|| panic!("{text}"))
}

fn wait_parked(app: &TestServer, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while parked(app) != n {
        assert!(Instant::now() < deadline, "never {n} parked");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn greet_on(raw: &mut Raw) {
    raw.send(GREET);
    let r = raw.read_responses(1);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, br#"{"message":"Hello, P!"}"#);
}

#[test]
fn an_idle_connection_parks_and_is_served_again() {
    let app = TestServer::spawn_with(&[("WORKERS", "1")]);
    let mut raw = app.raw();
    greet_on(&mut raw);
    wait_parked(&app, 1.0);
    // Served by a fresh hyper connection, then parked again when idle.
    greet_on(&mut raw);
    greet_on(&mut raw);
    wait_parked(&app, 1.0);
    greet_on(&mut raw);
}

#[test]
fn a_request_split_across_packets_after_parking_is_served() {
    let app = TestServer::spawn_with(&[("WORKERS", "1")]);
    let mut raw = app.raw();
    greet_on(&mut raw);
    wait_parked(&app, 1.0);
    // The wake-up sees only the first bytes; the rest comes later.
    raw.send(b"POST /gr");
    std::thread::sleep(Duration::from_millis(100));
    raw.send(&GREET[8..]);
    let r = raw.read_responses(1);
    assert_eq!(r[0].status, 200);
}

#[test]
fn pipelined_requests_and_a_late_body_do_not_lose_bytes_around_parking() {
    let app = TestServer::spawn_with(&[("WORKERS", "1")]);
    let mut raw = app.raw();
    // Two pipelined requests and the start of a third in one write: the third's
    // head sits in hyper's buffer while the others are answered, so this
    // connection must not park until it completes.
    let mut burst = GREET.repeat(2);
    burst.extend_from_slice(&GREET[..20]);
    raw.send(&burst);
    assert_eq!(raw.read_responses(2).len(), 2);
    std::thread::sleep(Duration::from_millis(1500));
    raw.send(&GREET[20..]);
    assert_eq!(raw.read_responses(1)[0].status, 200);
    // A body that comes after its head, in a packet of its own.
    raw.send(&GREET[..GREET.len() - 12]);
    std::thread::sleep(Duration::from_millis(100));
    raw.send(&GREET[GREET.len() - 12..]);
    assert_eq!(raw.read_responses(1)[0].status, 200);
    // Then idle long enough to park, and served again.
    wait_parked(&app, 1.0);
    greet_on(&mut raw);
}

#[test]
fn a_parked_connection_is_closed_at_the_idle_timeout() {
    let app = TestServer::spawn_with(&[("WORKERS", "1"), ("IDLE_TIMEOUT", "3s")]);
    let mut raw = app.raw();
    let sent = Instant::now();
    greet_on(&mut raw);
    wait_parked(&app, 1.0);
    let (bytes, closed) = raw.read_to_close();
    assert!(closed && bytes.is_empty());
    assert!(
        sent.elapsed() >= Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(parked(&app), 0.0);
}

#[test]
fn the_drain_closes_parked_connections_at_once() {
    let mut app = TestServer::spawn_with(&[("WORKERS", "1"), ("SHUTDOWN_TIMEOUT", "30s")]);
    let mut raw = app.raw();
    greet_on(&mut raw);
    wait_parked(&app, 1.0);
    app.signal("TERM");
    let (bytes, closed) = raw.read_to_close();
    assert!(closed);
    assert!(RawResponse::parse_all(&bytes).is_empty());
    assert_eq!(app.wait_exit(Duration::from_secs(20)).code(), Some(0));
    let last = app.last_log();
    assert_eq!(last["cut"], 0, "{last}");
}

#[test]
fn a_client_that_closes_while_parked_is_forgotten() {
    let app = TestServer::spawn_with(&[("WORKERS", "1")]);
    let mut raw = app.raw();
    greet_on(&mut raw);
    wait_parked(&app, 1.0);
    drop(raw);
    wait_parked(&app, 0.0);
    let text = {
        let (bytes, _) = app
            .raw()
            .send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .read_to_close();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    // Only the asking connection is open.
    assert_eq!(metric(&text, "http_connections_open"), Some(1.0));
}
